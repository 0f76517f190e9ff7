//! Deterministic simulation of whole committee members: every member is the real
//! [`sigil_engine::Driver`] — the code the `sigil` binary runs — with FROST keys, a
//! simulated disk that loses unsynced WAL records on a crash ([`MemStorage`]), a durable
//! nonce ledger, a seeded lossy network carrying real signed envelopes, and a source chain
//! whose messages reach each member at finality after its own delay.
//!
//! Byzantine members ([`Adversary`]) run the same driver and then lie through the real wire
//! format with their own keys: forged catch-up certificates, signing-attempt bumps and
//! request floods, far-future rounds/heights and fake heartbeats, double votes,
//! equivocating and invalid proposals, invalid shares, silence and replay. Honest members
//! crash and restart ([`Scenario::crash_after_decide`]).
//!
//! Checked after every event: agreement; **no honest member decides, or releases a share
//! for, a block whose root is not the root of messages the chain emitted** (in the ranges
//! it names); every attestation verifies under the group key over the decided root; no
//! honest double vote across crashes; every honest member's peer-fed state and WAL stay
//! under [`STATE_BOUND`] / [`WAL_BOUND`]. At the end: every honest member decided every
//! emitted message and attested every decided height.

use alloy::primitives::{Address, B256, Bytes};
use frost_secp256k1 as frost;
use k256::ecdsa::SigningKey;
use prost::Message as _;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sigil_crypto::{BatchTree, MemoryLedger, Message, NonceError, NonceId, NonceLedger, NoncePool};
use sigil_engine::app::{App, AppParams, Signer};
use sigil_engine::{
    Committee, Cursor, Driver, DriverConfig, Effect, Input, MemStorage, Member, Observation,
    Storage,
};
use sigil_proto as pb;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};

const CHAIN: u64 = 31;
const EPOCH: u64 = 1;
const TICK_MS: u64 = 100;

/// Most entries an honest member may hold in its peer-fed driver maps.
pub const STATE_BOUND: usize = 4_096;
/// Most WAL records an honest member may hold.
pub const WAL_BOUND: usize = 4_096;

/// A Byzantine behaviour of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Adversary {
    /// Answers every catch-up request with its own signed proposal of a forged block (made-up
    /// root) and no precommits, claims far-ahead heights in heartbeats to trigger those
    /// requests, and proposes the forged block when it is the proposer (finding 1).
    ForgedCatchup,
    /// Floods signing requests as the coordinator of far-future attempts (up to
    /// `u32::MAX`) and of the next attempt, with fresh-looking commitments (finding 2).
    AttemptBumper,
    /// Proposals and votes at far-future rounds and the next heights, and heartbeats with
    /// made-up heights, every tick (finding 5).
    FarFuture,
    /// Sends a conflicting prevote to half the committee.
    DoubleVoter,
    /// Sends a second, different (valid-looking) proposal to half the committee.
    EquivocatingProposer,
    /// Proposes blocks whose root does not match the messages.
    InvalidProposer,
    /// Corrupts its signature shares.
    BadShares,
    /// Sends nothing at all.
    Silent,
    /// Re-sends every envelope it receives, three times, later.
    Replayer,
    /// Its operator "approves" a committee of its own (its key and made-up ones), so it
    /// proposes that rotation whenever it is the proposer, alone or with messages.
    RogueRotation,
}

impl Adversary {
    /// Every behaviour, for sweeps.
    pub const ALL: [Adversary; 10] = [
        Adversary::ForgedCatchup,
        Adversary::AttemptBumper,
        Adversary::FarFuture,
        Adversary::DoubleVoter,
        Adversary::EquivocatingProposer,
        Adversary::InvalidProposer,
        Adversary::BadShares,
        Adversary::Silent,
        Adversary::Replayer,
        Adversary::RogueRotation,
    ];

