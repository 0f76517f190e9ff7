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
//!   identical leaf (root recomputed from its own observations), the commitments are fresh,
//!   and the limits hold; an unknown-yet message makes the answer [`Validity::Pending`];
//! - **signing after decision** (RFC 9591 §5.2–5.3): the decided block's signers consume
//!   their nonce durably and release shares; every member verifies shares and aggregates.
//!   Missing or invalid shares past `share_timeout_ms` start a new attempt whose coordinator
//!   picks fresh commitments from members that are neither culprits nor non-responders
//!   (ROAST-style), until t honest shares form.
//! - the member's **nonce pool**: commitments published ahead of use and refilled.

use crate::store::Observation;
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

/// Member index, 1-based.
pub type Member = u16;

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
    /// Share collection deadline per attempt (ms).
    pub share_timeout_ms: u64,
}

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
        /// Members excluded (non-responders and culprits).
        excluded: Vec<Member>,
    },
    /// Our own signing request could not be served (e.g. unknown nonce after a restart).
    SignRefused {
        /// Height.
        height: Height,
        /// Why.
        reason: String,
    },
}

struct Session {
    root: B256,
    digest: B256,
    message_ids: Vec<B256>,
    attempt: u32,
    started_ms: u64,
    package: Option<SigningPackage>,
    signers: BTreeSet<Member>,
    shares: BTreeMap<Member, SignatureShare>,
    culprits: BTreeSet<Member>,
    silent: BTreeSet<Member>,
    done: bool,
    attestation: Option<pb::Attestation>,
}

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
}

