//! The versioned schema, written once for both backends and rendered for each one's SQL
//! dialect ([`render`]); each backend applies [`pending`] in its own way (SQLite:
//! `PRAGMA user_version`, one transaction per version; PostgreSQL: table `tek_schema`, all
//! pending versions in one transaction under an advisory lock). One version number therefore
//! describes the tables of either backend. Never edit a released migration: append a new one.
//!
//! The notation is SQL with a few words in braces where the dialects differ:
//!
//! | word | SQLite | PostgreSQL |
//! | --- | --- | --- |
//! | `{serial}` | `INTEGER PRIMARY KEY AUTOINCREMENT` | `BIGSERIAL PRIMARY KEY` |
//! | `{int}` | `INTEGER` | `BIGINT` |
//! | `{small}` | `INTEGER` | `SMALLINT` |
//! | `{bytes}` | `BLOB` | `BYTEA` |
//! | `{bool}` | `INTEGER` | `BOOLEAN` |
//! | `{false}` | `0` | `FALSE` |
//! | `{true}` | `1` | `TRUE` |
//! | `{now}` | the current Unix time | the current Unix time |
//! | `{hex:0a1b}` | `X'0a1b'` (a blob) | `decode('0a1b', 'hex')` (a `bytea`) |
//! | `{least}` | `min` | `LEAST` |
//! | `{greatest}` | `max` | `GREATEST` |
//! | `{sqlite:text}` | `text` | nothing |
//! | `{pg:text}` | nothing | `text` |

use super::{Error, Result};

/// The SQL dialect a migration is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The embedded backend ([`super::sqlite`]).
    Sqlite,
    /// The shared-database backend ([`super::postgres`]).
    Postgres,
}

/// `(word, SQLite, PostgreSQL)`: the words of the notation and what each dialect writes.
const WORDS: &[(&str, &str, &str)] = &[
    (
        "serial",
        "INTEGER PRIMARY KEY AUTOINCREMENT",
        "BIGSERIAL PRIMARY KEY",
    ),
    ("int", "INTEGER", "BIGINT"),
    ("small", "INTEGER", "SMALLINT"),
    ("bytes", "BLOB", "BYTEA"),
    ("bool", "INTEGER", "BOOLEAN"),
    ("false", "0", "FALSE"),
    ("true", "1", "TRUE"),
    // The transaction's time, whole Unix seconds (the time a migration seeds rows at).
    (
        "now",
        "CAST(strftime('%s', 'now') AS INTEGER)",
        "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)",
    ),
    // Scalar smallest / largest of two values (SQLite's two-argument `min`/`max`).
    ("least", "min", "LEAST"),
    ("greatest", "max", "GREATEST"),
];

/// `(version, SQL in the notation above)` in order. Version numbers are consecutive from 1.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, DEVICES_AND_INGEST),
    (2, ACCOUNTS),
    (3, ALARMS),
    (4, TARIFFS),
    (5, SCHEDULES),
    (
        6,
        // The boot number of the session a command was last sent in (PROTOCOL.md 11.3: a reboot
        // sent in an earlier boot is done once the device says Hello with a later one, whichever
        // server of the fleet sent it).
        "ALTER TABLE commands ADD COLUMN sent_boot {int};",
    ),
    (
        7,
        // Configuration items sealed under the master key (storage::sealed); rows written
        // before are sealed by the backend when it opens the database with the master key.
        // The site whose users may pick a destination list (NULL: administrators only).
        "ALTER TABLE configs ADD COLUMN sealed {bool} NOT NULL DEFAULT {false};
         ALTER TABLE alarm_lists ADD COLUMN site_id {int}
             REFERENCES sites(id) ON DELETE SET NULL;",
    ),
    (8, ROLLUPS),
    (9, ESTIMATED_BOOTS),
    (10, CHART_ROLLUPS),
    (11, CHANNEL_REGISTRY),
    (12, WIDE_TELEMETRY),
    (13, CHANNEL_FAULTS),
    (14, WIDE_ROLLUPS),
    (15, TELEMETRY_CHUNKS),
    (16, SEALED_QUARTERS),
    (17, TELEMETRY_INBOX),
    (18, TELEMETRY_INBOX_BATCHES),
    (19, TELEMETRY_INBOX_JOURNAL),
];

/// Migration 19 (SQLite only): the telemetry inbox moves out of the database into journal
/// files of its own beside it ([`crate::storage::sqlite`]'s `inbox` and `journal`): an ingest
/// commit then writes a page or two of a preallocated file, no page of the database (issue 21,
/// disk written per datagram). No SQL: [`RustStep::InboxJournal`] stores what migration 18's
/// tables hold and drops them, in the migration's transaction.
const TELEMETRY_INBOX_JOURNAL: &str = "";

