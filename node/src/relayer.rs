//! Relayer: carries attestations to destination inboxes (on-chain format v2, contracts/V2.md).
//!
//! **One task per destination chain**, each with its own progress (`relayer_state_<chain>.json`),
//! so a slow, failing or halted chain never stalls another. For each decided height (read
//! from one of several nodes' HTTP APIs, so it needs no committee key) a chain's task takes
//! the messages that name that chain **and the inbox configured for it** — a message naming
//! another inbox is logged and counted (`sigil_relayer_skipped_messages_total`), never sent,
//! since only the inbox it names may deliver it (any other reverts `WrongInbox`) — then
//! `submitBatch`es the root unless it is stored, and delivers the messages not yet processed
//! (`processedWord`, one call per 256 nonces of a gateway): `deliverBatch` with an OpenZeppelin
//! multiproof per chunk, or `deliver` for a single message. Everything is idempotent, so a
//! restart or a second relayer only costs the state checks.
//!
//! **Gas.** The inbox calls each recipient with exactly the message's `gasLimit` and requires
//! `gasLimit + gasLimit/63 + 1 + 30,000` gas left right before the call (EIP-150's 1/64 plus
//! `CALL_RESERVE`), or it reverts the whole transaction with `InsufficientGas`. A chunk holds
//! messages while the sum of that headroom plus a per-message overhead ([`message_gas`]) stays
//! under `max_tx_gas` and the destination's block gas limit, and each transaction's gas
//! limit is set explicitly to at least that sum ([`delivery_gas`]; or the node's estimate plus
//! 20% if larger — the estimate is also the pre-flight check).
//!
//! **Failed messages.** A recipient that reverts or runs out of its gas limit leaves its
//! message Failed (`MessageFailed`): not a relayer error. The relayer records it in the
//! ledger (`failed` of the delivering transaction's record), counts it
//! (`sigil_relayer_failed_messages_total`), and retries it on its own with `retry(message)`
//! on an exponential backoff (`retry_min` doubling up to `retry_max`; the queue survives
//! restarts in `relayer_retry_<chain>.json`). A retry the recipient refuses again reverts
//! `RecipientFailed` during gas estimation, so it costs no transaction. A Failed message never
//! holds up other messages, heights or chains.
//!
//! Transactions carry an explicit nonce; chunks of one height go out back to back
//! (consecutive nonces) before their receipts are awaited. One not mined within
//! `stuck_after` is replaced with the same nonce and fees raised by 25% (stuck-transaction
//! replacement). Failures are retried with exponential backoff and counted. Progress and a
//! ledger of sent transactions (`relayer_txs.jsonl`) are kept in the state directory.

use crate::api::{BatchView, MessageView};
use crate::config::Config;
use crate::contracts::{STATUS_FAILED, STATUS_NONE, SigilInbox};
use crate::metrics::{Metrics, RelayerMetrics};
use alloy::eips::BlockNumberOrTag;
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use alloy_primitives::{Address, B256, U256};
use anyhow::{Context, Result, anyhow, bail};
use sigil_crypto::{BatchTree, Message};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// `SigilInbox.CALL_RESERVE`: gas the inbox keeps, beyond EIP-150's 1/64, for the work
/// around a recipient call (contracts/V2.md §6).
pub const CALL_RESERVE: u64 = 30_000;
/// Per-message gas besides the recipient's own: leaf, id and bitmap hashing, the bitmap
/// write (22,100 for a fresh word), the event, a Failed message's kept leaf (22,100), loop
/// work. Generous: unused gas is refunded.
const MESSAGE_OVERHEAD: u64 = 50_000;
/// Calldata gas per byte at the EIP-7623 floor (10 per token, 4 tokens per non-zero byte).
const CALLDATA_BYTE_GAS: u64 = 40;
/// ABI bytes of one message besides its payload: nine head words, the tuple offset, the
/// payload length, and a word of padding.
const MESSAGE_ABI_BYTES: u64 = 12 * 32;
/// Per-transaction base: 21,000 intrinsic, the selector and array heads, the root lookup
/// (cold, 2,100), the multiproof set-up.
const TX_BASE_GAS: u64 = 100_000;
/// One proof hash or flag of calldata at the floor, plus its hashing.
const PROOF_WORD_GAS: u64 = 32 * CALLDATA_BYTE_GAS + 100;

