//! Sending transactions and awaiting their receipts (explicit nonces, stuck-transaction
//! replacement), and reading a delivery's events.

use super::RelayChain;
use crate::contracts::SigilInbox;
use crate::metrics::RelayerMetrics;
use alloy::network::TransactionBuilder;
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolEvent;
use alloy_primitives::{Address, B256};
use anyhow::{Context, Result, anyhow};
use std::time::Duration;

pub(super) struct Dest {
    pub(super) chain: RelayChain,
    pub(super) provider: DynProvider,
    pub(super) from: Address,
}

/// Fee bumps before a transaction is given up (each raises both fees by 25%).
const MAX_BUMPS: u32 = 6;

/// How long a version waits unmined before the node is asked whether it still holds it,
/// and how often it is asked again (ms). A node loses transactions: mempool eviction, a
/// restart, or (anvil) every later nonce of an account dropped when one transaction does
/// not fit a block's remaining gas. Waiting `stuck_after` for each of them would stall
/// delivery one timeout per lost nonce.
const LOST_CHECK: Duration = Duration::from_millis(1_000);

/// A sent transaction awaiting its receipt.
pub(super) struct InFlight {
    req: TransactionRequest,
    /// Its nonce (every version shares it).
    pub(super) nonce: u64,
    gas: u64,
    max_fee: u128,
    tip: u128,
    /// The hash of every version sent (the first, then each replacement).
    hashes: Vec<B256>,
    /// When the latest version was sent.
    sent_at: tokio::time::Instant,
    /// Replacements so far.
    bumps: u32,
    /// When the node was last asked whether it still holds the latest version.
    checked_at: tokio::time::Instant,
}

/// What one look at an in-flight transaction found.
pub(super) enum Poll {
    /// Mined and succeeded.
    Mined(Box<TransactionReceipt>),
    /// Not mined yet (possibly just replaced with higher fees).
    Waiting,
    /// Not mined, and the node had lost it: it was sent again unchanged. Later
    /// transactions of this account were likely lost with it (see [`InFlight::resend_if_lost`]).
    Resent,
    /// Settled without effect (why): it reverted, or its nonce was taken by another
    /// transaction of this account (a second relayer with the same key).
    Failed(String),
}

impl InFlight {
    /// Looks for a receipt of any version. `Ok(None)`: none mined yet.
    async fn receipt(&self, dest: &Dest, metrics: &RelayerMetrics) -> Result<Option<Poll>> {
        if let Some(r) = self.find_receipt(dest).await? {
            metrics.pending.dec();
            metrics.gas.inc_by(r.gas_used);
            if !r.status() {
                metrics.failed.inc();
                return Ok(Some(Poll::Failed(format!(
                    "transaction {} reverted",
                    r.transaction_hash
                ))));
            }
            return Ok(Some(Poll::Mined(Box::new(r))));
        }
        Ok(None)
    }

