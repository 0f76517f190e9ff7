//! The per-chain pipeline: attested heights are put in flight as soon as they are fetched,
//! without waiting for the receipts of the heights before them.
//!
//! A window of at most [`PIPELINE_HEIGHTS`] heights (and about [`PIPELINE_MESSAGES`]
//! messages) moves through three stages, all in one
//! task (no locks; the chain's nonce has one owner):
//! 1. **fetch**: the next attested heights from the nodes' APIs;
//! 2. **send**: each height's transactions (`submitBatch` and the deliveries right behind
//!    it, or a `rotateKey`) with consecutive nonces. While anything of ours is in flight the
//!    chain's state is not final, so calls that depend on it are not estimated: they carry
//!    a proven upper bound as gas limit ([`super::delivery_gas`],
//!    [`super::relay::FIXED_CALL_GAS`]);
//!    with nothing in flight every transaction is estimated first (the pre-flight check);
//! 3. **confirm**: receipts, oldest nonce first (a chain mines one account's nonces in
//!    order, so the first one not mined ends the look); a stuck transaction is replaced
//!    with higher fees; the oldest heights whose transactions all mined are done and
//!    `next_height` moves past them (saved).
//!
//! Any failure (a send refused, a revert, a transaction given up) stops the sending until
//! everything in flight has settled; then the nonce is read again from the chain and every
//! height still in the window is sent again after a backoff. Sending is idempotent (the
//! inbox's state is read first), so a height half done costs only the state checks.
//! When a Failed message's retry is due, nothing new is sent until what is in flight has
//! settled; then the retry goes out (it takes the account's pending nonce). A transaction
//! that reverts because another relayer did its work first (root stored, inbox rotated,
//! messages processed) is no failure. At start and after a failure the relayer waits
//! (up to `stuck_after`) for its account's earlier transactions to mine before reading the
//! inbox.

use super::ChainTask;
use super::fetch_batch;
use super::relay::{HeightOutcome, SendCtx, SentTx};
use super::tx::Poll;
use crate::api::BatchView;
use alloy::providers::Provider;
use anyhow::Result;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::watch;

/// Most heights in the window of one chain's pipeline (fetched and not yet done).
pub(super) const PIPELINE_HEIGHTS: usize = 32;

/// Most messages held in the window (batches of up to 10,000 messages each: this bounds the
/// relayer's memory, not only the height count).
pub(super) const PIPELINE_MESSAGES: usize = 50_000;

/// How often the confirm stage looks at the chain while transactions are in flight.
const RECEIPT_POLL: Duration = Duration::from_millis(50);

/// Longest wait between two attempts after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A height on its way to this chain.
struct Work {
    batch: BatchView,
    /// Its transactions in flight, oldest nonce first.
    txs: Vec<SentTx>,
    /// Every transaction of it was put in flight.
    sent: bool,
    /// Something of it failed: it is sent again once the chain has settled.
    failed: bool,
    /// Records and Failed messages not yet handed to the ledger and the retry queue.
    out: HeightOutcome,
}

impl ChainTask {
    /// The account's pending nonce on this chain. Errors: RPC failures.
    async fn pending_nonce(&self) -> Result<u64> {
        Ok(self
            .dest
            .provider
            .get_transaction_count(self.dest.from)
            .pending()
            .await?)
    }

    /// The account's pending nonce once its earlier transactions (a previous process's,
    /// still in the mempool) have mined, or after `stuck_after` of waiting for them:
    /// reading the inbox before they land would send their work again. Errors: RPC
    /// failures.
    async fn settled_nonce(&self, shutdown: &mut watch::Receiver<bool>) -> Result<u64> {
        let until = tokio::time::Instant::now() + self.stuck_after;
        loop {
            let pending = self.pending_nonce().await?;
            let latest = self
                .dest
                .provider
                .get_transaction_count(self.dest.from)
                .latest()
                .await?;
            if latest >= pending || tokio::time::Instant::now() >= until || *shutdown.borrow() {
                return Ok(pending);
            }
            Self::pause(RECEIPT_POLL * 4, shutdown).await;
        }
    }

