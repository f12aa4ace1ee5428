//! The envelopes of ABI version 1 (sdk/abi/v1/abi.proto): the Request the
//! host sends and the Response the guest returns.

use crate::wire::{self, Reader, Value, WireError};

/// The ABI version this crate speaks.
pub const VERSION: u32 = 1;

/// A decoded Request. Strings and rows borrow the request's bytes.
#[derive(Debug, Default)]
pub struct Request<'a> {
    /// abi_version (1).
    pub abi_version: u32,
    /// reducer (2): the reducer's configured name.
    pub reducer: &'a str,
    /// region (3).
    pub region: &'a str,
    /// tables (4), in configuration order: each one's name and its
    /// encoded Table message, whose rows are read lazily.
    pub tables: Vec<(&'a str, &'a [u8])>,
}

const REQUEST: &str = "strata.abi.v1.Request";
const TABLE: &str = "strata.abi.v1.Table";

/// Decodes a Request, skipping unknown fields as the ABI asks.
pub fn decode_request(b: &[u8]) -> Result<Request<'_>, wire::DecodeError> {
    let mut req = Request::default();
    let mut r = Reader::new(b);
    loop {
        let (field, v) = match r.next_field() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(e.at(REQUEST, r.field())),
        };
        let at = |e: WireError| e.at(REQUEST, field);
        match (field, v) {
            (1, Value::Varint(x)) => req.abi_version = x as u32,
            (2, v) => req.reducer = wire::get_str(v).map_err(at)?.unwrap_or(req.reducer),
            (3, v) => req.region = wire::get_str(v).map_err(at)?.unwrap_or(req.region),
            (4, Value::Bytes(t)) => req.tables.push((table_name(t)?, t)),
            _ => {}
        }
    }
    Ok(req)
}

/// Returns the name of an encoded Table (the last one, as protobuf merges).
fn table_name(b: &[u8]) -> Result<&str, wire::DecodeError> {
    let mut name = "";
    let mut r = Reader::new(b);
    while let Some((field, v)) = r.next_field().map_err(|e| e.at(TABLE, r.field()))? {
        if field == 1 {
            if let Some(s) = wire::get_str(v).map_err(|e| e.at(TABLE, 1))? {
                name = s;
            }
        }
    }
    Ok(name)
}

/// Iterates over the rows (field 2) of an encoded Table, in order.
pub struct Rows<'a> {
    r: Reader<'a>,
}

impl<'a> Rows<'a> {
    /// Returns an iterator over the rows of the encoded Table t.
    pub fn new(t: &'a [u8]) -> Self {
        Rows { r: Reader::new(t) }
    }
}

impl<'a> Iterator for Rows<'a> {
    type Item = Result<&'a [u8], wire::DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.r.next_field() {
                Ok(None) => return None,
                Ok(Some((2, Value::Bytes(row)))) => return Some(Ok(row)),
                Ok(Some(_)) => {}
                Err(e) => return Some(Err(e.at(TABLE, self.r.field()))),
            }
        }
    }
}

/// Appends a Record (a field 1 of Response) to buf.
pub fn put_record(buf: &mut Vec<u8>, name: &str, key: &str, value: &[u8]) {
    let n = wire::bytes_len(1, name.len()) + wire::bytes_len(2, key.len()) + wire::bytes_len(3, value.len());
    wire::put_tag(buf, 1, wire::WireType::Bytes);
    wire::put_varint(buf, n as u64);
    wire::put_bytes(buf, 1, name.as_bytes());
    wire::put_bytes(buf, 2, key.as_bytes());
    wire::put_bytes(buf, 3, value);
}

/// Returns the length of a Record as put_record writes it.
pub fn record_len(name: &str, key: &str, value: &[u8]) -> usize {
    let n = wire::bytes_len(1, name.len()) + wire::bytes_len(2, key.len()) + wire::bytes_len(3, value.len());
    wire::bytes_len(1, n)
}

/// Appends a Response that reports an error (and, with panic, a crash).
pub fn put_error(buf: &mut Vec<u8>, msg: &str, panic: bool) {
    wire::put_bytes(buf, 2, msg.as_bytes());
    if panic {
        wire::put::<wire::Bool>(buf, 3, true);
    }
}

