//! The protobuf binary encoding, as much of it as reducers need: varints,
//! the four wire types, field tags, and one marker type per scalar kind
//! (`Int32`, `SInt64`, `Fixed32`, `Double`, ...) that says how a value of
//! that kind is encoded. Generated code (`strata reducer gen --lang rust`)
//! and the ABI envelopes are written on top of it.
//!
//! Decoding never panics on bad input: every function that reads bytes
//! returns a [`WireError`].

use std::fmt;

/// How a field's value is laid out on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireType {
    /// A varint: int32, int64, uint32, uint64, sint32, sint64, bool, enum.
    Varint = 0,
    /// Eight little-endian bytes: fixed64, sfixed64, double.
    Fixed64 = 1,
    /// A varint length, then that many bytes: string, bytes, messages,
    /// packed repeated scalars.
    Bytes = 2,
    /// The start of a group (proto2); only ever skipped.
    StartGroup = 3,
    /// The end of a group.
    EndGroup = 4,
    /// Four little-endian bytes: fixed32, sfixed32, float.
    Fixed32 = 5,
}

/// What is wrong with the bytes being decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The input ends inside a tag, a value or a length.
    Truncated,
    /// A varint longer than ten bytes, or one that overflows 64 bits.
    VarintOverflow,
    /// A tag with a wire type that protobuf does not define (6 or 7).
    BadWireType(u8),
    /// A tag with field number 0 or above 2^29-1.
    BadFieldNumber,
    /// A string field whose bytes are not UTF-8.
    InvalidUtf8,
    /// A group that does not end, or ends with another field's number.
    BadGroup,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("unexpected end of input"),
            WireError::VarintOverflow => f.write_str("varint overflows 64 bits"),
            WireError::BadWireType(t) => write!(f, "invalid wire type {}", t),
            WireError::BadFieldNumber => f.write_str("invalid field number"),
            WireError::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            WireError::BadGroup => f.write_str("unterminated or mismatched group"),
        }
    }
}

impl std::error::Error for WireError {}

/// A decoding error located in a message: the message's full name, the
/// field number (0 when the tag itself is bad) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The protobuf full name of the message, e.g. `fleet.v1.Machine`.
    pub message: &'static str,
    /// The field number, or 0 when the tag could not be read.
    pub field: u32,
    /// What is wrong.
    pub error: WireError,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field == 0 {
            write!(f, "{}: {}", self.message, self.error)
        } else {
            write!(f, "{} field {}: {}", self.message, self.field, self.error)
        }
    }
}

impl std::error::Error for DecodeError {}

impl WireError {
    /// Locates the error at field `field` of message `message`.
    pub fn at(self, message: &'static str, field: u32) -> DecodeError {
        DecodeError { message, field, error: self }
    }
}

/// The largest field number protobuf allows.
pub const MAX_FIELD: u32 = (1 << 29) - 1;

/// How deep groups may nest inside a skipped field.
const MAX_GROUP_DEPTH: usize = 64;

/// Appends v as a varint.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Returns the length of v as a varint: 1 to 10 bytes.
pub fn varint_len(v: u64) -> usize {
    // 1 + floor(bits/7), with v|1 so that 0 takes one byte.
    (((64 - (v | 1).leading_zeros()) * 9 + 64) / 64) as usize
}

/// Reads a varint at the start of b and returns it with its length.
#[inline]
pub fn get_varint(b: &[u8]) -> Result<(u64, usize), WireError> {
    match b.first() {
        Some(&c) if c < 0x80 => Ok((u64::from(c), 1)),
        _ => get_varint_slow(b),
    }
}

fn get_varint_slow(b: &[u8]) -> Result<(u64, usize), WireError> {
    let mut v: u64 = 0;
    for (i, &c) in b.iter().enumerate().take(10) {
        if i == 9 && c > 1 {
            return Err(WireError::VarintOverflow);
        }
        v |= u64::from(c & 0x7f) << (7 * i);
        if c < 0x80 {
            return Ok((v, i + 1));
        }
    }
    if b.len() >= 10 {
        Err(WireError::VarintOverflow)
    } else {
        Err(WireError::Truncated)
    }
}

