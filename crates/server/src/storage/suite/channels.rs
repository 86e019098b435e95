//! Suite checks of channel templates and device channel registries ([`crate::storage::channels`]).

use super::dev;
use crate::storage::channels::{builtin, ChannelLabel, POOL_TEMPLATE};
use crate::storage::*;

/// The SQL (both dialects) that takes a database of the current schema back to version 10 (no
/// channel tables of 11, no wide records of 12, no channel faults of 13, no wide rollups of 14,
/// no telemetry chunks of 15), without the version bump.
pub(crate) const TO_VERSION_10: &str =
    "DROP TABLE telemetry_chunk; DROP TABLE telemetry_wide_rollup; DROP TABLE channel_faults;
DROP TABLE telemetry_wide; DROP TABLE device_channels;
DROP TABLE device_channel_maps; DROP TABLE channel_template_channels;
DROP TABLE channel_templates;\n";

fn set_of(b: &builtin::Builtin) -> ChannelSet {
    ChannelSet {
        map: b.map(),
        roles: b.roles_value(),
        channels: b.labels(),
    }
}

/// A user template: the single-phase meter's map, renamed channels, no roles.
fn mine(name: &str, site_id: Option<i64>) -> NewTemplate {
    let mut set = set_of(&builtin::sdm120());
    set.roles = None;
    set.channels[2].name = "Heat pump power".into();
    NewTemplate {
        name: name.into(),
        site_id,
        set,
    }
}

fn invalid(r: Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::InvalidChannels(m)) => m,
        other => panic!("expected InvalidChannels, got {other:?}"),
    }
}

fn pool_id(db: &dyn Storage) -> i64 {
    let t = db.templates().unwrap();
    t.iter().find(|t| t.name == POOL_TEMPLATE).unwrap().id
}

/// The built-in templates are seeded as defined; user templates are created, read, replaced
/// and deleted; a bad one is refused naming the channel and field, and nothing is saved.
pub(crate) fn channel_templates_lifecycle(db: &dyn Storage) {
    let all = db.templates().unwrap();
    let defs = builtin::all();
    assert_eq!(all.len(), defs.len());
    for (t, b) in all.iter().zip(&defs) {
        assert_eq!(t.name, b.name);
        assert!(t.builtin && t.site_id.is_none());
        assert_eq!(t.map, b.map(), "{}", b.name);
        assert_eq!(t.roles, b.roles_value(), "{}", b.name);
        let labels: Vec<ChannelLabel> = t.channels.iter().map(ChannelLabel::from).collect();
        assert_eq!(labels, b.labels());
        for (i, c) in t.channels.iter().enumerate() {
            assert_eq!(usize::from(c.index), i);
            assert_eq!(c.unit, b.channels[i].channel.resolution.unit.code());
        }
    }
    assert_eq!(db.template(all[0].id).unwrap().as_ref(), Some(&all[0]));
    assert_eq!(db.template(9_999).unwrap(), None);

    let site = db.create_site("A", 0).unwrap();
    let id = db
        .create_template(&mine("  Mine ", Some(site)), 50)
        .unwrap();
    let t = db.template(id).unwrap().unwrap();
    assert_eq!(
        (t.name.as_str(), t.builtin, t.site_id),
        ("Mine", false, Some(site))
    );
    assert_eq!(
        (t.created_at, t.updated_at, t.roles.as_deref()),
        (50, 50, None)
    );
    assert_eq!(t.channels[2].name, "Heat pump power");
    assert_eq!(t.channels[2].kind, ChannelKind::Power);
    assert_eq!(db.templates().unwrap().len(), defs.len() + 1);

    // Refused, nothing saved: a name in use, an unknown site, a map the validator rejects.
    assert!(matches!(
        db.create_template(&mine("Mine", None), 51),
        Err(Error::Duplicate(_))
    ));
    assert!(matches!(
        db.create_template(&mine("Other", Some(site + 100)), 51),
        Err(Error::Missing(_))
    ));
    let mut bad = mine("Bad", None);
    bad.set.map[3 + 4 + 2 + 1] = 0; // channel 0's slave
    assert_eq!(
        invalid(db.create_template(&bad, 51)),
        "channel 0: slave 0 outside 1..=247 (channel \"Voltage\")"
    );
    assert_eq!(db.templates().unwrap().len(), defs.len() + 1);

    // Replaced whole; the built-in ones cannot change.
    let mut next = mine("Mine, too", None);
    next.set.channels[0].decimals = 3;
    next.set.roles = Some(vec![0xFF, 0xFF, 2, 4, 0, 1]);
    db.update_template(id, &next, 60).unwrap();
    let t = db.template(id).unwrap().unwrap();
    assert_eq!((t.name.as_str(), t.site_id), ("Mine, too", None));
    assert_eq!((t.created_at, t.updated_at), (50, 60));
    assert_eq!(t.channels[0].decimals, 3);
    assert_eq!(t.roles, next.set.roles);
    assert!(invalid(db.update_template(all[0].id, &next, 61)).contains("built in"));
    assert!(invalid(db.delete_template(all[0].id)).contains("built in"));
    assert!(matches!(
        db.update_template(9_999, &next, 61),
        Err(Error::Missing(_))
    ));
    let mut bad = next.clone();
    bad.set.channels.pop();
    assert!(invalid(db.update_template(id, &bad, 62)).contains("7 channels but 6"));
    assert_eq!(db.template(id).unwrap().unwrap().updated_at, 60);
    assert!(matches!(
        db.update_template(id, &mine(POOL_TEMPLATE, None), 62),
        Err(Error::Duplicate(_))
    ));

    db.delete_template(id).unwrap();
    assert_eq!(db.template(id).unwrap(), None);
    assert!(matches!(db.delete_template(id), Err(Error::Missing(_))));
    assert_eq!(db.templates().unwrap(), all);
    // A site's templates go with it.
    let id = db.create_template(&mine("Site's", Some(site)), 70).unwrap();
    db.delete_site(site).unwrap();
    assert_eq!(db.template(id).unwrap(), None);
}