/// The application state machine (see module docs).
pub struct App {
    p: AppParams,
    signer: Option<Signer>,
    group_key: Option<GroupKey>,
    observations: BTreeMap<(u64, u64), Observation>,
    cursors: BTreeMap<Member, BTreeMap<u64, pb::Cursor>>,
    next_nonce: BTreeMap<u64, u64>,
    commitments: BTreeMap<Member, BTreeMap<u64, SigningCommitments>>,
    used: BTreeSet<(Member, u64)>,
    sessions: BTreeMap<Height, Session>,
    early_shares: BTreeMap<(Height, u32), BTreeMap<Member, Vec<u8>>>,
    suspects: BTreeMap<Member, Height>,
    online: Option<BTreeSet<Member>>,
    rng: Box<dyn rand_core::CryptoRngCore + Send>,
    height: Height,
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

impl App {
    /// A fresh application. `next_nonce` gives, per source chain, the first gateway nonce not
    /// yet in a decided block (from storage after a restart).
    pub fn new(
        p: AppParams,
        signer: Option<Signer>,
        group_key: Option<GroupKey>,
        next_nonce: BTreeMap<u64, u64>,
    ) -> Self {
        Self {
            p,
            signer,
            group_key,
            observations: BTreeMap::new(),
            cursors: BTreeMap::new(),
            next_nonce,
            commitments: BTreeMap::new(),
            used: BTreeSet::new(),
            sessions: BTreeMap::new(),
            early_shares: BTreeMap::new(),
            suspects: BTreeMap::new(),
            online: None,
            rng: Box::new(rand_core::OsRng),
            height: 1,
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
                self.observations.insert((m.source_chain_id, m.nonce), o);
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

    /// Whether a quorum has observed messages not yet decided (worth starting a height).
    pub fn has_work(&self) -> bool {
        self.p.chains.iter().any(|(c, _)| {
            let next = self.next_nonce.get(c).copied().unwrap_or(0);
            self.quorum_nonce(*c).min(self.own_next(*c)) > next
        })
    }

    /// A member's published nonce commitments (replaces what we knew).
    pub fn on_commitments(&mut self, from: Member, list: &pb::NonceCommitments) {
        let mut map = BTreeMap::new();
        for c in list.commitments.iter().take(256) {
            if c.member != u32::from(from) || self.used.contains(&(from, c.nonce_id)) {
                continue;
            }
            match SigningCommitments::deserialize(&c.commitments) {
                Ok(sc) => {
                    map.insert(c.nonce_id, sc);
                }
                Err(_) => self.stats.dropped += 1,
            }
        }
        self.commitments.insert(from, map);
    }

    /// Refills this member's nonce pool when it is below half, returning the full list of
    /// commitments to publish (always, so peers that missed one catch up).
    /// Errors: ledger storage failure.
    pub fn refresh_commitments(
        &mut self,
    ) -> Result<Option<pb::NonceCommitments>, sigil_crypto::NonceError> {
        let (Some(me), Some(signer)) = (self.p.me, self.signer.as_mut()) else {
            return Ok(None);
        };
        let have = signer.pool.available() as u32;
        if have < self.p.nonce_pool / 2 {
            signer.pool.refill(
                &signer.key,
                self.p.nonce_pool - have,
                signer.ledger.as_mut(),
                &mut self.rng,
            )?;
        }
        let mine: BTreeMap<u64, SigningCommitments> = signer
            .pool
            .ids()
            .into_iter()
            .filter(|id| !self.used.contains(&(me, id.0)))
            .filter_map(|id| signer.pool.commitments(id).map(|c| (id.0, c)))
            .collect();
        let list = pb::NonceCommitments {
            commitments: mine
                .iter()
                .map(|(id, c)| pb::Commitment {
                    member: u32::from(me),
                    nonce_id: *id,
                    commitments: ser_commitments(c),
                })
                .collect(),
        };
        self.commitments.insert(me, mine);
        Ok(Some(list))
    }

    fn pick_signers(
        &self,
        height: Height,
        exclude: &BTreeSet<Member>,
    ) -> Option<Vec<pb::Commitment>> {
        let n = self.p.n;
        let mut order: Vec<Member> = Vec::new();
        if let Some(me) = self.p.me {
            order.push(me);
        }
        for k in 0..n {
            let m = ((height + u64::from(k)) % u64::from(n)) as Member + 1;
            if !order.contains(&m) {
                order.push(m);
            }
        }
        let suspect = |m: &Member| {
            self.suspects.get(m).is_some_and(|until| *until >= height)
                || self.online.as_ref().is_some_and(|on| !on.contains(m))
        };
        let mut ranked: Vec<Member> = order.iter().copied().filter(|m| !suspect(m)).collect();
        ranked.extend(order.iter().copied().filter(|m| suspect(m)));
        let mut out = Vec::new();
        for m in ranked {
            if exclude.contains(&m) {
                continue;
            }
            let Some((id, c)) = self
                .commitments
                .get(&m)
                .and_then(|cs| cs.iter().find(|(id, _)| !self.used.contains(&(m, **id))))
            else {
                continue;
            };
            out.push(pb::Commitment {
                member: u32::from(m),
                nonce_id: *id,
                commitments: ser_commitments(c),
            });
            if out.len() == usize::from(self.p.t) {
                out.sort_by_key(|c| c.member);
                return Some(out);
            }
        }
        None
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
                leaves.push(o.message.leaf());
                ids.push(o.message.id());
                bytes += o.message.payload.len() as u64;
            }
        }
        Ok((leaves, ids, bytes))
    }

