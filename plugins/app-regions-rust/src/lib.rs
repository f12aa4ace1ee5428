//! app-regions-rust is strata's example reducer in Rust, the same
//! projection as plugins/app-regions: from the region's machines it
//! publishes one app_placements record per app that has at least one
//! started machine in the region: serving is true when at least one of
//! those machines is healthy, and healthy_machines counts them.
//!
//! src/fleet.rs holds the contract's types, generated with
//!
//!     strata reducer gen --lang rust --contract ../../contracts -o src/fleet.rs \
//!         fleet/v1/regional.proto fleet/v1/global.proto

mod fleet;

use std::collections::HashMap;

use fleet::{AppPlacement, Machine, MachineState};
use strata_reducer::{Error, Input, Output};

strata_reducer::register!(reduce);

/// Projects machines (fleet.v1.Machine) to app_placements
/// (fleet.v1.AppPlacement).
pub fn reduce(input: &Input, out: &mut Output) -> Result<(), Error> {
    let mut apps: HashMap<String, AppPlacement> = HashMap::new();
    input.each("machines", |m: &Machine| {
        if m.state != MachineState::MACHINE_STATE_STARTED {
            return Ok(());
        }
        let p = match apps.get_mut(m.app.as_str()) {
            Some(p) => p,
            None => apps.entry(m.app.clone()).or_insert_with(|| AppPlacement { app: m.app.clone(), ..Default::default() }),
        };
        if m.healthy {
            p.serving = true;
            p.healthy_machines += 1;
        }
        Ok(())
    })?;
    for p in apps.values() {
        out.add(p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_reducer::{testing, Message};

    fn machine(id: &str, app: &str, state: MachineState, healthy: bool) -> Machine {
        Machine { id: id.into(), app: app.into(), state, healthy, ..Default::default() }
    }

    fn placement(app: &str, serving: bool, healthy_machines: u32) -> AppPlacement {
        AppPlacement { app: app.into(), serving, healthy_machines }
    }

    // The cases of plugins/app-regions' TestReduce.
    #[test]
    fn reduce_cases() {
        let (started, stopped) = (MachineState::MACHINE_STATE_STARTED, MachineState::MACHINE_STATE_STOPPED);
        let cases: Vec<(&str, Vec<Machine>, Vec<AppPlacement>)> = vec![
            ("no machines", vec![], vec![]),
            (
                "healthy and unhealthy",
                vec![machine("m1", "web", started, true), machine("m2", "web", started, false), machine("m3", "web", started, true)],
                vec![placement("web", true, 2)],
            ),
            ("started but none healthy", vec![machine("m1", "api", started, false)], vec![placement("api", false, 0)]),
            ("only stopped machines publish nothing", vec![machine("m1", "db", stopped, true)], vec![]),
            (
                "several apps, sorted by key",
                vec![machine("m1", "web", started, true), machine("m2", "api", started, true)],
                vec![placement("api", true, 1), placement("web", true, 1)],
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

    #[test]
    fn missing_table_is_an_error() {
        let err = testing::run(reduce, "ord", &[("volumes", vec![])]).unwrap_err();
        assert!(err.message().contains("table \"machines\" is not an input"), "{}", err);
    }
}