/// Appends the tag of field `field` with wire type `wt`.
pub fn put_tag(buf: &mut Vec<u8>, field: u32, wt: WireType) {
    put_varint(buf, u64::from(field) << 3 | wt as u64);
}

/// Returns the length of the tag of field `field`.
pub fn tag_len(field: u32) -> usize {
    varint_len(u64::from(field) << 3)
}

/// Appends field `field` as length-delimited bytes: tag, length, b.
pub fn put_bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_tag(buf, field, WireType::Bytes);
    put_varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// Returns the length of field `field` holding n length-delimited bytes.
pub fn bytes_len(field: u32, n: usize) -> usize {
    tag_len(field) + varint_len(n as u64) + n
}

/// One field's value as read from the wire, before it is given a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// A varint.
    Varint(u64),
    /// Eight bytes, little-endian.
    Fixed64(u64),
    /// Length-delimited bytes, borrowed from the input.
    Bytes(&'a [u8]),
    /// Four bytes, little-endian.
    Fixed32(u32),
    /// A group, skipped whole.
    Group,
}

/// Reads the fields of one message, in the order they are on the wire.
///
/// ```
/// use strata_reducer::wire::{Reader, Value};
/// let mut r = Reader::new(&[0x08, 0x96, 0x01]);
/// assert_eq!(r.next_field(), Ok(Some((1, Value::Varint(150)))));
/// assert_eq!(r.next_field(), Ok(None));
/// ```
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    b: &'a [u8],
    field: u32,
}

impl<'a> Reader<'a> {
    /// Returns a reader of the message encoded in b.
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, field: 0 }
    }

    /// Returns the number of the field whose tag was read last, 0 before
    /// the first or when a tag could not be read: where an error of
    /// next_field is.
    pub fn field(&self) -> u32 {
        self.field
    }

    /// Returns the next field's number and value, or None at the end.
    /// Groups are skipped and returned as [`Value::Group`].
    #[inline]
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, WireError> {
        if self.b.is_empty() {
            return Ok(None);
        }
        let (field, wt) = self.tag()?;
        let v = self.value(field, wt, 0);
        self.field = field;
        Ok(Some((field, v?)))
    }

    #[inline]
    fn tag(&mut self) -> Result<(u32, u8), WireError> {
        self.field = 0;
        let (t, n) = get_varint(self.b)?;
        self.b = &self.b[n..];
        let field = t >> 3;
        if field == 0 || field > u64::from(MAX_FIELD) {
            return Err(WireError::BadFieldNumber);
        }
        self.field = field as u32;
        Ok((field as u32, (t & 7) as u8))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Truncated);
        }
        let (v, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(v)
    }

    #[inline]
    fn value(&mut self, field: u32, wt: u8, depth: usize) -> Result<Value<'a>, WireError> {
        match wt {
            0 => {
                let (v, n) = get_varint(self.b)?;
                self.b = &self.b[n..];
                Ok(Value::Varint(v))
            }
            1 => {
                let v = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(v);
                Ok(Value::Fixed64(u64::from_le_bytes(a)))
            }
            2 => {
                let (n, len) = get_varint(self.b)?;
                self.b = &self.b[len..];
                if n > self.b.len() as u64 {
                    return Err(WireError::Truncated);
                }
                Ok(Value::Bytes(self.take(n as usize)?))
            }
            3 => self.group(field, depth),
            4 => Err(WireError::BadGroup),
            5 => {
                let v = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(v);
                Ok(Value::Fixed32(u32::from_le_bytes(a)))
            }
            t => Err(WireError::BadWireType(t)),
        }
    }

    /// Skips a group up to its end tag, which must be field's.
    fn group(&mut self, field: u32, depth: usize) -> Result<Value<'a>, WireError> {
        if depth >= MAX_GROUP_DEPTH {
            return Err(WireError::BadGroup);
        }
        loop {
            if self.b.is_empty() {
                return Err(WireError::BadGroup);
            }
            let (f, t) = self.tag()?;
            if t == 4 {
                if f != field {
                    return Err(WireError::BadGroup);
                }
                return Ok(Value::Group);
            }
            self.value(f, t, depth + 1)?;
        }
    }
}

