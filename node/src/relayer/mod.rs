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
//! **Pipeline** (`pipeline.rs`). Heights are put in flight as soon as they are attested,
//! up to 32 at once per chain, without waiting for the receipts of earlier ones: a root's
//! `submitBatch` and its deliveries go out back to back with consecutive nonces (so they
//! can land in one block), each transaction carrying an explicit nonce kept by the chain's
//! task. One not mined within `stuck_after` is replaced with the same nonce and fees raised
//! by 25% (stuck-transaction replacement). A failure stops the sending until what is in
//! flight has settled, then the nonce is read again and the unfinished heights are sent
//! again (exponential backoff, counted). Progress and a ledger of sent transactions
//! (`relayer_txs.jsonl`) are kept in the state directory.

mod admin;
mod ledger;
mod pipeline;
mod plan;
mod relay;
mod retry;
mod tx;

pub use admin::{MAX_QUEUED_RETRIES, RetryAccepted, RetryView};
pub use ledger::TxRecord;
pub use plan::{CALL_RESERVE, call_headroom, delivery_gas, message_gas, plan_chunks, select};

use crate::api::BatchView;
use crate::config::Config;
use crate::metrics::Metrics;
use alloy::network::EthereumWallet;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256};
use anyhow::{Context, Result, anyhow, bail};
use ledger::{Ledger, RelayState, RetryEntry, read_json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tx::Dest;

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
    /// The admin API ([`admin`](self)): where it listens (loopback only) and the SHA-256 of
    /// its token ([`crate::admin::token_digest`]); `None`: no admin API.
    pub admin: Option<(std::net::SocketAddr, [u8; 32])>,
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
            admin: None,
        })
    }
}

/// Fetches `/v1/batches/{height}?attested=true` from the first API that has it attested
/// (an answer for another height is skipped as an error of that API; a node answers 404
/// `not_attested` without reading the batch while it waits for the signature).
/// `Ok(None)`: not decided or not attested yet anywhere. Errors: with a single API, its
/// failure.
pub async fn fetch_batch(
    http: &reqwest::Client,
    apis: &[String],
    height: u64,
) -> Result<Option<BatchView>> {
    let mut last_err = None;
    for api in apis {
        let url = format!(
            "{}/v1/batches/{height}?attested=true",
            api.trim_end_matches('/')
        );
        match http.get(&url).timeout(Duration::from_secs(5)).send().await {
            Ok(r) if r.status().is_success() => {
                let b: BatchView = r.json().await?;
                if b.height != height {
                    // An API answering another height than asked would move this
                    // relayer's progress past heights it never relayed.
                    last_err = Some(anyhow!("{url}: answered height {}", b.height));
                    continue;
                }
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
    /// Admin requests for this chain (`sigil relay --admin`).
    admin_rx: Option<tokio::sync::mpsc::Receiver<admin::RetryNow>>,
    /// Where this chain's retry queue is published for the admin API.
    queue_view: Option<admin::Queues>,
}

impl ChainTask {
    fn chain_id(&self) -> u64 {
        self.dest.chain.chain_id
    }
}

/// How often the relayer reads its account balance on each chain
/// (`sigil_relayer_balance_eth`).
const BALANCE_EVERY: Duration = Duration::from_secs(15);

/// Runs the relayer until `shutdown` flips to true: one task per destination chain, and
/// the admin API when configured. Errors: start-up errors (a chain configured twice, bad
/// RPC URL, unreadable state, an admin address that is not loopback or cannot be bound)
/// and state-file writes; everything else is retried.
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
    let queues: admin::Queues = Default::default();
    let mut commands = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for c in &cfg.chains {
        let (admin_tx, admin_rx) = tokio::sync::mpsc::channel(16);
        if cfg.admin.is_some() {
            commands.insert(c.chain_id, admin_tx);
        }
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
            admin_rx: cfg.admin.is_some().then_some(admin_rx),
            queue_view: cfg.admin.is_some().then(|| queues.clone()),
        };
        task.publish_queue();
        tasks.spawn(task.run(shutdown.clone()));
    }
    if let Some((addr, token_digest)) = cfg.admin {
        if !addr.ip().is_loopback() {
            bail!("--admin {addr}: the admin API listens on a loopback address only");
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--admin {addr}: cannot listen"))?;
        let router = admin::router(admin::AdminState {
            commands,
            queues,
            apis: cfg.apis.clone(),
            http: http.clone(),
            token_digest,
        });
        tracing::info!(%addr, token_file = %cfg.state_dir.join(crate::admin::TOKEN_FILE).display(), "relayer admin API listening");
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, router).with_graceful_shutdown(async move {
                while stop.changed().await.is_ok() {
                    if *stop.borrow() {
                        break;
                    }
                }
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "relayer admin API failed");
            }
        });
    }
    // The account's balance per chain, for `SigilRelayerBalanceLow` (monitoring/alerts.yml);
    // these end with `balances` when the chain tasks do.
    let mut balances = tokio::task::JoinSet::new();
    for c in &cfg.chains {
        let provider = ProviderBuilder::new().connect_http(
            c.rpc
                .parse()
                .with_context(|| format!("chain {}: bad RPC URL", c.chain_id))?,
        );
        let gauge = metrics
            .relayer
            .balance_eth
            .get_or_create(&crate::metrics::ChainLabel::new(c.chain_id))
            .clone();
        let chain = c.chain_id;
        balances.spawn(async move {
            loop {
                match provider.get_balance(from).await {
                    // f64 keeps 15–16 significant digits: plenty for an alert threshold.
                    Ok(wei) => {
                        gauge.set(f64::from(wei) / 1e18);
                    }
                    Err(e) => tracing::debug!(chain, error = %e, "relayer balance not read"),
                }
                tokio::time::sleep(BALANCE_EVERY).await;
            }
        });
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
