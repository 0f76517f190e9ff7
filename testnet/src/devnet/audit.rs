//! The auditor: after a run, from outside the nodes — the chains as they are at the end,
//! and each member's store opened once its process has stopped — checks what the report,
//! built from the devnet's own records, cannot:
//! - every `MessageSent` log canonical on either gateway is delivered exactly once on its
//!   destination inbox (one `MessageDelivered` log), or, for a message to the gas burner,
//!   Failed and never delivered;
//! - no inbox delivered or failed a message id that no gateway emitted (a forgery);
//! - the members' stores agree: one decided block per height;
//! - no store holds equivocation evidence (every devnet member is honest);
//! - no member made two different signature shares under one nonce: every store records
//!   its own shares as they leave and the others' shares of each group signature that
//!   verified ([`ShareRecord`]); across all stores, one (epoch, member, commitment)
//!   carries one share, and one node's ledger id signs once across epochs;
//! - every share seen in a group signature was recorded by its signer as its own (for
//!   signers whose store was read), with the nonce id consumed in that signer's durable
//!   ledger (consume, record, then release). Own records are unsynced: they survive kill -9,
//!   not an OS crash, which this check would then report.

use super::*;
use sigil_node::store::ShareRecord;
use std::collections::HashSet;

/// The auditor's verdict (`report.json` → `audit`).
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    /// Canonical `MessageSent` logs on both gateways.
    pub emitted: usize,
    /// Emitted good messages not delivered exactly once (id, deliveries).
    pub not_once: Vec<(B256, usize)>,
    /// Emitted poison messages not Failed, or delivered.
    pub poison_wrong: Vec<B256>,
    /// Ids an inbox delivered or failed that no gateway emitted.
    pub not_emitted: Vec<B256>,
    /// Heights at which two stores hold different decided blocks.
    pub disagreements: Vec<u64>,
    /// Equivocation evidence records found (member stores, summed).
    pub evidence: usize,
    /// Stores read (members stopped first).
    pub stores: usize,
    /// Signature share records read from the stores (own and seen).
    pub shares: usize,
    /// Nonces that signed twice ("epoch E member M nonce N: …").
    pub nonce_reuse: Vec<String>,
    /// Shares seen in a group signature that their signer did not record as its own, or own
    /// shares whose nonce id the signer's ledger does not hold consumed.
    pub unrecorded: Vec<String>,
    /// Highest height any store decided.
    pub heights: u64,
}

impl Audit {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.not_once.is_empty()
            && self.poison_wrong.is_empty()
            && self.not_emitted.is_empty()
            && self.disagreements.is_empty()
            && self.evidence == 0
            && self.nonce_reuse.is_empty()
            && self.unrecorded.is_empty()
    }
}

