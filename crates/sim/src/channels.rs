//! A simulated controller's channel part (`tek sim --channels`): the controller samples the
//! pool through its channel map, as a device with a channel part does (PROTOCOL.md 17), instead
//! of being handed readings.
//!
//! * [`SimChannels`] holds the part on the heap, so a fleet without `--channels` pays one
//!   pointer per controller;
//! * [`PlantBus`] is the board: inputs 0..=4 are the plant's power (W), energy (Wh), water and
//!   air temperature (0.01 degC) and the relay bitmap — the factory pool map reads them. Its
//!   serial bus 0 is a [`MeterBus`] when the controller has meters (`tek sim --meters`): it
//!   states [`CAPS_METERS`] (one bus, Modbus), and the server sends it maps with Modbus
//!   channels. Without meters it states [`CAPS`] (no bus; the server withholds such maps), and
//!   a Modbus channel that reaches it anyway times out and logs "no value", as a meter that is
//!   not wired would.

use crate::meters::MeterBus;
use crate::plant::Plant;
use tek_controller::channel_part::{ChannelPart, ChannelRuntime, ChannelSupport};
use tek_controller::channels::ChannelBus;
use tek_proto::channel::map::Bus;
use tek_proto::channel::split::{feature, Capabilities};

/// The part's sizes: a 2 kB map of up to 32 channels, 512 wide records (8.5 h at 1 min, as
/// the five-channel log), configurations up to 4 kB.
pub type Part = ChannelPart<2048, 32, { crate::SIM_LOG }, 4096>;

/// What a simulated controller states in Capabilities: computed channels, no serial bus.
pub const CAPS: Capabilities = Capabilities {
    features: feature::SPLIT_CONFIG | feature::WIDE_TELEMETRY | feature::EXPRESSIONS,
    max_channels: 32,
    max_buses: 0,
    max_config: 4096,
    max_program: 128,
};

/// What a simulated controller with meters on its serial bus states: [`CAPS`] and one Modbus
/// RTU bus.
pub const CAPS_METERS: Capabilities = Capabilities {
    features: CAPS.features | feature::MODBUS,
    max_buses: 1,
    ..CAPS
};

/// A simulated controller's channel part, if it has one.
#[derive(Default)]
pub struct SimChannels(pub Option<Box<Part>>);

impl SimChannels {
    /// A part stating [`CAPS`].
    pub fn part() -> SimChannels {
        SimChannels::stating(CAPS)
    }

    /// A part stating `caps`.
    pub fn stating(caps: Capabilities) -> SimChannels {
        SimChannels(Some(Box::new(Part::new(caps))))
    }
}

impl ChannelSupport for SimChannels {
    const BLANK: Self = SimChannels(None);
    fn runtime(&mut self) -> Option<&mut dyn ChannelRuntime> {
        self.0.as_deref_mut().map(|p| p as &mut dyn ChannelRuntime)
    }
    fn runtime_ref(&self) -> Option<&dyn ChannelRuntime> {
        self.0.as_deref().map(|p| p as &dyn ChannelRuntime)
    }
}

/// The simulated board: the plant's inputs and, if the controller has meters, its serial bus.
pub struct PlantBus<'a> {
    /// The pool plant behind the board inputs.
    pub plant: &'a Plant,
    /// The meters on serial bus 0 (`None`: nothing wired).
    pub meters: Option<&'a mut MeterBus>,
}