/// A scalar kind of protobuf: how its values are encoded. Each kind is a
/// marker type; generated code calls the functions below with one.
pub trait Scalar {
    /// The Rust type of the kind's values.
    type T: Copy + PartialEq + Default;
    /// The kind's wire type (also used for packed elements).
    const WIRE: WireType;
    /// Converts the raw bits read from the wire (a varint, or the
    /// little-endian fixed bytes) to a value.
    fn from_bits(bits: u64) -> Self::T;
    /// Converts a value to the bits written on the wire.
    fn to_bits(v: Self::T) -> u64;
}

macro_rules! scalar {
    ($(#[$doc:meta])* $name:ident, $t:ty, $wire:ident, |$b:ident| $from:expr, |$v:ident| $to:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name;
        impl Scalar for $name {
            type T = $t;
            const WIRE: WireType = WireType::$wire;
            #[inline]
            fn from_bits($b: u64) -> $t { $from }
            #[inline]
            fn to_bits($v: $t) -> u64 { $to }
        }
    };
}

// The table of scalar kinds: Rust type, wire type, and the conversions.
scalar!(/// `int32`: a varint, negative values sign-extended to ten bytes.
    Int32, i32, Varint, |b| b as i32, |v| v as i64 as u64);
scalar!(/// `int64`: a varint of the two's complement.
    Int64, i64, Varint, |b| b as i64, |v| v as u64);
scalar!(/// `uint32`: a varint.
    UInt32, u32, Varint, |b| b as u32, |v| u64::from(v));
scalar!(/// `uint64`: a varint.
    UInt64, u64, Varint, |b| b, |v| v);
scalar!(/// `sint32`: a zigzag varint.
    SInt32, i32, Varint, |b| ((b as u32) >> 1) as i32 ^ -((b & 1) as i32), |v| u64::from(((v << 1) ^ (v >> 31)) as u32));
scalar!(/// `sint64`: a zigzag varint.
    SInt64, i64, Varint, |b| (b >> 1) as i64 ^ -((b & 1) as i64), |v| ((v << 1) ^ (v >> 63)) as u64);
scalar!(/// `bool`: a varint, any non-zero value is true.
    Bool, bool, Varint, |b| b != 0, |v| u64::from(v));
scalar!(/// `fixed32`: four bytes.
    Fixed32, u32, Fixed32, |b| b as u32, |v| u64::from(v));
scalar!(/// `fixed64`: eight bytes.
    Fixed64, u64, Fixed64, |b| b, |v| v);
scalar!(/// `sfixed32`: four bytes, two's complement.
    SFixed32, i32, Fixed32, |b| b as u32 as i32, |v| u64::from(v as u32));
scalar!(/// `sfixed64`: eight bytes, two's complement.
    SFixed64, i64, Fixed64, |b| b as i64, |v| v as u64);
scalar!(/// `float`: four bytes, IEEE 754.
    Float, f32, Fixed32, |b| f32::from_bits(b as u32), |v| u64::from(v.to_bits()));
scalar!(/// `double`: eight bytes, IEEE 754.
    Double, f64, Fixed64, |b| f64::from_bits(b), |v| v.to_bits());

/// Returns the value of a field of kind K, or None when the field has
/// another wire type (protobuf then treats it as an unknown field).
#[inline]
pub fn get<K: Scalar>(v: Value<'_>) -> Option<K::T> {
    match (K::WIRE, v) {
        (WireType::Varint, Value::Varint(b)) => Some(K::from_bits(b)),
        (WireType::Fixed64, Value::Fixed64(b)) => Some(K::from_bits(b)),
        (WireType::Fixed32, Value::Fixed32(b)) => Some(K::from_bits(u64::from(b))),
        _ => None,
    }
}

fn put_bits(buf: &mut Vec<u8>, wt: WireType, bits: u64) {
    match wt {
        WireType::Fixed64 => buf.extend_from_slice(&bits.to_le_bytes()),
        WireType::Fixed32 => buf.extend_from_slice(&(bits as u32).to_le_bytes()),
        _ => put_varint(buf, bits),
    }
}

fn bits_len(wt: WireType, bits: u64) -> usize {
    match wt {
        WireType::Fixed64 => 8,
        WireType::Fixed32 => 4,
        _ => varint_len(bits),
    }
}

/// Appends field `field` of kind K holding v (also when v is the default:
/// proto3 callers skip defaults themselves).
#[inline]
pub fn put<K: Scalar>(buf: &mut Vec<u8>, field: u32, v: K::T) {
    put_tag(buf, field, K::WIRE);
    put_bits(buf, K::WIRE, K::to_bits(v));
}

/// Returns the length of field `field` of kind K holding v.
#[inline]
pub fn len<K: Scalar>(field: u32, v: K::T) -> usize {
    tag_len(field) + bits_len(K::WIRE, K::to_bits(v))
}

/// Adds the values of a repeated field of kind K to out: one value, or a
/// packed run of them. Other wire types are ignored, as unknown fields.
pub fn merge_repeated<K: Scalar>(out: &mut Vec<K::T>, v: Value<'_>) -> Result<(), WireError> {
    match v {
        Value::Bytes(mut b) => {
            while !b.is_empty() {
                let bits = match K::WIRE {
                    WireType::Fixed64 | WireType::Fixed32 => {
                        let n = if K::WIRE == WireType::Fixed64 { 8 } else { 4 };
                        if b.len() < n {
                            return Err(WireError::Truncated);
                        }
                        let mut a = [0u8; 8];
                        a[..n].copy_from_slice(&b[..n]);
                        b = &b[n..];
                        u64::from_le_bytes(a)
                    }
                    _ => {
                        let (x, n) = get_varint(b)?;
                        b = &b[n..];
                        x
                    }
                };
                out.push(K::from_bits(bits));
            }
        }
        v => {
            if let Some(x) = get::<K>(v) {
                out.push(x);
            }
        }
    }
    Ok(())
}

/// Appends a repeated field of kind K packed (proto3's default); nothing
/// when vs is empty.
pub fn put_packed<K: Scalar>(buf: &mut Vec<u8>, field: u32, vs: &[K::T]) {
    if vs.is_empty() {
        return;
    }
    let n: usize = vs.iter().map(|&v| bits_len(K::WIRE, K::to_bits(v))).sum();
    put_tag(buf, field, WireType::Bytes);
    put_varint(buf, n as u64);
    for &v in vs {
        put_bits(buf, K::WIRE, K::to_bits(v));
    }
}

/// Returns the length of a packed repeated field of kind K.
pub fn packed_len<K: Scalar>(field: u32, vs: &[K::T]) -> usize {
    if vs.is_empty() {
        return 0;
    }
    let n: usize = vs.iter().map(|&v| bits_len(K::WIRE, K::to_bits(v))).sum();
    bytes_len(field, n)
}

/// Appends field `field` of kind K holding v unless v is the kind's
/// zero value (proto3's implicit presence: 0, false, +0.0).
#[inline]
pub fn put_implicit<K: Scalar>(buf: &mut Vec<u8>, field: u32, v: K::T) {
    if K::to_bits(v) != 0 {
        put::<K>(buf, field, v)
    }
}

/// Returns the length of field `field` of kind K as put_implicit writes it.
#[inline]
pub fn len_implicit<K: Scalar>(field: u32, v: K::T) -> usize {
    if K::to_bits(v) != 0 {
        len::<K>(field, v)
    } else {
        0
    }
}

/// Appends message m as field `field`: tag, length, encoding.
pub fn put_message<M: crate::Message>(buf: &mut Vec<u8>, field: u32, m: &M) {
    put_tag(buf, field, WireType::Bytes);
    put_varint(buf, m.encoded_len() as u64);
    m.encode(buf);
}

/// Returns the length of message m as field `field`.
pub fn message_len<M: crate::Message>(field: u32, m: &M) -> usize {
    bytes_len(field, m.encoded_len())
}

/// Merges a message field into m (protobuf merges a message that appears
/// twice). A field of another wire type leaves m as it is.
#[inline]
pub fn merge_message<M: crate::Message>(m: &mut M, v: Value<'_>) -> Result<(), DecodeError> {
    if let Value::Bytes(b) = v {
        m.merge(b)?;
    }
    Ok(())
}

/// Returns the bytes of a length-delimited field, or None for another
/// wire type.
#[inline]
pub fn get_bytes(v: Value<'_>) -> Option<&[u8]> {
    match v {
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

/// Returns the text of a string field, or None for another wire type.
#[inline]
pub fn get_str(v: Value<'_>) -> Result<Option<&str>, WireError> {
    match v {
        Value::Bytes(b) => std::str::from_utf8(b).map(Some).map_err(|_| WireError::InvalidUtf8),
        _ => Ok(None),
    }
}

/// Sets s to the text of a string field, reusing s's memory. A field of
/// another wire type leaves s as it is.
#[inline]
pub fn merge_string(s: &mut String, v: Value<'_>) -> Result<(), WireError> {
    if let Some(t) = get_str(v)? {
        s.clear();
        s.push_str(t);
    }
    Ok(())
}

/// Sets b to the bytes of a bytes field, reusing b's memory. A field of
/// another wire type leaves b as it is.
#[inline]
pub fn merge_bytes(b: &mut Vec<u8>, v: Value<'_>) {
    if let Some(x) = get_bytes(v) {
        b.clear();
        b.extend_from_slice(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|c| format!("{:02x}", c)).collect()
    }

    // Encodings checked against google.golang.org/protobuf's protowire.
    #[test]
    fn varints() {
        let cases: &[(u64, &str)] = &[
            (0, "00"),
            (1, "01"),
            (127, "7f"),
            (128, "8001"),
            (150, "9601"),
            (16383, "ff7f"),
            (16384, "808001"),
            (u32::MAX as u64, "ffffffff0f"),
            (u64::MAX, "ffffffffffffffffff01"),
        ];
        for &(v, want) in cases {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(hex(&b), want, "put_varint({})", v);
            assert_eq!(varint_len(v), b.len(), "varint_len({})", v);
            assert_eq!(get_varint(&b), Ok((v, b.len())), "get_varint({})", want);
        }
    }

    #[test]
    fn bad_varints() {
        let cases: &[(&[u8], WireError)] = &[
            (&[], WireError::Truncated),
            (&[0x80], WireError::Truncated),
            (&[0xff; 9], WireError::Truncated),
            (&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], WireError::VarintOverflow),
            (&[0xff; 11], WireError::VarintOverflow),
        ];
        for (b, want) in cases {
            assert_eq!(get_varint(b), Err(*want), "get_varint({})", hex(b));
        }
    }

    fn enc<K: Scalar>(v: K::T) -> String {
        let mut b = Vec::new();
        put::<K>(&mut b, 1, v);
        assert_eq!(len::<K>(1, v), b.len());
        let mut r = Reader::new(&b);
        let (f, val) = r.next_field().unwrap().unwrap();
        assert_eq!(f, 1);
        assert!(get::<K>(val) == Some(v), "round trip of {}", hex(&b));
        hex(&b)
    }

    #[test]
    fn scalars() {
        let cases: Vec<(&str, String, &str)> = vec![
            ("int32 1", enc::<Int32>(1), "0801"),
            ("int32 -1", enc::<Int32>(-1), "08ffffffffffffffffff01"),
            ("int64 -2", enc::<Int64>(-2), "08feffffffffffffffff01"),
            ("uint32 300", enc::<UInt32>(300), "08ac02"),
            ("uint64 max", enc::<UInt64>(u64::MAX), "08ffffffffffffffffff01"),
            ("sint32 -1", enc::<SInt32>(-1), "0801"),
            ("sint32 1", enc::<SInt32>(1), "0802"),
            ("sint32 min", enc::<SInt32>(i32::MIN), "08ffffffff0f"),
            ("sint64 -3", enc::<SInt64>(-3), "0805"),
            ("sint64 max", enc::<SInt64>(i64::MAX), "08feffffffffffffffff01"),
            ("bool", enc::<Bool>(true), "0801"),
            ("fixed32", enc::<Fixed32>(1), "0d01000000"),
            ("sfixed32 -1", enc::<SFixed32>(-1), "0dffffffff"),
            ("fixed64", enc::<Fixed64>(2), "090200000000000000"),
            ("sfixed64 -2", enc::<SFixed64>(-2), "09feffffffffffffff"),
            ("float 1.5", enc::<Float>(1.5), "0d0000c03f"),
            ("double -0.5", enc::<Double>(-0.5), "09000000000000e0bf"),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{}", name);
        }
    }

    #[test]
    fn packed() {
        let mut b = Vec::new();
        put_packed::<Int32>(&mut b, 4, &[3, 270, 86942]);
        assert_eq!(hex(&b), "2206038e029ea705");
        assert_eq!(packed_len::<Int32>(4, &[3, 270, 86942]), b.len());
        let mut r = Reader::new(&b);
        let (f, v) = r.next_field().unwrap().unwrap();
        let mut out = Vec::new();
        merge_repeated::<Int32>(&mut out, v).unwrap();
        assert_eq!((f, out), (4, vec![3, 270, 86942]));

        let mut out = Vec::new();
        merge_repeated::<Fixed32>(&mut out, Value::Bytes(&[1, 0, 0, 0, 2, 0, 0, 0])).unwrap();
        merge_repeated::<Fixed32>(&mut out, Value::Fixed32(3)).unwrap();
        assert_eq!(out, vec![1, 2, 3]);
        assert_eq!(merge_repeated::<Fixed32>(&mut out, Value::Bytes(&[1, 0])), Err(WireError::Truncated));
    }

    #[test]
    fn reader() {
        // field 1 varint, field 2 "hi", unknown group 3 holding a varint,
        // field 5 fixed32, field 6 fixed64.
        let b: &[u8] = &[
            0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1b, 0x08, 0x01, 0x1c, 0x2d, 1, 0, 0, 0, 0x31, 2, 0, 0, 0, 0, 0, 0,
            0,
        ];
        let mut r = Reader::new(b);
        let mut got = Vec::new();
        while let Some(f) = r.next_field().unwrap() {
            got.push(f);
        }
        assert_eq!(
            got,
            vec![
                (1, Value::Varint(150)),
                (2, Value::Bytes(b"hi")),
                (3, Value::Group),
                (5, Value::Fixed32(1)),
                (6, Value::Fixed64(2)),
            ]
        );
    }

    #[test]
    fn reader_errors() {
        let cases: &[(&str, &[u8], WireError)] = &[
            ("field 0", &[0x00, 0x01], WireError::BadFieldNumber),
            ("wire type 6", &[0x0e], WireError::BadWireType(6)),
            ("wire type 7", &[0x0f], WireError::BadWireType(7)),
            ("truncated bytes", &[0x12, 0x05, b'a'], WireError::Truncated),
            ("huge length", &[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f], WireError::Truncated),
            ("truncated fixed64", &[0x09, 1, 2], WireError::Truncated),
            ("truncated fixed32", &[0x0d, 1], WireError::Truncated),
            ("truncated varint", &[0x08, 0x80], WireError::Truncated),
            ("end group alone", &[0x0c], WireError::BadGroup),
            ("unterminated group", &[0x0b, 0x08, 0x01], WireError::BadGroup),
            ("mismatched group", &[0x0b, 0x14], WireError::BadGroup),
        ];
        for (name, b, want) in cases {
            let mut r = Reader::new(b);
            assert_eq!(r.next_field(), Err(*want), "{}", name);
        }
        // The error is located at the field whose value is bad.
        let mut r = Reader::new(&[0x08, 0x01, 0x12, 0x05]);
        assert_eq!(r.next_field(), Ok(Some((1, Value::Varint(1)))));
        assert_eq!((r.next_field(), r.field()), (Err(WireError::Truncated), 2));
        // Deeply nested groups are refused, not a stack overflow.
        let mut b = vec![0x0b; 10_000];
        b.extend(vec![0x0c; 10_000]);
        assert_eq!(Reader::new(&b).next_field(), Err(WireError::BadGroup));
    }

    #[test]
    fn strings() {
        let mut s = String::from("old");
        merge_string(&mut s, Value::Bytes("né".as_bytes())).unwrap();
        assert_eq!(s, "né");
        merge_string(&mut s, Value::Varint(1)).unwrap();
        assert_eq!(s, "né", "a wrong wire type is an unknown field");
        assert_eq!(merge_string(&mut s, Value::Bytes(&[0xff])), Err(WireError::InvalidUtf8));
        let mut b = Vec::new();
        put_bytes(&mut b, 2, b"hi");
        assert_eq!(hex(&b), "12026869");
        assert_eq!(bytes_len(2, 2), 4);
        assert_eq!(tag_len(MAX_FIELD), 5);
    }
}
