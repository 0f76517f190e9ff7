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
}

/// What one look at an in-flight transaction found.
pub(super) enum Poll {
    /// Mined and succeeded.
    Mined(Box<TransactionReceipt>),
    /// Not mined yet (possibly just replaced with higher fees).
    Waiting,
    /// Settled without effect: reverted, or given up after the last fee bump (why).
    Failed(String),
}

impl InFlight {
    /// One look at the chain, without waiting: a receipt of any version ends it; one not
    /// mined within `stuck_after` of its latest version is replaced with the same nonce and
    /// both fees raised by 25% (stuck-transaction replacement, up to 6 times); a revert or
    /// the last bump running out is [`Poll::Failed`]. Errors: RPC failures only (the
    /// transaction is still in flight then).
    pub(super) async fn poll(
        &mut self,
        dest: &Dest,
        stuck_after: Duration,
        metrics: &RelayerMetrics,
    ) -> Result<Poll> {
        for h in &self.hashes {
            if let Some(r) = dest.provider.get_transaction_receipt(*h).await? {
                metrics.pending.dec();
                metrics.gas.inc_by(r.gas_used);
                if !r.status() {
                    metrics.failed.inc();
                    return Ok(Poll::Failed(format!(
                        "transaction {} reverted",
                        r.transaction_hash
                    )));
                }
                return Ok(Poll::Mined(Box::new(r)));
            }
        }
        if self.sent_at.elapsed() < stuck_after {
            return Ok(Poll::Waiting);
        }
        if self.bumps >= MAX_BUMPS {
            metrics.pending.dec();
            metrics.failed.inc();
            return Ok(Poll::Failed(format!(
                "transaction with nonce {} still not mined after {MAX_BUMPS} fee bumps",
                self.nonce
            )));
        }
        tracing::warn!(
            chain = dest.chain.chain_id,
            nonce = self.nonce,
            "transaction not mined in time; replacing with higher fees"
        );
        self.max_fee += self.max_fee / 4 + 1;
        self.tip += self.tip / 4 + 1;
        self.bumps += 1;
        metrics.pending.dec();
        metrics.replaced.inc();
        resend(dest, self, metrics).await?;
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
    f.hashes.push(*pending.tx_hash());
    f.sent_at = tokio::time::Instant::now();
    metrics.pending.inc();
    Ok(())
}

/// Waits for `f`'s receipt, replacing it when stuck (see [`InFlight::poll`]). Errors:
/// reverted, or still not mined after the bumps.
pub(super) async fn finish(
    dest: &Dest,
    mut f: InFlight,
    stuck_after: Duration,
    metrics: &RelayerMetrics,
) -> Result<TransactionReceipt> {
    loop {
        match f.poll(dest, stuck_after, metrics).await? {
            Poll::Mined(r) => return Ok(*r),
            Poll::Failed(why) => return Err(anyhow!(why)),
            Poll::Waiting => tokio::time::sleep(Duration::from_millis(100)).await,
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