/// The gas `SigilInbox` requires left right before it calls the recipient of a message with
/// `gas_limit`: `gasLimit + gasLimit/63 + 1 + CALL_RESERVE` (otherwise the transaction reverts
/// `InsufficientGas`).
pub fn call_headroom(gas_limit: u32) -> u64 {
    let g = u64::from(gas_limit);
    g + g / 63 + 1 + CALL_RESERVE
}

/// The gas budget of one message in a delivery transaction: its [`call_headroom`], a fixed
/// overhead for the inbox's own work, and its calldata at the EIP-7623 floor.
pub fn message_gas(m: &Message) -> u64 {
    call_headroom(m.gas_limit)
        + MESSAGE_OVERHEAD
        + CALLDATA_BYTE_GAS * (MESSAGE_ABI_BYTES + m.payload.len() as u64)
}

/// The explicit gas limit of a transaction delivering (or retrying) `messages` with
/// `proof_words` proof hashes and flags: a base plus every message's [`message_gas`]. At
/// each recipient call at least that message's [`call_headroom`] is left, because every
/// earlier message consumed at most its gas limit plus its overhead.
pub fn delivery_gas<'a>(
    messages: impl IntoIterator<Item = &'a Message>,
    proof_words: usize,
) -> u64 {
    TX_BASE_GAS
        + messages.into_iter().map(message_gas).sum::<u64>()
        + PROOF_WORD_GAS * proof_words as u64
}

/// Splits messages with gas budgets `gas` (in order) into consecutive chunks of at most
/// `max_count` messages whose `TX_BASE_GAS + sum(gas)` stays within `cap`; a message over
/// the cap on its own gets a chunk of its own.
pub fn plan_chunks(gas: &[u64], max_count: usize, cap: u64) -> Vec<Range<usize>> {
    let max_count = max_count.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut sum = TX_BASE_GAS;
    for (i, g) in gas.iter().enumerate() {
        if i > start && (i - start >= max_count || sum.saturating_add(*g) > cap) {
            out.push(start..i);
            start = i;
            sum = TX_BASE_GAS;
        }
        sum = sum.saturating_add(*g);
    }
    if start < gas.len() {
        out.push(start..gas.len());
    }
    out
}

/// One destination chain.
#[derive(Debug, Clone)]
pub struct RelayChain {
    /// Chain id.
    pub chain_id: u64,
    /// RPC URL.
    pub rpc: String,
    /// The `SigilInbox` this relayer delivers to on this chain: only messages naming it
    /// (`destInbox`) are relayed.
    pub inbox: Address,
}

/// Relayer settings.
#[derive(Debug, Clone)]
pub struct RelayerConfig {
    /// Node API base URLs, tried in order.
    pub apis: Vec<String>,
    /// Destination chains (one inbox each; a chain id may appear once).
    pub chains: Vec<RelayChain>,
    /// Transaction key (never a committee key).
    pub key: PrivateKeySigner,
    /// Directory for `relayer_state_<chain>.json`, `relayer_retry_<chain>.json` and
    /// `relayer_txs.jsonl`.
    pub state_dir: PathBuf,
    /// Most messages per `deliverBatch`.
    pub chunk: usize,
    /// Most gas per transaction (the destination's block gas limit bounds it too).
    pub max_tx_gas: u64,
    /// Poll period when caught up.
    pub poll: Duration,
    /// Replace a transaction not mined after this long.
    pub stuck_after: Duration,
    /// First retry of a Failed message this long after it failed; the wait doubles per
    /// attempt.
    pub retry_min: Duration,
    /// Longest wait between two retries of a Failed message.
    pub retry_max: Duration,
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
            max_tx_gas: cfg.relayer.max_tx_gas,
            poll: Duration::from_millis(500),
            stuck_after: Duration::from_secs(20),
            retry_min: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
        })
    }
}

/// Progress of one destination chain (`relayer_state_<chain>.json`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct RelayState {
    next_height: u64,
}

/// A Failed message awaiting a successful `retry` (an entry of `relayer_retry_<chain>.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetryEntry {
    /// Height of the batch that attested it.
    height: u64,
    /// The message.
    message: Message,
    /// Retries tried so far.
    attempts: u32,
    /// Next retry not before (ms since epoch).
    next_at_ms: u64,
}

