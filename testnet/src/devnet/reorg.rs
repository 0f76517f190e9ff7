//! Reorgs below the finality depth during the load (`--reorgs N`, `--reorg-depth D`), with
//! replaced messages: each one pauses the chain's miner, sends an *orphan* message from a
//! key of its own and mines it, then rewrites the last `D` blocks with anvil's
//! `anvil_reorg`: every other transaction of those blocks is replayed (same raw bytes, same
//! block, same order, so the load's messages and the relayer's deliveries keep their ids
//! and effects) and the orphan's place is taken by a *replacement* — the same account
//! nonce, so the same gateway nonce and message id, with another payload. With `D` ≤ the
//! nodes' confirmations no replaced block was ever final: the orphan must never be attested
//! nor delivered, and the replacement must be delivered exactly once like any message.

use super::*;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;

/// Anvil's dev key used for orphans and replacements (0 deploys, 1 relays, 2 sends load).
const KEY: usize = 3;

/// The reorg schedule and what it did.
pub(super) struct Reorgs {
    /// One reorg after every `every` bursts.
    every: usize,
    depth: u64,
    left: u32,
    /// Reorgs done.
    pub(super) done: u32,
    /// Orphaned payloads, with their direction (`true`: A → B): never to be attested or
    /// delivered.
    pub(super) orphans: Vec<(bool, Bytes)>,
}

/// The replacement message a reorg sent: its chain direction, transaction and payload.
pub(super) struct Replacement {
    pub(super) forward: bool,
    pub(super) tx: B256,
    pub(super) payload: Bytes,
}

impl Reorgs {
    /// `count` reorgs of `depth` blocks spread over `bursts` bursts. Errors: a depth of 0
    /// or deeper than `confirmations` (that would be a finality violation, not this test).
    pub(super) fn new(count: u32, depth: u64, confirmations: u64, bursts: usize) -> Result<Self> {
        if depth == 0 || depth > confirmations {
            bail!(
                "--reorg-depth {depth} must be 1..={confirmations} (the confirmations): a deeper reorg rewrites final blocks"
            );
        }
        Ok(Self {
            every: (bursts / (count as usize + 1)).max(1),
            depth,
            left: count,
            done: 0,
            orphans: Vec::new(),
        })
    }

    /// Whether a reorg is due after burst `k` (0-based).
    pub(super) fn due(&self, k: usize) -> bool {
        self.left > 0 && (k + 1).is_multiple_of(self.every)
    }

    /// Reorgs `chain` (the source of messages to `dest`; `forward`: chain A), `block_time` s
    /// blocks. Returns the replacement to track like a sent message.
    /// Errors: any RPC, or anvil not doing what was asked (named).
    pub(super) async fn run(
        &mut self,
        chain: &Chain,
        dest: &Chain,
        forward: bool,
        block_time: u64,
    ) -> Result<Replacement> {
        let i = self.done;
        let p = provider_for(&chain.anvil, KEY)?.erased();
        let signer = PrivateKeySigner::from(
            chain
                .anvil
                .nth_key(KEY)
                .ok_or_else(|| anyhow!("anvil key {KEY}"))?
                .clone(),
        );
        let _: serde_json::Value = p
            .raw_request("evm_setIntervalMining".into(), (0u64,))
            .await
            .context("pause mining")?;
        let out = self.rewrite(chain, dest, forward, &p, &signer, i).await;
        // Resume mining whatever happened.
        let _: serde_json::Value = p
            .raw_request("evm_setIntervalMining".into(), (block_time,))
            .await
            .context("resume mining")?;
        let rep = out?;
        self.done += 1;
        self.left -= 1;
        Ok(rep)
    }

    async fn rewrite(
        &mut self,
        chain: &Chain,
        dest: &Chain,
        forward: bool,
        p: &DynProvider,
        signer: &PrivateKeySigner,
        i: u32,
    ) -> Result<Replacement> {
        let from = signer.address();
        let nonce = p.get_transaction_count(from).await?;
        let orphan = Bytes::from(format!("orphan-{i}").into_bytes());
        let (orphan_tx, head) = send_orphan(chain, dest, p, nonce, &orphan).await?;
        self.orphans.push((forward, orphan));
        // The replacement: same sender nonce (so the same gateway nonce), another payload.
        let payload = Bytes::from(format!("replacement-{i}").into_bytes());
        let first = head + 1 - self.depth;
        let tx = replace(chain, dest, p, signer, nonce, orphan_tx, first, &payload).await?;
        Ok(Replacement {
            forward,
            tx,
            payload,
        })
    }
}

