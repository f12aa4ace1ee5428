//! The well-known types that contracts may use in reducers'
//! messages: `google.protobuf.Timestamp` and `google.protobuf.Duration`.
//! Generated code refers to them as `strata_reducer::wkt::Timestamp`.

use crate::wire::{self, DecodeError};
use crate::Message;

macro_rules! seconds_nanos {
    ($(#[$doc:meta])* $name:ident, $full:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            /// Whole seconds.
            pub seconds: i64,
            /// Nanoseconds, 0 to 999,999,999 (with the sign of seconds for a
            /// Duration).
            pub nanos: i32,
        }

        impl Message for $name {
            const NAME: &'static str = $full;

            fn merge(&mut self, b: &[u8]) -> Result<(), DecodeError> {
                let mut r = wire::Reader::new(b);
                while let Some((field, v)) = r.next_field().map_err(|e| e.at(Self::NAME, r.field()))? {
                    match field {
                        1 => self.seconds = wire::get::<wire::Int64>(v).unwrap_or(self.seconds),
                        2 => self.nanos = wire::get::<wire::Int32>(v).unwrap_or(self.nanos),
                        _ => {}
                    }
                }
                Ok(())
            }

            fn clear(&mut self) {
                *self = Self::default();
            }

            fn encode(&self, buf: &mut Vec<u8>) {
                wire::put_implicit::<wire::Int64>(buf, 1, self.seconds);
                wire::put_implicit::<wire::Int32>(buf, 2, self.nanos);
            }

            fn encoded_len(&self) -> usize {
                wire::len_implicit::<wire::Int64>(1, self.seconds) + wire::len_implicit::<wire::Int32>(2, self.nanos)
            }
        }
    };
}

seconds_nanos!(
    /// A point in time: seconds and nanoseconds since 1970-01-01T00:00:00Z.
    Timestamp,
    "google.protobuf.Timestamp"
);

seconds_nanos!(
    /// A span of time, possibly negative.
    Duration,
    "google.protobuf.Duration"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trip() {
        // 2026-01-02T03:04:05.5Z, as protobuf-go encodes it.
        let t = Timestamp { seconds: 1767323045, nanos: 500_000_000 };
        let b = t.to_bytes();
        assert_eq!(b, vec![0x08, 0xa5, 0xeb, 0xdc, 0xca, 0x06, 0x10, 0x80, 0xca, 0xb5, 0xee, 0x01]);
        assert_eq!(Timestamp::decode(&b), Ok(t));
        assert_eq!(Duration::default().encoded_len(), 0);
        let d = Duration { seconds: -1, nanos: -5 };
        assert_eq!(Duration::decode(&d.to_bytes()), Ok(d));
    }
}