/// Migration 18 (SQLite only): the telemetry inbox holds one row per ingest commit, its new
/// records in one blob ([`crate::storage::sqlite`]'s `inbox_codec`), instead of a row per
/// record: a commit then mostly rewrites the page the previous one left partly filled, and
/// writes a third of the bytes it did (issue 21, disk written per datagram). Two tables take
/// turns as before. What migration 17's tables hold is stored in the per-device tables and
/// those tables dropped by [`RustStep::InboxBatches`], in the same transaction.
const TELEMETRY_INBOX_BATCHES: &str = r#"
{sqlite:CREATE TABLE IF NOT EXISTS telemetry_inbox_batch_a (batch BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry_inbox_batch_b (batch BLOB NOT NULL);}
"#;

/// Migration 17 (SQLite only): the two tables of the telemetry inbox
/// ([`crate::storage::sqlite`]'s `inbox`). An ingest commit appends its new records to one of
/// them, a rowid table without any index, so a commit writes a few pages of its own whatever
/// the number of devices it carries; the records move into the per-device tables in bulk
/// later. Each row is one record: `kind` 0 a narrow record (`meta` its channel mask, `vals`
/// its values as little-endian i32 in channel order), 1 a wide record (`meta` its
/// configuration version or NULL, `mask` and `vals` as in `telemetry_wide`). A fold empties a
/// table in one `DELETE` without a condition, which SQLite does by freeing its pages unwritten.
/// PostgreSQL keeps writing straight into its tables. (`IF NOT EXISTS`: the suite's downgrades
/// to older versions keep these tables, and migrating up again must not fail.)
const TELEMETRY_INBOX: &str = r#"
{sqlite:CREATE TABLE IF NOT EXISTS telemetry_inbox_a (
    kind      INTEGER NOT NULL,
    device_id INTEGER NOT NULL,
    boot      INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    time      INTEGER NOT NULL,
    meta      INTEGER,
    mask      BLOB,
    vals      BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS telemetry_inbox_b (
    kind      INTEGER NOT NULL,
    device_id INTEGER NOT NULL,
    boot      INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    time      INTEGER NOT NULL,
    meta      INTEGER,
    mask      BLOB,
    vals      BLOB NOT NULL
);}
"#;

/// Migration 16: the 15-minute rollups of closed UTC days sealed into one row per device and
/// day ([`super::quarter`]: a columnar blob, version byte first). Rows move here when
/// `maintain` seals them; nothing to copy at migration time. A rowid table in SQLite, unlike the
/// other rollups: a WITHOUT ROWID row keeps at most about 1,000 bytes in its page and spills the
/// rest of a blob of one to three kilobytes into an overflow page of its own (4 KiB), which cost
/// more than the rows it replaced. (`IF NOT EXISTS`: the suite's
/// downgrades to older versions keep this empty table, and migrating up again must not fail.)
const SEALED_QUARTERS: &str = r#"
CREATE TABLE IF NOT EXISTS telemetry_rollup_sealed (
    device_id {int} NOT NULL,
    day       {int} NOT NULL,   -- the UTC day's start, a multiple of 86400
    data      {bytes} NOT NULL, -- storage::quarter's blob
    PRIMARY KEY (device_id, day)
);
"#;

/// Migration 1: devices, telemetry, configurations, commands, status and traffic.
const DEVICES_AND_INGEST: &str = r#"
CREATE TABLE devices (
    id                 {int} PRIMARY KEY{pg: CHECK (id BETWEEN 1 AND 4294967295)},
    name               TEXT NOT NULL DEFAULT '',
    key                {bytes} NOT NULL,       -- wrapped under the master key (crate::vault)
    hello_counter      {int},                  -- storage::counter_to_sql of the last accepted
    created_at         {int} NOT NULL,
    last_seen          {int},
    config_desired     {int} NOT NULL DEFAULT 0,
    config_applied     {int} NOT NULL DEFAULT 0,
    config_rolled_back {int}
);

-- PostgreSQL partitions it by day on `time` (see storage::postgres::partitions). The primary key
-- must hold the partition key there; idempotence on (device_id, boot, seq) alone is enforced by
-- the insert (see storage::postgres::telemetry), whose duplicate check is this key's prefix.
CREATE TABLE telemetry (
    device_id {int} NOT NULL,
    boot      {int} NOT NULL,
    seq       {int} NOT NULL,
    time      {int} NOT NULL,
    channels  {small} NOT NULL,
    power_w   INTEGER,
    energy_wh INTEGER,
    water_cc  INTEGER,
    air_cc    INTEGER,
    relays    INTEGER,
    ch5       INTEGER,
    ch6       INTEGER,
    ch7       INTEGER,
    PRIMARY KEY (device_id, boot, seq{pg:, time})
){sqlite: WITHOUT ROWID}{pg: PARTITION BY RANGE (time)};
-- Charts: one device, a time range (PostgreSQL: created on every partition, so each stays small).
CREATE INDEX telemetry_by_time ON telemetry (device_id, time);
{pg:-- Whole-fleet time scans (exports, maintenance): rows arrive in time order, BRIN is tiny.
CREATE INDEX telemetry_time_brin ON telemetry USING brin (time);}

CREATE TABLE configs (
    seq       {serial},                 -- the change feed servers poll
    device_id {int} NOT NULL REFERENCES devices (id),
    version   {int} NOT NULL,
    items     {bytes} NOT NULL,         -- the wire encoding of the item list
    saved_at  {int} NOT NULL,
    state     TEXT NOT NULL DEFAULT 'pending',
    acked_at  {int},
    UNIQUE (device_id, version)
);

CREATE TABLE commands (
    id        {serial}{pg: CHECK (id <= 4294967295)}, -- also the command id on the wire
    device_id {int} NOT NULL REFERENCES devices (id),
    kind      {int} NOT NULL,
    arg1      {int} NOT NULL DEFAULT 0,
    arg2      {int} NOT NULL DEFAULT 0,
    queued_at {int} NOT NULL,
    state     TEXT NOT NULL DEFAULT 'queued',
    acked_at  {int}
);
CREATE INDEX commands_by_device ON commands (device_id, state);

CREATE TABLE device_status (
    device_id   {int} PRIMARY KEY REFERENCES devices (id),
    received_at {int} NOT NULL,
    body        {bytes} NOT NULL        -- the 55-byte wire encoding
);

CREATE TABLE traffic (
    device_id {int} NOT NULL REFERENCES devices (id),
    month     TEXT NOT NULL,
    eth_tx    {int} NOT NULL DEFAULT 0,
    eth_rx    {int} NOT NULL DEFAULT 0,
    gsm_tx    {int} NOT NULL DEFAULT 0,
    gsm_rx    {int} NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, month)
){sqlite: WITHOUT ROWID};
"#;

/// Migration 2: accounts and access (users, sites, memberships, device assignment, web
/// sessions, API tokens, audit log).
const ACCOUNTS: &str = r#"
CREATE TABLE users (
    id            {serial},
    email         TEXT NOT NULL{sqlite: UNIQUE COLLATE NOCASE},
    password_hash TEXT NOT NULL,                -- argon2id PHC string
    is_admin      {bool} NOT NULL DEFAULT {false},
    created_at    {int} NOT NULL
);
-- E-mail addresses are unique and compared without case (SQLite: COLLATE NOCASE).
{pg:CREATE UNIQUE INDEX users_email ON users (lower(email));}

CREATE TABLE sites (
    id         {serial},
    name       TEXT NOT NULL UNIQUE,
    created_at {int} NOT NULL
);

CREATE TABLE site_members (
    site_id {int} NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    user_id {int} NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (site_id, user_id)
){sqlite: WITHOUT ROWID};
CREATE INDEX site_members_by_user ON site_members (user_id, site_id);

CREATE TABLE device_sites (
    device_id {int} PRIMARY KEY REFERENCES devices (id),
    site_id   {int} NOT NULL REFERENCES sites (id) ON DELETE CASCADE
);
CREATE INDEX device_sites_by_site ON device_sites (site_id, device_id);

CREATE TABLE web_sessions (
    id_hash    {bytes} PRIMARY KEY,          -- SHA-256 of the cookie value
    user_id    {int} NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at {int} NOT NULL,
    expires_at {int} NOT NULL
){sqlite: WITHOUT ROWID};

CREATE TABLE api_tokens (
    id         {serial},
    user_id    {int} NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    token_hash {bytes} NOT NULL UNIQUE,      -- SHA-256 of the token
    created_at {int} NOT NULL,
    last_used  {int}
);

CREATE TABLE audit_log (
    id        {serial},
    at        {int} NOT NULL,
    user_id   {int},                        -- no foreign key: entries outlive users
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    device_id {int},
    site_id   {int},
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_site ON audit_log (site_id, id);
CREATE INDEX audit_by_device ON audit_log (device_id, id);
"#;

/// Migration 3: alarm rules, alarms, destinations, lists and the notification log.
const ALARMS: &str = r#"
CREATE TABLE alarm_rules (
    id            {serial},
    device_id     {int} NOT NULL REFERENCES devices (id),
    spec          TEXT NOT NULL,                -- JSON of alarms::rules::RuleSpec
    shelved_until {int},
    created_at    {int} NOT NULL
);
CREATE INDEX alarm_rules_by_device ON alarm_rules (device_id, id);

CREATE TABLE alarms (
    id         {serial},
    rule_id    {int} NOT NULL,                 -- no foreign key: alarms outlive rules
    device_id  {int} NOT NULL,
    rule_name  TEXT NOT NULL,
    severity   TEXT NOT NULL,
    message    TEXT NOT NULL,
    raised_at  {int} NOT NULL,
    acked_at   {int},
    acked_by   TEXT,
    cleared_at {int},
    level      {int} NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX alarms_open_per_rule ON alarms (rule_id) WHERE cleared_at IS NULL;
CREATE INDEX alarms_by_device ON alarms (device_id, id);

CREATE TABLE alarm_destinations (
    id         {serial},
    name       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,                  -- email | webhook
    target     TEXT NOT NULL,
    secret     TEXT,
    created_at {int} NOT NULL
);

CREATE TABLE alarm_lists (
    id         {serial},
    name       TEXT NOT NULL UNIQUE,
    created_at {int} NOT NULL
);

CREATE TABLE alarm_list_members (
    list_id        {int} NOT NULL REFERENCES alarm_lists (id) ON DELETE CASCADE,
    destination_id {int} NOT NULL REFERENCES alarm_destinations (id) ON DELETE CASCADE,
    PRIMARY KEY (list_id, destination_id)
){sqlite: WITHOUT ROWID};

CREATE TABLE alarm_notifications (
    id             {serial},
    alarm_id       {int},
    device_id      {int} NOT NULL,
    list_id        {int} NOT NULL,
    destination_id {int} NOT NULL,
    destination    TEXT NOT NULL,
    event          TEXT NOT NULL,
    subject        TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'queued',
    attempts       {int} NOT NULL DEFAULT 0,
    error          TEXT,
    created_at     {int} NOT NULL,
    done_at        {int}
);
CREATE INDEX alarm_notifications_by_device ON alarm_notifications (device_id, id);
CREATE INDEX alarm_notifications_by_alarm ON alarm_notifications (alarm_id);
"#;

/// Migration 4: the site's time zone and tariff.
///
/// The telemetry index stays `(device_id, time)`: widening it to carry `energy_wh` and `power_w`
/// made SQLite's energy query of a device-year 1.7× faster (0.24 s instead of 0.41 s, release
/// build) but bulk inserts about 20% slower (median 0.94 s instead of 0.76 s for 525,600
/// records), and ingest is the hot path (`tests/energy_scale.rs`, BENCHMARKS.md).
const TARIFFS: &str = r#"
ALTER TABLE sites ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

CREATE TABLE site_tariffs (
    site_id    {int} PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    tariff     TEXT NOT NULL,                  -- JSON of energy::tariff::Tariff
    updated_at {int} NOT NULL
);
"#;

/// Migration 5: the schedule's IANA time zone per device.
const SCHEDULES: &str = r#"
CREATE TABLE schedule_zones (
    device_id {int} PRIMARY KEY REFERENCES devices (id),
    time_zone TEXT NOT NULL                    -- IANA name, e.g. Europe/Paris
);
"#;

/// Migration 8: the 15-minute rollups of each device's energy and power readings, the figures
/// the energy queries read ([`super::rollup`]), kept up to date in the transaction that stores
/// the records; existing records are rolled up here, in the migration's transaction.
///
/// The numbers are [`super::energy::INTERVAL_S`] (900), [`super::energy::PACK_SHIFT`] (2^32)
/// and [`super::energy::PACK_BIAS`] (2^31) (a test checks them). A channel a record does not
/// have is NULL, and `COUNT`/`MIN`/`MAX`/`SUM` skip it: "no value" never becomes a zero.
const ROLLUPS: &str = r#"
CREATE TABLE telemetry_rollup (
    device_id    {int} NOT NULL,
    start        {int} NOT NULL,   -- the interval's start, a multiple of 900
    energy_count {int} NOT NULL,   -- readings of the energy counter
    energy_min   {int},
    energy_max   {int},
    energy_first {int},            -- earliest reading, packed: (time - start) * 2^32 + Wh + 2^31
    energy_last  {int},            -- latest reading, packed the same way
    power_sum    {int} NOT NULL,   -- sum and number of power readings (the mean is sum / count)
    power_count  {int} NOT NULL,
    PRIMARY KEY (device_id, start)
){sqlite: WITHOUT ROWID};

INSERT INTO telemetry_rollup (device_id, start, energy_count, energy_min, energy_max,
                              energy_first, energy_last, power_sum, power_count)
SELECT device_id, start, COUNT(energy_wh), MIN(energy_wh), MAX(energy_wh),
       MIN((time - start) * 4294967296 + energy_wh + 2147483648),
       MAX((time - start) * 4294967296 + energy_wh + 2147483648),
       COALESCE(SUM(power_w), 0), COUNT(power_w)
FROM (SELECT device_id, time - ((time % 900) + 900) % 900 AS start, time, energy_wh, power_w
      FROM telemetry WHERE energy_wh IS NOT NULL OR power_w IS NOT NULL) AS r
GROUP BY device_id, start;
"#;

/// Migration 9: per device and boot, the records whose times are estimated (PROTOCOL.md 18.3:
/// a boot in which the device never reached a server), recomputed from the stored records by
/// [`super::backlog`].
const ESTIMATED_BOOTS: &str = r#"
CREATE TABLE backlog_estimated_boots (
    device_id  {int} NOT NULL REFERENCES devices (id),
    boot       {int} NOT NULL,
    records    {int} NOT NULL,   -- records of that boot stored
    first_time {int} NOT NULL,   -- earliest and latest record time (estimated), Unix seconds
    last_time  {int} NOT NULL,
    PRIMARY KEY (device_id, boot)
);
"#;

/// Migration 12: wide telemetry records (PROTOCOL.md 17.5, 18), one row per record, idempotent on
/// (device, boot, seq) like `telemetry`, the values packed in two blobs ([`super::wide`]).
/// PostgreSQL does not partition it, so the primary key alone makes it idempotent (a plain
/// `ON CONFLICT`, no time window as `telemetry` needs); retention deletes old rows by `time`
/// instead of dropping partitions (`storage::postgres::wide::expire`).
const WIDE_TELEMETRY: &str = r#"
CREATE TABLE telemetry_wide (
    device_id      {int} NOT NULL,
    boot           {int} NOT NULL,
    seq            {int} NOT NULL,
    time           {int} NOT NULL,
    config_version {int},              -- the version the device ran per the server; NULL unknown
    mask           {bytes} NOT NULL,   -- channels with a value: bit j of byte i = channel 8i+j
    vals           {bytes} NOT NULL,   -- zigzag LEB128 varint per channel of mask, index order
    PRIMARY KEY (device_id, boot, seq)
){sqlite: WITHOUT ROWID};
CREATE INDEX telemetry_wide_by_time ON telemetry_wide (device_id, time);
{pg:CREATE INDEX telemetry_wide_time_brin ON telemetry_wide USING brin (time);}
"#;

/// Migration 13: each device's latest ChannelFaults report (PROTOCOL.md 17.8), one row per
/// channel it named: what the device page and the API show as the channel's last error. A new
/// report replaces the device's rows (a channel it no longer names has no fault since the map
/// changed or the device restarted).
const CHANNEL_FAULTS: &str = r#"
CREATE TABLE channel_faults (
    device_id   {int} NOT NULL,
    channel     {int} NOT NULL,    -- channel index, 0..=127
    errors      {int} NOT NULL,    -- failed samples since boot or since the map changed
    code        {int} NOT NULL,    -- the last failure's code (tek_proto::channel::faults::Fault)
    detail      {int} NOT NULL,    -- its detail byte (the Modbus exception code)
    received_at {int} NOT NULL,    -- when the report arrived, Unix seconds
    PRIMARY KEY (device_id, channel)
);
"#;

/// Migration 14: the rollups of wide records per device, channel, 15-minute interval and
/// configuration version ([`super::wide_rollup`]), kept up to date in the transaction that
/// stores the records. The records' values are blobs SQL cannot decode, so the existing records
/// are rolled up by [`RustStep::WideRollups`] after this SQL, in the same transaction. Every row
/// has at least one reading, so no figure is ever NULL.
const WIDE_ROLLUPS: &str = r#"
CREATE TABLE telemetry_wide_rollup (
    device_id {int} NOT NULL,
    channel   {int} NOT NULL,   -- channel index, 0..=127
    start     {int} NOT NULL,   -- the interval's start, a multiple of 900
    version   {int} NOT NULL,   -- the records' configuration version; -1: the server did not know
    readings  {int} NOT NULL,   -- readings of the channel (at least one)
    lowest    {int} NOT NULL,
    highest   {int} NOT NULL,
    total     {int} NOT NULL,   -- their sum (the mean is total / readings)
    earliest  {int} NOT NULL,   -- earliest reading, packed: (time - start) * 2^32 + value + 2^31
    latest    {int} NOT NULL,   -- latest reading, packed the same way
    PRIMARY KEY (device_id, channel, start, version)
){sqlite: WITHOUT ROWID};
"#;

/// Migration 15: raw records of closed UTC days sealed into compact chunks ([`super::chunk`]),
/// one row per device, boot and day (several for a day whose late records were sealed after
/// it). The migration only creates the table; the first `Storage::maintain` seals the days
/// already stored. `first_seq`/`last_seq` are the lowest and highest seq of the chunk's records.
const TELEMETRY_CHUNKS: &str = r#"
CREATE TABLE telemetry_chunk (
    device_id  {int} NOT NULL,
    boot       {int} NOT NULL,
    first_seq  {int} NOT NULL,
    last_seq   {int} NOT NULL,
    start_time {int} NOT NULL,
    end_time   {int} NOT NULL,   -- same UTC day as start_time
    records    {int} NOT NULL,
    data       {bytes} NOT NULL, -- version byte, then pcodec columns (storage::chunk::encode)
    PRIMARY KEY (device_id, boot, first_seq)
);
-- Reads of a time range, in start-time order.
CREATE INDEX telemetry_chunk_by_time ON telemetry_chunk (device_id, start_time);
-- The idempotence check: the chunks of a boot ending at or after a record's seq (none for a
-- record newer than every sealed one), so a retransmission already sealed is stored once.
CREATE INDEX telemetry_chunk_by_last_seq ON telemetry_chunk (device_id, boot, last_seq);
"#;

/// Work a migration needs beyond its SQL, which each backend does in Rust after that SQL, in the
/// same transaction (so a crash still leaves the database at a whole version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RustStep {
    /// Migration 14: roll up the wide records already stored ([`super::wide_rollup`]).
    WideRollups,
    /// Migration 18 (SQLite only): store what the record-per-row inbox tables hold and drop
    /// them.
    InboxBatches,
    /// Migration 19 (SQLite only): store what the batch inbox tables hold and drop them.
    InboxJournal,
}

/// The Rust step of migration `version`, if it has one.
pub fn rust_step(version: i64) -> Option<RustStep> {
    match version {
        14 => Some(RustStep::WideRollups),
        18 => Some(RustStep::InboxBatches),
        19 => Some(RustStep::InboxJournal),
        _ => None,
    }
}

/// The columns of both rollup tables of migration 10 (between the braces of `CREATE TABLE`).
macro_rules! rollup_columns {
    () => {
        "
    device_id    {int} NOT NULL,
    start        {int} NOT NULL,   -- the interval's start (900 s or a UTC day)
    energy_count {int} NOT NULL,   -- readings of the energy counter
    energy_min   {int},
    energy_max   {int},
    energy_first {int},            -- earliest reading, packed: (time - start) * 2^32 + Wh + 2^31
    energy_last  {int},            -- latest reading, packed the same way
    power_sum    {int} NOT NULL,   -- sum and number of power readings (the mean is sum / count)
    power_count  {int} NOT NULL,
    records      {int} NOT NULL,   -- records, whatever channels they have
    power_min    {int},
    power_max    {int},
    water_sum    {int} NOT NULL,
    water_count  {int} NOT NULL,
    water_min    {int},
    water_max    {int},
    air_sum      {int} NOT NULL,
    air_count    {int} NOT NULL,
    air_min      {int},
    air_max      {int},
    relays_count {int} NOT NULL,   -- records with the relay channel
    pump_on      {int} NOT NULL,   -- of those, with bit 0 (pump) set
    heater_on    {int} NOT NULL,   -- of those, with bit 1 (heater) set
    PRIMARY KEY (device_id, start)
"
    };
}

/// Migration 10: the rollups carry every channel a chart bucket needs, at 15 minutes (the table
/// of migration 8, widened: dropped and rolled up again from the records, which also counts the
/// records that have neither energy nor power) and per UTC day (a new table, rolled up from the
/// 15-minute rows: sums and counts add, extremes keep the extreme, and the packed earliest and
/// latest readings move to the day's start by adding `(start - day) * 2^32`) ([`super::rollup`],
/// [`super::series`]). The numbers are [`super::energy::INTERVAL_S`] (900), 86,400,
/// [`super::energy::PACK_SHIFT`] (2^32) and [`super::energy::PACK_BIAS`] (2^31) (a test checks
/// them).
const CHART_ROLLUPS: &str = concat!(
    "DROP TABLE telemetry_rollup;
CREATE TABLE telemetry_rollup (",
    rollup_columns!(),
    "){sqlite: WITHOUT ROWID};
CREATE TABLE telemetry_rollup_day (",
    rollup_columns!(),
    r#"){sqlite: WITHOUT ROWID};

INSERT INTO telemetry_rollup (device_id, start, energy_count, energy_min, energy_max,
    energy_first, energy_last, power_sum, power_count, records, power_min, power_max,
    water_sum, water_count, water_min, water_max, air_sum, air_count, air_min, air_max,
    relays_count, pump_on, heater_on)
SELECT device_id, start, COUNT(energy_wh), MIN(energy_wh), MAX(energy_wh),
       MIN((time - start) * 4294967296 + energy_wh + 2147483648),
       MAX((time - start) * 4294967296 + energy_wh + 2147483648),
       COALESCE(SUM(power_w), 0), COUNT(power_w), COUNT(*), MIN(power_w), MAX(power_w),
       COALESCE(SUM(water_cc), 0), COUNT(water_cc), MIN(water_cc), MAX(water_cc),
       COALESCE(SUM(air_cc), 0), COUNT(air_cc), MIN(air_cc), MAX(air_cc),
       COUNT(relays), COALESCE(SUM(relays & 1), 0), COALESCE(SUM((relays >> 1) & 1), 0)
FROM (SELECT device_id, time - ((time % 900) + 900) % 900 AS start, time, power_w, energy_wh,
             water_cc, air_cc, relays
      FROM telemetry) AS r
GROUP BY device_id, start;

INSERT INTO telemetry_rollup_day (device_id, start, energy_count, energy_min, energy_max,
    energy_first, energy_last, power_sum, power_count, records, power_min, power_max,
    water_sum, water_count, water_min, water_max, air_sum, air_count, air_min, air_max,
    relays_count, pump_on, heater_on)
SELECT device_id, day, SUM(energy_count), MIN(energy_min), MAX(energy_max),
       MIN(energy_first + (start - day) * 4294967296),
       MAX(energy_last + (start - day) * 4294967296),
       SUM(power_sum), SUM(power_count), SUM(records), MIN(power_min), MAX(power_max),
       SUM(water_sum), SUM(water_count), MIN(water_min), MAX(water_max),
       SUM(air_sum), SUM(air_count), MIN(air_min), MAX(air_max),
       SUM(relays_count), SUM(pump_on), SUM(heater_on)
FROM (SELECT q.*, start - ((start % 86400) + 86400) % 86400 AS day
      FROM telemetry_rollup AS q) AS d
GROUP BY device_id, day;
"#
);

/// The seed of the built-in templates in migration 11, as [`super::channels::builtin`] defines
/// them (the test `the_builtin_templates_are_seeded_as_defined` regenerates it and compares).
macro_rules! builtin_templates {
    () => {
        r#"
INSERT INTO channel_templates (name, builtin, map, roles, created_at, updated_at)
VALUES ('pool controller', {true}, {hex:0100050201000000000100010000000001000201010000000100010000000002000201020000000100010000000003fe0201030000000100010000000003fe020104000000010001000000000000},
        {hex:020300010001}, {now}, {now});
INSERT INTO channel_template_channels (template_id, idx, name, unit, kind, decimals) VALUES
((SELECT id FROM channel_templates WHERE name = 'pool controller'), 0, 'Power', 1, 'power', 0),
((SELECT id FROM channel_templates WHERE name = 'pool controller'), 1, 'Energy', 2, 'energy', 0),
((SELECT id FROM channel_templates WHERE name = 'pool controller'), 2, 'Water temperature', 3, 'temperature', 2),
((SELECT id FROM channel_templates WHERE name = 'pool controller'), 3, 'Air temperature', 3, 'temperature', 2),
((SELECT id FROM channel_templates WHERE name = 'pool controller'), 4, 'Relays', 0, 'state', 0);
INSERT INTO channel_templates (name, builtin, map, roles, created_at, updated_at)
VALUES ('three-phase energy meter (SDM630)', {true}, {hex:01010e000001f40107000104000004000000000a00010000000005ff0107000104000204000000000a00010000000005ff0107000104000404000000000a00010000000005ff010700010400060400000003e800010000000006fd010700010400080400000003e800010000000006fd0107000104000a0400000003e800010000000006fd0107000104000c04000000000100010000000001000107000104000e04000000000100010000000001000107000104001004000000000100010000000001000107000104003404000000000100010000000001000107000104004604000000006400010000000007fe010700010400480400000003e800010000000002000107000104004a0400000003e80001000000000200010700010401560400000003e80001000000000200},
        {hex:ffff090b0001}, {now}, {now});
INSERT INTO channel_template_channels (template_id, idx, name, unit, kind, decimals) VALUES
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 0, 'Voltage L1', 5, 'other', 1),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 1, 'Voltage L2', 5, 'other', 1),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 2, 'Voltage L3', 5, 'other', 1),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 3, 'Current L1', 6, 'other', 2),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 4, 'Current L2', 6, 'other', 2),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 5, 'Current L3', 6, 'other', 2),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 6, 'Power L1', 1, 'power', 0),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 7, 'Power L2', 1, 'power', 0),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 8, 'Power L3', 1, 'power', 0),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 9, 'Power', 1, 'power', 0),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 10, 'Frequency', 7, 'other', 2),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 11, 'Import energy', 2, 'energy', 0),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 12, 'Export energy', 2, 'energy', 0),
((SELECT id FROM channel_templates WHERE name = 'three-phase energy meter (SDM630)'), 13, 'Total energy', 2, 'energy', 0);
INSERT INTO channel_templates (name, builtin, map, roles, created_at, updated_at)
VALUES ('single-phase meter', {true}, {hex:010107000001f40107000104000004000000000a00010000000005ff010700010400060400000003e800010000000006fd0107000104000c04000000000100010000000001000107000104004604000000006400010000000007fe010700010400480400000003e800010000000002000107000104004a0400000003e80001000000000200010700010401560400000003e80001000000000200},
        {hex:ffff02040001}, {now}, {now});
