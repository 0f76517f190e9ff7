//! The application core: a sans-I/O state machine (no clock, no network, no disk of its
//! own) that the node host and the simulator both drive.
//!
//! It owns
//! - the **observation pool**: messages this member observed at finality, by source chain
//!   and gateway nonce, plus the signed per-chain observation cursors of every member
//!   (gossip stays flat: one cursor per chain per member, not one message per observation);
//! - **block building**: a block names its batch by per-gateway nonce ranges below the point
//!   a quorum (t members) has observed, its Merkle root, and the signing set with one
//!   pre-published nonce commitment per signer — a few hundred bytes at 10,000 messages;
//! - **validity**: a member accepts a block only if it observed every message in it with the
//!   identical leaf (root recomputed from its own observations), the commitments decode
//!   (freshness is not asked: it changes over time, and `valid(v)` must not),
//!   and the limits hold; an unknown-yet message makes the answer [`Validity::Pending`];
//! - **signing after decision** (RFC 9591 §5.2–5.3): the decided block's signers consume
//!   their nonce durably and release shares; every member verifies shares and aggregates.
//!   Missing or invalid shares past the attempt's timeout (`share_timeout_ms`, half as
//!   much again per later attempt, at most 4 ×) start a new attempt whose coordinator picks
//!   fresh commitments from members that are neither culprits nor non-responders
//!   (ROAST-style), until t honest shares form.
//! - the member's **nonce pool**: commitments published ahead of use and refilled.

pub use crate::types::{Member, Observation};
use alloy_primitives::{Address, B256};
use frost::SigningPackage;
use frost::keys::{KeyPackage, PublicKeyPackage};
use frost::round1::SigningCommitments;
use frost::round2::SignatureShare;
use frost_secp256k1 as frost;
use prost::Message as _;
use sha2::Digest as _;
use sigil_consensus::{Height, Value};
use sigil_crypto::{BatchTree, GroupKey, NonceId, NonceLedger, NoncePool};
use sigil_proto as pb;
use std::collections::{BTreeMap, BTreeSet};

mod handover;
mod retry;
mod rotation;
mod signing;

pub use handover::{check_key_commit, confirmation_from_wire};
pub use rotation::{
    MAX_ROTATION_INBOXES, MAX_ROTATION_MEMBERS, MIN_ROTATION_MEMBERS, check_rotation,
};
#[cfg(test)]
pub(crate) mod handover_tests;
#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
mod tests;

/// The value the committee decides: a protobuf [`pb::Block`]. Its id is SHA-256 of the
/// protobuf encoding (prost encodes deterministically), 32 bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Block(pub pb::Block);

impl Eq for Block {}

impl Value for Block {
    type Id = B256;
    fn id(&self) -> B256 {
        B256::from_slice(&sha2::Sha256::digest(self.0.encode_to_vec()))
    }
}

/// Static parameters of one member's application.
#[derive(Debug, Clone)]
pub struct AppParams {
    /// This member (1-based), or `None` for an observer.
    pub me: Option<Member>,
    /// Committee size n.
    pub n: u16,
    /// FROST threshold and quorum t = 2f + 1.
    pub t: u16,
    /// Key epoch signed into every batch digest.
    pub epoch: u64,
    /// Watched gateways: (source chain id, gateway address).
    pub chains: Vec<(u64, Address)>,
    /// Most messages per block.
    pub max_messages: u32,
    /// Most payload bytes per block.
    pub max_bytes: u64,
    /// Nonces kept ready.
    pub nonce_pool: u32,
    /// Share collection deadline of the first attempt (ms); later attempts wait longer
    /// ([`App::share_timeout`]).
    pub share_timeout_ms: u64,
    /// A decided rotation whose key commit is not decided within this many heights after
    /// it expires: from the next height on, the operators' next approval (perhaps the same
    /// list, perhaps without an absent member) may be decided for the same epoch, while
    /// attestation under the current key never stopped. Heights, not time, so `valid(v)`
    /// stays a function of the decided history ([`DEFAULT_ROTATION_EXPIRY_HEIGHTS`]).
    pub rotation_expiry_heights: u64,
}