    /// Sleeps `d`, or less when `shutdown` changes.
    async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = shutdown.changed() => {}
        }
    }

    /// Runs the pipeline until `shutdown` flips to true. Errors: only state-file writes
    /// (everything else is retried with backoff and reported).
    pub(super) async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        tracing::info!(
            chain = self.chain_id(),
            inbox = %self.dest.chain.inbox,
            next_height = self.state.next_height,
            queued_retries = self.retries.len(),
            "relaying to chain"
        );
        let mut backoff = Duration::from_millis(250);
        let nonce = loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match self.settled_nonce(&mut shutdown).await {
                Ok(n) => break n,
                Err(e) => {
                    tracing::warn!(chain = self.chain_id(), error = %e, "reading the relayer's nonce failed; retrying");
                    Self::pause(backoff, &mut shutdown).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        let mut ctx = SendCtx {
            nonce,
            settled: true,
            sent: Vec::new(),
        };
        let mut window: VecDeque<Work> = VecDeque::new();
        let mut next_fetch = self.state.next_height;
        // A failure happened: send nothing until everything in flight has settled.
        let mut resync = false;
        // Fetch failures back off on their own (the APIs may be down while chains are fine).
        let mut fetch_backoff = Duration::from_millis(250);
        let mut fetch_after = tokio::time::Instant::now();
        // The nonce of the oldest transaction in flight when last looked at.
        let mut oldest: Option<u64> = None;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            self.serve_admin()?;
            let mut progressed = false;
            let settled = window.iter().all(|w| w.txs.is_empty());
            // A Failed message's retry is due: let what is in flight settle first (the
            // retry takes the account's pending nonce), sending nothing new meanwhile.
            let draining = self.retry_is_due();

            // 0. Failed messages, while nothing is in flight.
            if settled && !resync && draining {
                self.retry_due().await?;
                match self.pending_nonce().await {
                    Ok(n) => ctx.nonce = n,
                    Err(_) => resync = true,
                }
            }

            // 1. Fetch.
            while window.len() < PIPELINE_HEIGHTS
                && window.iter().map(|w| w.batch.messages.len()).sum::<usize>() < PIPELINE_MESSAGES
                && !resync
                && !draining
                && tokio::time::Instant::now() >= fetch_after
            {
                match fetch_batch(&self.http, &self.apis, next_fetch).await {
                    Ok(Some(b)) => {
                        self.count_foreign(&b);
                        window.push_back(Work {
                            batch: b,
                            txs: Vec::new(),
                            sent: false,
                            failed: false,
                            out: HeightOutcome::default(),
                        });
                        next_fetch += 1;
                        progressed = true;
                        fetch_backoff = Duration::from_millis(250);
                    }
                    Ok(None) => {
                        // Not attested yet: ask again after `poll`, not every receipt look.
                        fetch_after = tokio::time::Instant::now() + self.poll;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(chain = self.chain_id(), height = next_fetch, error = %e, retry_in = ?fetch_backoff, "fetching batch failed; retrying");
                        fetch_after = tokio::time::Instant::now() + fetch_backoff;
                        fetch_backoff = (fetch_backoff * 2).min(MAX_BACKOFF);
                        break;
                    }
                }
            }

            // 2. Send, in height order.
            if !resync && !draining {
                ctx.settled = settled;
                for w in window.iter_mut().filter(|w| !w.sent) {
                    let r = self.send_height(&w.batch, &mut ctx, &mut w.out).await;
                    w.txs.append(&mut ctx.sent);
                    progressed = true;
                    match r {
                        Ok(()) => w.sent = true,
                        Err(e) => {
                            self.metrics.relayer.failed.inc();
                            tracing::warn!(height = w.batch.height, chain = self.chain_id(), error = %format!("{e:#}"), "relaying failed; retrying after what is in flight settles");
                            w.failed = true;
                            resync = true;
                            break;
                        }
                    }
                }
            }

            // 3. Confirm, oldest nonce first.
            let mut lost = false;
            'look: for w in window.iter_mut() {
                while let Some(t) = w.txs.first_mut() {
                    if oldest != Some(t.tx.nonce) {
                        // It waited behind earlier transactions until now.
                        oldest = Some(t.tx.nonce);
                        t.tx.now_oldest();
                    }
                    match t
                        .tx
                        .poll(&self.dest, self.stuck_after, &self.metrics.relayer)
                        .await
                    {
                        Ok(Poll::Mined(r)) => {
                            let t = w.txs.remove(0);
                            self.mined(w.batch.height, &t, &r, &mut w.out);
                            progressed = true;
                        }
                        Ok(Poll::Failed(why)) => {
                            let t = w.txs.remove(0);
                            progressed = true;
                            // Another relayer may have done it first: then it is no failure.
                            if matches!(self.reached(&w.batch, &t, &mut w.out).await, Ok(true)) {
                                tracing::info!(height = w.batch.height, chain = self.chain_id(), kind = t.kind, reason = %why, "transaction reverted, but what it was for is done already");
                                continue;
                            }
                            tracing::warn!(height = w.batch.height, chain = self.chain_id(), kind = t.kind, nonce = t.tx.nonce, reason = %why, "transaction failed; the height is sent again once the chain settles");
                            w.failed = true;
                            resync = true;
                        }
                        Ok(Poll::Waiting) => break 'look,
                        Ok(Poll::Resent) => {
                            lost = true;
                            break 'look;
                        }
                        Err(e) => {
                            tracing::warn!(chain = self.chain_id(), error = %e, "reading a receipt failed; retrying");
                            break 'look;
                        }
                    }
                }
            }
            // The node lost the oldest: it likely lost later nonces with it (a mempool
            // drops a sender's later nonces with an earlier one), and each would otherwise
            // wait out `stuck_after` once it became the oldest.
            if lost {
                for t in window.iter_mut().flat_map(|w| w.txs.iter_mut()).skip(1) {
                    if let Err(e) = t.tx.resend_if_lost(&self.dest, &self.metrics.relayer).await {
                        tracing::warn!(chain = self.chain_id(), error = %e, "asking the node for a transaction failed; retrying");
                        break;
                    }
                }
                progressed = true;
            }
            let mut queued = false;
            for w in window.iter_mut() {
                if !w.out.records.is_empty() {
                    self.ledger.append(&w.out.records)?;
                    w.out.records.clear();
                }
                for m in std::mem::take(&mut w.out.failed) {
                    queued |= self.enqueue(w.batch.height, m);
                }
            }
            if queued {
                self.save_retries()?;
            }

            // 4. Done: the oldest heights with everything mined.
            let mut done = false;
            while window
                .front()
                .is_some_and(|w| w.sent && !w.failed && w.txs.is_empty())
            {
                if let Some(w) = window.pop_front() {
                    self.state.next_height = w.batch.height + 1;
                    done = true;
                }
            }
            if done {
                self.save_state()?;
                backoff = Duration::from_millis(250);
                progressed = true;
            }

            // 5. Resync once everything in flight has settled.
            if resync && window.iter().all(|w| w.txs.is_empty()) {
                Self::pause(backoff, &mut shutdown).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                match self.settled_nonce(&mut shutdown).await {
                    Ok(n) => {
                        ctx.nonce = n;
                        // Only the failed heights are sent again (the others completed,
                        // or were never sent).
                        for w in window.iter_mut().filter(|w| w.failed) {
                            w.sent = false;
                            w.failed = false;
                        }
                        resync = false;
                    }
                    Err(e) => {
                        tracing::warn!(chain = self.chain_id(), error = %e, "reading the relayer's nonce failed; retrying");
                    }
                }
                continue;
            }

            if !progressed {
                let in_flight = window.iter().any(|w| !w.txs.is_empty());
                let wait = if in_flight { RECEIPT_POLL } else { self.poll };
                Self::pause(wait, &mut shutdown).await;
            }
        }
    }
}