/// Checks the share records of every store (each with its ledger's consumed nonce ids) for
/// nonce reuse and shares released unrecorded. Returns (records read, nonce reuses,
/// unrecorded shares), each finding one line. Also run by the member simulator
/// (`membersim`) over its honest members' disks.
pub(crate) fn check_shares(
    stores: &[(Vec<ShareRecord>, HashSet<u64>)],
) -> (usize, Vec<String>, Vec<String>) {
    let mut audit = Audit::default();
    let name = |r: &ShareRecord| {
        format!(
            "epoch {} member {} nonce {} (height {} attempt {})",
            r.epoch, r.member, r.nonce_id, r.height, r.attempt
        )
    };
    // Distinct shares per (epoch, member, commitment) across all stores. Not per nonce id
    // across stores: a signing request's nonce id is only a label (the signature binds the
    // commitment), so a faulty coordinator could relabel an honest member's commitment.
    let mut by_commitment: BTreeMap<(u64, u16, B256), Vec<&ShareRecord>> = BTreeMap::new();
    let mut own: HashSet<(u64, u16, B256, [u8; 32])> = HashSet::new();
    // (epoch, member) pairs whose signer's store was read (they have own records).
    let mut audited: HashSet<(u64, u16)> = HashSet::new();
    for (i, (records, consumed)) in stores.iter().enumerate() {
        // One node's ledger ids are unique across epochs: its own records per id.
        let mut ids: BTreeMap<u64, &ShareRecord> = BTreeMap::new();
        for r in records {
            audit.shares += 1;
            let v = by_commitment.entry(r.key()).or_default();
            if !v.iter().any(|x| x.same_share(r)) {
                v.push(r);
            }
            if !r.own {
                continue;
            }
            own.insert((r.epoch, r.member, r.commitment, r.share));
            audited.insert((r.epoch, r.member));
            if !consumed.contains(&r.nonce_id) {
                audit.unrecorded.push(format!(
                    "{}: store {i} released it without its ledger holding the nonce consumed",
                    name(r)
                ));
            }
            match ids.get(&r.nonce_id) {
                Some(prev) if !(prev.commitment == r.commitment && prev.share == r.share) => {
                    audit.nonce_reuse.push(format!(
                        "store {i}: ledger nonce {} signed twice ({} and {})",
                        r.nonce_id,
                        name(prev),
                        name(r)
                    ))
                }
                Some(_) => {}
                None => {
                    ids.insert(r.nonce_id, r);
                }
            }
        }
    }
    for v in by_commitment.values().filter(|v| v.len() > 1) {
        audit.nonce_reuse.push(format!(
            "{}: {} different shares under one commitment",
            name(v[0]),
            v.len()
        ));
    }
    // Seen shares of a signer whose store was read must be among its own records.
    for (records, _) in stores {
        for r in records.iter().filter(|r| !r.own) {
            if audited.contains(&(r.epoch, r.member))
                && !own.contains(&(r.epoch, r.member, r.commitment, r.share))
            {
                audit.unrecorded.push(format!(
                    "{}: seen in a group signature, never recorded by its signer",
                    name(r)
                ));
            }
        }
    }
    (audit.shares, audit.nonce_reuse, audit.unrecorded)
}

/// All logs of `event` emitted by `address` from block 0 to the head, in 2,000-block
/// ranges. Errors: any RPC.
async fn logs(
    p: &DynProvider,
    address: Address,
    event: B256,
) -> Result<Vec<alloy::rpc::types::Log>> {
    let head = p.get_block_number().await?;
    let mut out = Vec::new();
    let mut from = 0;
    while from <= head {
        let to = (from + 1999).min(head);
        let f = Filter::new()
            .address(address)
            .event_signature(event)
            .from_block(from)
            .to_block(to);
        out.extend(p.get_logs(&f).await?);
        from = to + 1;
    }
    Ok(out)
}