/// Heights a decided rotation waits for its key commit by default (see
/// [`AppParams::rotation_expiry_heights`]).
pub const DEFAULT_ROTATION_EXPIRY_HEIGHTS: u64 = 1_000;

/// This member's signing material. The ledger must be durable in production.
pub struct Signer {
    /// Secret key package (from DKG).
    pub key: KeyPackage,
    /// Public key package shared by the committee.
    pub public: PublicKeyPackage,
    /// Pre-generated nonces (memory only).
    pub pool: NoncePool,
    /// Durable nonce ledger.
    pub ledger: Box<dyn NonceLedger + Send>,
}

/// Answer to "is this block valid?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validity {
    /// Prevote for it.
    Valid,
    /// Prevote nil, with the reason.
    Invalid(String),
    /// Messages not observed yet; ask again later (then nil after a deadline).
    Pending,
}

/// Something the host must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Sign and gossip this body.
    Broadcast(pb::body::Kind),
    /// A decided block now has a verified group signature.
    Attested(pb::Attestation),
    /// A member sent an invalid share (culprit) in an attempt.
    Culprit {
        /// Height.
        height: Height,
        /// Attempt.
        attempt: u32,
        /// The member.
        member: Member,
    },
    /// A signing attempt timed out and a new one began.
    Retry {
        /// Height.
        height: Height,
        /// The new attempt.
        attempt: u32,
        /// Members the coordinator avoids: culprits, and members silent in the attempt that
        /// timed out (ranked last, not excluded).
        excluded: Vec<Member>,
    },
    /// Our own signing request could not be served (e.g. unknown nonce after a restart).
    SignRefused {
        /// Height.
        height: Height,
        /// Why.
        reason: String,
    },
    /// Signature shares to record ([`crate::storage::ShareRecord`]) before the effects
    /// after it: this member's own share before its broadcast, and the shares of a group
    /// signature that verified.
    Shares(Vec<crate::storage::ShareRecord>),
}

struct Session {
    root: B256,
    /// What the group signs: the batch digest, or a key-rotation digest (`handover`).
    digest: B256,
    /// Set on a key-rotation height: the inbox and new key the signature hands over to.
    handover: Option<pb::KeyHandover>,
    message_ids: Vec<B256>,
    attempt: u32,
    started_ms: u64,
    package: Option<SigningPackage>,
    signers: BTreeSet<Member>,
    /// The source chains the block carries messages of: while one of them is paused by
    /// this member's operator it releases no share for it (it still adopts the others'
    /// group signature).
    chains: Vec<u64>,
    /// Each signer's (nonce id, commitment hash) in the attempt in progress.
    nonces: BTreeMap<Member, (u64, B256)>,
    shares: BTreeMap<Member, SignatureShare>,
    culprits: BTreeSet<Member>,
    /// Members convicted in the attempt in progress: their further shares for it are
    /// ignored (each would cost a full cheater detection). Cleared with `shares`.
    blamed: BTreeSet<Member>,
    /// Attempts (with our package) each member stayed silent in: coordinators rank the
    /// least silent first instead of excluding, so a member silent once (e.g. restarting)
    /// is picked again and a withholder drifts to the end.
    silence: BTreeMap<Member, u32>,
    /// Attempts whose signing request this member applied or answered, each at most once
    /// (at most [`ANSWERED_PER_SESSION`]; attempts below `answered_floor` are refused).
    answered: BTreeSet<u32>,
    /// Attempts below this are no longer answered (they fell out of `answered`).
    answered_floor: u32,
    done: bool,
    attestation: Option<pb::Attestation>,
    /// The signing request for the next attempt from its coordinator, received before this
    /// member's share timeout moved it there (at most one: keyed by attempt).
    held: BTreeMap<u32, pb::SignRequest>,
}

