//! Feeds arbitrary bytes to every receive path of the protocol crate: the cheap checks, the
//! handshake on both sides, an established session on both sides, and the message decoder.
//! None of them may panic, and nothing but an authentic datagram may change a session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_proto::handshake::{self, Initiator};
use tek_proto::message::Message;
use tek_proto::session::{Role, Session};
use tek_proto::wire::Datagram;

fuzz_target!(|data: &[u8]| {
    let keys = handshake::device_keys([0x42; 16]);
    let _ = Datagram::new_checked(data).map(|d| (d.kind(), d.device_id()));
    let _ = handshake::hello_device_id(data);
    let _ = handshake::verify_hello(&keys, data);

    let mut hello = [0u8; 46];
    if let Some((init, _)) = Initiator::start(&keys, 7, 1, [1; 16], &mut hello) {
        let _ = init.finish(&keys, data);
    }

    for role in [Role::Device, Role::Server] {
        let mut session = Session::derive(role, keys.master(), 7, 9, 1, &[1; 16], &[2; 16]);
        let before = session.highest_received();
        let mut buf = data.to_vec();
        if session.open_message(&mut buf).is_err() {
            // A refused datagram must not have moved the window (a random tag never verifies).
            assert_eq!(before, session.highest_received());
        }
    }

    if let Ok(msg) = Message::parse(data) {
        let mut out = [0u8; 1100];
        let _ = msg.emit(&mut out);
    }
});
