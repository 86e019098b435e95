//! Command-line entry points of the server.

/// Arguments of `tek serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {}

/// `tek device ...`
#[derive(clap::Subcommand, Debug)]
pub enum DeviceCommand {}

/// Runs `tek serve`.
pub fn serve(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("tek serve is not built yet (issue 3)")
}

/// Runs `tek device ...`.
pub fn device(cmd: DeviceCommand) -> anyhow::Result<()> {
    match cmd {}
}