/// SHA-256 of a serialized nonce commitment ([`crate::storage::ShareRecord::commitment`]).
fn commitment_hash(sc: &SigningCommitments) -> B256 {
    let bytes = sc.serialize().unwrap_or_default();
    B256::from_slice(&sha2::Sha256::digest(bytes))
}

/// Most attempts a session remembers having answered (a coordinator's request per attempt
/// is answered once; see [`App::on_sign_request`]).
const ANSWERED_PER_SESSION: usize = 256;

/// Most (member, nonce id) pairs remembered as used per member; older ids fall out (the
/// member's own durable ledger still refuses them, so this only bounds memory).
const USED_PER_MEMBER: usize = 1024;

/// Counters for metrics and tests.
#[derive(Debug, Default, Clone)]
pub struct AppStats {
    /// Invalid shares seen.
    pub culprits: u64,
    /// Signing attempts after the first.
    pub retries: u64,
    /// Shares this member released.
    pub shares_sent: u64,
    /// Attestations formed.
    pub attestations: u64,
    /// Inputs dropped (stale, unknown, malformed).
    pub dropped: u64,
    /// Signing requests refused (wrong coordinator, not the next attempt, replayed or
    /// stale commitments).
    pub requests_refused: u64,
}

/// What the pool keeps of an observation: its Merkle leaf and message id, hashed once
/// when it arrives (four keccak256 per message) rather than at every build, validation
/// and decision of a block of up to `max_messages`, and its payload size (bytes).
#[derive(Debug, Clone, Copy)]
struct Pooled {
    leaf: B256,
    id: B256,
    payload_len: u64,
}

impl Pooled {
    fn of(o: &Observation) -> Self {
        Self {
            leaf: o.message.leaf(),
            id: o.message.id(),
            payload_len: o.message.payload.len() as u64,
        }
    }
}

/// The application state machine (see module docs).
pub struct App {
    p: AppParams,
    signer: Option<Signer>,
    group_key: Option<GroupKey>,
    /// Observed, undecided messages by (source chain id, gateway nonce).
    observations: BTreeMap<(u64, u64), Pooled>,
    /// Source chains this member's operator paused (emergency stop; `set_paused`).
    paused: BTreeSet<u64>,
    /// Source chains each other member announced paused (heartbeats; configured chains
    /// only, so at most n − 1 entries of at most `chains` each).
    paused_by: BTreeMap<Member, BTreeSet<u64>>,
    cursors: BTreeMap<Member, BTreeMap<u64, pb::Cursor>>,
    next_nonce: BTreeMap<u64, u64>,
    commitments: BTreeMap<Member, BTreeMap<u64, Held>>,
    used: BTreeSet<(Member, u64)>,
    sessions: BTreeMap<Height, Session>,
    early_shares: BTreeMap<(Height, u32), BTreeMap<Member, Vec<u8>>>,
    suspects: BTreeMap<Member, Height>,
    online: Option<BTreeSet<Member>>,
    rng: Box<dyn rand_core::CryptoRngCore + Send>,
    height: Height,
    /// The next committee this member's operator approved (see [`rotation`]).
    approved: Option<pb::Rotation>,
    /// The rotation decided in this epoch, with its height.
    decided_rotation: Option<(Height, pb::Rotation)>,
    /// The key commit the host offered for proposal (see [`handover`]).
    offered_key: Option<pb::KeyCommit>,
    /// The key commit decided in this epoch, with its height.
    decided_key: Option<(Height, pb::KeyCommit)>,
    /// Heights of the decided key-rotation blocks, in the rotation's inbox order.
    decided_handovers: Vec<Height>,
    /// Counters.
    pub stats: AppStats,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("me", &self.p.me)
            .field("height", &self.height)
            .finish()
    }
}

fn ser_commitments(c: &SigningCommitments) -> Vec<u8> {
    c.serialize().unwrap_or_default()
}

