//! The auditor: after a run, from outside the nodes — the chains as they are at the end,
//! and each member's store opened once its process has stopped — checks what the report,
//! built from the devnet's own records, cannot:
//! - every `MessageSent` log canonical on either gateway is delivered exactly once on its
//!   destination inbox (one `MessageDelivered` log), or, for a message to the gas burner,
//!   Failed and never delivered;
//! - no inbox delivered or failed a message id that no gateway emitted (a forgery);
//! - the members' stores agree: one decided block per height;
//! - no store holds equivocation evidence (every devnet member is honest).
//!
//! Not covered yet: nonce commitments are checked only as the durable ledger refuses a
//! second use (signature shares are not stored, so "no two shares under one commitment"
//! cannot be read back from a store).

use super::*;

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
    }
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
    for home in homes {
        let db = home.join("db");
        if !db.exists() {
            continue;
        }
        let store = sigil_node::store::Store::open(&db)
            .with_context(|| format!("open the store {}", db.display()))?;
        audit.stores += 1;
        audit.evidence += store.evidence_count()?;
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
    Ok(audit)
}

/// Prints the verdict.
pub(super) fn print(a: &Audit) {
    println!(
        "audit: {} canonical messages emitted, {} stores, {} heights: {}",
        a.emitted,
        a.stores,
        a.heights,
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
    if a.evidence > 0 {
        println!("  AUDIT {} equivocation evidence records", a.evidence);
    }
}
