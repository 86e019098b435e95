//! Numbers as the pages show them: a reading with its unit (a dash for no value), bytes.

/// A reading with its unit, or a dash.
pub fn num(v: Option<f64>, decimals: usize, unit: &str) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$} {unit}"))
}

/// Bytes as KB/MB.
pub fn bytes(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.2} MB", n as f64 / 1e6)
    } else {
        format!("{:.1} kB", n as f64 / 1e3)
    }
}