/// A member's published nonce commitment, decoded once and kept with its encoding: members
/// re-publish their whole list every gossip period, and decoding (two point decompressions)
/// or encoding (two field inversions) each time was a quarter of a member's CPU.
#[derive(Clone, Debug)]
pub(super) struct Held {
    /// The hiding and binding nonce commitments (RFC 9591 §5.1).
    pub(super) sc: SigningCommitments,
    /// Their frost-secp256k1 encoding, as gossiped (~70 bytes).
    pub(super) bytes: Vec<u8>,
}

impl App {
    /// A fresh application. `next_nonce` gives, per source chain, the first gateway nonce not
    /// yet in a decided block (from storage after a restart).
    pub fn new(
        p: AppParams,
        signer: Option<Signer>,
        group_key: Option<GroupKey>,
        next_nonce: BTreeMap<u64, u64>,
        rng: Box<dyn rand_core::CryptoRngCore + Send>,
    ) -> Self {
        Self {
            p,
            signer,
            group_key,
            observations: BTreeMap::new(),
            paused: BTreeSet::new(),
            paused_by: BTreeMap::new(),
            cursors: BTreeMap::new(),
            next_nonce,
            commitments: BTreeMap::new(),
            used: BTreeSet::new(),
            sessions: BTreeMap::new(),
            early_shares: BTreeMap::new(),
            suspects: BTreeMap::new(),
            online: None,
            rng,
            height: 1,
            approved: None,
            decided_rotation: None,
            offered_key: None,
            decided_key: None,
            decided_handovers: Vec::new(),
            stats: AppStats::default(),
        }
    }

    /// Parameters.
    pub fn params(&self) -> &AppParams {
        &self.p
    }

    /// Replaces the randomness used for nonces (default: the OS). The simulator passes a
    /// seeded generator so a seed gives the same run.
    pub fn set_rng(&mut self, rng: Box<dyn rand_core::CryptoRngCore + Send>) {
        self.rng = rng;
    }

    /// Members currently reachable (the host's connected peers and itself). Signing sets
    /// prefer them; `None` (the default) treats everyone as reachable.
    pub fn set_online(&mut self, members: &[Member]) {
        self.online = Some(members.iter().copied().collect());
    }

    /// Tells the app which height consensus is at (bounds buffers).
    pub fn set_height(&mut self, h: Height) {
        self.height = h;
    }

    /// The group key, if this member has one.
    pub fn group_key(&self) -> Option<&GroupKey> {
        self.group_key.as_ref()
    }

    /// Pauses (`true`) or resumes source chain `chain` for this member: see
    /// `Driver::set_paused`. A paused chain's messages are still observed and held.
    pub fn set_paused(&mut self, chain: u64, paused: bool) {
        if paused {
            self.paused.insert(chain);
        } else {
            self.paused.remove(&chain);
        }
    }

    /// Source chains this member's operator paused.
    pub fn paused(&self) -> &BTreeSet<u64> {
        &self.paused
    }

    /// The source chains `from` announced paused (its heartbeat); chains not configured
    /// here are ignored. A member's latest announcement replaces its previous one.
    pub fn on_paused_announced(&mut self, from: Member, chains: &[u64]) {
        if Some(from) == self.p.me || from == 0 || from > self.p.n {
            return;
        }
        let set: BTreeSet<u64> = chains
            .iter()
            .copied()
            .filter(|c| self.p.chains.iter().any(|(id, _)| id == c))
            .collect();
        if set.is_empty() {
            self.paused_by.remove(&from);
        } else {
            self.paused_by.insert(from, set);
        }
    }

    /// Whether this member leaves `chain` out of its proposals: its own operator paused it,
    /// or f + 1 members (this one included) did, so at least one honest member prevotes nil
    /// on any block carrying it and no such block can gather a quorum. A faulty member's
    /// announcement alone (at most f of them) changes nothing.
    fn left_out(&self, chain: u64) -> bool {
        if self.paused.contains(&chain) {
            return true;
        }
        let f = usize::from(self.p.n.saturating_sub(1) / 3);
        self.paused_by
            .values()
            .filter(|s| s.contains(&chain))
            .count()
            > f
    }

