//! The node's half of an operator's re-observe (admin API): what a watcher re-read at
//! finality is compared with the store; a missing observation is stored again and handed to
//! the engine (with the cursor the node already holds, so nothing moves backwards), a
//! differing one is left alone and reported.

use super::Node;
use crate::store::{Observation, Store};
use crate::watcher::{ChainEvent, ReobserveReport, Reobserved};
use sigil_engine::Input;

/// How `found` (observations re-read at finality, nonces below the node's cursor) compares
/// with what `store` holds for `chain`: the report (without `ahead`) and the observations
/// missing from the store. Errors: a store read failed.
pub(crate) fn classify(
    store: &Store,
    chain: u64,
    found: Vec<Observation>,
) -> Result<(ReobserveReport, Vec<Observation>), crate::store::StoreError> {
    let mut report = ReobserveReport {
        chain,
        logs: found.len() as u64,
        ..ReobserveReport::default()
    };
    let mut missing = Vec::new();
    for o in found {
        let n = o.message.nonce;
        match store.observations(chain, n..n.saturating_add(1))?.pop() {
            None => missing.push(o),
            Some(s)
                if s.message == o.message
                    && s.block_hash == o.block_hash
                    && s.block_number == o.block_number =>
            {
                report.known += 1
            }
            Some(_) => report.conflicting.push(n),
        }
    }
    report.restored = missing.len() as u64;
    Ok((report, missing))
}

impl Node {
    /// A watcher's re-observe findings: classify, restore what is missing, answer.
    pub(super) fn on_reobserved(&mut self, r: Reobserved) {
        let chain = r.chain_id;
        let answer = (|| {
            let store = self.engine.storage();
            let cursor = store
                .cursor(chain)
                .map_err(|e| format!("store: {e}"))?
                .unwrap_or_default();
            // Only what the node itself has already passed: a log the watcher sent in a chain
            // event not handled yet is "ahead" here.
            let (below, ahead): (Vec<_>, Vec<_>) = r
                .observations
                .into_iter()
                .partition(|o| o.message.nonce < cursor.next_nonce);
            let (mut report, missing) =
                classify(store, chain, below).map_err(|e| format!("store: {e}"))?;
            report.logs += ahead.len() as u64;
            report.ahead = r.ahead + ahead.len() as u64;
            report.from_block = r.from;
            report.to_block = r.to;
            Ok::<_, String>((report, missing, cursor))
        })();
        let (report, missing, cursor) = match answer {
            Ok(x) => x,
            Err(e) => {
                let _ = r.reply.send(Err(e));
                return;
            }
        };
        for n in &report.conflicting {
            self.metrics
                .chain
                .reobserve_conflicts
                .get_or_create(&crate::metrics::ChainLabel::new(chain))
                .inc();
            tracing::error!(
                chain,
                nonce = n,
                "re-observe: the chain's log differs from the stored observation (a reorg past finality or a lying RPC); left as stored"
            );
        }
        if !missing.is_empty() {
            if let Err(e) = self
                .engine
                .storage()
                .put_observations(chain, &missing, &cursor)
            {
                let _ = r.reply.send(Err(format!("store: {e}")));
                return;
            }
            tracing::warn!(
                chain,
                restored = missing.len(),
                "re-observe restored observations missing from the store"
            );
            if !self.epochs.has_left() {
                self.drive(Input::Chain(ChainEvent {
                    chain_id: chain,
                    observations: missing,
                    cursor,
                    head: r.head,
                    finalized: r.finalized,
                }));
            }
        }
        tracing::info!(chain, ?report, "re-observe done");
        let _ = r.reply.send(Ok(report));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Address, B256, Bytes};
    use sigil_crypto::Message;

    fn obs(nonce: u64, payload: &'static [u8], block_hash: u8) -> Observation {
        Observation {
            message: Message {
                source_chain_id: 5,
                source_gateway: Address::repeat_byte(1),
                nonce,
                sender: Address::repeat_byte(2),
                dest_chain_id: 6,
                dest_inbox: Address::repeat_byte(3),
                recipient: Address::repeat_byte(4),
                gas_limit: 200_000,
                payload: Bytes::from_static(payload),
            },
            block_number: 10 + nonce,
            block_hash: B256::repeat_byte(block_hash),
            observed_at_ms: 1,
            block_time: 2,
        }
    }

    /// Identical logs are `known` (whatever the observation time), a log the store lacks is
    /// `missing`, and a log that differs from the stored one in payload or block is
    /// `conflicting` and never offered for storing.
    #[test]
    fn reobserved_logs_are_known_missing_or_conflicting() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stored = [obs(0, b"a", 7), obs(1, b"b", 7), obs(2, b"c", 7)];
        let cursor = crate::store::Cursor {
            block_number: 20,
            block_hash: B256::repeat_byte(9),
            next_nonce: 5,
        };
        store.put_observations(5, &stored, &cursor).unwrap();
        let mut again = obs(0, b"a", 7);
        again.observed_at_ms = 99;
        let found = vec![
            again,
            obs(1, b"B", 7), // another payload under a stored nonce
            obs(2, b"c", 8), // the same message in another block
            obs(3, b"d", 7), // not stored
        ];
        let (report, missing) = classify(&store, 5, found).unwrap();
        assert_eq!(report.logs, 4);
        assert_eq!(report.known, 1);
        assert_eq!(report.conflicting, vec![1, 2]);
        assert_eq!(report.restored, 1);
        assert_eq!(missing, vec![obs(3, b"d", 7)]);
        // Nothing was written by classifying.
        assert_eq!(store.observations(5, 0..10).unwrap(), stored.to_vec());
    }
}