/// One relayed transaction (a line of `relayer_txs.jsonl`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxRecord {
    /// Height relayed (for a retry: the height that attested the message).
    pub height: u64,
    /// Destination chain.
    pub chain_id: u64,
    /// `submitBatch`, `deliver`, `deliverBatch` or `retry`.
    pub kind: String,
    /// Transaction hash.
    pub tx: B256,
    /// Gas used.
    pub gas_used: u64,
    /// Messages it delivered (its `MessageDelivered` events).
    pub messages: usize,
    /// Ids of the messages that ended Failed in it (its `MessageFailed` events: the
    /// recipient reverted or ran out of its gas limit); each is retried later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<B256>,
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

/// The messages of `b` for destination `chain_id`: those naming `inbox` (to relay) and
/// those naming another inbox (never sent: only the inbox a message names may deliver it).
pub fn select(
    b: &BatchView,
    chain_id: u64,
    inbox: Address,
) -> (Vec<&MessageView>, Vec<&MessageView>) {
    b.messages
        .iter()
        .filter(|m| m.message.dest_chain_id == chain_id)
        .partition(|m| m.message.dest_inbox == inbox)
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

/// Sends `req` with `nonce` and gas limit `max(estimate + 20%, floor)` (the estimate is also
/// the pre-flight check: a call that would revert is never sent), EIP-1559 fees from the node.
async fn start(
    dest: &Dest,
    req: TransactionRequest,
    nonce: u64,
    floor: u64,
    metrics: &RelayerMetrics,
) -> Result<InFlight> {
    let gas = dest
        .provider
        .estimate_gas(req.clone().from(dest.from))
        .await
        .context("estimating gas (the call would revert)")?;
    launch(dest, req, nonce, (gas + gas / 5).max(floor), metrics).await
}

/// Sends `req` with `nonce` and exactly `gas`, EIP-1559 fees from the node.
async fn launch(
    dest: &Dest,
    req: TransactionRequest,
    nonce: u64,
    gas: u64,
    metrics: &RelayerMetrics,
) -> Result<InFlight> {
    let fees = dest.provider.estimate_eip1559_fees().await?;
    let mut f = InFlight {
        req,
        nonce,
        gas,
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

/// Sends `req` with the next nonce and exactly `gas`, and waits for it (see [`finish`]).
async fn send_with_gas(
    dest: &Dest,
    req: TransactionRequest,
    gas: u64,
    stuck_after: Duration,
    metrics: &RelayerMetrics,
) -> Result<TransactionReceipt> {
    let nonce = dest
        .provider
        .get_transaction_count(dest.from)
        .pending()
        .await?;
    let f = launch(dest, req, nonce, gas, metrics).await?;
    finish(dest, f, stuck_after, metrics).await
}

/// The ids of the messages `r` delivered and of those that ended Failed, from the inbox's
/// `MessageDelivered` / `MessageFailed` logs.
fn delivery_events(inbox: Address, r: &TransactionReceipt) -> (Vec<B256>, Vec<B256>) {
    let mut delivered = Vec::new();
    let mut failed = Vec::new();
    for l in r.inner.logs() {
        if l.address() != inbox {
            continue;
        }
        match l.topic0() {
            Some(t) if *t == SigilInbox::MessageDelivered::SIGNATURE_HASH => {
                if let Ok(ev) = l.log_decode::<SigilInbox::MessageDelivered>() {
                    delivered.push(ev.inner.data.messageId);
                }
            }
            Some(t) if *t == SigilInbox::MessageFailed::SIGNATURE_HASH => {
                if let Ok(ev) = l.log_decode::<SigilInbox::MessageFailed>() {
                    failed.push(ev.inner.data.messageId);
                }
            }
            _ => {}
        }
    }
    (delivered, failed)
}

/// Appends records to `relayer_txs.jsonl`; one writer at a time (the chain tasks share it).
struct Ledger {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Ledger {
    fn append(&self, recs: &[TxRecord]) -> Result<()> {
        use std::io::Write;
        if recs.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for r in recs {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        let _guard = self
            .lock
            .lock()
            .map_err(|_| anyhow!("relayer ledger lock poisoned"))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        f.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// What one attempt at a height did (kept even when the attempt fails half-way).
#[derive(Default)]
struct HeightOutcome {
    /// Transactions mined.
    records: Vec<TxRecord>,
    /// Messages found Failed (by this attempt's transactions or already on-chain).
    failed: Vec<Message>,
}

/// The result of one retry.
enum RetryOutcome {
    /// `retry` delivered it.
    Delivered(TxRecord),
    /// No longer Failed (someone else's retry delivered it, or it is unknown): `statusOf`.
    Gone(u8),
    /// Still Failed; why.
    StillFailing(String),
}

/// One destination chain's relayer.
struct ChainTask {
    dest: Dest,
    apis: Vec<String>,
    http: reqwest::Client,
    chunk: usize,
    max_tx_gas: u64,
    poll: Duration,
    stuck_after: Duration,
    retry_min: Duration,
    retry_max: Duration,
    state_path: PathBuf,
    retry_path: PathBuf,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    state: RelayState,
    retries: BTreeMap<B256, RetryEntry>,
    /// The last height whose foreign-inbox messages were counted (counted once per height).
    skipped_counted: u64,
}

impl ChainTask {
    fn chain_id(&self) -> u64 {
        self.dest.chain.chain_id
    }

    fn save_state(&self) -> Result<()> {
        std::fs::write(&self.state_path, serde_json::to_string(&self.state)?)
            .with_context(|| format!("writing {}", self.state_path.display()))
    }

    fn save_retries(&self) -> Result<()> {
        let list: Vec<&RetryEntry> = self.retries.values().collect();
        std::fs::write(&self.retry_path, serde_json::to_string_pretty(&list)?)
            .with_context(|| format!("writing {}", self.retry_path.display()))
    }

    fn retry_delay(&self, attempts: u32) -> Duration {
        self.retry_min
            .saturating_mul(1u32 << attempts.min(20))
            .min(self.retry_max)
    }

    /// Queues a Failed message for `retry` (once). Returns whether it was new.
    fn enqueue(&mut self, height: u64, message: Message) -> bool {
        let id = message.id();
        if self.retries.contains_key(&id) {
            return false;
        }
        self.retries.insert(
            id,
            RetryEntry {
                height,
                message,
                attempts: 0,
                next_at_ms: crate::now_ms() + self.retry_min.as_millis() as u64,
            },
        );
        self.metrics.relayer.retry_pending.inc();
        true
    }

    /// The gas cap of one transaction: `max_tx_gas`, and at most the block gas limit.
    async fn gas_cap(&self) -> Result<u64> {
        let block = self
            .dest
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await?;
        Ok(match block {
            Some(b) => self.max_tx_gas.min(b.header.gas_limit),
            None => self.max_tx_gas,
        })
    }

    /// Statuses (`statusOf`: 0 None, 1 Delivered, 2 Failed) of `mine` on the inbox: one
    /// `processedWord` per 256 nonces of a gateway, and `statusOf` only for processed ones.
    async fn statuses(&self, mine: &[&MessageView]) -> Result<Vec<u8>> {
        let inbox = SigilInbox::new(self.dest.chain.inbox, self.dest.provider.clone());
        let mut words: HashMap<(u64, Address, u64), U256> = HashMap::new();
        let mut out = Vec::with_capacity(mine.len());
        for m in mine {
            let msg = &m.message;
            let key = (msg.source_chain_id, msg.source_gateway, msg.nonce >> 8);
            let word = match words.get(&key) {
                Some(w) => *w,
                None => {
                    let w = inbox.processedWord(key.0, key.1, key.2).call().await?;
                    words.insert(key, w);
                    w
                }
            };
            if word.bit((msg.nonce & 0xff) as usize) {
                out.push(
                    inbox
                        .statusOf(msg.source_chain_id, msg.source_gateway, msg.nonce)
                        .call()
                        .await?,
                );
            } else {
                out.push(STATUS_NONE);
            }
        }
        Ok(out)
    }

    /// Relays height `b` to this chain: submit the root if needed, deliver what is not
    /// processed yet. What was done is left in `out` even when it errors half-way
    /// (the caller retries; everything already done is skipped).
    async fn relay_height(&self, b: &BatchView, out: &mut HeightOutcome) -> Result<()> {
        let (mine, _) = select(b, self.chain_id(), self.dest.chain.inbox);
        if mine.is_empty() {
            return Ok(());
        }
        let sig = b
            .signature
            .clone()
            .ok_or_else(|| anyhow!("batch {} not attested", b.height))?;
        let statuses = self.statuses(&mine).await?;
        let mut todo = Vec::new();
        for (m, st) in mine.iter().zip(statuses) {
            match st {
                STATUS_NONE => todo.push(*m),
                STATUS_FAILED => out.failed.push(m.message.clone()),
                _ => {}
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let metrics = &self.metrics.relayer;
        let inbox_addr = self.dest.chain.inbox;
        let inbox = SigilInbox::new(inbox_addr, self.dest.provider.clone());
        let rec =
            |kind: &str, r: &TransactionReceipt, messages: usize, failed: Vec<B256>| TxRecord {
                height: b.height,
                chain_id: self.chain_id(),
                kind: kind.into(),
                tx: r.transaction_hash,
                gas_used: r.gas_used,
                messages,
                failed,
                at_ms: crate::now_ms(),
            };
        let record = inbox.batchOf(b.root).call().await?;
        if record.submittedAt == 0 {
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
            let nonce = self
                .dest
                .provider
                .get_transaction_count(self.dest.from)
                .pending()
                .await?;
            let f = start(&self.dest, req, nonce, 0, metrics).await?;
            let r = finish(&self.dest, f, self.stuck_after, metrics).await?;
            out.records.push(rec("submitBatch", &r, 0, Vec::new()));
        }
        let leaves: Vec<B256> = b.messages.iter().map(|m| m.leaf).collect();
        let tree = BatchTree::new(&leaves)?;
        let cap = self.gas_cap().await?;
        let gas: Vec<u64> = todo.iter().map(|m| message_gas(&m.message)).collect();
        let mut groups: VecDeque<Vec<&MessageView>> = plan_chunks(&gas, self.chunk, cap)
            .into_iter()
            .map(|r| todo[r].to_vec())
            .collect();
        // Every chunk goes out back to back (consecutive nonces), then the receipts are
        // awaited: one block for all of them instead of one block each.
        let mut nonce = self
            .dest
            .provider
            .get_transaction_count(self.dest.from)
            .pending()
            .await?;
        let mut inflight = Vec::new();
        let mut send_err = None;
        while let Some(group) = groups.pop_front() {
            let (kind, req, floor) = if let [m] = group.as_slice() {
                let proof = tree.proof(&m.leaf)?;
                let floor = delivery_gas([&m.message], proof.len());
                let req = inbox
                    .deliver((&m.message).into(), proof)
                    .into_transaction_request();
                ("deliver", req, floor)
            } else {
                let want: Vec<B256> = group.iter().map(|m| m.leaf).collect();
                let mp = tree.multiproof(&want)?;
                let floor = delivery_gas(
                    group.iter().map(|m| &m.message),
                    mp.proof.len() + mp.proof_flags.len(),
                );
                if floor > cap {
                    // The proof made it too large: halve it.
                    let (a, rest) = group.split_at(group.len() / 2);
                    groups.push_front(rest.to_vec());
                    groups.push_front(a.to_vec());
                    continue;
                }
                let ordered: Vec<SigilInbox::Message> = mp
                    .leaves
                    .iter()
                    .filter_map(|l| group.iter().find(|m| m.leaf == *l))
                    .map(|m| (&m.message).into())
                    .collect();
                let req = inbox
                    .deliverBatch(ordered, mp.proof.clone(), mp.proof_flags.clone())
                    .into_transaction_request();
                ("deliverBatch", req, floor)
            };
            match start(&self.dest, req, nonce, floor, metrics).await {
                Ok(f) => {
                    inflight.push((kind, group, f));
                    nonce += 1;
                }
                Err(e) => {
                    // Nothing was sent for this chunk: stop here (nonces stay gap-free),
                    // collect what is in flight, and retry the height.
                    send_err = Some(e.context(format!("{kind} of {} messages", group.len())));
                    break;
                }
            }
        }
        let mut finish_err = None;
        for (kind, group, f) in inflight {
            match finish(&self.dest, f, self.stuck_after, metrics).await {
                Ok(r) => {
                    let (delivered, failed) = delivery_events(inbox_addr, &r);
                    metrics.delivered.inc_by(delivered.len() as u64);
                    metrics.failed_messages.inc_by(failed.len() as u64);
                    for id in &failed {
                        if let Some(m) = group.iter().find(|m| m.id == *id) {
                            tracing::warn!(
                                height = b.height,
                                chain = self.chain_id(),
                                id = %id,
                                recipient = %m.message.recipient,
                                gas_limit = m.message.gas_limit,
                                "message Failed at its recipient (reverted or out of its gas limit); queued for retry"
                            );
                            out.failed.push(m.message.clone());
                        }
                    }
                    tracing::debug!(height = b.height, chain = self.chain_id(), tx = %r.transaction_hash, delivered = delivered.len(), failed = failed.len(), "delivered");
                    out.records.push(rec(kind, &r, delivered.len(), failed));
                }
                Err(e) => {
                    if finish_err.is_none() {
                        finish_err = Some(e);
                    }
                }
            }
        }
        match send_err.or(finish_err) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One `retry` of a Failed message.
    async fn retry_one(&self, e: &RetryEntry) -> RetryOutcome {
        let m = &e.message;
        let metrics = &self.metrics.relayer;
        let inbox = SigilInbox::new(self.dest.chain.inbox, self.dest.provider.clone());
        let status = match inbox
            .statusOf(m.source_chain_id, m.source_gateway, m.nonce)
            .call()
            .await
        {
            Ok(s) => s,
            Err(err) => return RetryOutcome::StillFailing(format!("statusOf: {err}")),
        };
        if status != STATUS_FAILED {
            return RetryOutcome::Gone(status);
        }
        let req = inbox.retry(m.into()).into_transaction_request();
        // The estimate runs the recipient: if it fails again the call reverts
        // RecipientFailed and no transaction is sent (not a relayer error).
        let est = match self
            .dest
            .provider
            .estimate_gas(req.clone().from(self.dest.from))
            .await
        {
            Ok(g) => g,
            Err(err) => {
                let refused = err
                    .as_error_resp()
                    .and_then(|p| p.as_decoded_error::<SigilInbox::RecipientFailed>())
                    .is_some();
                return RetryOutcome::StillFailing(if refused {
                    "the recipient failed again (RecipientFailed)".into()
                } else {
                    format!("estimating retry: {err}")
                });
            }
        };
        let gas = (est + est / 5).max(delivery_gas([m], 0));
        match send_with_gas(&self.dest, req, gas, self.stuck_after, metrics).await {
            Ok(r) => {
                let (delivered, _) = delivery_events(self.dest.chain.inbox, &r);
                if delivered.contains(&m.id()) {
                    RetryOutcome::Delivered(TxRecord {
                        height: e.height,
                        chain_id: self.chain_id(),
                        kind: "retry".into(),
                        tx: r.transaction_hash,
                        gas_used: r.gas_used,
                        messages: 1,
                        failed: Vec::new(),
                        at_ms: crate::now_ms(),
                    })
                } else {
                    RetryOutcome::StillFailing(format!(
                        "retry {} mined without MessageDelivered",
                        r.transaction_hash
                    ))
                }
            }
            Err(err) => RetryOutcome::StillFailing(format!("retry transaction: {err:#}")),
        }
    }

    /// Retries every queued Failed message whose time has come, each on its own.
    async fn retry_due(&mut self) -> Result<()> {
        let now = crate::now_ms();
        let due: Vec<B256> = self
            .retries
            .iter()
            .filter(|(_, e)| e.next_at_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        for id in due {
            let Some(entry) = self.retries.get(&id).cloned() else {
                continue;
            };
            match self.retry_one(&entry).await {
                RetryOutcome::Delivered(rec) => {
                    tracing::info!(chain = self.chain_id(), id = %id, tx = %rec.tx, attempts = entry.attempts + 1, "Failed message delivered by retry");
                    self.ledger.append(std::slice::from_ref(&rec))?;
                    self.retries.remove(&id);
                    let m = &self.metrics.relayer;
                    m.retry_pending.dec();
                    m.retried.inc();
                    m.delivered.inc();
                }
                RetryOutcome::Gone(status) => {
                    tracing::info!(chain = self.chain_id(), id = %id, status, "message no longer Failed; dropped from the retry queue");
                    self.retries.remove(&id);
                    self.metrics.relayer.retry_pending.dec();
                }
                RetryOutcome::StillFailing(why) => {
                    let attempts = entry.attempts.saturating_add(1);
                    let wait = self.retry_delay(attempts);
                    tracing::info!(chain = self.chain_id(), id = %id, attempts, next_in = ?wait, reason = %why, "retry did not deliver; backing off");
                    if let Some(e) = self.retries.get_mut(&id) {
                        e.attempts = attempts;
                        e.next_at_ms = crate::now_ms() + wait.as_millis() as u64;
                    }
                }
            }
        }
        self.save_retries()
    }

    /// Counts and logs the messages of `b` that name this chain but another inbox (once
    /// per height).
    fn count_foreign(&mut self, b: &BatchView) {
        if self.skipped_counted >= b.height {
            return;
        }
        self.skipped_counted = b.height;
        let (_, foreign) = select(b, self.chain_id(), self.dest.chain.inbox);
        for m in &foreign {
            tracing::warn!(
                height = b.height,
                chain = self.chain_id(),
                id = %m.id,
                dest_inbox = %m.message.dest_inbox,
                configured_inbox = %self.dest.chain.inbox,
                "message names another inbox on this chain; not relayed"
            );
        }
        self.metrics.relayer.skipped.inc_by(foreign.len() as u64);
    }

    /// Runs until `shutdown` flips to true. Errors: only state-file writes.
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        tracing::info!(
            chain = self.chain_id(),
            inbox = %self.dest.chain.inbox,
            next_height = self.state.next_height,
            queued_retries = self.retries.len(),
            "relaying to chain"
        );
        let mut backoff = Duration::from_millis(250);
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            self.retry_due().await?;
            let batch = match fetch_batch(&self.http, &self.apis, self.state.next_height).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.poll) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(chain = self.chain_id(), error = %e, "fetching batch failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            self.count_foreign(&batch);
            let mut out = HeightOutcome::default();
            let result = self.relay_height(&batch, &mut out).await;
            self.ledger.append(&out.records)?;
            let mut queued = false;
            for m in out.failed {
                queued |= self.enqueue(batch.height, m);
            }
            if queued {
                self.save_retries()?;
            }
            match result {
                Ok(()) => {
                    backoff = Duration::from_millis(250);
                    self.state.next_height += 1;
                    self.save_state()?;
                }
                Err(e) => {
                    self.metrics.relayer.failed.inc();
                    tracing::warn!(height = batch.height, chain = self.chain_id(), error = %format!("{e:#}"), "relaying failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// Reads a JSON file, `None` when it does not exist. Errors: unreadable or malformed.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(
            serde_json::from_str(&s).with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("reading {}: {e}", path.display())),
    }
}

/// Runs the relayer until `shutdown` flips to true: one task per destination chain.
/// Errors: start-up errors (a chain configured twice, bad RPC URL, unreadable state) and
/// state-file writes; everything else is retried.
pub async fn run(
    cfg: RelayerConfig,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut ids = BTreeSet::new();
    for c in &cfg.chains {
        if !ids.insert(c.chain_id) {
            bail!(
                "destination chain {} is configured twice; a relayer delivers to one inbox per chain",
                c.chain_id
            );
        }
    }
    let from = cfg.key.address();
    let wallet = EthereumWallet::from(cfg.key.clone());
    let ledger = Arc::new(Ledger {
        path: cfg.state_dir.join("relayer_txs.jsonl"),
        lock: Mutex::new(()),
    });
    // Before per-chain progress there was one height for every chain.
    let legacy: Option<RelayState> = read_json(&cfg.state_dir.join("relayer_state.json"))?;
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for c in &cfg.chains {
        let state_path = cfg
            .state_dir
            .join(format!("relayer_state_{}.json", c.chain_id));
        let retry_path = cfg
            .state_dir
            .join(format!("relayer_retry_{}.json", c.chain_id));
        let state = match read_json::<RelayState>(&state_path)? {
            Some(s) => s,
            None => RelayState {
                next_height: legacy.as_ref().map_or(1, |l| l.next_height.max(1)),
            },
        };
        let retries: BTreeMap<B256, RetryEntry> = read_json::<Vec<RetryEntry>>(&retry_path)?
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.message.id(), e))
            .collect();
        metrics.relayer.retry_pending.inc_by(retries.len() as i64);
        let task = ChainTask {
            dest: Dest {
                chain: c.clone(),
                provider: ProviderBuilder::new()
                    .wallet(wallet.clone())
                    .connect_http(
                        c.rpc
                            .parse()
                            .with_context(|| format!("chain {}: bad RPC URL", c.chain_id))?,
                    )
                    .erased(),
                from,
            },
            apis: cfg.apis.clone(),
            http: http.clone(),
            chunk: cfg.chunk,
            max_tx_gas: cfg.max_tx_gas,
            poll: cfg.poll,
            stuck_after: cfg.stuck_after,
            retry_min: cfg.retry_min,
            retry_max: cfg.retry_max,
            state_path,
            retry_path,
            ledger: ledger.clone(),
            metrics: metrics.clone(),
            state,
            retries,
            skipped_counted: 0,
        };
        tasks.spawn(task.run(shutdown.clone()));
    }
    tracing::info!(relayer = %from, chains = cfg.chains.len(), "relayer started");
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(anyhow!("relayer chain task panicked: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Bytes;

    fn msg(gas_limit: u32, payload: usize) -> Message {
        Message {
            source_chain_id: 1,
            source_gateway: Address::repeat_byte(1),
            nonce: 0,
            sender: Address::repeat_byte(2),
            dest_chain_id: 2,
            dest_inbox: Address::repeat_byte(3),
            recipient: Address::repeat_byte(4),
            gas_limit,
            payload: Bytes::from(vec![7u8; payload]),
        }
    }

    #[test]
    fn headroom_is_the_inbox_rule() {
        // gasLimit + gasLimit/63 + 1 + CALL_RESERVE, as SigilInbox._callRecipient checks.
        assert_eq!(call_headroom(200_000), 200_000 + 3_174 + 1 + 30_000);
        assert_eq!(call_headroom(5_000_000), 5_000_000 + 79_365 + 1 + 30_000);
        let m = msg(200_000, 32);
        assert!(message_gas(&m) > call_headroom(200_000) + 16 * (32 + 32 * 9));
        assert_eq!(
            delivery_gas([&m, &m], 3),
            TX_BASE_GAS + 2 * message_gas(&m) + 3 * PROOF_WORD_GAS
        );
    }

    #[test]
    fn chunks_respect_count_and_gas_cap() {
        let g = message_gas(&msg(200_000, 32));
        // By count.
        assert_eq!(plan_chunks(&[g; 5], 2, u64::MAX), vec![0..2, 2..4, 4..5]);
        // By gas: three fit under the cap, the fourth starts a new chunk.
        let cap = TX_BASE_GAS + 3 * g;
        assert_eq!(plan_chunks(&[g; 7], 64, cap), vec![0..3, 3..6, 6..7]);
        // A message over the cap alone still gets a chunk of its own.
        let big = message_gas(&msg(5_000_000, 32));
        assert_eq!(
            plan_chunks(&[g, big, g], 64, TX_BASE_GAS + big - 1),
            vec![0..1, 1..2, 2..3]
        );
        assert!(plan_chunks(&[], 64, cap).is_empty());
        // Every chunk's budget stays under the cap (when each message fits alone).
        let mixed: Vec<u64> = (0..100u32)
            .map(|i| message_gas(&msg(10_000 + (i % 9) * 400_000, (i as usize) * 37 % 3000)))
            .collect();
        let cap = 25_000_000;
        let chunks = plan_chunks(&mixed, 64, cap);
        assert_eq!(chunks.iter().map(|r| r.len()).sum::<usize>(), 100);
        for r in chunks {
            assert!(r.len() <= 64);
            assert!(TX_BASE_GAS + mixed[r].iter().sum::<u64>() <= cap);
        }
    }

    #[test]
    fn select_keeps_only_the_configured_inbox() {
        let mut views = Vec::new();
        for (i, (chain, inbox)) in [(2u64, 3u8), (2, 9), (5, 3), (2, 3)].iter().enumerate() {
            let mut m = msg(200_000, 1);
            m.nonce = i as u64;
            m.dest_chain_id = *chain;
            m.dest_inbox = Address::repeat_byte(*inbox);
            views.push(MessageView {
                id: m.id(),
                leaf: m.leaf(),
                message: m,
            });
        }
        let b = BatchView {
            epoch: 1,
            height: 1,
            root: B256::ZERO,
            count: 4,
            signature: None,
            messages: views,
            time_ms: 0,
        };
        let (mine, foreign) = select(&b, 2, Address::repeat_byte(3));
        assert_eq!(
            mine.iter().map(|m| m.message.nonce).collect::<Vec<_>>(),
            [0, 3]
        );
        assert_eq!(
            foreign.iter().map(|m| m.message.nonce).collect::<Vec<_>>(),
            [1]
        );
    }
}