    /// The first paused chain `ranges` carry messages of.
    fn paused_in(&self, ranges: &[pb::Range]) -> Option<u64> {
        self.first_paused(ranges.iter().map(|r| r.chain_id))
    }

    /// The first of `chains` this member's operator paused.
    fn first_paused(&self, mut chains: impl Iterator<Item = u64>) -> Option<u64> {
        chains.find(|c| self.paused.contains(c))
    }

    /// Observations held and not yet in a decided block (messages; all chains).
    pub fn pending_observations(&self) -> usize {
        self.observations.len()
    }

    /// Forgets `chain`'s observations below gateway nonce `floor` (decided): O(k log n) for
    /// the k removed, not a walk over the whole pool, which holds every observed,
    /// undecided message of every chain.
    fn drop_observed_below(&mut self, chain: u64, floor: u64) {
        let decided: Vec<(u64, u64)> = self
            .observations
            .range((chain, 0)..(chain, floor))
            .map(|(k, _)| *k)
            .collect();
        for k in decided {
            self.observations.remove(&k);
        }
    }

    /// Pre-generated signing nonces this member holds (`None` without a key share).
    pub fn nonces_available(&self) -> Option<usize> {
        self.signer.as_ref().map(|s| s.pool.available())
    }

    /// First nonce not yet decided, per chain.
    pub fn next_nonces(&self) -> &BTreeMap<u64, u64> {
        &self.next_nonce
    }

    /// Adds observations made at finality and this member's cursor for their chain.
    pub fn observe(
        &mut self,
        obs: impl IntoIterator<Item = Observation>,
        cursor: Option<pb::Cursor>,
    ) {
        for o in obs {
            let m = &o.message;
            let floor = self
                .next_nonce
                .get(&m.source_chain_id)
                .copied()
                .unwrap_or(0);
            if m.nonce >= floor {
                self.observations
                    .insert((m.source_chain_id, m.nonce), Pooled::of(&o));
            }
        }
        if let (Some(me), Some(c)) = (self.p.me, cursor) {
            self.cursors.entry(me).or_default().insert(c.chain_id, c);
        }
    }

    /// A member's gossiped cursors.
    pub fn on_cursors(&mut self, from: Member, cursors: &pb::Cursors) {
        let entry = self.cursors.entry(from).or_default();
        for c in &cursors.cursors {
            if self.p.chains.iter().any(|(id, _)| *id == c.chain_id) {
                entry.insert(c.chain_id, c.clone());
            }
        }
    }

    /// This member's cursors to gossip.
    pub fn own_cursors(&self) -> pb::Cursors {
        let cursors = self
            .p
            .me
            .and_then(|me| self.cursors.get(&me))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        pb::Cursors { cursors }
    }

    /// The gateway nonce below which at least t members have observed `chain`.
    pub fn quorum_nonce(&self, chain: u64) -> u64 {
        let mut seen: Vec<u64> = (1..=self.p.n)
            .map(|m| {
                self.cursors
                    .get(&m)
                    .and_then(|c| c.get(&chain))
                    .map_or(0, |c| c.next_nonce)
            })
            .collect();
        seen.sort_unstable_by(|a, b| b.cmp(a));
        seen.get(usize::from(self.p.t).saturating_sub(1))
            .copied()
            .unwrap_or(0)
    }

    fn own_next(&self, chain: u64) -> u64 {
        self.p
            .me
            .and_then(|me| self.cursors.get(&me))
            .and_then(|c| c.get(&chain))
            .map_or(0, |c| c.next_nonce)
    }

    /// Whether a quorum has observed messages not yet decided, or an approved rotation
    /// waits to be decided (worth starting a height).
    pub fn has_work(&self) -> bool {
        if self.decided_key.is_some() {
            // After the key commit only key-rotation blocks are decided in this epoch.
            return self.handover_to_propose().is_some();
        }
        self.rotation_to_propose(self.height).is_some()
            || self.key_commit_to_propose(self.height).is_some()
            || self.p.chains.iter().any(|(c, _)| {
                let next = self.next_nonce.get(c).copied().unwrap_or(0);
                self.quorum_nonce(*c).min(self.own_next(*c)) > next
            })
    }

