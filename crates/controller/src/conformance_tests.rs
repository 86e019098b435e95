//! Receive-side rules of docs/PROTOCOL.md that an independent implementation asked about
//! (issue 14), checked on the controller through the in-process test network (`testkit`).

use crate::testkit::*;
use tek_proto::message::ConfigResult;

const S: u64 = 1000;
type N = Net<512>;

/// Version 0 is the factory configuration and never sent (PROTOCOL.md 7.5): a Config carrying
/// it is dropped (`range`), neither applied nor acknowledged; the next real version is.
#[test]
fn a_config_with_version_0_is_dropped() {
    let mut n = N::new(1);
    n.run_for(5 * S);
    assert!(n.ctl.is_connected());
    let mut cfg = config_with_servers(&["192.0.2.1:8844"]);
    cfg.thermostat.setpoint_cc = 3100;
    n.push_config(0, 0, &cfg);
    n.run_for(5 * S);
    assert!(
        n.servers[0].config_acks.is_empty(),
        "version 0 was acknowledged"
    );
    assert_eq!(n.ctl.config().0, 0);
    assert_ne!(
        n.ctl.config().1.thermostat.setpoint_cc,
        3100,
        "version 0 was applied"
    );
    n.push_config(0, 1, &cfg);
    n.run_for(S);
    assert_eq!(n.servers[0].config_acks, [(1, ConfigResult::Applied)]);
    assert_eq!(n.ctl.config().1.thermostat.setpoint_cc, 3100);
}
