//! Capabilities (PROTOCOL.md 17.1): stated at the start of every session, before the first
//! Status, only by a controller whose host set them; a controller without them is a version 1
//! device to every server.

use crate::testkit::*;
use tek_proto::channel::split::{feature, Capabilities};
use tek_proto::channel::{code, ChannelMessage};
use tek_proto::message::code as v1;

const S: u64 = 1000;
type N = Net<512>;

const CAPS: Capabilities = Capabilities {
    features: feature::WIDE_TELEMETRY | feature::MODBUS | feature::EXPRESSIONS,
    max_channels: 16,
    max_buses: 1,
    max_config: 0,
    max_program: 128,
};

#[test]
fn capabilities_come_first_in_every_session() {
    let mut n = N::new(1);
    n.ctl.set_capabilities(Some(CAPS));
    n.run_for(5 * S);
    assert!(n.ctl.is_connected());
    let kinds = &n.servers[0].kinds;
    assert_eq!(kinds[..2], [code::CAPABILITIES, v1::STATUS], "{kinds:?}");
    assert_eq!(
        ChannelMessage::parse(&n.servers[0].extension[0]),
        Ok(Some(ChannelMessage::Capabilities(CAPS)))
    );
    // Once per session: not again within it, again in the next (after a reboot).
    n.run_for(600 * S);
    assert_eq!(kinds_of(&n, code::CAPABILITIES), 1);
    n.reboot(false);
    n.ctl.set_capabilities(Some(CAPS));
    n.run_for(5 * S);
    assert_eq!(kinds_of(&n, code::CAPABILITIES), 2);
}

#[test]
fn without_capabilities_a_controller_states_nothing() {
    let mut n = N::new(1);
    n.run_for(600 * S);
    assert!(n.ctl.is_connected());
    assert_eq!(n.servers[0].kinds[0], v1::STATUS);
    assert!(n.servers[0].extension.is_empty());
}

fn kinds_of(n: &N, c: u8) -> usize {
    n.servers[0].kinds.iter().filter(|&&k| k == c).count()
}
