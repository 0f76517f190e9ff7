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

/// A sent transaction awaiting its receipt.
pub(super) struct InFlight {
    req: TransactionRequest,
    nonce: u64,
    gas: u64,
    max_fee: u128,
    tip: u128,
    hash: B256,
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
pub(super) async fn finish(
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
