//! Feeds arbitrary bytes to the controller's Modbus RTU answer decoder (`tek_controller::modbus`)
//! and to a whole channel map sample whose slave answers with those bytes
//! (`tek_controller::channels`): what a broken or hostile slave on a serial bus can send.
//!
//! The first input byte picks the read (data type, function, word order), the rest is the
//! answer. Besides "never panics": a failed answer gives no value (never 0), and is counted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_controller::channels::{ChannelBus, Channels};
use tek_controller::modbus;
use tek_proto::channel::map::{
    self, Baud, Bus, Channel, Conversion, DataType, Function, ModbusRead, Parity, Resolution,
    Source, Unit, WordOrder,
};

struct Slave<'a> {
    answer: &'a [u8],
    pending: &'a [u8],
}

impl ChannelBus for Slave<'_> {
    fn board_input(&mut self, _input: u8) -> Option<i32> {
        None
    }
    fn serial_send(&mut self, _bus: u8, _settings: &Bus, _frame: &[u8]) {
        self.pending = self.answer;
    }
    fn serial_receive(&mut self, _bus: u8, buf: &mut [u8]) -> usize {
        let n = self.pending.len().min(buf.len()).min(3);
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending = &self.pending[n..];
        n
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, answer)) = data.split_first() else {
        return;
    };
    let read = ModbusRead {
        bus: 0,
        slave: 1,
        function: if pick & 1 == 0 {
            Function::Holding
        } else {
            Function::Input
        },
        register: 100,
        data_type: DataType::from_code((pick >> 1) % 5),
        word_order: if (pick >> 1) % 5 >= 2 && pick & 0x80 != 0 {
            WordOrder::LowFirst
        } else {
            WordOrder::HighFirst
        },
    };
    let _ = modbus::decode(&read, answer);
    // What the sample reads: the answer up to the length its first bytes announce.
    let complete = modbus::answer_len(&read, answer).filter(|&len| answer.len() >= len);

    let bus = Bus {
        baud: Baud::B9600,
        parity: Parity::None,
        timeout_ms: 100,
    };
    let ch = Channel {
        source: Source::Modbus(read),
        conversion: Conversion::IDENTITY,
        resolution: Resolution {
            unit: Unit::None,
            exponent: 0,
        },
    };
    let mut m = vec![0u8; map::buffer_len(&[bus], &[ch])];
    let n = map::emit(&[bus], &[ch], &mut m).expect("a valid map");
    let mut c = Channels::<64, 2>::new(0);
    c.set_map(&m[..n], &[], 0).expect("a valid map");
    let mut slave = Slave {
        answer,
        pending: &[],
    };
    let mut now = 0;
    while !c.poll(now, &mut slave) {
        now += 10;
        assert!(now <= 1000, "a sample always ends (answer or timeout)");
    }
    let want = complete
        .and_then(|len| modbus::decode(&read, &answer[..len]).ok())
        .and_then(|raw| Conversion::IDENTITY.apply(raw));
    assert_eq!(
        c.value(0),
        want,
        "a failed read is no value, a good one its value"
    );
});