/// Every device starts with the pool map at version 0; later versions have their own entry,
/// and the entry of a version is the latest one not above it.
pub(crate) fn device_channel_registry_versions(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 10).unwrap();
    let pool = pool_id(db);
    let first = db.device_channels(1, None).unwrap().unwrap();
    let pool_def = builtin::pool();
    assert_eq!((first.device_id, first.version), (1, 0));
    assert_eq!((first.template_id, first.saved_at), (Some(pool), 10));
    assert_eq!(first.map, pool_def.map());
    assert_eq!(first.roles, pool_def.roles_value());
    assert_eq!(first.channels.len(), 5);
    assert_eq!(first.channels[3].name, "Air temperature");
    assert_eq!(db.template_devices(pool).unwrap(), vec![1, 2]);
    assert_eq!(db.device_channels(9, None).unwrap(), None);

    let meter = db.create_template(&mine("Meter", None), 20).unwrap();
    let set = mine("", None).set;
    db.save_device_channels(1, 3, Some(meter), &set, 30)
        .unwrap();
    let latest = db.device_channels(1, None).unwrap().unwrap();
    assert_eq!((latest.version, latest.template_id), (3, Some(meter)));
    assert_eq!(latest.map, set.map);
    assert_eq!(latest.channels.len(), 7);
    assert_eq!(latest.channels[2].name, "Heat pump power");
    assert_eq!(latest.channels[2].unit, 1);
    for (v, expected) in [(0, 0), (2, 0), (3, 3), (7, 3)] {
        assert_eq!(
            db.device_channels(1, Some(v)).unwrap().unwrap().version,
            expected,
            "version {v}"
        );
    }
    assert_eq!(db.device_channels(2, Some(3)).unwrap().unwrap().version, 0);
    assert_eq!(db.template_devices(meter).unwrap(), vec![1]);
    assert_eq!(db.template_devices(pool).unwrap(), vec![2]);

    // Saving a version again replaces it, channels included; a map without a template.
    let mut fewer = set_of(&builtin::tb260());
    fewer.channels[0].name = "Boiler".into();
    db.save_device_channels(1, 3, None, &fewer, 31).unwrap();
    let e = db.device_channels(1, Some(3)).unwrap().unwrap();
    assert_eq!((e.template_id, e.saved_at, e.channels.len()), (None, 31, 2));
    assert_eq!(e.channels[0].name, "Boiler");
    assert_eq!(db.template_devices(meter).unwrap(), Vec::<u32>::new());

    // Refused, nothing saved.
    let mut bad = set.clone();
    bad.channels[1].kind = ChannelKind::Energy;
    bad.map[2] = 200; // channel count
    assert!(invalid(db.save_device_channels(1, 4, None, &bad, 40)).contains("200 channels"));
    assert!(matches!(
        db.save_device_channels(9, 4, None, &set, 40),
        Err(Error::NotFound(9))
    ));
    assert!(matches!(
        db.save_device_channels(1, 4, Some(9_999), &set, 40),
        Err(Error::Missing(_))
    ));
    assert_eq!(db.device_channels(1, None).unwrap().unwrap().version, 3);

    // A deleted template leaves the entries made from it with their map.
    db.save_device_channels(2, 5, Some(meter), &set, 50)
        .unwrap();
    db.delete_template(meter).unwrap();
    let e = db.device_channels(2, None).unwrap().unwrap();
    assert_eq!(
        (e.version, e.template_id, e.map),
        (5, None, set.map.clone())
    );

    // A page's entries in one call are those read one by one, in the order asked: versions
    // below, at and above a saved one, the latest, a device twice, an unknown device.
    let asked = [
        (2, Some(4)),
        (1, Some(2)),
        (9, None),
        (1, None),
        (2, None),
        (1, Some(7)),
        (2, Some(0)),
        (9, Some(3)),
    ];
    let each: Vec<_> = asked
        .iter()
        .map(|&(d, v)| db.device_channels(d, v).unwrap())
        .collect();
    let batched = db.device_channels_of(&asked).unwrap();
    assert_eq!(batched, each);
    assert_eq!(
        batched
            .iter()
            .map(|e| e.as_ref().map(|e| e.version))
            .collect::<Vec<_>>(),
        [
            Some(0),
            Some(0),
            None,
            Some(3),
            Some(5),
            Some(3),
            Some(0),
            None
        ]
    );
    assert_eq!(db.device_channels_of(&[]).unwrap(), vec![]);

    // Kept ones are the same entries, whole, and the rejected ones `None`: every entry kept, none,
    // and those not on the factory map (what /api/devices keeps).
    let all = |_: &[u8], _: Option<&[u8]>| true;
    assert_eq!(db.device_channels_kept_of(&asked, &all).unwrap(), each);
    let none = |_: &[u8], _: Option<&[u8]>| false;
    assert_eq!(
        db.device_channels_kept_of(&asked, &none).unwrap(),
        vec![None; asked.len()]
    );
    let own = |map: &[u8], roles: Option<&[u8]>| !crate::udp::split::is_factory_map(map, roles);
    let kept = db.device_channels_kept_of(&asked, &own).unwrap();
    let filtered: Vec<_> = each
        .iter()
        .map(|e| e.clone().filter(|e| !crate::udp::split::is_factory(e)))
        .collect();
    assert_eq!(kept, filtered);
    assert_eq!(
        kept.iter()
            .map(|e| e.as_ref().map(|e| (e.version, e.channels.len())))
            .collect::<Vec<_>>(),
        [
            None,
            None,
            None,
            Some((3, 2)),
            Some((5, 7)),
            Some((3, 2)),
            None,
            None
        ]
    );
    assert_eq!(db.device_channels_kept_of(&[], &all).unwrap(), vec![]);
}

