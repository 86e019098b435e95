//! A simulated controller's channel part (`tek sim --channels`): the controller samples the
//! pool through its channel map, as a device with a channel part does (PROTOCOL.md 17), instead
//! of being handed readings.
//!
//! * [`SimChannels`] holds the part on the heap, so a fleet without `--channels` pays one
//!   pointer per controller;
//! * [`PlantBus`] is the board: inputs 0..=4 are the plant's power (W), energy (Wh), water and
//!   air temperature (0.01 degC) and the relay bitmap — the factory pool map reads them. The
//!   simulated board has no serial bus: a Modbus channel of a map sent to it times out and logs
//!   "no value", as a meter that is not wired would.

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

/// A simulated controller's channel part, if it has one.
#[derive(Default)]
pub struct SimChannels(pub Option<Box<Part>>);

impl SimChannels {
    /// A part stating [`CAPS`].
    pub fn part() -> SimChannels {
        SimChannels(Some(Box::new(Part::new(CAPS))))
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

/// The simulated board's inputs.
pub struct PlantBus<'a>(pub &'a Plant);

impl ChannelBus for PlantBus<'_> {
    fn board_input(&mut self, input: u8) -> Option<i32> {
        let r = self.0.reading();
        match input {
            0 => i32::try_from(r.power_w).ok(),
            1 => i32::try_from(r.energy_wh).ok(),
            2 => r.water_cc.map(i32::from),
            3 => r.air_cc.map(i32::from),
            4 => Some(i32::from(self.0.relays())),
            _ => None,
        }
    }
    fn serial_send(&mut self, _bus: u8, _settings: &Bus, _frame: &[u8]) {}
    fn serial_receive(&mut self, _bus: u8, _buf: &mut [u8]) -> usize {
        0
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
        ctl.sample(0, &mut PlantBus(&plant));
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
}