/// Audits the chains `a`, `b` and the stores under `homes` (their nodes stopped).
/// Errors: an RPC, or a store that cannot be opened or read.
pub(super) async fn run(a: &Chain, b: &Chain, homes: &[PathBuf]) -> Result<Audit> {
    let mut audit = Audit::default();
    // (id → burner?) of every canonical MessageSent.
    let mut emitted: HashMap<B256, bool> = HashMap::new();
    let mut delivered: HashMap<B256, usize> = HashMap::new();
    let mut failed: HashMap<B256, usize> = HashMap::new();
    for (c, to) in [(a, b), (b, a)] {
        let p = ProviderBuilder::new()
            .connect_http(c.anvil.endpoint_url())
            .erased();
        for l in logs(&p, c.gateway, SigilGateway::MessageSent::SIGNATURE_HASH).await? {
            let ev = l.log_decode::<SigilGateway::MessageSent>()?.inner.data;
            emitted.insert(ev.messageId, ev.recipient == to.burner);
        }
        for l in logs(&p, c.inbox, SigilInbox::MessageDelivered::SIGNATURE_HASH).await? {
            let id = l
                .log_decode::<SigilInbox::MessageDelivered>()?
                .inner
                .data
                .messageId;
            *delivered.entry(id).or_default() += 1;
        }
        for l in logs(&p, c.inbox, SigilInbox::MessageFailed::SIGNATURE_HASH).await? {
            let id = l
                .log_decode::<SigilInbox::MessageFailed>()?
                .inner
                .data
                .messageId;
            *failed.entry(id).or_default() += 1;
        }
    }
    audit.emitted = emitted.len();
    for (id, poison) in &emitted {
        let d = delivered.get(id).copied().unwrap_or(0);
        if *poison {
            if d > 0 || !failed.contains_key(id) {
                audit.poison_wrong.push(*id);
            }
        } else if d != 1 {
            audit.not_once.push((*id, d));
        }
    }
    audit.not_emitted = delivered
        .keys()
        .chain(failed.keys())
        .filter(|id| !emitted.contains_key(*id))
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // The stores: one decided block per height, no evidence.
    let mut decided: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    let mut split = BTreeSet::new();
    let mut shares = Vec::new();
    for home in homes {
        let db = home.join("db");
        if !db.exists() {
            continue;
        }
        let store = sigil_node::store::Store::open(&db)
            .with_context(|| format!("open the store {}", db.display()))?;
        audit.stores += 1;
        audit.evidence += store.evidence_count()?;
        shares.push((
            store.share_records()?,
            store
                .consumed_nonces()?
                .into_iter()
                .collect::<HashSet<u64>>(),
        ));
        let last = store.last_height()?;
        audit.heights = audit.heights.max(last);
        for h in 1..=last {
            let Some(cb) = store.block(h)? else { continue };
            let Some(block) = sigil_node::api::proposal_block(&cb) else {
                continue;
            };
            let key = (block.epoch, h);
            let bytes = prost::Message::encode_to_vec(&block);
            match decided.get(&key) {
                Some(other) if *other != bytes => {
                    split.insert(h);
                }
                Some(_) => {}
                None => {
                    decided.insert(key, bytes);
                }
            }
        }
    }
    audit.disagreements = split.into_iter().collect();
    (audit.shares, audit.nonce_reuse, audit.unrecorded) = check_shares(&shares);
    Ok(audit)
}