    /// Command-line name.
    pub fn name(&self) -> &'static str {
        match self {
            Adversary::ForgedCatchup => "forged-catchup",
            Adversary::AttemptBumper => "attempt-bumper",
            Adversary::FarFuture => "far-future",
            Adversary::DoubleVoter => "double-voter",
            Adversary::EquivocatingProposer => "equivocating-proposer",
            Adversary::InvalidProposer => "invalid-proposer",
            Adversary::BadShares => "bad-shares",
            Adversary::Silent => "silent",
            Adversary::Replayer => "replayer",
            Adversary::RogueRotation => "rogue-rotation",
        }
    }

    /// From its command-line name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.name() == s)
    }
}

/// One schedule.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Committee size (≥ 4).
    pub n: u16,
    /// RNG seed: network latency and loss, observation delays, crash times.
    pub seed: u64,
    /// Messages the source chain emits (in bursts).
    pub messages: u64,
    /// Byzantine member and its behaviour.
    pub adversary: Option<(Member, Adversary)>,
    /// Crash this honest member right after its first decision and restart it later.
    pub crash_after_decide: Option<Member>,
    /// Every honest operator approves the same next committee ([`approved_rotation`]) at
    /// start: it must be decided, exactly once, by every honest member.
    pub rotation: bool,
    /// A committee change carried out end to end (rotation, the incoming DKG's key commit,
    /// key rotations, the switch; see [`epochs`]); overrides `rotation`.
    pub switch: Option<Switch>,
    /// Crash this honest node in the middle of the hand-over and restart it later: an
    /// outgoing member when it decides the key commit or a key-rotation block, a joiner
    /// when it decides its first block.
    pub crash_in_handover: Option<Member>,
    /// Probability a gossiped message is lost on one link (0..1).
    pub loss: f64,
    /// Virtual time limit (ms).
    pub limit_ms: u64,
    /// Print every member's events, decisions and attestations to stderr.
    pub trace: bool,
}

