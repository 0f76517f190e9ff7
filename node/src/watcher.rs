//! EVM chain watcher (alloy): scans a gateway's `MessageSent` logs (on-chain format v2: each
//! names its destination inbox and the recipient's gas limit) up to the chain's
//! finality point in bounded block ranges, re-reads each log's block hash at finality
//! (a log whose block is no longer canonical is dropped and counted), and reports
//! observations plus the new cursor to the node. A final block that later changes hash is a
//! finality violation: metric, error log, and the chain is halted until an operator acts.
//!
//! Every RPC call has a deadline and is retried with exponential backoff (200 ms to 10 s);
//! with several RPC URLs, all are asked at once and `rpc_quorum` of them must return
//! identical answers (counted in `sigil_chain_rpc_disagreements_total` when they do not). Each chain
//! runs in its own task, so one failing RPC never stalls another chain.

use crate::config::{ChainSection, Finality};
use crate::contracts::SigilGateway;
use crate::metrics::{ChainLabel, Metrics};
use crate::store::{Cursor, Observation};
use alloy::eips::BlockNumberOrTag;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use alloy_primitives::{B256, Bytes};
use sigil_crypto::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

pub use sigil_engine::ChainEvent;

/// Least time between two scans woken by new-head notifications (a flooding `ws`
/// endpoint costs at most one scan per gap).
pub const MIN_WAKE_GAP: Duration = Duration::from_millis(5);

/// Aborts a task when dropped (the head subscription ends with its watcher).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Most blocks one admin re-observe may scan (the admin API refuses larger ranges).
pub const MAX_REOBSERVE_BLOCKS: u64 = 10_000;

/// What an operator asks to re-observe on one chain (admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReobserveRange {
    /// Source blocks `from..=to` (at most [`MAX_REOBSERVE_BLOCKS`]).
    Blocks {
        /// First block.
        from: u64,
        /// Last block (clamped to the chain's final block).
        to: u64,
    },
    /// The block holding this transaction (32-byte hash).
    Tx(B256),
}

/// A re-observe request, sent to the chain's watcher; the node answers on `reply`.
#[derive(Debug)]
pub struct ReobserveRequest {
    /// What to scan.
    pub range: ReobserveRange,
    /// Where the outcome goes (a report, or why nothing was scanned).
    pub reply: oneshot::Sender<Result<ReobserveReport, String>>,
}

/// What a watcher found when re-observing, on its way to the node (which compares it with
/// the store, stores and feeds what is missing, and answers the request).
#[derive(Debug)]
pub struct Reobserved {
    /// Source chain (EIP-155 id).
    pub chain_id: u64,
    /// Blocks scanned, `from..=to`.
    pub from: u64,
    /// Last block scanned.
    pub to: u64,
    /// Canonical `MessageSent` logs at finality with a nonce below the watcher's cursor
    /// (observed before), as observations.
    pub observations: Vec<Observation>,
    /// Logs at or past the watcher's cursor (the watcher reaches them in order).
    pub ahead: u64,
    /// The head and final block when scanned.
    pub head: u64,
    /// Final block when scanned.
    pub finalized: u64,
    /// The request's reply.
    pub reply: oneshot::Sender<Result<ReobserveReport, String>>,
}

/// The outcome of one re-observe (`POST /admin/v1/chains/{chain}/reobserve`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReobserveReport {
    /// Source chain.
    pub chain: u64,
    /// First block scanned.
    pub from_block: u64,
    /// Last block scanned (the request's, clamped to the final block).
    pub to_block: u64,
    /// Canonical `MessageSent` logs found in the range.
    pub logs: u64,
    /// Already stored, identical (nothing to do: re-observing is idempotent).
    pub known: u64,
    /// Missing from the store: stored again and handed to the engine.
    pub restored: u64,
    /// Gateway nonces whose stored observation differs from the chain's log (a reorg past
    /// finality or a lying RPC earlier): left as stored, logged and counted.
    pub conflicting: Vec<u64>,
    /// Logs at or past the cursor: the watcher observes them in order.
    pub ahead: u64,
}