/// A database of schema 10 (no channel tables) with devices and three days of a pool
/// controller's records: the migration seeds the built-in templates and gives every existing
/// device the pool controller's map from version 0 on, and the device's charts and energy
/// figures, as the pages read them, are those of before.
pub(crate) fn channel_registry_given_to_existing_devices_by_migration(
    db: &dyn Storage,
    downgrade: impl FnOnce() -> Box<dyn Storage>,
) {
    use super::rollups::{charts, history, ranges, store_shuffled_with_retransmissions};
    use crate::service::energy::device_energy;
    db.add_devices(&[dev(1), dev(7)], 10).unwrap();
    let stored = store_shuffled_with_retransmissions(db, &history());
    let figures = |db: &dyn Storage| {
        let energy: Vec<_> = ranges(&stored)
            .into_iter()
            .map(|(from, to)| device_energy(db, 1, 0, from, to).unwrap().total)
            .collect();
        let charts: Vec<_> = charts()
            .into_iter()
            .map(|(from, to, step)| db.telemetry_buckets(1, from, to, step).unwrap())
            .collect();
        (energy, charts)
    };
    let before = figures(db);
    assert!(before.0.iter().any(|e| e.values().any(|i| i.wh > 0.0)));
    assert!(before.1.iter().all(|c| !c.is_empty()));
    let migrated = downgrade();
    assert!(
        crate::service::device_channels::in_effect(&*migrated, 1, 0)
            .unwrap()
            .is_none(),
        "the pool map is the factory's: the device is shown as a pool controller"
    );
    assert_eq!(figures(&*migrated), before);
    let names: Vec<String> = migrated
        .templates()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    let defs: Vec<&str> = builtin::all().iter().map(|b| b.name).collect();
    assert_eq!(names, defs);
    let pool = pool_id(&*migrated);
    for d in [1, 7] {
        let e = migrated.device_channels(d, None).unwrap().unwrap();
        assert_eq!((e.version, e.template_id), (0, Some(pool)));
        assert_eq!(e.map, builtin::pool().map());
        assert_eq!(e.roles, builtin::pool().roles_value());
        let labels: Vec<ChannelLabel> = e.channels.iter().map(ChannelLabel::from).collect();
        assert_eq!(labels, builtin::pool().labels());
        assert!(e.saved_at > 1_700_000_000, "seeded at the migration's time");
    }
    assert_eq!(migrated.template_devices(pool).unwrap(), vec![1, 7]);
    // Devices added after the migration get the same.
    migrated.add_devices(&[dev(8)], 20).unwrap();
    assert_eq!(migrated.template_devices(pool).unwrap(), vec![1, 7, 8]);
}