impl Scenario {
    /// A schedule with defaults: 12 messages, 2% loss, 120 s limit.
    pub fn new(n: u16, seed: u64, adversary: Option<(Member, Adversary)>) -> Self {
        Self {
            n,
            seed,
            messages: 12,
            adversary,
            crash_after_decide: None,
            rotation: false,
            switch: None,
            crash_in_handover: None,
            loss: 0.02,
            limit_ms: 120_000,
            trace: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Events processed.
    pub events: u64,
    /// Highest height every honest member decided.
    pub decided: u64,
    /// Attestations stored by honest members.
    pub attestations: u64,
    /// Virtual time when every honest member had decided and attested everything (ms).
    pub done_ms: Option<u64>,
    /// Largest driver state and WAL seen on an honest member.
    pub peak_state: usize,
    /// Largest WAL seen on an honest member.
    pub peak_wal: usize,
    /// A hash of the event trace (determinism check).
    pub trace_hash: u64,
    /// The outgoing epoch's last height, in a switch schedule.
    pub epoch_end: Option<u64>,
    /// Messages the new committee decided and attested (in blocks of the new epoch), on
    /// the first node of the final committee.
    pub new_epoch_messages: u64,
    /// Signature share records on the honest members' disks at the end, audited for nonce
    /// reuse and shares released unrecorded (`devnet::audit::check_shares`).
    pub share_records: usize,
    /// The first safety invariant broken, if any (agreement, forged batch decided or
    /// signed, bad attestation, honest double vote, state bound).
    pub violation: Option<String>,
    /// Liveness: not every message was decided and attested by the time limit (details).
    /// Owed in every schedule: at most f members are faulty at any time (the Byzantine
    /// member, or a crashed honest one, which restarts).
    pub stalled: Option<String>,
}

/// A nonce ledger that survives the member's crash (the RocksDB ledger's role).
#[derive(Clone, Default)]
struct SharedLedger(Arc<Mutex<MemoryLedger>>);

impl NonceLedger for SharedLedger {
    fn issue(&mut self, count: u32) -> Result<Range<u64>, NonceError> {
        self.0
            .lock()
            .map_err(|_| NonceError::Storage {
                source: "ledger lock poisoned".into(),
            })?
            .issue(count)
    }
    fn consume(&mut self, id: NonceId) -> Result<(), NonceError> {
        self.0
            .lock()
            .map_err(|_| NonceError::Storage {
                source: "ledger lock poisoned".into(),
            })?
            .consume(id)
    }
    fn status(&self, id: NonceId) -> sigil_crypto::nonce::NonceStatus {
        match self.0.lock() {
            Ok(l) => l.status(id),
            Err(_) => sigil_crypto::nonce::NonceStatus::Consumed,
        }
    }
}

#[derive(Debug, Clone)]
enum Payload {
    Gossip(Vec<u8>),
    /// A copy of gossip forwarded by a member that accepted it.
    Relayed(Vec<u8>),
    Request {
        id: u64,
        data: Vec<u8>,
    },
    Response(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Ev {
    Deliver {
        to: Member,
        from: Member,
        p: Payload,
    },
    Tick(Member),
    Observe(Member),
    Emit,
    Restart(Member),
    /// The incoming committee's DKG finished.
    DkgDone,
    /// A joiner's (or incoming member's) periodic hand-over step.
    Join(Member),
}

struct SimMember {
    driver: Option<Driver<MemStorage>>,
    /// The disk while crashed.
    disk: Option<MemStorage>,
    ledger: SharedLedger,
    key: SigningKey,
    /// Observations delivered to this member so far (its watcher's store).
    observed: Vec<Observation>,
    /// How far the chain is visible to this member (next nonce).
    visible: u64,
    crashed_once: bool,
    /// The epoch its driver (or last driver) runs in.
    epoch: u64,
    /// A joiner still without the hand-over blocks (no driver).
    joining: bool,
}

struct Sim {
    sc: Scenario,
    rng: ChaCha20Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    members: BTreeMap<Member, SimMember>,
    committee: Committee,
    keys: sigil_crypto::keys::DealtKeys,
    /// Messages the chain emitted, by nonce.
    chain: Vec<Observation>,
    decided: BTreeMap<Member, BTreeMap<u64, B256>>,
    votes: BTreeMap<(Member, u64, u32, u32), Vec<u8>>,
    next_req: u64,
    requests: BTreeMap<u64, Member>,
    /// Gossip handed to a member's driver and awaiting its verdict, by gossip id: an honest
    /// member relays what it accepts to every other member, as gossipsub does.
    relay: BTreeMap<u64, Vec<u8>>,
    /// Hashes of the gossip each member has seen (gossipsub's duplicate cache): a relayed
    /// copy already seen is dropped before the driver.
    seen: BTreeMap<Member, std::collections::HashSet<u64>>,
    /// Nonce commitments the Byzantine member received, by their owner (for the attempt
    /// bumper's requests).
    harvest: BTreeMap<Member, Vec<pb::Commitment>>,
    /// The height each honest member decided the rotation at (at most one per epoch).
    rotations: BTreeMap<Member, u64>,
    /// The incoming committee of a switch schedule.
    incoming: Option<epochs::Incoming>,
    /// The outgoing epoch's last height, once a node reached it.
    switch_end: Option<u64>,
    /// Whether the incoming DKG finished (scheduled once).
    dkg_finished: bool,
    /// Whether the DKG's end is scheduled.
    dkg_scheduled: bool,
    /// Whether the hand-over crash happened.
    handover_crashed: bool,
    /// Hand-over requests joiners sent (round robin over the outgoing members).
    join_asks: u64,
    /// Per node, the nonce its decided ranges reached (every message in exactly one block).
    frontier: BTreeMap<Member, u64>,
    /// Made-up commitment lists the attempt bumper reuses (fresh nonce ids each time): making
    /// points is costly and the receivers cannot tell a reused one from a new one.
    fakes: Vec<Vec<pb::Commitment>>,
    report: Report,
}

fn message(nonce: u64) -> Observation {
    Observation {
        message: Message {
            source_chain_id: CHAIN,
            source_gateway: Address::repeat_byte(0x5a),
            nonce,
            sender: Address::repeat_byte(1),
            dest_chain_id: 2,
            dest_inbox: Address::repeat_byte(0x5b),
            recipient: Address::repeat_byte(3),
            gas_limit: 200_000,
            payload: Bytes::from(nonce.to_be_bytes().to_vec()),
        },
        block_number: nonce + 1,
        block_hash: B256::repeat_byte(1),
        observed_at_ms: 0,
        block_time: 0,
    }
}

fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x100_0000_01b3).rotate_left(7)
}

impl Sim {
    fn new(sc: Scenario) -> Result<Self, String> {
        let mut rng = ChaCha20Rng::seed_from_u64(sc.seed);
        let (_, t) = sigil_crypto::keys::thresholds(sc.n);
        let mut key_rng = ChaCha20Rng::seed_from_u64(0x0051_6711);
        let keys = sigil_crypto::keys::trusted_dealer(t, sc.n, &mut key_rng)
            .map_err(|e| format!("trusted dealer for n = {}: {e}", sc.n))?;
        let nodes = sc.switch.map_or(sc.n, |s| s.nodes(sc.n));
        let node_keys: Vec<SigningKey> = (0..nodes)
            .map(|_| SigningKey::random(&mut key_rng))
            .collect();
        let committee = Committee::new(
            node_keys
                .iter()
                .take(usize::from(sc.n))
                .map(|k| *k.verifying_key())
                .collect(),
        );
        let incoming = match sc.switch {
            Some(s) => Some(epochs::incoming(s, sc.n, &node_keys)?),
            None => None,
        };
        let mut members = BTreeMap::new();
        for (i, key) in node_keys.into_iter().enumerate() {
            let m = i as Member + 1;
            members.insert(
                m,
                SimMember {
                    driver: None,
                    disk: Some(MemStorage::new()),
                    ledger: SharedLedger::default(),
                    key,
                    observed: Vec::new(),
                    visible: 0,
                    crashed_once: false,
                    epoch: EPOCH,
                    joining: false,
                },
            );
        }
        let _ = rng.next_u32();
        let mut sim = Self {
            sc,
            fakes: Vec::new(),
            rotations: BTreeMap::new(),
            incoming,
            switch_end: None,
            dkg_finished: false,
            dkg_scheduled: false,
            handover_crashed: false,
            join_asks: 0,
            frontier: BTreeMap::new(),
            rng,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            members,
            committee,
            keys,
            chain: Vec::new(),
            decided: BTreeMap::new(),
            votes: BTreeMap::new(),
            next_req: 0,
            requests: BTreeMap::new(),
            relay: BTreeMap::new(),
            seen: BTreeMap::new(),
            harvest: BTreeMap::new(),
            report: Report::default(),
        };
        for m in 1..=sim.nodes() {
            sim.start(m);
            let jitter = sim.rng.next_u64() % TICK_MS;
            sim.push(jitter, Ev::Tick(m));
        }
        sim.push(200, Ev::Emit);
        Ok(sim)
    }

    fn honest(&self, m: Member) -> bool {
        self.sc.adversary.is_none_or(|(b, _)| b != m)
    }

    /// The Byzantine behaviour of node `m` (only in the genesis epoch: a Byzantine node the
    /// next committee keeps runs the honest driver there, and stays counted as faulty).
    fn adversary_of(&self, m: Member) -> Option<Adversary> {
        if self.members.get(&m).is_some_and(|s| s.epoch != EPOCH) {
            return None;
        }
        self.sc.adversary.and_then(|(b, a)| (b == m).then_some(a))
    }

    /// Nodes in the schedule: the genesis members and any joiners.
    fn nodes(&self) -> u16 {
        self.sc.switch.map_or(self.sc.n, |s| s.nodes(self.sc.n))
    }

    /// The next committee the honest operators approve, if any.
    fn approved(&self) -> Option<pb::Rotation> {
        match &self.incoming {
            Some(inc) => Some(inc.rotation.clone()),
            None if self.sc.rotation => Some(approved_rotation(self.sc.n)),
            None => None,
        }
    }

    fn push(&mut self, after: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), ev);
    }