INSERT INTO channel_template_channels (template_id, idx, name, unit, kind, decimals) VALUES
((SELECT id FROM channel_templates WHERE name = 'single-phase meter'), 0, 'Voltage', 5, 'other', 1),
((SELECT id FROM channel_templates WHERE name = 'single-phase meter'), 1, 'Current', 6, 'other', 2),
((SELECT id FROM channel_templates WHERE name = 'single-phase meter'), 2, 'Power', 1, 'power', 0),
((SELECT id FROM channel_templates WHERE name = 'single-phase meter'), 3, 'Frequency', 7, 'other', 2),
((SELECT id FROM channel_templates WHERE name = 'single-phase meter'), 4, 'Import energy', 2, 'energy', 0),
((SELECT id FROM channel_templates WHERE name = 'single-phase meter'), 5, 'Export energy', 2, 'energy', 0),
((SELECT id FROM channel_templates WHERE name = 'single-phase meter'), 6, 'Total energy', 2, 'energy', 0);
INSERT INTO channel_templates (name, builtin, map, roles, created_at, updated_at)
VALUES ('temperature transmitter', {true}, {hex:010102000001f40107000103000001000000000a00010000000003fe010700010300040000000000010001000000000000},
        {hex:ffffffff0001}, {now}, {now});
INSERT INTO channel_template_channels (template_id, idx, name, unit, kind, decimals) VALUES
((SELECT id FROM channel_templates WHERE name = 'temperature transmitter'), 0, 'Temperature', 3, 'temperature', 1),
((SELECT id FROM channel_templates WHERE name = 'temperature transmitter'), 1, 'Sensor state', 0, 'state', 0);
"#
    };
}

