//! app-regions-rust is strata's example reducer in Rust, the same
//! projection as plugins/app-regions: from the region's machines it
//! publishes one app_placements record per app that has at least one
//! started machine in the region: serving is true when at least one of
//! those machines is healthy, and capacity says roughly how many are, in
//! the contract's fixed bands (fleet.v1.CapacityBand), so that a health
//! flip changes the record only when it crosses a band.
//!
//! src/fleet.rs holds the contract's types, generated with
//!
//!     strata reducer gen --lang rust --contract ../../contracts -o src/fleet.rs \
//!         fleet/v1/regional.proto fleet/v1/global.proto

mod fleet;

use std::collections::HashMap;

use fleet::{AppPlacement, CapacityBand, Machine, MachineState};
use strata_reducer::{Error, Input, Output};

strata_reducer::register!(reduce);

/// Projects machines (fleet.v1.Machine) to app_placements
/// (fleet.v1.AppPlacement).
pub fn reduce(input: &Input, out: &mut Output) -> Result<(), Error> {
    let mut apps: HashMap<String, (AppPlacement, u32)> = HashMap::new();
    input.each("machines", |m: &Machine| {
        if m.state != MachineState::MACHINE_STATE_STARTED {
            return Ok(());
        }
        let (p, healthy) = match apps.get_mut(m.app.as_str()) {
            Some(e) => e,
            None => apps.entry(m.app.clone()).or_insert_with(|| (AppPlacement { app: m.app.clone(), ..Default::default() }, 0)),
        };
        if m.healthy {
            p.serving = true;
            *healthy += 1;
        }
        Ok(())
    })?;
    for (p, healthy) in apps.values_mut() {
        p.capacity = band(*healthy);
        out.add(p);
    }
    Ok(())
}

/// The capacity band of n started, healthy machines, with the bounds
/// fleet.v1.CapacityBand documents.
fn band(n: u32) -> CapacityBand {
    match n {
        0 => CapacityBand::CAPACITY_BAND_NONE,
        1..=3 => CapacityBand::CAPACITY_BAND_LOW,
        4..=19 => CapacityBand::CAPACITY_BAND_NORMAL,
        _ => CapacityBand::CAPACITY_BAND_HIGH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_reducer::{testing, Message};

    fn machine(id: &str, app: &str, state: MachineState, healthy: bool) -> Machine {
        Machine { id: id.into(), app: app.into(), state, healthy, ..Default::default() }
    }

    fn placement(app: &str, serving: bool, capacity: CapacityBand) -> AppPlacement {
        AppPlacement { app: app.into(), serving, capacity }
    }

    // The cases of plugins/app-regions' TestReduce.
    #[test]
    fn reduce_cases() {
        let (started, stopped) = (MachineState::MACHINE_STATE_STARTED, MachineState::MACHINE_STATE_STOPPED);
        let (none, low) = (CapacityBand::CAPACITY_BAND_NONE, CapacityBand::CAPACITY_BAND_LOW);
        let cases: Vec<(&str, Vec<Machine>, Vec<AppPlacement>)> = vec![
            ("no machines", vec![], vec![]),
            (
                "healthy and unhealthy",
                vec![machine("m1", "web", started, true), machine("m2", "web", started, false), machine("m3", "web", started, true)],
                vec![placement("web", true, low)],
            ),
            ("started but none healthy", vec![machine("m1", "api", started, false)], vec![placement("api", false, none)]),
            ("only stopped machines publish nothing", vec![machine("m1", "db", stopped, true)], vec![]),
            (
                "several apps, sorted by key",
                vec![machine("m1", "web", started, true), machine("m2", "api", started, true)],
                vec![placement("api", true, low), placement("web", true, low)],
            ),
        ];
        for (name, machines, want) in cases {
            let recs = testing::run(reduce, "ord", &[("machines", testing::rows(&machines))]).unwrap();
            let got: Vec<AppPlacement> = recs.iter().map(|r| AppPlacement::decode(&r.value).unwrap()).collect();
            assert_eq!(got, want, "{}", name);
            for (r, p) in recs.iter().zip(&want) {
                assert_eq!((r.name.as_str(), r.key.as_str()), ("app_placements", p.app.as_str()), "{}", name);
            }
        }
    }

    // The bounds of plugins/app-regions' TestCapacityBands.
    #[test]
    fn capacity_bands() {
        let started = MachineState::MACHINE_STATE_STARTED;
        for (healthy, want) in [
            (0, CapacityBand::CAPACITY_BAND_NONE),
            (1, CapacityBand::CAPACITY_BAND_LOW),
            (3, CapacityBand::CAPACITY_BAND_LOW),
            (4, CapacityBand::CAPACITY_BAND_NORMAL),
            (19, CapacityBand::CAPACITY_BAND_NORMAL),
            (20, CapacityBand::CAPACITY_BAND_HIGH),
            (500, CapacityBand::CAPACITY_BAND_HIGH),
        ] {
            // One unhealthy started machine besides, so that 0 healthy still
            // publishes a record.
            let mut ms = vec![machine("sick", "web", started, false)];
            for i in 0..healthy {
                ms.push(machine(&format!("m{}", i), "web", started, true));
            }
            let recs = testing::run(reduce, "ord", &[("machines", testing::rows(&ms))]).unwrap();
            let got: Vec<AppPlacement> = recs.iter().map(|r| AppPlacement::decode(&r.value).unwrap()).collect();
            assert_eq!(got, vec![placement("web", healthy > 0, want)], "{} healthy", healthy);
        }
    }

    #[test]
    fn missing_table_is_an_error() {
        let err = testing::run(reduce, "ord", &[("volumes", vec![])]).unwrap_err();
        assert!(err.message().contains("table \"machines\" is not an input"), "{}", err);
    }
}
