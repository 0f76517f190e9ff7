//! Retrying Failed messages: the queue, its backoff, and one `retry` per due message.

use super::ChainTask;
use super::ledger::{RetryEntry, TxRecord};
use super::plan::delivery_gas;
use super::tx::{delivery_events, send_with_gas};
use crate::contracts::{STATUS_FAILED, SigilInbox};
use alloy::providers::Provider;
use alloy_primitives::B256;
use anyhow::Result;
use sigil_crypto::Message;
use std::time::Duration;

/// The result of one retry.
enum RetryOutcome {
    /// `retry` delivered it.
    Delivered(TxRecord),
    /// No longer Failed (someone else's retry delivered it, or it is unknown): `statusOf`.
    Gone(u8),
    /// Still Failed; why.
    StillFailing(String),
}

impl ChainTask {
    fn retry_delay(&self, attempts: u32) -> Duration {
        self.retry_min
            .saturating_mul(1u32 << attempts.min(20))
            .min(self.retry_max)
    }

    /// Queues a Failed message for `retry` (once). Returns whether it was new.
    pub(super) fn enqueue(&mut self, height: u64, message: Message) -> bool {
        let id = message.id();
        if self.retries.contains_key(&id) {
            return false;
        }
        self.retries.insert(
            id,
            RetryEntry {
                height,
                message,
                attempts: 0,
                next_at_ms: crate::now_ms() + self.retry_min.as_millis() as u64,
            },
        );
        self.metrics.relayer.retry_pending.inc();
        true
    }

    /// One `retry` of a Failed message.
    async fn retry_one(&self, e: &RetryEntry) -> RetryOutcome {
        let m = &e.message;
        let metrics = &self.metrics.relayer;
        let inbox = SigilInbox::new(self.dest.chain.inbox, self.dest.provider.clone());
        let status = match inbox
            .statusOf(m.source_chain_id, m.source_gateway, m.nonce)
            .call()
            .await
        {
            Ok(s) => s,
            Err(err) => return RetryOutcome::StillFailing(format!("statusOf: {err}")),
        };
        if status != STATUS_FAILED {
            return RetryOutcome::Gone(status);
        }
        let req = inbox.retry(m.into()).into_transaction_request();
        // The estimate runs the recipient: if it fails again the call reverts
        // RecipientFailed and no transaction is sent (not a relayer error).
        let est = match self
            .dest
            .provider
            .estimate_gas(req.clone().from(self.dest.from))
            .await
        {
            Ok(g) => g,
            Err(err) => {
                let refused = err
                    .as_error_resp()
                    .and_then(|p| p.as_decoded_error::<SigilInbox::RecipientFailed>())
                    .is_some();
                return RetryOutcome::StillFailing(if refused {
                    "the recipient failed again (RecipientFailed)".into()
                } else {
                    format!("estimating retry: {err}")
                });
            }
        };
        let gas = (est + est / 5).max(delivery_gas([m], 0));
        match send_with_gas(&self.dest, req, gas, self.stuck_after, metrics).await {
            Ok(r) => {
                let (delivered, _) = delivery_events(self.dest.chain.inbox, &r);
                if delivered.contains(&m.id()) {
                    RetryOutcome::Delivered(TxRecord {
                        height: e.height,
                        chain_id: self.chain_id(),
                        kind: "retry".into(),
                        tx: r.transaction_hash,
                        gas_used: r.gas_used,
                        messages: 1,
                        failed: Vec::new(),
                        at_ms: crate::now_ms(),
                    })
                } else {
                    RetryOutcome::StillFailing(format!(
                        "retry {} mined without MessageDelivered",
                        r.transaction_hash
                    ))
                }
            }
            Err(err) => RetryOutcome::StillFailing(format!("retry transaction: {err:#}")),
        }
    }

    /// Whether a queued Failed message's time has come.
    pub(super) fn retry_is_due(&self) -> bool {
        let now = crate::now_ms();
        self.retries.values().any(|e| e.next_at_ms <= now)
    }

    /// Retries every queued Failed message whose time has come, each on its own.
    pub(super) async fn retry_due(&mut self) -> Result<()> {
        let now = crate::now_ms();
        let due: Vec<B256> = self
            .retries
            .iter()
            .filter(|(_, e)| e.next_at_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        for id in due {
            let Some(entry) = self.retries.get(&id).cloned() else {
                continue;
            };
            match self.retry_one(&entry).await {
                RetryOutcome::Delivered(rec) => {
                    tracing::info!(chain = self.chain_id(), id = %id, tx = %rec.tx, attempts = entry.attempts + 1, "Failed message delivered by retry");
                    self.ledger.append(std::slice::from_ref(&rec))?;
                    self.retries.remove(&id);
                    let m = &self.metrics.relayer;
                    m.retry_pending.dec();
                    m.retried.inc();
                    m.delivered.inc();
                }
                RetryOutcome::Gone(status) => {
                    tracing::info!(chain = self.chain_id(), id = %id, status, "message no longer Failed; dropped from the retry queue");
                    self.retries.remove(&id);
                    self.metrics.relayer.retry_pending.dec();
                }
                RetryOutcome::StillFailing(why) => {
                    let attempts = entry.attempts.saturating_add(1);
                    let wait = self.retry_delay(attempts);
                    tracing::info!(chain = self.chain_id(), id = %id, attempts, next_in = ?wait, reason = %why, "retry did not deliver; backing off");
                    if let Some(e) = self.retries.get_mut(&id) {
                        e.attempts = attempts;
                        e.next_at_ms = crate::now_ms() + wait.as_millis() as u64;
                    }
                }
            }
        }
        self.save_retries()
    }
}
