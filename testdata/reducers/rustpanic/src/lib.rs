//! A reducer that panics: an index out of bounds on the first row.

use strata_reducer::{Error, Input, Level, Output};

strata_reducer::register!(reduce);

fn reduce(input: &Input, _out: &mut Output) -> Result<(), Error> {
    let rows = input.raw("machines")?;
    strata_reducer::log(Level::Warn, "about to panic");
    let empty: Vec<u8> = Vec::new();
    Err(Error::new(format!("unreachable: {}", empty[rows.len() + 2])))
}