/// Prints the verdict.
pub(super) fn print(a: &Audit) {
    println!(
        "audit: {} canonical messages emitted, {} stores, {} heights, {} share records: {}",
        a.emitted,
        a.stores,
        a.heights,
        a.shares,
        if a.passed() { "PASSED" } else { "FAILED" }
    );
    // The first few of each kind (all of them are in report.json).
    const SHOW: usize = 5;
    let more = |n: usize, what: &str| {
        if n > SHOW {
            println!("  AUDIT ... {} more {what} (report.json)", n - SHOW);
        }
    };
    for (id, n) in a.not_once.iter().take(SHOW) {
        println!("  AUDIT delivered {n} times (not once): {id}");
    }
    more(a.not_once.len(), "not delivered exactly once");
    for id in a.poison_wrong.iter().take(SHOW) {
        println!("  AUDIT poison message not Failed, or delivered: {id}");
    }
    more(a.poison_wrong.len(), "poison messages");
    for id in a.not_emitted.iter().take(SHOW) {
        println!("  AUDIT delivered or failed but never emitted: {id}");
    }
    more(a.not_emitted.len(), "never emitted");
    for h in a.disagreements.iter().take(SHOW) {
        println!("  AUDIT stores disagree on the block decided at height {h}");
    }
    more(a.disagreements.len(), "heights with disagreeing stores");
    for s in a.nonce_reuse.iter().take(SHOW) {
        println!("  AUDIT nonce reuse: {s}");
    }
    more(a.nonce_reuse.len(), "nonce reuses");
    for s in a.unrecorded.iter().take(SHOW) {
        println!("  AUDIT share not recorded: {s}");
    }
    more(a.unrecorded.len(), "unrecorded shares");
    if a.evidence > 0 {
        println!("  AUDIT {} equivocation evidence records", a.evidence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(member: u16, nonce_id: u64, share: u8, own: bool) -> ShareRecord {
        ShareRecord {
            epoch: 1,
            member,
            nonce_id,
            commitment: B256::repeat_byte(nonce_id as u8),
            height: 7,
            attempt: 0,
            digest: B256::repeat_byte(0xd1),
            share: [share; 32],
            own,
        }
    }

    fn audit(stores: &[(Vec<ShareRecord>, HashSet<u64>)]) -> Audit {
        let mut a = Audit::default();
        (a.shares, a.nonce_reuse, a.unrecorded) = check_shares(stores);
        a
    }

    #[test]
    fn honest_records_pass() {
        let a = audit(&[
            (
                vec![rec(1, 5, 1, true), rec(2, 9, 2, false)],
                HashSet::from([5]),
            ),
            (
                vec![rec(2, 9, 2, true), rec(1, 5, 1, false)],
                HashSet::from([9]),
            ),
        ]);
        assert!(a.passed(), "{a:?}");
        assert_eq!(a.shares, 4);
    }

    #[test]
    fn two_shares_under_one_nonce_are_caught_across_stores() {
        // Member 1 signed twice with nonce 5; each peer saw one of the two shares.
        let a = audit(&[
            (vec![rec(1, 5, 1, true)], HashSet::from([5])),
            (vec![rec(1, 5, 3, false)], HashSet::new()),
        ]);
        assert!(!a.passed());
        assert!(
            a.nonce_reuse
                .iter()
                .any(|s| s.contains("under one commitment")),
            "{a:?}"
        );
        // And the second share was never recorded by its signer.
        assert_eq!(a.unrecorded.len(), 1, "{a:?}");
    }

    /// Review finding: a faulty coordinator names an honest member's commitment under
    /// another of its nonce ids in the request it sends an aggregator. The aggregator's
    /// record carries the wrong label; when the member later signs with that id's real
    /// commitment, nothing may look like a reuse.
    #[test]
    fn a_relabelled_nonce_id_raises_no_false_alarm() {
        let mut seen = rec(1, 5, 1, false);
        seen.nonce_id = 6;
        let a = audit(&[
            (
                vec![rec(1, 5, 1, true), rec(1, 6, 2, true)],
                HashSet::from([5, 6]),
            ),
            (vec![seen], HashSet::new()),
        ]);
        assert!(a.passed(), "{a:?}");
    }

    #[test]
    fn shares_of_a_signer_whose_store_was_not_read_are_not_judged() {
        let a = audit(&[(vec![rec(4, 5, 1, false)], HashSet::new())]);
        assert!(a.passed(), "{a:?}");
    }

    #[test]
    fn one_commitment_under_two_nonce_ids_is_caught() {
        let mut second = rec(1, 6, 4, true);
        second.commitment = rec(1, 5, 1, true).commitment;
        let a = audit(&[(vec![rec(1, 5, 1, true), second], HashSet::from([5, 6]))]);
        assert!(
            a.nonce_reuse
                .iter()
                .any(|s| s.contains("under one commitment")),
            "{a:?}"
        );
    }

    #[test]
    fn a_ledger_id_signing_in_two_epochs_is_caught() {
        let mut later = rec(3, 5, 2, true);
        later.epoch = 2;
        let a = audit(&[(vec![rec(1, 5, 1, true), later], HashSet::from([5]))]);
        assert!(
            a.nonce_reuse.iter().any(|s| s.contains("signed twice")),
            "{a:?}"
        );
    }

    #[test]
    fn a_share_released_without_a_consumed_nonce_is_caught() {
        let a = audit(&[(vec![rec(1, 5, 1, true)], HashSet::new())]);
        assert!(a.unrecorded.iter().any(|s| s.contains("ledger")), "{a:?}");
    }
}