/// Sends `payload` from `chain` to `dest` with account nonce `nonce` and mines it alone in
/// a new block (mining must be paused). Returns the transaction and its block.
/// Errors: any RPC, or the block not holding it.
pub(super) async fn send_orphan(
    chain: &Chain,
    dest: &Chain,
    p: &DynProvider,
    nonce: u64,
    payload: &Bytes,
) -> Result<(B256, u64)> {
    let orphan_tx = *SigilGateway::new(chain.gateway, p.clone())
        .sendMessage_0(dest.id, dest.receiver, payload.clone())
        .nonce(nonce)
        .gas(200_000)
        .send()
        .await
        .context("send the orphan")?
        .tx_hash();
    let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await?;
    let head = p.get_block_number().await?;
    let receipt = p
        .get_transaction_receipt(orphan_tx)
        .await?
        .ok_or_else(|| anyhow!("the orphan was not mined by evm_mine"))?;
    if receipt.block_number != Some(head) {
        bail!(
            "the orphan landed in block {:?}, not the head {head}",
            receipt.block_number
        );
    }
    Ok((orphan_tx, head))
}

/// Rewrites the blocks from `first` to the head with `anvil_reorg` (mining must be paused):
/// every transaction replayed in place except `orphan_tx` (in that range), whose place
/// takes a replacement signed by `signer` with the same account `nonce` and `payload`.
/// Returns the replacement's hash. Errors: any RPC, or anvil not doing what was asked.
#[allow(clippy::too_many_arguments)]
pub(super) async fn replace(
    chain: &Chain,
    dest: &Chain,
    p: &DynProvider,
    signer: &PrivateKeySigner,
    nonce: u64,
    orphan_tx: B256,
    first: u64,
    payload: &Bytes,
) -> Result<B256> {
    let from = signer.address();
    let head = p.get_block_number().await?;
    let depth = head + 1 - first;
    let call = SigilGateway::sendMessage_0Call {
        destChainId: dest.id,
        recipient: dest.receiver,
        payload: payload.clone(),
    };
    let tx = TransactionRequest::default()
        .with_from(from)
        .with_to(chain.gateway)
        .with_input(call.abi_encode())
        .with_nonce(nonce)
        .with_chain_id(chain.id)
        .with_gas_limit(200_000)
        .with_max_fee_per_gas(100_000_000_000)
        .with_max_priority_fee_per_gas(1_000_000_000)
        .build(&EthereumWallet::from(signer.clone()))
        .await
        .context("sign the replacement")?;
    let replacement_tx = *tx.tx_hash();
    let raw = Bytes::from(alloy::eips::Encodable2718::encoded_2718(&tx));
    // Every transaction of the last `depth` blocks, in order, the orphan replaced.
    let mut pairs = Vec::new();
    for b in first..=head {
        let block = p
            .get_block_by_number(b.into())
            .await?
            .ok_or_else(|| anyhow!("block {b} missing"))?;
        for h in block.transactions.hashes() {
            let data = if h == orphan_tx {
                raw.clone()
            } else {
                p.raw_request::<_, Bytes>("eth_getRawTransactionByHash".into(), (h,))
                    .await
                    .with_context(|| format!("raw transaction {h}"))?
            };
            pairs.push((data, b - first));
        }
    }
    let old = p
        .get_block_by_number(head.into())
        .await?
        .ok_or_else(|| anyhow!("head missing"))?
        .header
        .hash;
    let _: serde_json::Value = p
        .raw_request("anvil_reorg".into(), (depth, pairs))
        .await
        .context("anvil_reorg")?;
    let new = p
        .get_block_by_number(head.into())
        .await?
        .ok_or_else(|| anyhow!("head missing after the reorg"))?
        .header
        .hash;
    if new == old {
        bail!("anvil_reorg left block {head} unchanged");
    }
    if p.get_transaction_receipt(orphan_tx).await?.is_some() {
        bail!("the orphan survived the reorg");
    }
    if p.get_transaction_receipt(replacement_tx).await?.is_none() {
        bail!("the replacement was not mined by the reorg");
    }
    Ok(replacement_tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reorg_deeper_than_the_confirmations_is_refused() {
        assert!(Reorgs::new(4, 3, 2, 10).is_err(), "deeper than finality");
        assert!(Reorgs::new(4, 0, 2, 10).is_err(), "no blocks");
        assert!(Reorgs::new(4, 2, 2, 10).is_ok());
    }

    #[test]
    fn reorgs_are_spread_over_the_bursts() {
        // 4 reorgs over 10 bursts: after bursts 2, 4, 6, 8 (1-based), none after the 4th.
        let mut r = Reorgs::new(4, 2, 2, 10).unwrap();
        let mut at = Vec::new();
        for k in 0..10 {
            if r.due(k) {
                at.push(k);
                r.left -= 1;
            }
        }
        assert_eq!(at, [1, 3, 5, 7]);
        // More reorgs than bursts: one after every burst, as many as there are bursts.
        let r = Reorgs::new(20, 1, 2, 3).unwrap();
        assert!((0..3).all(|k| r.due(k)));
    }
}