    /// The receipt of any version, if one is mined. Errors: RPC failures.
    async fn find_receipt(&self, dest: &Dest) -> Result<Option<TransactionReceipt>> {
        for h in &self.hashes {
            if let Some(r) = dest.provider.get_transaction_receipt(*h).await? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Asks the node whether it still holds the latest version (mined or in its mempool);
    /// if not, and no version has a receipt, sends that version again unchanged (same
    /// nonce, gas and fees, so the same signed bytes and hash). Returns whether it was sent
    /// again. The stuck clock keeps running: a transaction lost for its low fees is still
    /// bumped after `stuck_after`. Errors: RPC failures (a refused resend is only logged:
    /// the node may have taken it meanwhile, or the nonce may be mined).
    pub(super) async fn resend_if_lost(
        &mut self,
        dest: &Dest,
        metrics: &RelayerMetrics,
    ) -> Result<bool> {
        self.checked_at = tokio::time::Instant::now();
        let Some(&latest) = self.hashes.last() else {
            return Ok(false);
        };
        if dest
            .provider
            .get_transaction_by_hash(latest)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        // Mined between the receipt look and the question above: the next poll reads it.
        if self.find_receipt(dest).await?.is_some() {
            return Ok(false);
        }
        match send_version(dest, self, self.max_fee, self.tip).await {
            Ok(hash) => {
                tracing::info!(
                    chain = dest.chain.chain_id,
                    nonce = self.nonce,
                    "the node lost this transaction; sent it again unchanged"
                );
                if hash != latest {
                    self.hashes.push(hash);
                }
                metrics.resent.inc();
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(
                    chain = dest.chain.chain_id,
                    nonce = self.nonce,
                    error = %e,
                    "sending a lost transaction again failed; trying again later"
                );
                Ok(false)
            }
        }
    }

    /// Restarts the stuck clock: a transaction that waited behind earlier ones of this
    /// account gets a full `stuck_after` once it is the oldest in flight.
    pub(super) fn now_oldest(&mut self) {
        self.sent_at = tokio::time::Instant::now();
    }

    /// One look at the chain, without waiting: a receipt of any version ends it. One not
    /// mined within `stuck_after` of its latest version (or of becoming the oldest, see
    /// [`Self::now_oldest`]) is replaced with the same nonce and both fees raised by 25%
    /// (stuck-transaction replacement); after 6 replacements it is left to wait with a
    /// warning every `stuck_after` — never given up, since a nonce left in the mempool
    /// would hold every later one behind it. A fee bump counts only once the replacement
    /// was accepted. Errors: RPC failures only (the transaction is still in flight then).
    pub(super) async fn poll(
        &mut self,
        dest: &Dest,
        stuck_after: Duration,
        metrics: &RelayerMetrics,
    ) -> Result<Poll> {
        if let Some(p) = self.receipt(dest, metrics).await? {
            return Ok(p);
        }
        if self.sent_at.elapsed() < stuck_after {
            if self.checked_at.elapsed() >= LOST_CHECK && self.resend_if_lost(dest, metrics).await?
            {
                return Ok(Poll::Resent);
            }
            return Ok(Poll::Waiting);
        }
        // Our nonce may have been taken by another transaction of this key: then none of
        // our versions can ever mine.
        let latest = dest
            .provider
            .get_transaction_count(dest.from)
            .latest()
            .await?;
        if latest > self.nonce {
            if let Some(p) = self.receipt(dest, metrics).await? {
                return Ok(p);
            }
            metrics.pending.dec();
            metrics.failed.inc();
            return Ok(Poll::Failed(format!(
                "nonce {} was used by another transaction of this account",
                self.nonce
            )));
        }
        self.sent_at = tokio::time::Instant::now();
        if self.bumps >= MAX_BUMPS {
            tracing::warn!(
                chain = dest.chain.chain_id,
                nonce = self.nonce,
                max_fee = self.max_fee,
                "transaction still not mined after {MAX_BUMPS} fee bumps; waiting (check the relayer's balance and the chain's fee market)"
            );
            return Ok(Poll::Waiting);
        }
        let (max_fee, tip) = (
            self.max_fee + self.max_fee / 4 + 1,
            self.tip + self.tip / 4 + 1,
        );
        match send_version(dest, self, max_fee, tip).await {
            Ok(hash) => {
                tracing::warn!(
                    chain = dest.chain.chain_id,
                    nonce = self.nonce,
                    "transaction not mined in time; replaced with higher fees"
                );
                self.max_fee = max_fee;
                self.tip = tip;
                self.bumps += 1;
                self.hashes.push(hash);
                metrics.replaced.inc();
            }
            Err(e) => {
                tracing::warn!(
                    chain = dest.chain.chain_id,
                    nonce = self.nonce,
                    error = %e,
                    "replacing a stuck transaction failed; trying again later"
                );
            }
        }
        Ok(Poll::Waiting)
    }
}

/// Sends `req` with `nonce` and gas limit `max(estimate + 20%, floor)` (the estimate is also
/// the pre-flight check: a call that would revert is never sent), EIP-1559 fees from the node.
pub(super) async fn start(
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

/// Sends `req` with `nonce` and exactly `gas` (no estimate: for calls that only succeed
/// after transactions still in flight, whose `gas` is a proven upper bound), EIP-1559 fees
/// from the node. Errors: fee lookup or submission failed (nothing was sent then, unless
/// the node took it and the answer was lost).
pub(super) async fn launch(
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
        hashes: Vec::new(),
        sent_at: tokio::time::Instant::now(),
        bumps: 0,
        checked_at: tokio::time::Instant::now(),
    };
    let hash = send_version(dest, &f, f.max_fee, f.tip).await?;
    f.hashes.push(hash);
    f.sent_at = tokio::time::Instant::now();
    metrics.pending.inc();
    Ok(f)
}

/// Sends one version of `f` with the given fees. Errors: the node refused it.
async fn send_version(dest: &Dest, f: &InFlight, max_fee: u128, tip: u128) -> Result<B256> {
    let tx = f
        .req
        .clone()
        .from(dest.from)
        .with_nonce(f.nonce)
        .with_gas_limit(f.gas)
        .with_max_fee_per_gas(max_fee)
        .with_max_priority_fee_per_gas(tip);
    let pending = dest.provider.send_transaction(tx).await?;
    Ok(*pending.tx_hash())
}

/// Waits for `f`'s receipt, replacing it when stuck (see [`InFlight::poll`]), at most
/// `stuck_after` × (6 bumps + 2). Errors: reverted, nonce taken, or still not mined then
/// (the transaction may still be in the mempool: callers read the pending nonce again).
pub(super) async fn finish(
    dest: &Dest,
    mut f: InFlight,
    stuck_after: Duration,
    metrics: &RelayerMetrics,
) -> Result<TransactionReceipt> {
    let deadline = tokio::time::Instant::now() + stuck_after * (MAX_BUMPS + 2);
    loop {
        match f.poll(dest, stuck_after, metrics).await? {
            Poll::Mined(r) => return Ok(*r),
            Poll::Failed(why) => return Err(anyhow!(why)),
            Poll::Waiting if tokio::time::Instant::now() >= deadline => {
                metrics.pending.dec();
                return Err(anyhow!(
                    "transaction with nonce {} still not mined after {MAX_BUMPS} fee bumps",
                    f.nonce
                ));
            }
            Poll::Waiting | Poll::Resent => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Sends `req` with the next nonce and exactly `gas`, and waits for it (see [`finish`]).
pub(super) async fn send_with_gas(
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
pub(super) fn delivery_events(inbox: Address, r: &TransactionReceipt) -> (Vec<B256>, Vec<B256>) {
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