    fn violate(&mut self, what: String) {
        if self.report.violation.is_none() {
            self.report.violation = Some(format!("t={}ms: {what}", self.now));
        }
    }

    fn crash(&mut self, m: Member) {
        let Some(sm) = self.members.get_mut(&m) else {
            return;
        };
        if let Some(d) = sm.driver.take() {
            let mut disk = d.storage().clone();
            disk.crash();
            sm.disk = Some(disk);
            if let Ok(mut l) = sm.ledger.0.lock() {
                l.restart();
            }
            sm.crashed_once = true;
        }
    }

    fn lost(&mut self) -> bool {
        (self.rng.next_u32() as f64 / u32::MAX as f64) < self.sc.loss
    }

    fn latency(&mut self) -> u64 {
        5 + self.rng.next_u64() % 45
    }

    fn gossip(&mut self, from: Member, bytes: Vec<u8>, only: Option<&BTreeSet<Member>>) {
        for to in 1..=self.nodes() {
            if to == from || only.is_some_and(|o| !o.contains(&to)) || self.lost() {
                continue;
            }
            let lat = self.latency();
            self.push(
                lat,
                Ev::Deliver {
                    to,
                    from,
                    p: Payload::Gossip(bytes.clone()),
                },
            );
        }
    }

    fn seal(&self, m: Member, kind: pb::body::Kind) -> pb::Envelope {
        let key = &self.members[&m].key;
        sigil_engine::envelope::seal(key, m, &pb::Body { kind: Some(kind) })
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Emit => {
                let have = self.chain.len() as u64;
                if have < self.sc.messages {
                    let burst = 1 + self.rng.next_u64() % 4;
                    for nonce in have..(have + burst).min(self.sc.messages) {
                        self.chain.push(message(nonce));
                    }
                    for m in 1..=self.nodes() {
                        let delay = 20 + self.rng.next_u64() % 300;
                        self.push(delay, Ev::Observe(m));
                    }
                    let gap = 300 + self.rng.next_u64() % 900;
                    self.push(gap, Ev::Emit);
                }
            }
            Ev::Observe(m) => {
                let upto = self.chain.len() as u64;
                let Some(sm) = self.members.get_mut(&m) else {
                    return;
                };
                let from = sm.visible;
                if upto <= from {
                    return;
                }
                let obs: Vec<Observation> = self.chain[from as usize..upto as usize].to_vec();
                sm.visible = upto;
                sm.observed.extend(obs.iter().cloned());
                let ev = sigil_engine::ChainEvent {
                    chain_id: CHAIN,
                    observations: obs,
                    cursor: Cursor {
                        block_number: upto,
                        block_hash: B256::repeat_byte(1),
                        next_nonce: upto,
                    },
                    head: upto + 2,
                    finalized: upto,
                };
                self.drive(m, Input::Chain(ev));
            }
            Ev::Tick(m) => {
                self.drive(m, Input::Tick);
                if let Some(a) = self.adversary_of(m) {
                    self.byzantine_tick(m, a);
                }
                self.push(TICK_MS, Ev::Tick(m));
            }
            Ev::Restart(m) => self.start(m),
            Ev::DkgDone => self.dkg_done(),
            Ev::Join(m) => self.join_step(m),
            Ev::Deliver { to, from, p } => {
                if self.adversary_of(to) == Some(Adversary::Replayer)
                    && let Payload::Gossip(bytes) = &p
                {
                    for k in 1..=3u64 {
                        let bytes = bytes.clone();
                        self.seq += 1;
                        let at = self.now + 200 * k;
                        for dst in 1..=self.nodes() {
                            if dst != to {
                                self.seq += 1;
                                self.queue.insert(
                                    (at, self.seq),
                                    Ev::Deliver {
                                        to: dst,
                                        from: to,
                                        p: Payload::Gossip(bytes.clone()),
                                    },
                                );
                            }
                        }
                    }
                }
                if let Payload::Gossip(bytes) | Payload::Relayed(bytes) = &p {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    std::hash::Hash::hash(bytes, &mut h);
                    let fresh = self
                        .seen
                        .entry(to)
                        .or_default()
                        .insert(std::hash::Hasher::finish(&h));
                    if !fresh && matches!(p, Payload::Relayed(_)) {
                        return;
                    }
                    if !self.honest(to) {
                        self.harvest_commitments(bytes);
                    }
                }
                let input = match p {
                    Payload::Gossip(data) | Payload::Relayed(data) => {
                        self.next_req += 1;
                        let id = self.next_req;
                        self.relay.insert(id, data.clone());
                        Input::Gossip { id, data }
                    }
                    Payload::Request { id, data } => {
                        self.requests.insert(id, from);
                        let from = self.seen_as(to, from);
                        Input::Request { id, from, data }
                    }
                    Payload::Response(data) => {
                        if self.members.get(&to).is_some_and(|s| s.joining) {
                            return self.joiner_response(to, &data);
                        }
                        let from = self.seen_as(to, from);
                        Input::Response { from, data }
                    }
                };
                self.drive(to, input);
            }
        }
    }

    /// Keeps the nonce commitments in gossip the Byzantine member received.
    fn harvest_commitments(&mut self, bytes: &[u8]) {
        let Ok(env) = pb::Envelope::decode(bytes) else {
            return;
        };
        if let Ok(pb::Body {
            kind: Some(pb::body::Kind::Commitments(list)),
        }) = pb::Body::decode(env.body.as_slice())
            && let Ok(owner) = Member::try_from(env.member)
        {
            let mut cs = list.commitments;
            cs.truncate(16);
            self.harvest.insert(owner, cs);
        }
    }

    fn drive(&mut self, m: Member, input: Input) {
        let now = self.now;
        let Some(d) = self.members.get_mut(&m).and_then(|s| s.driver.as_mut()) else {
            return;
        };
        let effects = d.handle(input, now);
        self.effects(m, effects);
        if self.honest(m) {
            self.check_bounds(m);
        }
        self.maybe_switch(m);
    }

    /// The nodes that must finish: the final committee's honest nodes.
    fn finishers(&self) -> Vec<Member> {
        let epoch = if self.incoming.is_some() {
            EPOCH + 1
        } else {
            EPOCH
        };
        self.committee_nodes(epoch)
            .into_iter()
            .filter(|m| self.honest(*m))
            .collect()
    }

    fn finished(&self) -> bool {
        let want = self.sc.messages;
        let final_epoch = self.incoming.as_ref().map_or(EPOCH, |_| EPOCH + 1);
        // The outgoing committee must have signed every key rotation: each honest outgoing
        // node still running has attested through the epoch's end (or moved on).
        let handed_over = self.incoming.is_none()
            || (1..=self.sc.n).filter(|m| self.honest(*m)).all(|m| {
                let sm = &self.members[&m];
                sm.epoch > EPOCH || sm.driver.as_ref().is_none_or(|d| d.epoch_over().is_some())
            });
        if !handed_over {
            return false;
        }
        self.finishers().into_iter().all(|m| {
            self.members[&m].epoch == final_epoch
                && self.members[&m].driver.as_ref().is_some_and(|d| {
                    let st = d.status();
                    d.storage().next_nonce(CHAIN) >= want
                        && st.attested >= st.decided
                        && st.unattested.is_empty()
                        && (!self.sc.rotation
                            || self.incoming.is_some()
                            || d.app().decided_rotation().is_some())
                })
        })
    }

    fn run(mut self) -> Report {
        let mut hash = 0u64;
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            self.now = at;
            if at > self.sc.limit_ms {
                break;
            }
            hash = mix(hash, at);
            hash = mix(
                hash,
                match &ev {
                    Ev::Deliver { to, from, .. } => u64::from(*to) << 8 | u64::from(*from),
                    Ev::Tick(m) => 0x1000 + u64::from(*m),
                    Ev::Observe(m) => 0x2000 + u64::from(*m),
                    Ev::Emit => 0x3000,
                    Ev::Restart(m) => 0x4000 + u64::from(*m),
                    Ev::DkgDone => 0x5000,
                    Ev::Join(m) => 0x6000 + u64::from(*m),
                },
            );
            self.report.events += 1;
            self.step(ev);
            if self.report.violation.is_some() {
                break;
            }
            if self.chain.len() as u64 >= self.sc.messages
                && self.report.events.is_multiple_of(16)
                && self.finished()
            {
                self.report.done_ms = Some(self.now);
                break;
            }
        }
        self.report.trace_hash = hash;
        self.report.epoch_end = self.switch_end;
        self.check_share_records();
        if let Some(first) = self.finishers().first()
            && let Some(d) = self.members[first].driver.as_ref()
        {
            let disk = d.storage();
            let last = disk.last_height().unwrap_or(0);
            self.report.new_epoch_messages = (1..=last)
                .filter_map(|h| disk.block(h).ok().flatten())
                .filter(|cb| cb.attestation.is_some())
                .filter_map(|cb| cb.proposal)
                .filter_map(|env| pb::Body::decode(env.body.as_slice()).ok())
                .filter_map(|b| match b.kind {
                    Some(pb::body::Kind::Proposal(p)) => p.block,
                    _ => None,
                })
                .filter(|b| b.epoch > EPOCH)
                .map(|b| u64::from(b.count))
                .sum();
        }
        self.report.decided = self
            .finishers()
            .into_iter()
            .filter_map(|m| self.members[&m].driver.as_ref().map(|d| d.status().decided))
            .min()
            .unwrap_or(0);
        if self.report.violation.is_none() && self.report.done_ms.is_none() {
            let detail: Vec<String> = self
                .finishers()
                .into_iter()
                .map(|m| match self.members[&m].driver.as_ref() {
                    Some(d) => {
                        let s = d.status();
                        format!(
                            "node {m} (epoch {}): at {}/{} decided {} attested {} unattested {:?} next nonce {}",
                            self.members[&m].epoch,
                            s.height,
                            s.round,
                            s.decided,
                            s.attested,
                            s.unattested,
                            d.storage().next_nonce(CHAIN)
                        )
                    }
                    None => format!(
                        "node {m}: no driver (joining: {})",
                        self.members[&m].joining
                    ),
                })
                .collect();
            self.report.stalled = Some(format!(
                "liveness: not every message decided and attested by {} ms ({})",
                self.sc.limit_ms,
                detail.join("; ")
            ));
        }
        self.report
    }
}

