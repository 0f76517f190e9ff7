//! Where `sigil verify` gets the group key it trusts: pinned on the command line, or read
//! from the destination inbox on chain (`SigilInbox.keyOf(epoch)`, contracts/src/SigilInbox.sol),
//! never the key the attestation file carries unless the user says so
//! ([`crate::api::TrustedKey`]).

use crate::contracts::SigilInbox;
use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use anyhow::{Context, Result, bail};

/// The compressed group key (33 bytes as hex: `02`/`03` ‖ x) the inbox at `inbox` on the
/// chain behind `rpc` accepts batches of `epoch` under, after checking that the message the
/// attestation covers is for that chain and inbox (`dest_chain_id`, `dest_inbox`).
///
/// Errors: the RPC fails; the RPC's chain or `inbox` is not the message's destination; the
/// inbox has no key for `epoch` (`keyOf(epoch).x == 0`); the key expired (rotated away and
/// past its grace period: `validUntil` before the latest block's timestamp, so the inbox no
/// longer accepts that epoch's batches).
pub async fn inbox_key(
    rpc: &str,
    inbox: Address,
    epoch: u64,
    dest_chain_id: u64,
    dest_inbox: Address,
) -> Result<String> {
    let url = rpc
        .parse()
        .with_context(|| format!("--rpc `{rpc}` is not a URL"))?;
    let p = ProviderBuilder::new().connect_http(url);
    let chain = p
        .get_chain_id()
        .await
        .with_context(|| format!("eth_chainId at {rpc}"))?;
    if chain != dest_chain_id || inbox != dest_inbox {
        bail!(
            "the message is for inbox {dest_inbox} on chain {dest_chain_id}, not inbox {inbox} on chain {chain}"
        );
    }
    let key = SigilInbox::new(inbox, &p)
        .keyOf(epoch)
        .call()
        .await
        .with_context(|| format!("keyOf({epoch}) on inbox {inbox}"))?;
    if key.x.is_zero() {
        bail!("inbox {inbox} has no key for epoch {epoch}");
    }
    let now = p
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await?
        .map(|b| b.header.timestamp)
        .unwrap_or(0);
    if key.validUntil < now {
        bail!(
            "the key of epoch {epoch} expired at unix time {} (the inbox no longer accepts that epoch's batches)",
            key.validUntil
        );
    }
    let mut compressed = vec![2 + (key.parity & 1)];
    compressed.extend_from_slice(&key.x.to_be_bytes::<32>());
    Ok(hex::encode(compressed))
}
