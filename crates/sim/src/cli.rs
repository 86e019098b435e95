//! `tek sim`.

/// Arguments of `tek sim`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {}

/// Runs `tek sim`.
pub fn run(_args: SimArgs) -> anyhow::Result<()> {
    anyhow::bail!("tek sim is not built yet (issue 4)")
}
