//! Relaying one height to one chain: reading the inbox's state, then putting in flight the
//! root's submission and the deliveries of the messages not processed yet, in gas-bounded
//! chunks with consecutive nonces (the pipeline in `pipeline.rs` awaits the receipts).

use super::ChainTask;
use super::ledger::TxRecord;
use super::plan::{delivery_gas, message_gas, plan_chunks, select};
use super::tx::{InFlight, delivery_events, launch, start};
use crate::api::{BatchView, HandoverView, MessageView};
use crate::contracts::{STATUS_FAILED, STATUS_NONE, SigilInbox};
use alloy::eips::BlockNumberOrTag;
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy_primitives::{Address, B256, U256};
use anyhow::{Result, anyhow};
use sigil_crypto::{BatchTree, Message};
use std::collections::{HashMap, VecDeque};

/// Gas limit of a `submitBatch` or `rotateKey` sent while earlier transactions of ours are
/// still in flight (so it cannot be estimated): both verify one Schnorr signature and write
/// a few slots, ~58k and ~70k gas measured (BENCHMARKS.md); unused gas is not paid.
pub(super) const FIXED_CALL_GAS: u64 = 250_000;

/// One transaction of a height, sent and awaiting its receipt.
pub(super) struct SentTx {
    /// `submitBatch`, `rotateKey`, `deliver` or `deliverBatch`.
    pub(super) kind: &'static str,
    /// The messages it delivers (none for `submitBatch` / `rotateKey`).
    pub(super) group: Vec<MessageView>,
    /// The transaction.
    pub(super) tx: InFlight,
}

/// The sending side of the pipeline for one chain.
pub(super) struct SendCtx {
    /// The nonce of the next transaction.
    pub(super) nonce: u64,
    /// Nothing of ours is in flight on this chain: its state is final, so transactions are
    /// estimated before they are sent.
    pub(super) settled: bool,
    /// What was put in flight since the caller last took it.
    pub(super) sent: Vec<SentTx>,
}

/// What sending a height found besides its transactions.
#[derive(Default)]
pub(super) struct HeightOutcome {
    /// Transactions mined.
    pub(super) records: Vec<TxRecord>,
    /// Messages found Failed (by this attempt's transactions or already on-chain).
    pub(super) failed: Vec<Message>,
}

impl ChainTask {
    /// A key-rotation height (committee epochs): when it is this chain's inbox and the
    /// inbox is still below the new epoch, posts `rotateKey(newEpoch, x, y, signature)`
    /// (the old key's signature over this inbox's rotation digest). Heights are relayed in
    /// order, so the rotation always lands before the first batch of the new epoch, and an
    /// inbox that missed it (a relayer that was down, a reverted transaction) gets it when
    /// the height is retried; an inbox already at the new epoch is left alone (idempotent).
    async fn send_rotation(
        &self,
        b: &BatchView,
        h: &HandoverView,
        ctx: &mut SendCtx,
    ) -> Result<()> {
        if h.chain_id != self.chain_id() || h.inbox != self.dest.chain.inbox {
            return Ok(());
        }
        let sig = b
            .signature
            .clone()
            .ok_or_else(|| anyhow!("key rotation at height {} not attested", b.height))?;
        let inbox = SigilInbox::new(self.dest.chain.inbox, self.dest.provider.clone());
        let current = inbox.currentEpoch().call().await?;
        if current >= h.new_epoch {
            return Ok(());
        }
        let req = inbox
            .rotateKey(
                h.new_epoch,
                U256::from_be_bytes(h.new_key.x.0),
                U256::from_be_bytes(h.new_key.y.0),
                SigilInbox::Signature {
                    rx: sig.rx,
                    ry: sig.ry,
                    z: sig.z,
                },
            )
            .into_transaction_request();
        tracing::info!(
            chain = self.chain_id(),
            inbox = %self.dest.chain.inbox,
            epoch = h.new_epoch,
            height = b.height,
            "rotating the inbox to the new committee key"
        );
        self.put_in_flight(ctx, "rotateKey", Vec::new(), req, 0, FIXED_CALL_GAS)
            .await
    }