    /// Leaves and ids of the messages in `ranges`, from our own observations, with the
    /// total payload bytes. `Err(())` if any message is missing.
    fn leaves(&self, ranges: &[pb::Range]) -> Result<(Vec<B256>, Vec<B256>, u64), ()> {
        let mut leaves = Vec::new();
        let mut ids = Vec::new();
        let mut bytes = 0u64;
        for r in ranges {
            for nonce in r.from_nonce..r.to_nonce {
                let o = self.observations.get(&(r.chain_id, nonce)).ok_or(())?;
                leaves.push(o.leaf);
                ids.push(o.id);
                bytes += o.payload_len;
            }
        }
        Ok((leaves, ids, bytes))
    }

    /// Builds the block to propose at `height` (paper: `getValue()`), or `None` when there is
    /// nothing a quorum observed and no approved rotation to decide, or too few fresh nonce
    /// commitments are known. An approved, undecided rotation rides along (alone if there are
    /// no messages: an empty batch with a zero root).
    pub fn build_block(&self, height: Height, time_ms: u64) -> Option<Block> {
        if self.decided_key.is_some() {
            let inbox = self.handover_to_propose()?.clone();
            let signers = self.pick_signers(height, 0, &BTreeSet::new(), &BTreeMap::new())?;
            return Some(Block(pb::Block {
                height,
                epoch: self.p.epoch,
                root: B256::ZERO.to_vec(),
                signers,
                time_ms,
                handover: Some(inbox),
                ..Default::default()
            }));
        }
        let mut ranges = Vec::new();
        let mut count: u64 = 0;
        let mut bytes: u64 = 0;
        for (chain, gateway) in &self.p.chains {
            if self.left_out(*chain) {
                continue;
            }
            let from = self.next_nonce.get(chain).copied().unwrap_or(0);
            let upto = self.quorum_nonce(*chain).min(self.own_next(*chain));
            let mut to = from;
            while to < upto && count < u64::from(self.p.max_messages) {
                let Some(o) = self.observations.get(&(*chain, to)) else {
                    break;
                };
                let len = o.payload_len;
                if bytes + len > self.p.max_bytes {
                    break;
                }
                bytes += len;
                count += 1;
                to += 1;
            }
            if to > from {
                ranges.push(pb::Range {
                    chain_id: *chain,
                    gateway: gateway.to_vec(),
                    from_nonce: from,
                    to_nonce: to,
                });
            }
        }
        let rotation = self.rotation_to_propose(height).cloned();
        // A key commit waits for the height after the rotation's (never both in one block).
        let key_commit = rotation
            .is_none()
            .then(|| self.key_commit_to_propose(height).cloned())
            .flatten();
        if ranges.is_empty() && rotation.is_none() && key_commit.is_none() {
            return None;
        }
        let root = if ranges.is_empty() {
            B256::ZERO
        } else {
            let (leaves, _, _) = self.leaves(&ranges).ok()?;
            BatchTree::new(&leaves).ok()?.root()
        };
        let signers = self.pick_signers(height, 0, &BTreeSet::new(), &BTreeMap::new())?;
        let carry = if key_commit.is_some() {
            self.carry_after(&ranges)
        } else {
            Vec::new()
        };
        Some(Block(pb::Block {
            height,
            epoch: self.p.epoch,
            handover: None,
            carry,
            ranges,
            root: root.to_vec(),
            count: count as u32,
            signers,
            time_ms,
            rotation,
            key_commit,
        }))
    }

