//! `sigil`: the Sigil committee node binary.
//!
//! Status: the node host (p2p, chain watchers, storage, relayer, HTTP API) arrives with
//! issues 4 and 5. Today the binary parses its global options and reports its version.

use clap::Parser;

/// Sigil peer-to-peer attestation node.
#[derive(Debug, Parser)]
#[command(name = "sigil", version, about, long_about = None)]
struct Cli {
    /// Node home directory (config, keys, database).
    #[arg(long, global = true, env = "SIGIL_HOME", default_value = "~/.sigil")]
    home: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    println!("sigil {} (home: {})", env!("CARGO_PKG_VERSION"), cli.home);
    Ok(())
}