    /// Sends `req` with the next nonce of `ctx`: estimated (the pre-flight check, gas
    /// `max(estimate + 20%, floor)`) when nothing of ours is in flight on this chain, else
    /// with exactly `fixed` gas (a proven upper bound: the call may depend on transactions
    /// still in flight, so it cannot be estimated). Errors: the estimate says it would
    /// revert, or the send failed (nothing is in flight for it then).
    async fn put_in_flight(
        &self,
        ctx: &mut SendCtx,
        kind: &'static str,
        group: Vec<MessageView>,
        req: TransactionRequest,
        floor: u64,
        fixed: u64,
    ) -> Result<()> {
        let metrics = &self.metrics.relayer;
        let f = if ctx.settled {
            start(&self.dest, req, ctx.nonce, floor, metrics).await
        } else {
            launch(&self.dest, req, ctx.nonce, fixed, metrics).await
        }
        .map_err(|e| e.context(format!("{kind} of {} messages", group.len())))?;
        ctx.nonce += 1;
        ctx.settled = false;
        ctx.sent.push(SentTx { kind, group, tx: f });
        Ok(())
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

    /// Puts height `b`'s transactions for this chain in flight, without waiting for any
    /// receipt: the root's `submitBatch` unless the inbox has it, then the deliveries of
    /// the messages not processed yet (consecutive nonces, so the deliveries execute after
    /// the submission, in the same block when it has room). A key-rotation height puts its
    /// `rotateKey` in flight instead when it names this chain's inbox. Messages found
    /// Failed go to `out.failed`. What was sent is in `ctx.sent` even when this errors
    /// half-way (the caller collects it, then sends the height again: everything already
    /// done is skipped).
    pub(super) async fn send_height(
        &self,
        b: &BatchView,
        ctx: &mut SendCtx,
        out: &mut HeightOutcome,
    ) -> Result<()> {
        if let Some(h) = &b.handover {
            return self.send_rotation(b, h, ctx).await;
        }
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
        let inbox = SigilInbox::new(self.dest.chain.inbox, self.dest.provider.clone());
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
            self.put_in_flight(ctx, "submitBatch", Vec::new(), req, 0, FIXED_CALL_GAS)
                .await?;
        }
        let leaves: Vec<B256> = b.messages.iter().map(|m| m.leaf).collect();
        let tree = BatchTree::new(&leaves)?;
        let cap = self.gas_cap().await?;
        let gas: Vec<u64> = todo.iter().map(|m| message_gas(&m.message)).collect();
        let mut groups: VecDeque<Vec<&MessageView>> = plan_chunks(&gas, self.chunk, cap)
            .into_iter()
            .map(|r| todo[r].to_vec())
            .collect();
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
            let group: Vec<MessageView> = group.into_iter().cloned().collect();
            self.put_in_flight(ctx, kind, group, req, floor, floor)
                .await?;
        }
        Ok(())
    }

    /// Whether what a reverted transaction `t` of height `b` was for holds anyway (another
    /// relayer got there first: the root is stored, the inbox is rotated, the messages are
    /// processed); processed-as-Failed messages go to `out.failed`. A revert for a reached
    /// goal is not a failure. Errors: RPC failures (then it counts as not reached).
    pub(super) async fn reached(
        &self,
        b: &BatchView,
        t: &SentTx,
        out: &mut HeightOutcome,
    ) -> Result<bool> {
        let inbox = SigilInbox::new(self.dest.chain.inbox, self.dest.provider.clone());
        Ok(match t.kind {
            "submitBatch" => inbox.batchOf(b.root).call().await?.submittedAt != 0,
            "rotateKey" => match &b.handover {
                Some(h) => inbox.currentEpoch().call().await? >= h.new_epoch,
                None => false,
            },
            _ => {
                let mine: Vec<&MessageView> = t.group.iter().collect();
                let statuses = self.statuses(&mine).await?;
                for (m, st) in mine.iter().zip(&statuses) {
                    if *st == STATUS_FAILED {
                        out.failed.push(m.message.clone());
                    }
                }
                statuses.iter().all(|s| *s != STATUS_NONE)
            }
        })
    }

    /// The ledger record and the Failed messages of a mined transaction of height `height`
    /// (its `MessageDelivered` / `MessageFailed` events; counted in the metrics).
    pub(super) fn mined(
        &self,
        height: u64,
        sent: &SentTx,
        r: &TransactionReceipt,
        out: &mut HeightOutcome,
    ) {
        let metrics = &self.metrics.relayer;
        let (delivered, failed) = delivery_events(self.dest.chain.inbox, r);
        metrics.delivered.inc_by(delivered.len() as u64);
        metrics.failed_messages.inc_by(failed.len() as u64);
        for id in &failed {
            if let Some(m) = sent.group.iter().find(|m| m.id == *id) {
                tracing::warn!(
                    height,
                    chain = self.chain_id(),
                    id = %id,
                    recipient = %m.message.recipient,
                    gas_limit = m.message.gas_limit,
                    "message Failed at its recipient (reverted or out of its gas limit); queued for retry"
                );
                out.failed.push(m.message.clone());
            }
        }
        if sent.kind == "rotateKey" {
            tracing::info!(chain = self.chain_id(), inbox = %self.dest.chain.inbox, height, "inbox rotated to the new committee key");
        }
        tracing::debug!(height, chain = self.chain_id(), tx = %r.transaction_hash, delivered = delivered.len(), failed = failed.len(), "mined");
        out.records.push(TxRecord {
            height,
            chain_id: self.chain_id(),
            kind: sent.kind.into(),
            tx: r.transaction_hash,
            gas_used: r.gas_used,
            messages: delivered.len(),
            failed,
            at_ms: crate::now_ms(),
        });
    }

    /// Counts and logs the messages of `b` that name this chain but another inbox (once
    /// per height).
    pub(super) fn count_foreign(&mut self, b: &BatchView) {
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
}
