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

alloy::sol! {
    /// `SigilGateway` (contracts/src/SigilGateway.sol).
    #[sol(rpc)]
    contract SigilGateway {
        event MessageSent(bytes32 indexed messageId, uint64 indexed destChainId, address indexed recipient, uint64 nonce, address sender, uint64 sourceChainId, bytes payload);
        function sendMessage(uint64 destChainId, address recipient, bytes calldata payload) external returns (bytes32 messageId);
        function nextNonce() external view returns (uint64);
    }

    /// `SigilInbox` (contracts/src/SigilInbox.sol).
    #[sol(rpc)]
    contract SigilInbox {
        struct Message { uint64 sourceChainId; address sourceGateway; uint64 nonce; address sender; uint64 destChainId; address recipient; bytes payload; }
        struct Signature { uint256 rx; uint256 ry; uint256 z; }
        struct BatchRecord { uint64 epoch; uint64 height; uint64 submittedAt; }
        event BatchSubmitted(bytes32 indexed root, uint64 indexed epoch, uint64 indexed height);
        event MessageDelivered(bytes32 indexed messageId, uint64 indexed sourceChainId, address indexed recipient);
        event MessageFailed(bytes32 indexed messageId, uint64 indexed sourceChainId, address indexed recipient);
        function initialize(uint64 epoch, uint256 keyX, uint256 keyY) external;
        function submitBatch(uint64 epoch, uint64 height, bytes32 root, Signature calldata sig) external;
        function deliver(Message calldata message, bytes32[] calldata proof) external;
        function deliverBatch(Message[] calldata messages, bytes32[] calldata proof, bool[] calldata proofFlags) external;
        function statusOf(bytes32 messageId) external view returns (uint8);
        function batchOf(bytes32 root) external view returns (BatchRecord memory);
        function currentEpoch() external view returns (uint64);
    }

    /// `RecordingReceiver` (contracts/src/examples/RecordingReceiver.sol).
    #[sol(rpc)]
    contract RecordingReceiver {
        function count() external view returns (uint256);
        function timesReceived(bytes32 payloadHash) external view returns (uint256);
    }
}

/// The repository root (parent of this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
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
    Anvil::at(anvil_path()?)
        .chain_id(chain_id)
        .arg("--host")
        .arg("127.0.0.1")
        .try_spawn()
        .context("starting anvil")
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

/// A provider for `anvil` that signs with its `index`-th funded dev account.
pub fn provider_for(anvil: &AnvilInstance, index: usize) -> Result<impl Provider + Clone> {
    let key = anvil
        .nth_key(index)
        .ok_or_else(|| anyhow!("anvil has no key {index}"))?;
    let signer = PrivateKeySigner::from(key.clone());
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(anvil.endpoint_url()))
}