/// A Record decoded from a Response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The record type, e.g. `app_placements`.
    pub name: String,
    /// The record's key.
    pub key: String,
    /// The protobuf encoding of the record's message.
    pub value: Vec<u8>,
}

/// A decoded Response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// records (1).
    pub records: Vec<Record>,
    /// error (2).
    pub error: String,
    /// panic (3).
    pub panic: bool,
}

/// Decodes a Response, as the host does (for tests).
pub fn decode_response(b: &[u8]) -> Result<Response, wire::DecodeError> {
    const RESPONSE: &str = "strata.abi.v1.Response";
    const RECORD: &str = "strata.abi.v1.Record";
    let mut resp = Response::default();
    let mut r = Reader::new(b);
    while let Some((field, v)) = r.next_field().map_err(|e| e.at(RESPONSE, r.field()))? {
        match (field, v) {
            (1, Value::Bytes(rb)) => {
                let mut rec = Record { name: String::new(), key: String::new(), value: Vec::new() };
                let mut rr = Reader::new(rb);
                while let Some((f, v)) = rr.next_field().map_err(|e| e.at(RECORD, rr.field()))? {
                    match f {
                        1 => wire::merge_string(&mut rec.name, v).map_err(|e| e.at(RECORD, 1))?,
                        2 => wire::merge_string(&mut rec.key, v).map_err(|e| e.at(RECORD, 2))?,
                        3 => wire::merge_bytes(&mut rec.value, v),
                        _ => {}
                    }
                }
                resp.records.push(rec);
            }
            (2, v) => wire::merge_string(&mut resp.error, v).map_err(|e| e.at(RESPONSE, 2))?,
            (3, v) => resp.panic = wire::get::<wire::Bool>(v).unwrap_or(resp.panic),
            _ => {}
        }
    }
    Ok(resp)
}

/// Appends a Request to buf (for tests, which play the host).
pub fn put_request(buf: &mut Vec<u8>, reducer: &str, region: &str, tables: &[(&str, Vec<Vec<u8>>)]) {
    wire::put::<wire::UInt32>(buf, 1, VERSION);
    wire::put_bytes(buf, 2, reducer.as_bytes());
    wire::put_bytes(buf, 3, region.as_bytes());
    for (name, rows) in tables {
        let mut t = Vec::new();
        wire::put_bytes(&mut t, 1, name.as_bytes());
        for row in rows {
            wire::put_bytes(&mut t, 2, row);
        }
        wire::put_bytes(buf, 4, &t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let mut b = Vec::new();
        put_request(&mut b, "r", "ord", &[("machines", vec![vec![1, 2], vec![]]), ("empty", vec![])]);
        // An unknown field the host may add later is skipped.
        wire::put_bytes(&mut b, 99, b"later");
        let req = decode_request(&b).unwrap();
        assert_eq!((req.abi_version, req.reducer, req.region), (1, "r", "ord"));
        let names: Vec<&str> = req.tables.iter().map(|t| t.0).collect();
        assert_eq!(names, vec!["machines", "empty"]);
        let rows: Vec<&[u8]> = Rows::new(req.tables[0].1).map(|r| r.unwrap()).collect();
        assert_eq!(rows, vec![&[1u8, 2][..], &[][..]]);
        assert_eq!(Rows::new(req.tables[1].1).count(), 0);
    }

    #[test]
    fn request_errors() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("bad tag", &[0x00], "strata.abi.v1.Request: invalid field number"),
            ("region not UTF-8", &[0x1a, 0x01, 0xff], "strata.abi.v1.Request field 3: string is not valid UTF-8"),
            ("table truncated", &[0x22, 0x02, 0x0a, 0x05], "strata.abi.v1.Table field 1: unexpected end of input"),
        ];
        for (name, b, want) in cases {
            assert_eq!(decode_request(b).unwrap_err().to_string(), *want, "{}", name);
        }
    }

    #[test]
    fn response_round_trip() {
        let mut b = Vec::new();
        put_record(&mut b, "app_placements", "web", &[8, 1]);
        assert_eq!(record_len("app_placements", "web", &[8, 1]), b.len());
        put_error(&mut b, "boom", true);
        let resp = decode_response(&b).unwrap();
        assert_eq!(
            resp,
            Response {
                records: vec![Record { name: "app_placements".into(), key: "web".into(), value: vec![8, 1] }],
                error: "boom".into(),
                panic: true
            }
        );
    }
}
