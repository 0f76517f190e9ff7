//! Relayer: carries attestations to destination inboxes. For each decided height (read from
//! one of several nodes' HTTP APIs, so it needs no committee key) and each configured
//! destination chain with messages in it: `submitBatch` unless the root is already stored,
//! then deliver the messages not yet processed — `deliverBatch` with an OpenZeppelin
//! multiproof per chunk, or `deliver` for a single message. Everything is idempotent, so a
//! restart or a second relayer only costs the state check.
//!
//! Transactions carry an explicit nonce; one not mined within `stuck_after` is replaced with
//! the same nonce and fees raised by 25% (stuck-transaction replacement). Failures are
//! retried with exponential backoff and counted. Progress (`next_height`) and a ledger of
//! sent transactions are kept in the state directory and survive restarts.

use crate::api::BatchView;
use crate::config::Config;
use crate::contracts::SigilInbox;
use crate::metrics::{Metrics, RelayerMetrics};
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256};
use anyhow::{Context, Result, anyhow};
use sigil_crypto::BatchTree;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One destination chain.
#[derive(Debug, Clone)]
pub struct RelayChain {
    /// Chain id.
    pub chain_id: u64,
    /// RPC URL.
    pub rpc: String,
    /// `SigilInbox` address.
    pub inbox: Address,
}

/// Relayer settings.
#[derive(Debug, Clone)]
pub struct RelayerConfig {
    /// Node API base URLs, tried in order.
    pub apis: Vec<String>,
    /// Destination chains.
    pub chains: Vec<RelayChain>,
    /// Transaction key (never a committee key).
    pub key: PrivateKeySigner,
    /// Directory for `relayer_state.json` and `relayer_txs.jsonl`.
    pub state_dir: PathBuf,
    /// Messages per `deliverBatch`.
    pub chunk: usize,
    /// Poll period when caught up.
    pub poll: Duration,
    /// Replace a transaction not mined after this long.
    pub stuck_after: Duration,
}