impl<'a> PlantBus<'a> {
    /// The board of `plant`, no serial bus.
    pub fn plant(plant: &'a Plant) -> PlantBus<'a> {
        PlantBus {
            plant,
            meters: None,
        }
    }
}

impl ChannelBus for PlantBus<'_> {
    fn board_input(&mut self, input: u8) -> Option<i32> {
        let r = self.plant.reading();
        match input {
            0 => i32::try_from(r.power_w).ok(),
            1 => i32::try_from(r.energy_wh).ok(),
            2 => r.water_cc.map(i32::from),
            3 => r.air_cc.map(i32::from),
            4 => Some(i32::from(self.plant.relays())),
            _ => None,
        }
    }
    fn serial_send(&mut self, bus: u8, settings: &Bus, frame: &[u8]) {
        if let Some(m) = self.meters.as_deref_mut() {
            m.send(bus, settings, frame);
        }
    }
    fn serial_receive(&mut self, bus: u8, buf: &mut [u8]) -> usize {
        self.meters
            .as_deref_mut()
            .map_or(0, |m| m.receive(bus, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tek_controller::{Controller, Setup};

    #[test]
    fn the_pool_map_reads_the_plant_through_the_board() {
        let mut plant = Plant::new(7, 0);
        plant.set_relays(0b11);
        plant.advance(3 * 3_600_000);
        let mut ctl: Box<Controller<tek_controller::log::Log<64>, SimChannels>> =
            Box::new(Controller::new_with_channels(
                Setup {
                    device_id: 1,
                    key: [1; 16],
                    factory_servers: &["127.0.0.1:8844"],
                    firmware: [0, 1, 0],
                    halt: false,
                    has_gsm: false,
                    stored: None,
                },
                SimChannels::part(),
                0,
            ));
        assert_eq!(ctl.sample_at(), 0);
        ctl.sample(0, &mut PlantBus::plant(&plant));
        let part = ctl.channel_part().unwrap();
        let r = plant.reading();
        assert_eq!(part.value(0), Some(r.power_w as i32));
        assert_eq!(part.value(2), r.water_cc.map(i32::from));
        assert_eq!(part.value(4), Some(0b11));
        assert_eq!(part.split_version(), None);
        // Without a part the controller has nothing to sample.
        let none = SimChannels::default();
        assert!(none.runtime_ref().is_none());
    }

    #[test]
    fn a_meter_map_reads_the_meters_through_the_serial_bus() {
        use crate::meters::{MeterPlan, Silence};
        use tek_controller::channels::Channels;
        use tek_proto::channel::map::{
            self, Baud, Channel, Conversion, DataType, Function, ModbusRead, Parity, Resolution,
            Source, Unit, WordOrder,
        };
        let modbus = |slave, function, register, data_type, mul| Channel {
            source: Source::Modbus(ModbusRead {
                bus: 0,
                slave,
                function,
                register,
                data_type,
                word_order: WordOrder::HighFirst,
            }),
            conversion: Conversion {
                mul,
                div: 1,
                offset: 0,
            },
            resolution: Resolution {
                unit: Unit::Watt,
                exponent: 0,
            },
        };
        let channels = [
            Channel {
                source: Source::Board(0),
                conversion: Conversion::IDENTITY,
                resolution: Resolution {
                    unit: Unit::Watt,
                    exponent: 0,
                },
            },
            modbus(1, Function::Input, 0x34, DataType::F32, 1),
            modbus(2, Function::Holding, 0, DataType::I16, 10),
            modbus(3, Function::Input, 0x0C, DataType::F32, 1),
        ];
        let buses = [Bus {
            baud: Baud::B9600,
            parity: Parity::Even,
            timeout_ms: 300,
        }];
        let mut bytes = vec![0; map::buffer_len(&buses, &channels)];
        map::emit(&buses, &channels, &mut bytes).unwrap();
        let mut plan = MeterPlan::parse("sdm630@1,tb260@2,sdm120@3").unwrap();
        plan.silences.push(Silence::parse("3@100+100").unwrap());
        let mut meters = crate::meters::MeterBus::new(&plan, 5);
        let plant = Plant::new(5, 0);
        let mut ch: Channels<2048, 8> = Channels::new(0);
        ch.set_map(&bytes, &[], 0).unwrap();
        // The host loop of the runner: poll when due or when an answer has arrived.
        let mut sample = |from: u64, ch: &mut Channels<2048, 8>| {
            let mut t = from;
            meters.at(t);
            let (power, celsius) = (meters.value(1, "power"), meters.value(2, "temperature"));
            loop {
                meters.at(t);
                let done = ch.poll(
                    t,
                    &mut PlantBus {
                        plant: &plant,
                        meters: Some(&mut meters),
                    },
                );
                if done {
                    return (t, power.unwrap(), celsius.unwrap());
                }
                t = meters.answer_at().unwrap_or(ch.poll_at()).max(t + 1);
                assert!(t < from + 2_000, "a sample takes less than 2 s");
            }
        };
        let (end, power, celsius) = sample(50_000, &mut ch);
        assert_eq!(ch.value(0), Some(plant.reading().power_w as i32));
        assert_eq!(ch.value(1), Some(power.round() as i32));
        assert_eq!(ch.value(2), Some((celsius * 10.0).round() as i32 * 10));
        assert!(ch.value(3).is_some());
        // Three reads of 8 + 9 (or 7) characters at 9600 bit/s and their turnarounds.
        assert!((50_060..50_100).contains(&end), "{end}");
        // Slave 3 silent: its channel has no value (never 0) after the 300 ms timeout; the
        // others read on.
        let (end, _, _) = sample(150_000, &mut ch);
        assert_eq!(ch.value(3), None);
        assert!(ch.value(1).is_some() && ch.value(2).is_some());
        assert!(end >= 150_300, "{end}");
        let mut faults = [tek_proto::channel::faults::FaultEntry {
            channel: 0,
            errors: 0,
            last: tek_proto::channel::faults::Fault::Timeout,
        }; 4];
        assert_eq!(ch.faults(&mut faults), 1);
        assert_eq!((faults[0].channel, faults[0].errors), (3, 1));
        // It answers again after the window.
        sample(250_000, &mut ch);
        assert!(ch.value(3).is_some());
    }
}