/// Migration 11: channels as data (issue 18; [`super::channels`]). Channel-map templates with
/// their channels, the built-in ones seeded (the pool controller is exactly the factory map of
/// PROTOCOL.md 17.2; [`super::channels::builtin`] defines them and a test checks this SQL
/// against it), and each device's channel registry versioned with its configuration: every
/// existing device gets the pool controller's map from version 0 on, so an existing
/// installation is unchanged.
const CHANNEL_REGISTRY: &str = concat!(
    r#"
CREATE TABLE channel_templates (
    id         {serial},
    name       TEXT NOT NULL UNIQUE,
    builtin    {bool} NOT NULL DEFAULT {false},
    site_id    {int} REFERENCES sites (id) ON DELETE CASCADE,  -- NULL: every site
    map        {bytes} NOT NULL,        -- the channel map, PROTOCOL.md 17.2
    roles      {bytes},                 -- configuration item 16's value (6 bytes), if any
    created_at {int} NOT NULL,
    updated_at {int} NOT NULL
);

CREATE TABLE channel_template_channels (
    template_id {int} NOT NULL REFERENCES channel_templates (id) ON DELETE CASCADE,
    idx         {int} NOT NULL,         -- the channel's index in the map
    name        TEXT NOT NULL,
    unit        {int} NOT NULL,         -- the map's unit code of the channel
    kind        TEXT NOT NULL CHECK (kind IN ('power', 'energy', 'temperature', 'state', 'other')),
    decimals    {int} NOT NULL,         -- display precision
    PRIMARY KEY (template_id, idx)
);

-- The map a device runs from configuration `version` on (until a later row): the map of a
-- version is the row with the greatest version not above it.
CREATE TABLE device_channel_maps (
    device_id   {int} NOT NULL REFERENCES devices (id),
    version     {int} NOT NULL,
    template_id {int} REFERENCES channel_templates (id) ON DELETE SET NULL,
    map         {bytes} NOT NULL,
    roles       {bytes},
    saved_at    {int} NOT NULL,
    PRIMARY KEY (device_id, version)
);
CREATE INDEX device_channel_maps_by_template ON device_channel_maps (template_id);

CREATE TABLE device_channels (
    device_id {int} NOT NULL,
    version   {int} NOT NULL,
    idx       {int} NOT NULL,
    name      TEXT NOT NULL,
    unit      {int} NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('power', 'energy', 'temperature', 'state', 'other')),
    decimals  {int} NOT NULL,
    PRIMARY KEY (device_id, version, idx),
    FOREIGN KEY (device_id, version) REFERENCES device_channel_maps (device_id, version)
        ON DELETE CASCADE
);
"#,
    builtin_templates!(),
    r#"