impl RelayerConfig {
    /// The in-node relayer of `cfg` (reads the node's own API). Errors: no relayer key.
    pub fn from_node(cfg: &Config, home: &Path) -> Result<Self> {
        let key_hex = if cfg.relayer.key.is_empty() {
            std::fs::read_to_string(home.join("relayer.key")).context(
                "config field `relayer.key` is empty and <home>/relayer.key is missing; set one",
            )?
        } else {
            cfg.relayer.key.clone()
        };
        let key: PrivateKeySigner = key_hex
            .trim()
            .parse()
            .map_err(|_| anyhow!("config field `relayer.key`: not a hex secp256k1 secret"))?;
        Ok(Self {
            apis: vec![format!("http://{}", cfg.node.api)],
            chains: cfg
                .chains
                .iter()
                .map(|c| RelayChain {
                    chain_id: c.chain_id,
                    rpc: c.rpc.first().cloned().unwrap_or_default(),
                    inbox: c.inbox,
                })
                .collect(),
            key,
            state_dir: home.to_owned(),
            chunk: cfg.relayer.chunk,
            poll: Duration::from_millis(500),
            stuck_after: Duration::from_secs(20),
        })
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct RelayState {
    next_height: u64,
}

/// One relayed transaction (a line of `relayer_txs.jsonl`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxRecord {
    /// Height relayed.
    pub height: u64,
    /// Destination chain.
    pub chain_id: u64,
    /// `submitBatch`, `deliver` or `deliverBatch`.
    pub kind: String,
    /// Transaction hash.
    pub tx: B256,
    /// Gas used.
    pub gas_used: u64,
    /// Messages delivered by it.
    pub messages: usize,
    /// When mined (ms since epoch).
    pub at_ms: u64,
}

/// Fetches `/v1/batches/{height}` from the first API that has it attested.
/// `Ok(None)`: not decided or not attested yet anywhere.
pub async fn fetch_batch(
    http: &reqwest::Client,
    apis: &[String],
    height: u64,
) -> Result<Option<BatchView>> {
    let mut last_err = None;
    for api in apis {
        let url = format!("{}/v1/batches/{height}", api.trim_end_matches('/'));
        match http.get(&url).timeout(Duration::from_secs(5)).send().await {
            Ok(r) if r.status().is_success() => {
                let b: BatchView = r.json().await?;
                if b.signature.is_some() {
                    return Ok(Some(b));
                }
            }
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {}
            Ok(r) => last_err = Some(anyhow!("{url}: HTTP {}", r.status())),
            Err(e) => last_err = Some(anyhow!("{url}: {e}")),
        }
    }
    match last_err {
        Some(e) if apis.len() == 1 => Err(e),
        _ => Ok(None),
    }
}

struct Dest {
    chain: RelayChain,
    provider: DynProvider,
    from: Address,
}

/// A sent transaction awaiting its receipt.
struct InFlight {
    req: TransactionRequest,
    nonce: u64,
    gas: u64,
    max_fee: u128,
    tip: u128,
    hash: B256,
}

/// Sends `req` with `nonce` (gas estimated, EIP-1559 fees from the node).
async fn start(
    dest: &Dest,
    req: TransactionRequest,
    nonce: u64,
    metrics: &RelayerMetrics,
) -> Result<InFlight> {
    let fees = dest.provider.estimate_eip1559_fees().await?;
    let gas = dest
        .provider
        .estimate_gas(req.clone().from(dest.from))
        .await?;
    let mut f = InFlight {
        req,
        nonce,
        gas: gas + gas / 5,
        max_fee: fees.max_fee_per_gas,
        tip: fees.max_priority_fee_per_gas,
        hash: B256::ZERO,
    };
    resend(dest, &mut f, metrics).await?;
    Ok(f)
}

async fn resend(dest: &Dest, f: &mut InFlight, metrics: &RelayerMetrics) -> Result<()> {
    let tx = f
        .req
        .clone()
        .from(dest.from)
        .with_nonce(f.nonce)
        .with_gas_limit(f.gas)
        .with_max_fee_per_gas(f.max_fee)
        .with_max_priority_fee_per_gas(f.tip);
    let pending = dest.provider.send_transaction(tx).await?;
    f.hash = *pending.tx_hash();
    metrics.pending.inc();
    Ok(())
}

/// Waits for `f`'s receipt; a transaction not mined within `stuck_after` is replaced with
/// the same nonce and fees raised by 25% (up to 6 times); a receipt of any of its versions
/// ends the wait. Errors: reverted, or still not mined after the bumps.
async fn finish(
    dest: &Dest,
    mut f: InFlight,
    stuck_after: Duration,
    metrics: &RelayerMetrics,
) -> Result<TransactionReceipt> {
    let mut hashes = vec![f.hash];
    for bump in 0..=6 {
        let deadline = tokio::time::Instant::now() + stuck_after;
        while tokio::time::Instant::now() < deadline {
            for h in &hashes {
                if let Some(r) = dest.provider.get_transaction_receipt(*h).await? {
                    metrics.pending.dec();
                    metrics.gas.inc_by(r.gas_used);
                    if !r.status() {
                        metrics.failed.inc();
                        return Err(anyhow!("transaction {} reverted", r.transaction_hash));
                    }
                    return Ok(r);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if bump == 6 {
            break;
        }
        tracing::warn!(
            chain = dest.chain.chain_id,
            nonce = f.nonce,
            "transaction not mined in time; replacing with higher fees"
        );
        f.max_fee += f.max_fee / 4 + 1;
        f.tip += f.tip / 4 + 1;
        metrics.pending.dec();
        metrics.replaced.inc();
        resend(dest, &mut f, metrics).await?;
        hashes.push(f.hash);
    }
    Err(anyhow!(
        "transaction with nonce {} still not mined after 6 fee bumps",
        f.nonce
    ))
}

/// Sends one transaction and waits for it (see [`finish`]).
async fn send(
    dest: &Dest,
    req: TransactionRequest,
    stuck_after: Duration,
    metrics: &RelayerMetrics,
) -> Result<TransactionReceipt> {
    let nonce = dest
        .provider
        .get_transaction_count(dest.from)
        .pending()
        .await?;
    let f = start(dest, req, nonce, metrics).await?;
    finish(dest, f, stuck_after, metrics).await
}

/// Relays one attested batch to one destination chain. Returns the transactions sent.
/// Errors: RPC or revert (the caller retries; everything already done is skipped).
async fn relay_to(
    dest: &Dest,
    b: &BatchView,
    chunk: usize,
    stuck_after: Duration,
    metrics: &RelayerMetrics,
) -> Result<Vec<TxRecord>> {
    let mine: Vec<_> = b
        .messages
        .iter()
        .filter(|m| m.message.dest_chain_id == dest.chain.chain_id)
        .collect();
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let sig = b
        .signature
        .clone()
        .ok_or_else(|| anyhow!("batch {} not attested", b.height))?;
    let inbox = SigilInbox::new(dest.chain.inbox, dest.provider.clone());
    let mut out = Vec::new();
    let rec = |kind: &str, r: &TransactionReceipt, messages: usize| TxRecord {
        height: b.height,
        chain_id: dest.chain.chain_id,
        kind: kind.into(),
        tx: r.transaction_hash,
        gas_used: r.gas_used,
        messages,
        at_ms: crate::now_ms(),
    };
    let record = inbox.batchOf(b.root).call().await?;
    if record.height == 0 {
        let req = inbox
            .submitBatch(
                b.epoch,
                b.height,
                b.root,
                SigilInbox::Signature {
                    rx: sig.rx,
                    ry: sig.ry,
                    z: sig.z,
                },
            )
            .into_transaction_request();
        let r = send(dest, req, stuck_after, metrics).await?;
        out.push(rec("submitBatch", &r, 0));
    }
    let leaves: Vec<B256> = b.messages.iter().map(|m| m.leaf).collect();
    let tree = BatchTree::new(&leaves)?;
    // Every chunk goes out back to back (consecutive nonces), then the receipts are awaited:
    // one block for all of them instead of one block each.
    let mut nonce = dest
        .provider
        .get_transaction_count(dest.from)
        .pending()
        .await?;
    let mut inflight = Vec::new();
    for group in mine.chunks(chunk.max(1)) {
        let mut todo = Vec::new();
        for m in group {
            if inbox.statusOf(m.id).call().await? == 0 {
                todo.push(*m);
            }
        }
        if todo.is_empty() {
            continue;
        }
        let (kind, req) = if todo.len() == 1 {
            let m = todo[0];
            let proof = tree.proof(&m.leaf)?;
            (
                "deliver",
                inbox
                    .deliver((&m.message).into(), proof)
                    .into_transaction_request(),
            )
        } else {
            let want: Vec<B256> = todo.iter().map(|m| m.leaf).collect();
            let mp = tree.multiproof(&want)?;
            let ordered: Vec<SigilInbox::Message> = mp
                .leaves
                .iter()
                .filter_map(|l| todo.iter().find(|m| m.leaf == *l))
                .map(|m| (&m.message).into())
                .collect();
            (
                "deliverBatch",
                inbox
                    .deliverBatch(ordered, mp.proof.clone(), mp.proof_flags.clone())
                    .into_transaction_request(),
            )
        };
        inflight.push((kind, todo.len(), start(dest, req, nonce, metrics).await?));
        nonce += 1;
    }
    for (kind, count, f) in inflight {
        let r = finish(dest, f, stuck_after, metrics).await?;
        out.push(rec(kind, &r, count));
        metrics.delivered.inc_by(count as u64);
        tracing::debug!(height = b.height, chain = dest.chain.chain_id, tx = %r.transaction_hash, "delivered");
    }
    Ok(out)
}

/// Runs the relayer until `shutdown` flips to true.
/// Errors: only start-up errors (bad RPC URL, unreadable state); everything later is retried.
pub async fn run(
    cfg: RelayerConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let state_path = cfg.state_dir.join("relayer_state.json");
    let txs_path = cfg.state_dir.join("relayer_txs.jsonl");
    let mut state: RelayState = match std::fs::read_to_string(&state_path) {
        Ok(s) => {
            serde_json::from_str(&s).with_context(|| format!("parsing {}", state_path.display()))?
        }
        Err(_) => RelayState { next_height: 1 },
    };
    let from = cfg.key.address();
    let wallet = EthereumWallet::from(cfg.key.clone());
    let dests: Vec<Dest> = cfg
        .chains
        .iter()
        .map(|c| {
            Ok(Dest {
                chain: c.clone(),
                provider: ProviderBuilder::new()
                    .wallet(wallet.clone())
                    .connect_http(c.rpc.parse()?)
                    .erased(),
                from,
            })
        })
        .collect::<Result<_>>()?;
    let http = reqwest::Client::new();
    tracing::info!(relayer = %from, next_height = state.next_height, "relayer started");
    let mut backoff = Duration::from_millis(250);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let batch = match fetch_batch(&http, &cfg.apis, state.next_height).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                tokio::select! {
                    _ = tokio::time::sleep(cfg.poll) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching batch failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let mut ok = true;
        for d in &dests {
            match relay_to(d, &batch, cfg.chunk, cfg.stuck_after, &metrics.relayer).await {
                Ok(recs) => {
                    if !recs.is_empty() {
                        use std::io::Write;
                        let mut f = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&txs_path)?;
                        for r in recs {
                            writeln!(f, "{}", serde_json::to_string(&r)?)?;
                        }
                    }
                }
                Err(e) => {
                    ok = false;
                    metrics.relayer.failed.inc();
                    tracing::warn!(height = batch.height, chain = d.chain.chain_id, error = %e, "relaying failed; retrying");
                }
            }
        }
        if ok {
            backoff = Duration::from_millis(250);
            state.next_height += 1;
            std::fs::write(&state_path, serde_json::to_string(&state)?)?;
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}