/// Runs one schedule.
pub fn run(sc: Scenario) -> Report {
    match Sim::new(sc) {
        Ok(sim) => sim.run(),
        Err(e) => Report {
            violation: Some(e),
            ..Report::default()
        },
    }
}

/// The command that replays one schedule.
pub fn replay_command(sc: &Scenario) -> String {
    let adv = sc
        .adversary
        .map(|(m, a)| format!(" --adversary {} --byzantine {m}", a.name()))
        .unwrap_or_default();
    let crash = sc
        .crash_after_decide
        .map(|m| format!(" --crash-after-decide {m}"))
        .unwrap_or_default();
    let rotation = if sc.rotation { " --rotation" } else { "" };
    let switch = sc
        .switch
        .map(|s| format!(" --switch {}", s.name()))
        .unwrap_or_default()
        + &sc
            .crash_in_handover
            .map(|m| format!(" --crash-in-handover {m}"))
            .unwrap_or_default();
    format!(
        "cargo run -p sigil-testnet --bin sigil-sim -- member --nodes {} --seed {} --messages {}{adv}{crash}{rotation}{switch}",
        sc.n, sc.seed, sc.messages
    )
}

mod byzantine;
mod checks;
mod effects;
pub mod epochs;
mod start;
pub mod sweep;

pub use epochs::Switch;

pub use checks::approved_rotation;
use checks::{rogue_rotation, stored_rotation};
