//! Relaying one height to one chain: reading the inbox's state, submitting the root and
//! delivering the messages not processed yet in gas-bounded chunks.

use super::ChainTask;
use super::ledger::TxRecord;
use super::plan::{delivery_gas, message_gas, plan_chunks, select};
use super::tx::{delivery_events, finish, start};
use crate::api::{BatchView, HandoverView, MessageView};
use crate::contracts::{STATUS_FAILED, STATUS_NONE, SigilInbox};
use alloy::eips::BlockNumberOrTag;
use alloy::providers::Provider;
use alloy::rpc::types::TransactionReceipt;
use alloy_primitives::{Address, B256, U256};
use anyhow::{Result, anyhow};
use sigil_crypto::{BatchTree, Message};
use std::collections::{HashMap, VecDeque};

/// What one attempt at a height did (kept even when the attempt fails half-way).
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
    async fn relay_rotation(
        &self,
        b: &BatchView,
        h: &HandoverView,
        out: &mut HeightOutcome,
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
        let r = self.send_and_wait(req).await?;
        tracing::info!(
            chain = self.chain_id(),
            inbox = %self.dest.chain.inbox,
            epoch = h.new_epoch,
            height = b.height,
            "inbox rotated to the new committee key"
        );
        out.records.push(TxRecord {
            height: b.height,
            chain_id: self.chain_id(),
            kind: "rotateKey".into(),
            tx: r.transaction_hash,
            gas_used: r.gas_used,
            messages: 0,
            failed: Vec::new(),
            at_ms: crate::now_ms(),
        });
        Ok(())
    }

    /// Sends one transaction at the account's pending nonce and waits for its receipt
    /// (replaced with higher fees when stuck). Errors: RPC failures, a revert.
    async fn send_and_wait(
        &self,
        req: alloy::rpc::types::TransactionRequest,
    ) -> Result<TransactionReceipt> {
        let metrics = &self.metrics.relayer;
        let nonce = self
            .dest
            .provider
            .get_transaction_count(self.dest.from)
            .pending()
            .await?;
        let f = start(&self.dest, req, nonce, 0, metrics).await?;
        finish(&self.dest, f, self.stuck_after, metrics).await
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
    pub(super) async fn relay_height(&self, b: &BatchView, out: &mut HeightOutcome) -> Result<()> {
        if let Some(h) = &b.handover {
            return self.relay_rotation(b, h, out).await;
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
            let r = self.send_and_wait(req).await?;
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
