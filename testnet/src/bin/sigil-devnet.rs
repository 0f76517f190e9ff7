//! `sigil-devnet` (also `sigil devnet`): the one-command local devnet. See
//! `sigil_testnet::devnet`.

use clap::Parser;

#[tokio::main]
async fn main() {
    let args = sigil_testnet::devnet::DevnetArgs::parse();
    match sigil_testnet::devnet::run(args).await {
        Ok(r) if r.passed() => {}
        Ok(r) => {
            eprintln!("devnet FAILED: {}", r.failures().join("; "));
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("devnet error: {e:#}");
            std::process::exit(1);
        }
    }
}
