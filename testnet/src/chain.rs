//! Local EVM chains for tests and devnets: spawn anvil (from the pinned npm package) on a
//! free loopback port, load Foundry artifacts from `contracts/out`, deploy with alloy, and
//! typed bindings of the Sigil contracts.

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, Bytes};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result, anyhow};
use std::path::{Path, PathBuf};

pub use sigil_node::contracts::{FixableReceiver, RecordingReceiver, SigilGateway, SigilInbox};

/// The repository root: the first directory holding `contracts/foundry.toml` at or above
/// the `CARGO_MANIFEST_DIR` cargo sets at run time (tests, `cargo run`), else the current
/// directory, else the path this crate was compiled from.
///
/// Looked up at run time because clones share one cargo target dir (`scripts/env.sh`): a
/// binary or test compiled in one clone may be run from another, and a compile-time path
/// would read the other clone's contracts and tools.
pub fn repo_root() -> PathBuf {
    let compiled = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let starts = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        std::env::current_dir().ok(),
    ];
    starts
        .into_iter()
        .flatten()
        .find_map(|start| {
            start
                .ancestors()
                .find(|d| d.join("contracts/foundry.toml").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or(compiled)
}

/// The anvil binary from the pinned npm package. Errors if `scripts/setup.sh` was not run.
pub fn anvil_path() -> Result<PathBuf> {
    let p = repo_root().join("node_modules/.bin/anvil");
    if !p.exists() {
        return Err(anyhow!("{} not found; run scripts/setup.sh", p.display()));
    }
    Ok(p)
}

/// Starts anvil with `chain_id` on a free loopback port (anvil binds 127.0.0.1; the port is
/// read from its output). The process stops when the returned instance is dropped.
pub fn spawn_anvil(chain_id: u64) -> Result<AnvilInstance> {
    spawn_anvil_with(chain_id, None, None)
}

/// Like [`spawn_anvil`], with interval mining every `block_time` seconds (anvil
/// `--block-time`) instead of one block per transaction, and a block gas limit of
/// `gas_limit` (anvil `--gas-limit`; its default is 30,000,000 gas).
pub fn spawn_anvil_with(
    chain_id: u64,
    block_time: Option<u64>,
    gas_limit: Option<u64>,
) -> Result<AnvilInstance> {
    let mut a = Anvil::at(anvil_path()?)
        .chain_id(chain_id)
        .arg("--host")
        .arg("127.0.0.1");
    if let Some(bt) = block_time {
        a = a.block_time(bt);
    }
    if let Some(g) = gas_limit {
        a = a.arg("--gas-limit").arg(g.to_string());
    }
    a.try_spawn().context("starting anvil")
}

/// Creation bytecode of `contract` from Foundry's output
/// (`contracts/out/<file>/<contract>.json`, field `bytecode.object`).
/// Errors when the artifact is missing (run `forge build` in contracts/) or malformed.
pub fn artifact_bytecode(file: &str, contract: &str) -> Result<Bytes> {
    let path = repo_root()
        .join("contracts/out")
        .join(file)
        .join(format!("{contract}.json"));
    read_bytecode(&path)
}

fn read_bytecode(path: &Path) -> Result<Bytes> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {}; run `forge build` in contracts/",
            path.display()
        )
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    let hex = json["bytecode"]["object"]
        .as_str()
        .ok_or_else(|| anyhow!("{}: no bytecode.object", path.display()))?;
    Ok(hex.parse()?)
}

/// Sends a contract-creation transaction with `code ++ constructor_args` and returns the new
/// address. Errors on RPC failure or a reverted deployment.
pub async fn deploy<P: Provider>(
    provider: &P,
    code: Bytes,
    constructor_args: &[u8],
) -> Result<Address> {
    let mut input = code.to_vec();
    input.extend_from_slice(constructor_args);
    let tx = TransactionRequest::default().with_deploy_code(input);
    let receipt = provider.send_transaction(tx).await?.get_receipt().await?;
    if !receipt.status() {
        return Err(anyhow!("deployment reverted"));
    }
    receipt
        .contract_address
        .ok_or_else(|| anyhow!("receipt without contract address"))
}

/// Deploys a `SigilGateway` whose routes `admin` sets (see [`set_route`]; a gateway without
/// a route to a chain refuses messages to it). Errors: missing artifact, RPC failure, revert.
pub async fn deploy_gateway<P: Provider>(provider: &P, admin: Address) -> Result<Address> {
    use alloy::sol_types::SolValue;
    deploy(
        provider,
        artifact_bytecode("SigilGateway.sol", "SigilGateway")?,
        &admin.abi_encode(),
    )
    .await
}

/// `SigilGateway.setRoute(dest_chain_id, inbox)` sent by `provider`'s signer (the gateway's
/// admin): messages to `dest_chain_id` name `inbox` from then on.
/// Errors: RPC failure, revert (not the admin, or `dest_chain_id` is this chain or 0).
pub async fn set_route<P: Provider>(
    provider: &P,
    gateway: Address,
    dest_chain_id: u64,
    inbox: Address,
) -> Result<()> {
    let r = SigilGateway::new(gateway, provider)
        .setRoute(dest_chain_id, inbox)
        .send()
        .await
        .context("setRoute")?
        .get_receipt()
        .await?;
    if !r.status() {
        return Err(anyhow!("setRoute({dest_chain_id}, {inbox}) reverted"));
    }
    Ok(())
}

/// Key grace period of the inboxes deployed here (1 hour; the inbox refuses more than 365
/// days).
pub const GRACE_PERIOD: u64 = 3600;

/// Deploys a `SigilInbox` administered by `admin` ([`GRACE_PERIOD`]) and a
/// `RecordingReceiver` that accepts only that inbox; returns `(inbox, receiver)`.
/// Errors: missing artifact, RPC failure, revert.
pub async fn deploy_inbox<P: Provider>(provider: &P, admin: Address) -> Result<(Address, Address)> {
    use alloy::sol_types::SolValue;
    let inbox = deploy(
        provider,
        artifact_bytecode("SigilInbox.sol", "SigilInbox")?,
        &(admin, alloy::primitives::U256::from(GRACE_PERIOD)).abi_encode_params(),
    )
    .await?;
    let receiver = deploy_receiver(provider, "RecordingReceiver", inbox).await?;
    Ok((inbox, receiver))
}

/// Deploys the example receiver `contract` (`RecordingReceiver`, `NoopReceiver`,
/// `GasBurnerReceiver`, `FixableReceiver`: contracts/src/examples) accepting only `inbox`.
/// Errors: missing artifact, RPC failure, revert.
pub async fn deploy_receiver<P: Provider>(
    provider: &P,
    contract: &str,
    inbox: Address,
) -> Result<Address> {
    use alloy::sol_types::SolValue;
    deploy(
        provider,
        artifact_bytecode(&format!("{contract}.sol"), contract)?,
        &inbox.abi_encode(),
    )
    .await
}

/// A provider for `anvil` that signs with its `index`-th funded dev account.
pub fn provider_for(anvil: &AnvilInstance, index: usize) -> Result<impl Provider + Clone + use<>> {
    let key = anvil
        .nth_key(index)
        .ok_or_else(|| anyhow!("anvil has no key {index}"))?;
    let signer = PrivateKeySigner::from(key.clone());
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(anvil.endpoint_url()))
}