/// The admin API's link to one watcher: requests in, findings out to the node.
#[derive(Debug)]
pub struct WatcherAdmin {
    /// Re-observe requests for this chain.
    pub requests: mpsc::Receiver<ReobserveRequest>,
    /// Findings, to the node.
    pub results: mpsc::Sender<Reobserved>,
}

/// One chain's watcher.
pub struct Watcher {
    cfg: ChainSection,
    finality: Finality,
    providers: Vec<DynProvider>,
    metrics: Arc<Metrics>,
    cursor: Option<Cursor>,
    halted: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Header {
    number: u64,
    hash: B256,
    timestamp: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct RawLog {
    block_number: u64,
    block_hash: B256,
    log_index: u64,
    nonce: u64,
    message: Message,
}

impl Watcher {
    /// A watcher for `cfg`, resuming after `cursor` (or from `cfg.start_block`).
    /// Errors: a malformed RPC URL.
    pub fn new(
        cfg: ChainSection,
        finality: Finality,
        metrics: Arc<Metrics>,
        cursor: Option<Cursor>,
    ) -> anyhow::Result<Self> {
        let providers = cfg
            .rpc
            .iter()
            .map(|u| Ok(ProviderBuilder::new().connect_http(u.parse()?).erased()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Every per-chain series exists from the start (at 0), so dashboards and alerts
        // see a healthy chain's zeros rather than no data.
        let label = ChainLabel::new(cfg.chain_id);
        let c = &metrics.chain;
        for f in [
            &c.rpc_errors,
            &c.rpc_disagreements,
            &c.dropped_logs,
            &c.finality_violations,
            &c.observations,
            &c.reobserve_conflicts,
        ] {
            let _ = f.get_or_create(&label);
        }
        for g in [&c.head, &c.finalized, &c.lag, &c.halted] {
            let _ = g.get_or_create(&label);
        }
        let _ = c.rpc_latency.get_or_create(&label);
        Ok(Self {
            cfg,
            finality,
            providers,
            metrics,
            cursor,
            halted: false,
        })
    }

    fn label(&self) -> ChainLabel {
        ChainLabel::new(self.cfg.chain_id)
    }

    /// Calls `f` on every provider at once and returns as soon as `rpc_quorum` of them gave
    /// identical answers (a hanging or slow RPC costs nothing while the others agree);
    /// otherwise retries with backoff (200 ms doubling to 10 s). Never gives up; each
    /// failure and each disagreement is counted and logged.
    async fn quorum<T, F, Fut>(&self, what: &str, f: F) -> T
    where
        T: PartialEq + Clone,
        F: Fn(DynProvider) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        use futures::StreamExt;
        let need = self.cfg.rpc_quorum as usize;
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut calls: futures::stream::FuturesUnordered<_> = self
                .providers
                .iter()
                .map(|p| {
                    let call = f(p.clone());
                    async move {
                        let t0 = Instant::now();
                        let out = tokio::time::timeout(self.cfg.rpc_timeout, call).await;
                        (out, t0.elapsed())
                    }
                })
                .collect();
            let mut answers: Vec<T> = Vec::new();
            while let Some((out, took)) = calls.next().await {
                match out {
                    Ok(Ok(v)) => {
                        self.metrics
                            .chain
                            .rpc_latency
                            .get_or_create(&self.label())
                            .observe(took.as_secs_f64());
                        if answers.iter().filter(|b| **b == v).count() + 1 >= need {
                            return v;
                        }
                        answers.push(v);
                    }
                    Ok(Err(e)) => {
                        self.metrics
                            .chain
                            .rpc_errors
                            .get_or_create(&self.label())
                            .inc();
                        tracing::warn!(chain = self.cfg.chain_id, call = what, error = %e, "rpc error; retrying");
                    }
                    Err(_) => {
                        self.metrics
                            .chain
                            .rpc_errors
                            .get_or_create(&self.label())
                            .inc();
                        tracing::warn!(
                            chain = self.cfg.chain_id,
                            call = what,
                            "rpc deadline exceeded; retrying"
                        );
                    }
                }
            }
            if answers.len() >= need {
                self.metrics
                    .chain
                    .rpc_disagreements
                    .get_or_create(&self.label())
                    .inc();
                tracing::warn!(
                    chain = self.cfg.chain_id,
                    call = what,
                    "rpc answers disagree; retrying"
                );
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn header(&self, tag: BlockNumberOrTag) -> Option<Header> {
        self.quorum("eth_getBlockByNumber", move |p| async move {
            let b = p.get_block_by_number(tag).await?;
            Ok(b.map(|b| Header {
                number: b.header.number,
                hash: b.header.hash,
                timestamp: b.header.timestamp,
            }))
        })
        .await
    }

    async fn final_number(&self) -> (u64, u64) {
        let head = self
            .quorum("eth_blockNumber", |p| async move {
                Ok(p.get_block_number().await?)
            })
            .await;
        let fin = match self.finality {
            Finality::Confirmations(n) => head.saturating_sub(n),
            Finality::Finalized => self
                .header(BlockNumberOrTag::Finalized)
                .await
                .map_or(0, |h| h.number),
            Finality::Safe => self
                .header(BlockNumberOrTag::Safe)
                .await
                .map_or(0, |h| h.number),
        };
        (head, fin)
    }

    async fn logs(&self, from: u64, to: u64) -> Vec<RawLog> {
        let filter = Filter::new()
            .address(self.cfg.gateway)
            .event_signature(SigilGateway::MessageSent::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let gateway = self.cfg.gateway;
        self.quorum("eth_getLogs", move |p| {
            let filter = filter.clone();
            async move {
                let logs = p.get_logs(&filter).await?;
                let mut out = Vec::with_capacity(logs.len());
                for l in logs {
                    let (Some(bn), Some(bh), Some(li)) =
                        (l.block_number, l.block_hash, l.log_index)
                    else {
                        anyhow::bail!("log without block position (pending?)");
                    };
                    let ev = l.log_decode::<SigilGateway::MessageSent>()?.inner.data;
                    out.push(RawLog {
                        block_number: bn,
                        block_hash: bh,
                        log_index: li,
                        nonce: ev.nonce,
                        message: Message {
                            source_chain_id: ev.sourceChainId,
                            source_gateway: gateway,
                            nonce: ev.nonce,
                            sender: ev.sender,
                            dest_chain_id: ev.destChainId,
                            dest_inbox: ev.destInbox,
                            recipient: ev.recipient,
                            gas_limit: ev.gasLimit,
                            payload: Bytes::from(ev.payload.to_vec()),
                        },
                    });
                }
                out.sort_by_key(|l| (l.block_number, l.log_index));
                Ok(out)
            }
        })
        .await
    }

    /// Checks the chain id against the RPC. Errors name the field.
    pub async fn check_chain_id(&self) -> anyhow::Result<()> {
        let id = self
            .quorum(
                "eth_chainId",
                |p| async move { Ok(p.get_chain_id().await?) },
            )
            .await;
        if id != self.cfg.chain_id {
            anyhow::bail!(
                "config field `chains[{}].chain_id` is {} but the RPC serves chain {id}; fix the chain_id or the rpc URL",
                self.cfg.name,
                self.cfg.chain_id
            );
        }
        Ok(())
    }

    /// One scan step. Returns an event when the cursor advanced.
    pub async fn step(&mut self) -> Option<ChainEvent> {
        if self.halted {
            return None;
        }
        let (head, fin) = self.final_number().await;
        let label = self.label();
        self.metrics
            .chain
            .head
            .get_or_create(&label)
            .set(head as i64);
        self.metrics
            .chain
            .finalized
            .get_or_create(&label)
            .set(fin as i64);
        // A block we treated as final must keep its hash.
        if let Some(c) = self.cursor
            && c.block_hash != B256::ZERO
        {
            let now = self.header(BlockNumberOrTag::Number(c.block_number)).await;
            if now.as_ref().map(|h| h.hash) != Some(c.block_hash) {
                self.metrics
                    .chain
                    .finality_violations
                    .get_or_create(&label)
                    .inc();
                tracing::error!(
                    chain = self.cfg.chain_id,
                    block = c.block_number,
                    was = %c.block_hash,
                    now = ?now.map(|h| h.hash),
                    "FINALITY VIOLATION: a block observed as final changed hash; halting this chain until an operator acts"
                );
                self.halted = true;
                self.metrics.chain.halted.get_or_create(&label).set(1);
                return None;
            }
        }
        let from = self
            .cursor
            .map_or(self.cfg.start_block, |c| c.block_number + 1);
        let mut next_nonce = self.cursor.map_or(0, |c| c.next_nonce);
        self.metrics
            .chain
            .lag
            .get_or_create(&label)
            .set(head.saturating_sub(from.saturating_sub(1)) as i64);
        if from > fin {
            return None;
        }
        let to = fin.min(from + self.cfg.max_block_range - 1);
        let logs = self.logs(from, to).await;
        // Re-read every block holding a log, at finality.
        let mut headers: BTreeMap<u64, Option<Header>> = BTreeMap::new();
        for l in &logs {
            if let std::collections::btree_map::Entry::Vacant(e) = headers.entry(l.block_number) {
                e.insert(self.header(BlockNumberOrTag::Number(l.block_number)).await);
            }
        }
        let end = self.header(BlockNumberOrTag::Number(to)).await?;
        let now_ms = crate::now_ms();
        let mut observations = Vec::new();
        for l in logs {
            let canonical = headers.get(&l.block_number).and_then(|h| h.clone());
            let Some(h) = canonical.filter(|h| h.hash == l.block_hash) else {
                // The chain changed under this step, below the finality bound: the logs read
                // are not the canonical ones. Keep the cursor where it was and scan the range
                // again next step (advancing to `end`, read after the change, would skip the
                // replacement logs for good and stall on a nonce gap).
                self.metrics.chain.dropped_logs.get_or_create(&label).inc();
                tracing::warn!(
                    chain = self.cfg.chain_id,
                    block = l.block_number,
                    nonce = l.nonce,
                    "dropped a log whose block is no longer canonical; rescanning"
                );
                return None;
            };
            if l.nonce < next_nonce {
                continue;
            }
            if l.nonce > next_nonce {
                tracing::error!(
                    chain = self.cfg.chain_id,
                    expected = next_nonce,
                    got = l.nonce,
                    "gateway nonce gap; rescanning"
                );
                return None;
            }
            next_nonce += 1;
            self.metrics.chain.observations.get_or_create(&label).inc();
            observations.push(Observation {
                message: l.message,
                block_number: l.block_number,
                block_hash: l.block_hash,
                observed_at_ms: now_ms,
                block_time: h.timestamp,
            });
        }
        let cursor = Cursor {
            block_number: end.number,
            block_hash: end.hash,
            next_nonce,
        };
        self.cursor = Some(cursor);
        Some(ChainEvent {
            chain_id: self.cfg.chain_id,
            observations,
            cursor,
            head,
            finalized: fin,
        })
    }

    /// Whether a finality violation halted this watcher.
    pub fn halted(&self) -> bool {
        self.halted
    }

    /// Re-reads `range` at finality, through the same RPC quorum as [`Watcher::step`],
    /// without moving the cursor: the canonical `MessageSent` logs with a nonce below the
    /// cursor (as observations) and how many lie at or past it. Errors (nothing scanned):
    /// the chain is halted (re-observing would feed blocks that conflict with what was
    /// attested), the transaction is unknown or not mined, the range is empty, larger than
    /// [`MAX_REOBSERVE_BLOCKS`] or starts past the final block, or a block changed under
    /// the scan.
    pub async fn rescan(
        &self,
        range: ReobserveRange,
    ) -> Result<(u64, u64, Vec<Observation>, u64, u64, u64), String> {
        if self.halted {
            return Err(format!(
                "chain {} is halted by a finality violation; re-observing would feed blocks that conflict with what was attested",
                self.cfg.chain_id
            ));
        }
        let (from, to) = match range {
            ReobserveRange::Blocks { from, to } => (from, to),
            ReobserveRange::Tx(hash) => {
                let block = self
                    .quorum("eth_getTransactionReceipt", move |p| async move {
                        Ok(p.get_transaction_receipt(hash)
                            .await?
                            .and_then(|r| r.block_number))
                    })
                    .await
                    .ok_or_else(|| format!("transaction {hash} is unknown or not mined"))?;
                (block, block)
            }
        };
        if to < from || to - from >= MAX_REOBSERVE_BLOCKS {
            return Err(format!(
                "blocks {from}..={to}: want from <= to and at most {MAX_REOBSERVE_BLOCKS} blocks"
            ));
        }
        let (head, fin) = self.final_number().await;
        if from > fin {
            return Err(format!(
                "block {from} is not final yet (final: {fin}); the watcher observes it once it is"
            ));
        }
        let to = to.min(fin);
        let next = self.cursor.map_or(0, |c| c.next_nonce);
        let now_ms = crate::now_ms();
        let (mut out, mut ahead) = (Vec::new(), 0u64);
        let mut a = from;
        while a <= to {
            let b = to.min(a + self.cfg.max_block_range - 1);
            let logs = self.logs(a, b).await;
            let mut headers: BTreeMap<u64, Option<Header>> = BTreeMap::new();
            for l in &logs {
                if let std::collections::btree_map::Entry::Vacant(e) = headers.entry(l.block_number)
                {
                    e.insert(self.header(BlockNumberOrTag::Number(l.block_number)).await);
                }
            }
            for l in logs {
                let Some(h) = headers
                    .get(&l.block_number)
                    .and_then(|h| h.clone())
                    .filter(|h| h.hash == l.block_hash)
                else {
                    return Err(format!(
                        "block {} changed under the scan; try again",
                        l.block_number
                    ));
                };
                if l.nonce >= next {
                    ahead += 1;
                    continue;
                }
                out.push(Observation {
                    message: l.message,
                    block_number: l.block_number,
                    block_hash: l.block_hash,
                    observed_at_ms: now_ms,
                    block_time: h.timestamp,
                });
            }
            a = b + 1;
        }
        Ok((from, to, out, ahead, head, fin))
    }

    /// Keeps a `newHeads` subscription on `url` and wakes `wake` on each head, reconnecting
    /// with backoff (1 s doubling to 30 s) when the connection fails or ends. Never returns.
    async fn head_wakeups(chain: u64, url: String, wake: Arc<tokio::sync::Notify>) {
        use alloy::providers::WsConnect;
        use futures::StreamExt;
        let mut backoff = Duration::from_secs(1);
        loop {
            let sub = async {
                let p = ProviderBuilder::new()
                    .connect_ws(WsConnect::new(url.clone()))
                    .await?;
                let sub = p.subscribe_blocks().await?;
                // The provider owns the connection: it lives as long as the stream is read.
                anyhow::Ok((p, sub))
            };
            match sub.await {
                Ok((_connection, sub)) => {
                    tracing::info!(chain, "new-head subscription open");
                    backoff = Duration::from_secs(1);
                    let mut heads = sub.into_stream();
                    while heads.next().await.is_some() {
                        wake.notify_one();
                    }
                    tracing::warn!(chain, "new-head subscription ended; polling meanwhile");
                }
                Err(e) => {
                    tracing::warn!(chain, error = %e, "new-head subscription failed; polling meanwhile")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// Runs until `tx` closes: step, send, sleep `poll_interval` when caught up.
    pub async fn run(self, tx: mpsc::Sender<ChainEvent>) {
        self.run_with_admin(tx, None).await
    }

    /// [`Watcher::run`], also serving the admin API's re-observe requests between steps
    /// (one at a time, in order with the chain events, so the cursor the node holds is
    /// never older than the one the scan used).
    pub async fn run_with_admin(
        mut self,
        tx: mpsc::Sender<ChainEvent>,
        mut admin: Option<WatcherAdmin>,
    ) {
        if let Err(e) = self.check_chain_id().await {
            tracing::error!(error = %e, "chain watcher not started");
            return;
        }
        // New heads wake the loop early (`ws`); polling stays the fallback.
        let wake = Arc::new(tokio::sync::Notify::new());
        let _heads = self.cfg.ws.clone().map(|url| {
            let t = tokio::spawn(Self::head_wakeups(self.cfg.chain_id, url, wake.clone()));
            AbortOnDrop(t)
        });
        let mut last_step = Instant::now();
        loop {
            // A flood of notifications costs at most one scan per MIN_WAKE_GAP.
            let since = last_step.elapsed();
            if since < MIN_WAKE_GAP {
                tokio::time::sleep(MIN_WAKE_GAP - since).await;
            }
            last_step = Instant::now();
            let idle = match self.step().await {
                Some(ev) => {
                    let caught_up = ev.cursor.block_number >= ev.finalized;
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                    caught_up
                }
                None => true,
            };
            let poll = tokio::time::sleep(if idle {
                self.cfg.poll_interval
            } else {
                Duration::ZERO
            });
            tokio::pin!(poll);
            loop {
                let req = match admin.as_mut() {
                    Some(a) => tokio::select! {
                        _ = &mut poll => None,
                        _ = wake.notified() => None,
                        r = a.requests.recv() => Some(r),
                    },
                    None => {
                        tokio::select! {
                            _ = &mut poll => {}
                            _ = wake.notified() => {}
                        }
                        None
                    }
                };
                let Some(req) = req else { break };
                let Some(req) = req else {
                    // The admin API is gone: plain polling from now on.
                    admin = None;
                    continue;
                };
                self.serve_reobserve(req, admin.as_ref().map(|a| a.results.clone()))
                    .await;
            }
        }
    }

    async fn serve_reobserve(
        &self,
        req: ReobserveRequest,
        results: Option<mpsc::Sender<Reobserved>>,
    ) {
        tracing::info!(chain = self.cfg.chain_id, range = ?req.range, "operator re-observe");
        match self.rescan(req.range).await {
            Err(e) => {
                let _ = req.reply.send(Err(e));
            }
            Ok((from, to, observations, ahead, head, finalized)) => {
                let found = Reobserved {
                    chain_id: self.cfg.chain_id,
                    from,
                    to,
                    observations,
                    ahead,
                    head,
                    finalized,
                    reply: req.reply,
                };
                if let Some(r) = results
                    && let Err(mpsc::error::SendError(found)) = r.send(found).await
                {
                    let _ = found.reply.send(Err("the node is stopping".into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// RPC providers are reached over `https://`: the HTTP client the watcher (and the
    /// relayer, and `sigil verify --rpc`) uses speaks TLS. Here a local listener must
    /// receive a TLS ClientHello (a handshake record, 0x16 0x03 ...) rather than the request
    /// being refused for its scheme before any connection.
    #[tokio::test]
    async fn rpc_urls_over_https_speak_tls() {
        use alloy::providers::{Provider, ProviderBuilder};
        use tokio::io::AsyncReadExt as _;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://127.0.0.1:{}", l.local_addr().unwrap().port());
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut first = [0u8; 2];
            s.read_exact(&mut first).await.unwrap();
            first
        });
        let p = ProviderBuilder::new().connect_http(url.parse().unwrap());
        let call = tokio::time::timeout(std::time::Duration::from_secs(5), p.get_block_number());
        let _ = call.await; // fails: the listener never completes a handshake
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("no connection: https is not supported")
            .unwrap();
        assert_eq!(first, [0x16, 0x03], "a TLS handshake record");
    }
}