    /// Builds the block to propose at `height` (paper: `getValue()`), or `None` when there is
    /// nothing a quorum observed or too few fresh nonce commitments are known.
    pub fn build_block(&self, height: Height, time_ms: u64) -> Option<Block> {
        let mut ranges = Vec::new();
        let mut count: u64 = 0;
        let mut bytes: u64 = 0;
        for (chain, gateway) in &self.p.chains {
            let from = self.next_nonce.get(chain).copied().unwrap_or(0);
            let upto = self.quorum_nonce(*chain).min(self.own_next(*chain));
            let mut to = from;
            while to < upto && count < u64::from(self.p.max_messages) {
                let Some(o) = self.observations.get(&(*chain, to)) else {
                    break;
                };
                let len = o.message.payload.len() as u64;
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
        if ranges.is_empty() {
            return None;
        }
        let (leaves, _, _) = self.leaves(&ranges).ok()?;
        let root = BatchTree::new(&leaves).ok()?.root();
        let signers = self.pick_signers(height, &BTreeSet::new())?;
        Some(Block(pb::Block {
            height,
            epoch: self.p.epoch,
            ranges,
            root: root.to_vec(),
            count: count as u32,
            signers,
            time_ms,
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
            if self.used.contains(&(m, c.nonce_id)) {
                return Err(format!("member {m} nonce {} already used", c.nonce_id));
            }
            let sc = SigningCommitments::deserialize(&c.commitments)
                .map_err(|_| format!("member {m}: malformed commitment"))?;
            if Some(m) == self.p.me {
                let held = self
                    .signer
                    .as_ref()
                    .and_then(|s| s.pool.commitments(NonceId(c.nonce_id)));
                if held != Some(sc) {
                    return Err(format!(
                        "our nonce {} is not held (consumed or unknown)",
                        c.nonce_id
                    ));
                }
            }
            if out.insert(m, sc).is_some() {
                return Err(format!("signer {m} twice"));
            }
        }
        Ok(out)
    }

    /// A block was decided at `height`. Advances the pool, starts signing (attempt 0 with the
    /// block's signing set) unless `attestation` (from catch-up) is given.
    pub fn on_decided(
        &mut self,
        height: Height,
        block: &Block,
        attestation: Option<&pb::Attestation>,
        now_ms: u64,
    ) -> Vec<Effect> {
        let b = &block.0;
        let ids = self.leaves(&b.ranges).map(|(_, ids, _)| ids).ok();
        for r in &b.ranges {
            let next = self.next_nonce.entry(r.chain_id).or_insert(0);
            *next = (*next).max(r.to_nonce);
            let floor = *next;
            self.observations
                .retain(|(c, n), _| *c != r.chain_id || *n >= floor);
        }
        for c in &b.signers {
            if let Ok(m) = u16::try_from(c.member) {
                self.used.insert((m, c.nonce_id));
                if let Some(cs) = self.commitments.get_mut(&m) {
                    cs.remove(&c.nonce_id);
                }
            }
        }
        self.height = height + 1;
        if attestation.is_some() {
            return Vec::new();
        }
        let root = B256::from_slice(&b.root);
        let digest = sigil_crypto::batch_digest(self.p.epoch, height, root);
        let mut s = Session {
            root,
            digest,
            message_ids: ids.unwrap_or_default(),
            attempt: 0,
            started_ms: now_ms,
            package: None,
            signers: BTreeSet::new(),
            shares: BTreeMap::new(),
            culprits: BTreeSet::new(),
            silent: BTreeSet::new(),
            done: false,
            attestation: None,
        };
        let mut out = Vec::new();
        if let Ok(map) = self.commitments_of(&b.signers) {
            self.start_attempt(&mut s, height, 0, map, now_ms, &mut out);
        }
        self.sessions.insert(height, s);
        self.drain_early(height, &mut out);
        out
    }

    fn commitments_of(
        &self,
        signers: &[pb::Commitment],
    ) -> Result<BTreeMap<Member, (u64, SigningCommitments)>, ()> {
        let mut map = BTreeMap::new();
        for c in signers {
            let m = u16::try_from(c.member).map_err(|_| ())?;
            let sc = SigningCommitments::deserialize(&c.commitments).map_err(|_| ())?;
            map.insert(m, (c.nonce_id, sc));
        }
        Ok(map)
    }

    fn start_attempt(
        &mut self,
        s: &mut Session,
        height: Height,
        attempt: u32,
        map: BTreeMap<Member, (u64, SigningCommitments)>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let by_member: BTreeMap<Member, SigningCommitments> =
            map.iter().map(|(m, (_, c))| (*m, *c)).collect();
        let Ok(package) = sigil_crypto::signing::signing_package(&by_member, s.digest) else {
            return;
        };
        s.attempt = attempt;
        s.started_ms = now_ms;
        s.signers = by_member.keys().copied().collect();
        s.shares.clear();
        if let (Some(me), Some((nonce, _))) = (self.p.me, self.p.me.and_then(|me| map.get(&me)))
            && let Some(signer) = self.signer.as_mut()
        {
            match sigil_crypto::signing::sign(
                &signer.key,
                &package,
                NonceId(*nonce),
                &mut signer.pool,
                signer.ledger.as_mut(),
            ) {
                Ok(share) => {
                    self.stats.shares_sent += 1;
                    s.shares.insert(me, share);
                    out.push(Effect::Broadcast(pb::body::Kind::Share(
                        pb::SignatureShare {
                            height,
                            attempt,
                            share: share.serialize(),
                        },
                    )));
                }
                Err(e) => out.push(Effect::SignRefused {
                    height,
                    reason: e.to_string(),
                }),
            }
        }
        s.package = Some(package);
        self.try_aggregate(s, height, out);
    }

    fn drain_early(&mut self, height: Height, out: &mut Vec<Effect>) {
        let keys: Vec<(Height, u32)> = self
            .early_shares
            .range((height, 0)..=(height, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            let cur = self.sessions.get(&height).map(|s| s.attempt);
            if cur != Some(k.1) {
                continue;
            }
            if let Some(shares) = self.early_shares.remove(&k) {
                for (m, bytes) in shares {
                    out.extend(self.on_share(
                        m,
                        &pb::SignatureShare {
                            height,
                            attempt: k.1,
                            share: bytes,
                        },
                        0,
                    ));
                }
            }
        }
    }

    /// A signature share from member `from`.
    pub fn on_share(
        &mut self,
        from: Member,
        msg: &pb::SignatureShare,
        _now_ms: u64,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some(mut s) = self.sessions.remove(&msg.height) else {
            // Not decided here yet: keep a bounded number for a little while.
            if msg.height >= self.height
                && msg.height <= self.height + 2
                && self.early_shares.len() < 64
            {
                self.early_shares
                    .entry((msg.height, msg.attempt))
                    .or_default()
                    .insert(from, msg.share.clone());
            } else {
                self.stats.dropped += 1;
            }
            return out;
        };
        if s.done || msg.attempt < s.attempt {
            self.sessions.insert(msg.height, s);
            return out;
        }
        if msg.attempt > s.attempt || s.package.is_none() {
            if self.early_shares.len() < 64 {
                self.early_shares
                    .entry((msg.height, msg.attempt))
                    .or_default()
                    .insert(from, msg.share.clone());
            }
            self.sessions.insert(msg.height, s);
            return out;
        }
        if !s.signers.contains(&from) || s.shares.contains_key(&from) {
            self.sessions.insert(msg.height, s);
            return out;
        }
        let share = SignatureShare::deserialize(&msg.share);
        let ok = match (&share, &s.package, &self.signer) {
            (Ok(sh), Some(pkg), Some(signer)) => {
                sigil_crypto::signing::verify_share(pkg, from, sh, &signer.public).is_ok()
            }
            (Ok(_), Some(_), None) => true,
            _ => false,
        };
        match share {
            Ok(sh) if ok => {
                s.shares.insert(from, sh);
                self.try_aggregate(&mut s, msg.height, &mut out);
            }
            _ => {
                s.culprits.insert(from);
                self.stats.culprits += 1;
                self.suspects.insert(from, msg.height + 16);
                out.push(Effect::Culprit {
                    height: msg.height,
                    attempt: msg.attempt,
                    member: from,
                });
            }
        }
        self.sessions.insert(msg.height, s);
        out
    }

    fn try_aggregate(&mut self, s: &mut Session, height: Height, out: &mut Vec<Effect>) {
        if s.done || s.shares.len() < s.signers.len() {
            return;
        }
        let (Some(pkg), Some(signer), Some(gk)) = (&s.package, &self.signer, &self.group_key)
        else {
            return;
        };
        match sigil_crypto::signing::aggregate(pkg, &s.shares, &signer.public) {
            Ok(sig) => {
                if sigil_crypto::signing::verify(gk, s.digest, &sig).is_err() {
                    return;
                }
                let Ok(bytes) = sig.serialize() else { return };
                s.done = true;
                self.stats.attestations += 1;
                let a = pb::Attestation {
                    epoch: self.p.epoch,
                    height,
                    root: s.root.to_vec(),
                    signature: bytes,
                    message_ids: s.message_ids.iter().map(|i| i.to_vec()).collect(),
                };
                // Members that missed shares finish from this one.
                out.push(Effect::Broadcast(pb::body::Kind::Attestation(
                    pb::Attestation {
                        message_ids: Vec::new(),
                        ..a.clone()
                    },
                )));
                out.push(Effect::Attested(a));
            }
            Err(sigil_crypto::SigningError::InvalidShares { culprits }) => {
                for c in culprits {
                    s.shares.remove(&c);
                    s.culprits.insert(c);
                    self.stats.culprits += 1;
                    out.push(Effect::Culprit {
                        height,
                        attempt: s.attempt,
                        member: c,
                    });
                }
            }
            Err(_) => {}
        }
    }

    /// A group signature another member formed for a block we decided: adopted when it
    /// verifies under the group key over our own batch digest for that height.
    pub fn on_attestation(&mut self, a: &pb::Attestation) -> Vec<Effect> {
        let Some(s) = self.sessions.get_mut(&a.height) else {
            return Vec::new();
        };
        if s.done || a.epoch != self.p.epoch || a.root != s.root.as_slice() {
            return Vec::new();
        }
        let Some(gk) = &self.group_key else {
            return Vec::new();
        };
        let ok = frost::Signature::deserialize(&a.signature)
            .ok()
            .is_some_and(|sig| sigil_crypto::signing::verify(gk, s.digest, &sig).is_ok());
        if !ok {
            self.stats.dropped += 1;
            return Vec::new();
        }
        s.done = true;
        s.attestation = Some(pb::Attestation {
            message_ids: Vec::new(),
            ..a.clone()
        });
        self.stats.attestations += 1;
        vec![Effect::Attested(pb::Attestation {
            message_ids: s.message_ids.iter().map(|i| i.to_vec()).collect(),
            ..a.clone()
        })]
    }

    /// The member coordinating retry `attempt` of `height`.
    pub fn coordinator(&self, height: Height, attempt: u32) -> Member {
        ((height + u64::from(attempt)) % u64::from(self.p.n)) as Member + 1
    }

    /// A retry request from `from`.
    pub fn on_sign_request(
        &mut self,
        from: Member,
        req: &pb::SignRequest,
        now_ms: u64,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        if req.attempt == 0 || from != self.coordinator(req.height, req.attempt) {
            self.stats.dropped += 1;
            return out;
        }
        let Some(mut s) = self.sessions.remove(&req.height) else {
            self.stats.dropped += 1;
            return out;
        };
        if s.done {
            // The requester has not got the signature: send it again instead of signing again.
            if let Some(a) = s.attestation.clone() {
                out.push(Effect::Broadcast(pb::body::Kind::Attestation(a)));
            }
            self.sessions.insert(req.height, s);
            return out;
        }
        let fresh = req
            .signers
            .iter()
            .all(|c| u16::try_from(c.member).is_ok_and(|m| !self.used.contains(&(m, c.nonce_id))));
        if s.done
            || req.attempt < s.attempt
            || (req.attempt == s.attempt && s.package.is_some())
            || !fresh
            || req.signers.len() != usize::from(self.p.t)
        {
            self.stats.dropped += 1;
            self.sessions.insert(req.height, s);
            return out;
        }
        let Ok(map) = self.commitments_of(&req.signers) else {
            self.stats.dropped += 1;
            self.sessions.insert(req.height, s);
            return out;
        };
        for (m, (id, _)) in &map {
            self.used.insert((*m, *id));
            if let Some(cs) = self.commitments.get_mut(m) {
                cs.remove(id);
            }
        }
        self.start_attempt(&mut s, req.height, req.attempt, map, now_ms, &mut out);
        self.sessions.insert(req.height, s);
        self.drain_early(req.height, &mut out);
        out
    }

    /// Advances signing timers: an attempt without t valid shares after the timeout moves to
    /// the next attempt; its coordinator (if us) picks fresh commitments excluding culprits and
    /// non-responders.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        let heights: Vec<Height> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.done)
            .map(|(h, _)| *h)
            .collect();
        for h in heights {
            let Some(mut s) = self.sessions.remove(&h) else {
                continue;
            };
            if now_ms.saturating_sub(s.started_ms) >= self.p.share_timeout_ms {
                if s.package.is_some() {
                    let silent: Vec<Member> = s
                        .signers
                        .iter()
                        .filter(|m| !s.shares.contains_key(m))
                        .copied()
                        .collect();
                    s.silent.extend(silent);
                }
                let mut excluded: BTreeSet<Member> = s.culprits.clone();
                excluded.extend(s.silent.iter().copied());
                let attempt = s.attempt + 1;
                self.stats.retries += 1;
                s.attempt = attempt;
                s.package = None;
                s.started_ms = now_ms;
                s.shares.clear();
                out.push(Effect::Retry {
                    height: h,
                    attempt,
                    excluded: excluded.iter().copied().collect(),
                });
                if self.p.me == Some(self.coordinator(h, attempt)) {
                    let pick = self
                        .pick_signers(h, &excluded)
                        .or_else(|| self.pick_signers(h, &s.culprits));
                    if let Some(signers) = pick {
                        let req = pb::SignRequest {
                            height: h,
                            attempt,
                            signers,
                        };
                        out.push(Effect::Broadcast(pb::body::Kind::SignRequest(req.clone())));
                        self.sessions.insert(h, s);
                        // Coordinator (us) applies its own request.
                        let me = self.coordinator(h, attempt);
                        let mut applied = self.on_sign_request(me, &req, now_ms);
                        out.append(&mut applied);
                        continue;
                    }
                }
            }
            self.sessions.insert(h, s);
        }
        // Forget finished sessions far behind.
        let floor = self.height.saturating_sub(64);
        self.sessions.retain(|h, s| !s.done || *h >= floor);
        self.early_shares.retain(|(h, _), _| *h + 4 >= self.height);
        out
    }

    /// Heights decided but not yet attested.
    pub fn unattested(&self) -> Vec<Height> {
        self.sessions
            .iter()
            .filter(|(_, s)| !s.done)
            .map(|(h, _)| *h)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Bytes;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use sigil_crypto::{MemoryLedger, Message, OnchainSignature};

    const CHAIN: u64 = 7;

    fn gateway() -> Address {
        Address::repeat_byte(0x11)
    }

    fn obs(nonce: u64) -> Observation {
        Observation {
            message: Message {
                source_chain_id: CHAIN,
                source_gateway: gateway(),
                nonce,
                sender: Address::repeat_byte(0x22),
                dest_chain_id: 9,
                recipient: Address::repeat_byte(0x33),
                payload: Bytes::from(format!("m{nonce}").into_bytes()),
            },
            block_number: 10 + nonce,
            block_hash: B256::repeat_byte(nonce as u8),
            observed_at_ms: 0,
            block_time: 0,
        }
    }

    fn committee(n: u16) -> Vec<App> {
        let (_, t) = sigil_crypto::keys::thresholds(n);
        let dealt =
            sigil_crypto::keys::trusted_dealer(t, n, &mut ChaCha20Rng::seed_from_u64(7)).unwrap();
        let mut apps: Vec<App> = (1..=n)
            .map(|m| {
                let p = AppParams {
                    me: Some(m),
                    n,
                    t,
                    epoch: 1,
                    chains: vec![(CHAIN, gateway())],
                    max_messages: 10_000,
                    max_bytes: 1 << 20,
                    nonce_pool: 4,
                    share_timeout_ms: 1000,
                };
                let signer = Signer {
                    key: dealt.key_packages[&m].clone(),
                    public: dealt.public_key_package.clone(),
                    pool: NoncePool::new(),
                    ledger: Box::new(MemoryLedger::new()),
                };
                App::new(p, Some(signer), Some(dealt.group_key), BTreeMap::new())
            })
            .collect();
        // Everyone observes nonces 0..10 and hears every cursor and commitment list.
        let cursor = pb::Cursor {
            chain_id: CHAIN,
            block_number: 30,
            block_hash: vec![1; 32],
            next_nonce: 10,
        };
        for a in apps.iter_mut() {
            a.observe((0..10).map(obs), Some(cursor.clone()));
        }
        let lists: Vec<_> = apps
            .iter_mut()
            .map(|a| a.refresh_commitments().unwrap().unwrap())
            .collect();
        for a in apps.iter_mut() {
            for (i, l) in lists.iter().enumerate() {
                let m = i as u16 + 1;
                a.on_cursors(
                    m,
                    &pb::Cursors {
                        cursors: vec![cursor.clone()],
                    },
                );
                if Some(m) != a.params().me {
                    a.on_commitments(m, l);
                }
            }
        }
        apps
    }

    /// Delivers broadcast effects to every other member; returns attestations and culprits.
    fn route(
        apps: &mut [App],
        from: Member,
        effects: Vec<Effect>,
        corrupt: Option<Member>,
        now: u64,
        out: &mut Vec<(Member, Effect)>,
    ) {
        let mut queue: Vec<(Member, Effect)> = effects.into_iter().map(|e| (from, e)).collect();
        while let Some((src, e)) = queue.pop() {
            match &e {
                Effect::Broadcast(pb::body::Kind::Share(s)) => {
                    let mut s = s.clone();
                    if Some(src) == corrupt {
                        s.share[31] ^= 1;
                    }
                    for a in apps.iter_mut() {
                        let me = a.params().me.unwrap();
                        if me != src {
                            let more = a.on_share(src, &s, now);
                            queue.extend(more.into_iter().map(|x| (me, x)));
                        }
                    }
                }
                Effect::Broadcast(pb::body::Kind::SignRequest(r)) => {
                    for a in apps.iter_mut() {
                        let me = a.params().me.unwrap();
                        if me != src {
                            let more = a.on_sign_request(src, r, now);
                            queue.extend(more.into_iter().map(|x| (me, x)));
                        }
                    }
                }
                _ => {}
            }
            out.push((src, e));
        }
    }

    #[test]
    fn block_is_valid_everywhere_and_tampering_is_caught() {
        let apps = committee(4);
        let block = apps[0]
            .build_block(1, 0)
            .expect("a quorum observed 10 messages");
        assert_eq!(block.0.count, 10);
        assert_eq!(block.0.ranges.len(), 1);
        assert!(
            block.0.encoded_len() < 600,
            "proposal stays small: {} bytes",
            block.0.encoded_len()
        );
        for a in &apps {
            assert_eq!(a.validate(1, &block), Validity::Valid);
        }
        let mut bad_root = block.clone();
        bad_root.0.root[0] ^= 1;
        assert!(matches!(
            apps[1].validate(1, &bad_root),
            Validity::Invalid(_)
        ));
        let mut unseen = block.clone();
        unseen.0.ranges[0].to_nonce = 12;
        unseen.0.count = 12;
        assert_eq!(
            apps[1].validate(1, &unseen),
            Validity::Pending,
            "unobserved messages: wait"
        );
        let mut wrong_height = block.clone();
        wrong_height.0.height = 2;
        assert!(matches!(
            apps[1].validate(1, &wrong_height),
            Validity::Invalid(_)
        ));
    }

    #[test]
    fn proposals_stay_small_at_ten_thousand_messages() {
        let mut apps = committee(4);
        let cursor = pb::Cursor {
            chain_id: CHAIN,
            block_number: 99,
            block_hash: vec![1; 32],
            next_nonce: 10_000,
        };
        for a in apps.iter_mut() {
            a.observe((10..10_000).map(obs), Some(cursor.clone()));
            for m in 1..=4 {
                a.on_cursors(
                    m,
                    &pb::Cursors {
                        cursors: vec![cursor.clone()],
                    },
                );
            }
        }
        let block = apps[0].build_block(1, 0).unwrap();
        assert_eq!(block.0.count, 10_000);
        assert!(
            block.0.encoded_len() < 600,
            "{} bytes",
            block.0.encoded_len()
        );
        assert_eq!(apps[2].validate(1, &block), Validity::Valid);
    }

    #[test]
    fn invalid_shares_are_identified_and_a_retry_still_signs() {
        let mut apps = committee(4);
        let block = apps[0].build_block(1, 0).unwrap();
        let signers: Vec<Member> = block.0.signers.iter().map(|c| c.member as Member).collect();
        // A Byzantine member of the signing set corrupts its share.
        let byz = *signers.iter().find(|m| **m != 1).unwrap();
        let mut log = Vec::new();
        for i in 0..4 {
            let e = apps[i].on_decided(1, &block, None, 0);
            route(&mut apps, i as Member + 1, e, Some(byz), 0, &mut log);
        }
        assert!(
            log.iter()
                .any(|(_, e)| matches!(e, Effect::Culprit { member, .. } if *member == byz)),
            "culprit named"
        );
        assert!(
            !log.iter()
                .any(|(src, e)| *src != byz && matches!(e, Effect::Attested(_))),
            "honest members get no signature from a bad share"
        );
        // Past the share timeout every member moves to attempt 1; its coordinator excludes the culprit.
        for i in 0..4 {
            let e = apps[i].tick(1_500);
            route(&mut apps, i as Member + 1, e, Some(byz), 1_500, &mut log);
        }
        let atts: Vec<&pb::Attestation> = log
            .iter()
            .filter_map(|(src, e)| match e {
                Effect::Attested(a) if *src != byz => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(atts.len(), 3, "every honest member attests after the retry");
        let gk = *apps[0].group_key().unwrap();
        for a in atts {
            assert_eq!(a.root, block.0.root, "covers the decided block");
            assert_eq!(a.message_ids.len(), 10);
            let sig = OnchainSignature::from_bytes(&a.signature)
                .unwrap()
                .to_frost()
                .unwrap();
            let digest = sigil_crypto::batch_digest(1, 1, B256::from_slice(&a.root));
            sigil_crypto::signing::verify(&gk, digest, &sig).unwrap();
        }
        assert!(apps.iter().all(|a| a.stats.culprits <= 2));
        // Nonces used in the decided block are never offered again.
        let next = apps[0].build_block(2, 0);
        assert!(next.is_none(), "nothing new observed");
    }

    #[test]
    fn a_signer_never_signs_twice_with_one_nonce() {
        let mut apps = committee(4);
        let block = apps[0].build_block(1, 0).unwrap();
        let e1 = apps[0].on_decided(1, &block, None, 0);
        let shares1 = e1
            .iter()
            .filter(|e| matches!(e, Effect::Broadcast(pb::body::Kind::Share(_))))
            .count();
        assert_eq!(shares1, 1);
        // The same decision again (e.g. a replay) must not produce a second share.
        let e2 = apps[0].on_decided(1, &block, None, 0);
        assert!(
            !e2.iter()
                .any(|e| matches!(e, Effect::Broadcast(pb::body::Kind::Share(_))))
        );
        assert!(e2.iter().any(|e| matches!(e, Effect::SignRefused { .. })));
    }
}