INSERT INTO device_channel_maps (device_id, version, template_id, map, roles, saved_at)
SELECT d.id, 0, t.id, t.map, t.roles, {now}
FROM devices AS d, channel_templates AS t WHERE t.name = 'pool controller';
INSERT INTO device_channels (device_id, version, idx, name, unit, kind, decimals)
SELECT m.device_id, 0, c.idx, c.name, c.unit, c.kind, c.decimals
FROM device_channel_maps AS m JOIN channel_template_channels AS c ON c.template_id = m.template_id;
"#
);

/// `template` in `dialect`: every `{word}` of the notation replaced. A word the notation does
/// not know is left in braces, which no database accepts (and the tests reject).
pub fn render(template: &str, dialect: Dialect) -> String {
    let mut out = String::with_capacity(template.len() + template.len() / 4);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        let word = &rest[open + 1..open + len];
        match (word.split_once(':'), dialect) {
            (Some(("sqlite", text)), Dialect::Sqlite) | (Some(("pg", text)), Dialect::Postgres) => {
                out.push_str(text)
            }
            (Some(("sqlite" | "pg", _)), _) => {}
            // Only hex digits pass, so a literal cannot end the string early.
            (Some(("hex", h)), _) if h.bytes().all(|b| b.is_ascii_hexdigit()) => match dialect {
                Dialect::Sqlite => out.push_str(&format!("X'{h}'")),
                Dialect::Postgres => out.push_str(&format!("decode('{h}', 'hex')")),
            },
            _ => match WORDS.iter().find(|w| w.0 == word) {
                Some((_, sqlite, _)) if dialect == Dialect::Sqlite => out.push_str(sqlite),
                Some((_, _, postgres)) => out.push_str(postgres),
                None => out.push_str(&rest[open..=open + len]),
            },
        }
        rest = &rest[open + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The newest schema version this program knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The migrations a database at version `found` still needs, oldest first, rendered for
/// `dialect`; a database written by a newer program (`found` above [`latest`]) is refused.
pub fn pending(found: i64, dialect: Dialect) -> Result<Vec<(i64, String)>> {
    if found > latest() {
        return Err(Error::SchemaTooNew {
            found,
            supported: latest(),
        });
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| m.0 > found)
        .map(|(version, sql)| (*version, render(sql, dialect)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
        }
        assert_eq!(latest(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn every_migration_renders_without_a_word_left() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for (version, sql) in pending(0, dialect).unwrap() {
                assert!(
                    !sql.contains('{') && !sql.contains('}'),
                    "{dialect:?} migration {version}: {sql}"
                );
            }
        }
    }

    #[test]
    fn the_rollup_backfill_uses_the_energy_constants() {
        use crate::storage::energy::{INTERVAL_S, PACK_BIAS, PACK_SHIFT};
        use crate::storage::rollup::{columns, Resolution};
        for n in [INTERVAL_S, PACK_SHIFT, PACK_BIAS] {
            assert!(ROLLUPS.contains(&n.to_string()), "{n}");
            assert!(CHART_ROLLUPS.contains(&n.to_string()), "{n}");
        }
        assert!(CHART_ROLLUPS.contains(&Resolution::Day.seconds().to_string()));
        // Both tables and both backfills have the columns the insert writes, in its order.
        let squeeze = |s: &str| s.split_whitespace().collect::<String>();
        let cols = squeeze(&columns());
        assert_eq!(
            squeeze(CHART_ROLLUPS).matches(&format!("({cols})")).count(),
            2
        );
        for r in Resolution::ALL {
            assert!(CHART_ROLLUPS.contains(&format!("CREATE TABLE {} (", r.table())));
        }
        let declared: Vec<&str> = rollup_columns!()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| *w != "PRIMARY")
            .collect();
        assert_eq!(declared.join(", "), columns());
    }

    /// The seed of migration 11, rendered from [`super::super::channels::builtin`].
    fn builtin_seed() -> String {
        use crate::storage::channels::builtin;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut out = String::new();
        for b in builtin::all() {
            let roles = b
                .roles_value()
                .map_or("NULL".to_owned(), |r| format!("{{hex:{}}}", hex(&r)));
            out.push_str(&format!(
                "INSERT INTO channel_templates (name, builtin, map, roles, created_at, updated_at)\nVALUES ('{}', {{true}}, {{hex:{}}},\n        {roles}, {{now}}, {{now}});\nINSERT INTO channel_template_channels (template_id, idx, name, unit, kind, decimals) VALUES\n",
                b.name,
                hex(&b.map())
            ));
            let rows: Vec<String> = b
                .channels
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    format!(
                        "((SELECT id FROM channel_templates WHERE name = '{}'), {i}, '{}', {}, '{}', {})",
                        b.name,
                        c.name,
                        c.channel.resolution.unit.code(),
                        c.kind.as_str(),
                        c.decimals
                    )
                })
                .collect();
            out.push_str(&rows.join(",\n"));
            out.push_str(";\n");
        }
        out
    }

    #[test]
    fn the_builtin_templates_are_seeded_as_defined() {
        let seed = builtin_seed();
        assert_eq!(
            builtin_templates!().trim(),
            seed.trim(),
            "migration 11's seed should read:\n{seed}"
        );
        assert!(CHANNEL_REGISTRY.contains(&seed));
        assert!(CHANNEL_REGISTRY.contains(&format!(
            "t.name = '{}'",
            crate::storage::channels::POOL_TEMPLATE
        )));
    }

    #[test]
    fn hex_literals_render_per_dialect() {
        assert_eq!(render("{hex:0aFF}", Dialect::Sqlite), "X'0aFF'");
        assert_eq!(
            render("{hex:0aFF}", Dialect::Postgres),
            "decode('0aFF', 'hex')"
        );
        // Anything but hex digits is left alone (and refused by the database).
        assert_eq!(render("{hex:0a'}", Dialect::Sqlite), "{hex:0a'}");
    }

    #[test]
    fn words_render_per_dialect() {
        let t = "id {serial}, n {int}{sqlite: WITHOUT ROWID}{pg:, time}";
        assert_eq!(
            render(t, Dialect::Sqlite),
            "id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER WITHOUT ROWID"
        );
        assert_eq!(
            render(t, Dialect::Postgres),
            "id BIGSERIAL PRIMARY KEY, n BIGINT, time"
        );
        // Unknown or unclosed words stay visible, so the database refuses them.
        assert_eq!(render("a {nope} b", Dialect::Sqlite), "a {nope} b");
        assert_eq!(render("a {int", Dialect::Postgres), "a {int");
    }

    #[test]
    fn pending_skips_applied_versions_and_refuses_newer() {
        let all = pending(0, Dialect::Sqlite).unwrap();
        assert_eq!(all.len() as i64, latest());
        let rest = pending(latest() - 1, Dialect::Postgres).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, latest());
        assert!(pending(latest(), Dialect::Sqlite).unwrap().is_empty());
        assert!(matches!(
            pending(latest() + 1, Dialect::Postgres),
            Err(Error::SchemaTooNew { found, supported }) if found == latest() + 1 && supported == latest()
        ));
    }
}
