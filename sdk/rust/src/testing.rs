//! Native tests of a reducer: run the reduce function through the same
//! encoding as the module, with typed rows in and records out.
//!
//! ```ignore
//! let recs = testing::run(reduce, "ord", &[("machines", testing::rows(&[m1, m2]))])?;
//! let p = AppPlacement::decode(&recs[0].value)?;
//! ```
//!
//! What it does not do is check the records against the contract (rules,
//! keys, leak guard): `strata reducer test` runs the built module in the
//! agent's host and does.

use crate::{abi, Error, Message, Reducer};

pub use crate::abi::Record;

/// Encodes messages as the rows of one table.
pub fn rows<M: Message>(ms: &[M]) -> Vec<Vec<u8>> {
    ms.iter().map(|m| m.to_bytes()).collect()
}

/// Runs reducer on the rows of each table, in the region, through the
/// ABI's encoding, and returns its records sorted by record name and key,
/// or the error it returned (a panic is an error starting with `panic: `).
pub fn run(reducer: Reducer, region: &str, tables: &[(&str, Vec<Vec<u8>>)]) -> Result<Vec<Record>, Error> {
    let mut req = Vec::new();
    abi::put_request(&mut req, "test", region, tables);
    let resp = abi::decode_response(&crate::handle(reducer, &req))?;
    if !resp.error.is_empty() {
        return Err(Error::new(resp.error));
    }
    Ok(resp.records)
}
