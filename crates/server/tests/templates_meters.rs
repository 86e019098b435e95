//! The built-in meter templates agree with the meters `tek meter` emulates
//! (`crates/meter/src/device.rs`): every Modbus channel reads a register the model serves, with
//! its function and encoding, and the logged value, in the channel's unit and resolution, is
//! the quantity the register shows. Every quantity register of a model is read by a channel.

use tek_meter::device::{Model, Source as RegSource, Space};
use tek_proto::channel::map::{Source, Unit};
use tek_server::storage::channels::builtin;

/// The unit a quantity of `tek meter` is logged in, and the factor from the meter's unit.
fn unit_of(quantity: &str) -> (Unit, f64) {
    match quantity {
        q if q.starts_with("voltage") => (Unit::Volt, 1.0),
        q if q.starts_with("current") => (Unit::Ampere, 1.0),
        q if q.starts_with("power") => (Unit::Watt, 1.0),
        "frequency" => (Unit::Hertz, 1.0),
        q if q.ends_with("_kwh") => (Unit::WattHour, 1000.0),
        "temperature" => (Unit::Celsius, 1.0),
        q => panic!("no unit known for {q}"),
    }
}

#[test]
fn meter_templates_read_the_emulated_registers() {
    let pairs = [
        (builtin::sdm630(), Model::Sdm630),
        (builtin::sdm120(), Model::Sdm120),
        (builtin::tb260(), Model::Tb260),
    ];
    for (template, model) in pairs {
        let mut read = Vec::new();
        for c in &template.channels {
            let Source::Modbus(m) = c.channel.source else {
                panic!("{}: {} is not a Modbus channel", template.name, c.name)
            };
            let space = Space::of_function(m.function.code()).unwrap();
            let reg = model
                .registers()
                .iter()
                .find(|r| r.space == space && r.address == m.register)
                .unwrap_or_else(|| panic!("{model} has no register for {}", c.name));
            assert_eq!(
                reg.encoding.registers(),
                m.data_type.registers(),
                "{}",
                c.name
            );
            // A value with a fraction, so a wrong scale or word order shows.
            let shown = 123.25;
            let mut regs = [0u16; 2];
            let n = usize::from(m.data_type.registers());
            model
                .read(space, m.register, &mut regs[..n], |_| shown)
                .unwrap();
            let raw = m.decode(&regs[..n]).unwrap();
            let logged = c.channel.conversion.apply(raw).unwrap();
            let value = f64::from(logged) * 10f64.powi(c.channel.resolution.exponent.into());
            let (expected, factor, tolerance) = match reg.source {
                RegSource::Quantity(q) => {
                    let (unit, factor) = unit_of(q);
                    assert_eq!(c.channel.resolution.unit, unit, "{} ({q})", c.name);
                    read.push(q);
                    // The integer encodings carry tenths (I16Tenths) or units (U16).
                    (shown, factor, 0.05 * factor)
                }
                RegSource::Constant(k) => (k, 1.0, 0.0),
            };
            let scale = 10f64.powi(c.channel.resolution.exponent.into());
            assert!(
                (value - expected * factor).abs() <= tolerance + scale / 2.0,
                "{} {}: logged {value}, shown {expected}",
                template.name,
                c.name
            );
        }
        let mut all: Vec<&str> = model.quantities().collect();
        all.sort_unstable();
        read.sort_unstable();
        assert_eq!(read, all, "{}: every quantity read once", template.name);
    }
}