    /// Checks a proposed block (paper: `valid(v)`).
    pub fn validate(&self, height: Height, block: &Block) -> Validity {
        let b = &block.0;
        let bad = |s: String| Validity::Invalid(s);
        if b.height != height {
            return bad(format!("block for height {} at height {height}", b.height));
        }
        if b.epoch != self.p.epoch {
            return bad(format!("epoch {} != {}", b.epoch, self.p.epoch));
        }
        if let Some(c) = self.paused_in(&b.ranges) {
            return bad(format!(
                "carries messages of chain {c}, which this member's operator paused"
            ));
        }
        if let Err(e) = self.check_block_rotation(b) {
            return bad(e);
        }
        if let Err(e) = self.check_block_key_commit(b) {
            return bad(e);
        }
        if let Err(e) = self.check_block_handover(b) {
            return bad(e);
        }
        if b.ranges.is_empty()
            && (b.rotation.is_some() || b.key_commit.is_some() || b.handover.is_some())
        {
            // A rotation or key commit alone: an empty batch with a zero root.
            if b.count != 0 || b.root != B256::ZERO.as_slice() {
                return bad("an empty batch must have count 0 and a zero root".into());
            }
            if let Err(e) = self.check_signers(&b.signers) {
                return bad(e);
            }
            return Validity::Valid;
        }
        if b.ranges.is_empty() || b.count == 0 || b.count > self.p.max_messages {
            return bad(format!(
                "count {} outside 1..={}",
                b.count, self.p.max_messages
            ));
        }
        let mut seen_chains = BTreeSet::new();
        let mut total = 0u64;
        for r in &b.ranges {
            let Some((_, gw)) = self.p.chains.iter().find(|(c, _)| *c == r.chain_id) else {
                return bad(format!("unknown chain {}", r.chain_id));
            };
            if r.gateway != gw.as_slice() {
                return bad(format!("wrong gateway for chain {}", r.chain_id));
            }
            if !seen_chains.insert(r.chain_id) {
                return bad(format!("chain {} twice", r.chain_id));
            }
            let next = self.next_nonce.get(&r.chain_id).copied().unwrap_or(0);
            if r.from_nonce != next || r.to_nonce <= r.from_nonce {
                return bad(format!(
                    "range {}..{} on chain {} does not continue at {next}",
                    r.from_nonce, r.to_nonce, r.chain_id
                ));
            }
            total += r.to_nonce - r.from_nonce;
        }
        if total != u64::from(b.count) {
            return bad(format!("count {} but ranges hold {total}", b.count));
        }
        let Ok((leaves, _, bytes)) = self.leaves(&b.ranges) else {
            return Validity::Pending;
        };
        if bytes > self.p.max_bytes {
            return bad(format!("{bytes} payload bytes > {}", self.p.max_bytes));
        }
        let root = match BatchTree::new(&leaves) {
            Ok(t) => t.root(),
            Err(e) => return bad(e.to_string()),
        };
        if b.root != root.as_slice() {
            return bad("root differs from our observations".into());
        }
        if let Err(e) = self.check_signers(&b.signers) {
            return bad(e);
        }
        Validity::Valid
    }

    fn check_signers(
        &self,
        signers: &[pb::Commitment],
    ) -> Result<BTreeMap<Member, SigningCommitments>, String> {
        if signers.len() != usize::from(self.p.t) {
            return Err(format!("{} signers, need {}", signers.len(), self.p.t));
        }
        let mut out = BTreeMap::new();
        for c in signers {
            let m = u16::try_from(c.member)
                .ok()
                .filter(|m| (1..=self.p.n).contains(m));
            let Some(m) = m else {
                return Err(format!("signer {} not a member", c.member));
            };
            // Decodable is all validity asks of a commitment. Whether a nonce is still unused
            // changes over time (a signing retry of an earlier height may name it after this
            // block was prevoted), and `valid(v)` must not: members locked on a block would
            // then disagree for ever with one that no longer finds it valid (seed 29361). The
            // signing set is attempt 0's suggestion; the owner's pool and durable ledger
            // refuse a consumed or unknown nonce (`signing::sign`), and the attempt retries
            // with fresh commitments.
            let sc = self
                .decode_commitment(m, c)
                .ok_or_else(|| format!("member {m}: malformed commitment"))?;
            if out.insert(m, sc).is_some() {
                return Err(format!("signer {m} twice"));
            }
        }
        Ok(out)
    }
}
