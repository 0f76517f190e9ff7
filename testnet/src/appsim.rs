//! Deterministic simulation of whole committee members: each node is the real consensus
//! machine plus the real application core ([`sigil_node::app::App`]) with FROST keys, on a
//! virtual clock and a seeded, lossy network. Faults: a member that sends invalid signature
//! shares, a member that double-votes, and message loss.
//!
//! Checked after every event: agreement (one decided block per height), every attestation
//! verifies under the group key and covers the block this node decided at that height, no
//! honest member is ever named a culprit. At the end: every honest node decided and
//! attested every height, and the invalid-share member was named.

use alloy::primitives::{Address, B256, Bytes};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sigil_consensus::{
    Consensus, Height, Input, Output, Params, Proposal, Timeout, ValidatorSet, Value, Vote,
    VoteKind,
};
use sigil_crypto::{MemoryLedger, Message, NoncePool, OnchainSignature};
use sigil_node::app::{App, AppParams, Block, Effect, Signer, Validity};
use sigil_node::store::Observation;
use sigil_proto as pb;
use std::collections::{BTreeMap, BTreeSet};

const CHAIN: u64 = 31;

/// A decided round's proposal and its precommits.
type Certificate = (Proposal<u16, Block>, Vec<Vote<u16, B256>>);

/// One scenario.
#[derive(Debug, Clone)]
pub struct AppScenario {
    /// Committee size.
    pub n: u16,
    /// RNG seed.
    pub seed: u64,
    /// Heights to decide and attest.
    pub heights: u64,
    /// Messages per block.
    pub per_block: u64,
    /// Member sending corrupted shares.
    pub bad_share: Option<u16>,
    /// Member sending a conflicting prevote to half the committee.
    pub double_voter: Option<u16>,
    /// Probability a message is lost (0..1).
    pub loss: f64,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct AppReport {
    /// Decided block id per height.
    pub decided: BTreeMap<Height, B256>,
    /// Attestations formed (all nodes).
    pub attestations: usize,
    /// Members named culprits (by anyone).
    pub culprits: BTreeSet<u16>,
    /// Equivocation evidence records.
    pub evidence: usize,
    /// Events processed.
    pub events: u64,
    /// First invariant broken, if any.
    pub violation: Option<String>,
}

#[derive(Debug, Clone)]
enum Msg {
    Proposal(Proposal<u16, Block>),
    Vote(Vote<u16, B256>),
    Share(pb::SignatureShare),
    SignRequest(pb::SignRequest),
    Commitments(pb::NonceCommitments),
    Attestation(pb::Attestation),
}

#[derive(Debug, Clone)]
enum Ev {
    Deliver { to: u16, from: u16, msg: Msg },
    Timeout { node: u16, t: Timeout },
    Tick { node: u16 },
}

struct Node {
    cs: Consensus<u16, Block>,
    app: App,
    pending_request: Option<(Height, u32)>,
    decided: BTreeMap<Height, Block>,
    attested: BTreeSet<Height>,
    /// Own proposal and votes of the current height (re-sent: the network is lossy).
    own: Vec<Msg>,
    /// The last decision's proposal and certificate (re-sent so laggards can decide).
    cert: Vec<Msg>,
    /// Commit certificates by height, served to laggards (the host's catch-up sync).
    certs: BTreeMap<Height, Certificate>,
}

struct Sim {
    sc: AppScenario,
    rng: ChaCha20Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    nodes: BTreeMap<u16, Node>,
    group_key: sigil_crypto::GroupKey,
    report: AppReport,
}

fn message(nonce: u64) -> Observation {
    Observation {
        message: Message {
            source_chain_id: CHAIN,
            source_gateway: Address::repeat_byte(0x5a),
            nonce,
            sender: Address::repeat_byte(1),
            dest_chain_id: 2,
            recipient: Address::repeat_byte(3),
            payload: Bytes::from(nonce.to_be_bytes().to_vec()),
        },
        block_number: nonce,
        block_hash: B256::repeat_byte(1),
        observed_at_ms: 0,
        block_time: 0,
    }
}

impl Sim {
    fn push(&mut self, after: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), ev);
    }

    fn send(&mut self, from: u16, msg: Msg) {
        for to in 1..=self.sc.n {
            if to == from {
                continue;
            }
            if (self.rng.next_u32() as f64 / u32::MAX as f64) < self.sc.loss {
                continue;
            }
            let lat = 5 + self.rng.next_u64() % 45;
            self.push(
                lat,
                Ev::Deliver {
                    to,
                    from,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn violate(&mut self, what: String) {
        if self.report.violation.is_none() {
            self.report.violation = Some(what);
        }
    }

    fn effects(&mut self, node: u16, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Broadcast(pb::body::Kind::Share(mut s)) => {
                    if Some(node) == self.sc.bad_share {
                        s.share[31] ^= 0x55;
                    }
                    self.send(node, Msg::Share(s));
                }
                Effect::Broadcast(pb::body::Kind::SignRequest(r)) => {
                    self.send(node, Msg::SignRequest(r))
                }
                Effect::Broadcast(pb::body::Kind::Commitments(c)) => {
                    self.send(node, Msg::Commitments(c))
                }
                Effect::Broadcast(pb::body::Kind::Attestation(a)) => {
                    self.send(node, Msg::Attestation(a))
                }
                Effect::Broadcast(_) => {}
                Effect::Attested(a) => {
                    self.report.attestations += 1;
                    let root_ok = self
                        .nodes
                        .get(&node)
                        .and_then(|n| n.decided.get(&a.height))
                        .is_some_and(|b| b.0.root == a.root);
                    let sig_ok = OnchainSignature::from_bytes(&a.signature)
                        .and_then(|s| s.to_frost())
                        .ok()
                        .is_some_and(|sig| {
                            let d = sigil_crypto::batch_digest(
                                a.epoch,
                                a.height,
                                B256::from_slice(&a.root),
                            );
                            sigil_crypto::signing::verify(&self.group_key, d, &sig).is_ok()
                        });
                    if !root_ok || !sig_ok {
                        self.violate(format!("node {node}: attestation at height {} does not verify or cover the decided block", a.height));
                    }
                    if let Some(n) = self.nodes.get_mut(&node) {
                        n.attested.insert(a.height);
                    }
                }
                Effect::Culprit { member, .. } => {
                    self.report.culprits.insert(member);
                    if Some(member) != self.sc.bad_share {
                        self.violate(format!("honest member {member} named a culprit by {node}"));
                    }
                }
                Effect::Retry { .. } | Effect::SignRefused { .. } => {}
            }
        }
    }

    fn input(&mut self, node: u16, input: Input<u16, Block>) {
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        let outs = n.cs.process(input);
        let mut follow = Vec::new();
        for o in outs {
            match o {
                Output::Proposal(p) => {
                    if let Some(n) = self.nodes.get_mut(&node) {
                        n.own.push(Msg::Proposal(p.clone()));
                    }
                    self.send(node, Msg::Proposal(p))
                }
                Output::Vote(v) => {
                    if let Some(n) = self.nodes.get_mut(&node) {
                        n.own.push(Msg::Vote(v.clone()));
                    }
                    if Some(node) == self.sc.double_voter && v.kind == VoteKind::Prevote {
                        // Everyone gets the real vote; even members also get a conflicting one.
                        let mut other = v.clone();
                        other.value = Some(B256::repeat_byte(0xee));
                        for to in (1..=self.sc.n).filter(|m| *m != node) {
                            let real = Ev::Deliver {
                                to,
                                from: node,
                                msg: Msg::Vote(v.clone()),
                            };
                            self.push(10, real);
                            if to % 2 == 0 {
                                let fake = Ev::Deliver {
                                    to,
                                    from: node,
                                    msg: Msg::Vote(other.clone()),
                                };
                                self.push(12, fake);
                            }
                        }
                    } else {
                        self.send(node, Msg::Vote(v));
                    }
                }
                Output::ScheduleTimeout { timeout, after_ms } => {
                    self.push(after_ms, Ev::Timeout { node, t: timeout })
                }
                Output::RequestValue { height, round } => {
                    if let Some(n) = self.nodes.get_mut(&node) {
                        n.pending_request = Some((height, round));
                    }
                    self.try_propose(node, &mut follow);
                }
                Output::Validate { value } => {
                    let Some(n) = self.nodes.get(&node) else {
                        continue;
                    };
                    let valid = n.app.validate(n.cs.height(), &value) == Validity::Valid;
                    follow.push(Input::Validity {
                        value: value.id(),
                        valid,
                    });
                }
                Output::Decide(d) => {
                    let id = d.value.id();
                    match self.report.decided.get(&d.height) {
                        Some(prev) if *prev != id => {
                            self.violate(format!("agreement broken at height {}", d.height))
                        }
                        _ => {
                            self.report.decided.insert(d.height, id);
                        }
                    }
                    let now = self.now;
                    let Some(n) = self.nodes.get_mut(&node) else {
                        continue;
                    };
                    n.decided.insert(d.height, d.value.clone());
                    n.pending_request = None;
                    n.own.clear();
                    let proposer = *n.cs.validators().proposer(d.height, d.round);
                    let proposal = Proposal {
                        height: d.height,
                        round: d.round,
                        value: d.value.clone(),
                        valid_round: None,
                        proposer,
                    };
                    n.cert = std::iter::once(Msg::Proposal(proposal.clone()))
                        .chain(d.certificate.iter().cloned().map(Msg::Vote))
                        .collect();
                    n.certs.insert(d.height, (proposal, d.certificate.clone()));
                    let effects = n.app.on_decided(d.height, &d.value, None, now);
                    let fresh = n.app.refresh_commitments().ok().flatten();
                    self.effects(node, effects);
                    if let Some(c) = fresh {
                        self.send(node, Msg::Commitments(c));
                    }
                    if d.height < self.sc.heights {
                        follow.push(Input::StartHeight(d.height + 1));
                    }
                }
                Output::Equivocation { .. } => self.report.evidence += 1,
            }
        }
        for f in follow {
            self.input(node, f);
        }
    }

    fn try_propose(&mut self, node: u16, follow: &mut Vec<Input<u16, Block>>) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        let Some((h, r)) = n.pending_request else {
            return;
        };
        if h != n.cs.height() || r != n.cs.round() {
            n.pending_request = None;
            return;
        }
        if let Some(block) = n.app.build_block(h, now) {
            n.pending_request = None;
            follow.push(Input::ProposeValue {
                height: h,
                round: r,
                value: block,
            });
        }
    }

    fn step(&mut self) -> bool {
        let Some((&(at, seq), _)) = self.queue.first_key_value() else {
            return false;
        };
        let Some(ev) = self.queue.remove(&(at, seq)) else {
            return false;
        };
        self.now = at;
        self.report.events += 1;
        match ev {
            Ev::Deliver { to, from, msg } => match msg {
                Msg::Proposal(p) => self.input(to, Input::Proposal(p)),
                Msg::Vote(v) => self.input(to, Input::Vote(v)),
                Msg::Share(s) => {
                    let now = self.now;
                    if let Some(n) = self.nodes.get_mut(&to) {
                        let e = n.app.on_share(from, &s, now);
                        self.effects(to, e);
                    }
                }
                Msg::SignRequest(r) => {
                    let now = self.now;
                    if let Some(n) = self.nodes.get_mut(&to) {
                        let e = n.app.on_sign_request(from, &r, now);
                        self.effects(to, e);
                    }
                }
                Msg::Commitments(c) => {
                    if let Some(n) = self.nodes.get_mut(&to) {
                        n.app.on_commitments(from, &c);
                    }
                }
                Msg::Attestation(a) => {
                    if let Some(n) = self.nodes.get_mut(&to) {
                        let e = n.app.on_attestation(&a);
                        self.effects(to, e);
                    }
                }
            },
            Ev::Timeout { node, t } => self.input(node, Input::Timeout(t)),
            Ev::Tick { node } => {
                let now = self.now;
                let mut follow = Vec::new();
                self.try_propose(node, &mut follow);
                for f in follow {
                    self.input(node, f);
                }
                if let Some(n) = self.nodes.get_mut(&node) {
                    let e = n.app.tick(now);
                    let fresh = if now.is_multiple_of(500) {
                        n.app.refresh_commitments().ok().flatten()
                    } else {
                        None
                    };
                    self.effects(node, e);
                    if let Some(c) = fresh {
                        self.send(node, Msg::Commitments(c));
                    }
                }
                // Gossip is best-effort: re-send our messages of the current height and the
                // last decision's certificate.
                if now.is_multiple_of(1000) {
                    let again: Vec<Msg> = self
                        .nodes
                        .get(&node)
                        .map(|n| n.own.iter().chain(&n.cert).cloned().collect())
                        .unwrap_or_default();
                    for m in again {
                        self.send(node, m);
                    }
                }
                // Catch-up (as the host does it): a certificate from a member that decided our
                // height, accepted on its authority.
                let h = self.nodes.get(&node).map_or(0, |n| n.cs.height());
                let stuck = self
                    .nodes
                    .get(&node)
                    .is_some_and(|n| !n.decided.contains_key(&h));
                let cert = self.nodes.values().find_map(|n| n.certs.get(&h).cloned());
                if let (true, true, Some((proposal, precommits))) =
                    (now.is_multiple_of(1000), stuck, cert)
                {
                    let id = proposal.value.id();
                    self.input(
                        node,
                        Input::Certificate {
                            proposal,
                            precommits,
                        },
                    );
                    self.input(
                        node,
                        Input::Validity {
                            value: id,
                            valid: true,
                        },
                    );
                }
                let done = self
                    .nodes
                    .values()
                    .all(|n| n.attested.len() as u64 >= self.sc.heights);
                if !done {
                    self.push(100, Ev::Tick { node });
                }
            }
        }
        true
    }
}

/// Runs one scenario to completion (or 10 virtual minutes). Errors: bad parameters.
pub fn run(sc: AppScenario) -> anyhow::Result<AppReport> {
    let n = sc.n;
    let (_, t) = sigil_crypto::keys::thresholds(n);
    let mut rng = ChaCha20Rng::seed_from_u64(sc.seed);
    let dealt = sigil_crypto::keys::trusted_dealer(t, n, &mut rng)?;
    let validators = ValidatorSet::equal(1..=n)?;
    let total = sc.heights * sc.per_block;
    let mut nodes = BTreeMap::new();
    for m in 1..=n {
        let key = dealt
            .key_packages
            .get(&m)
            .ok_or_else(|| anyhow::anyhow!("no key for {m}"))?;
        let p = AppParams {
            me: Some(m),
            n,
            t,
            epoch: 1,
            chains: vec![(CHAIN, Address::repeat_byte(0x5a))],
            max_messages: sc.per_block as u32,
            max_bytes: 1 << 20,
            nonce_pool: 6,
            share_timeout_ms: 800,
        };
        let signer = Signer {
            key: key.clone(),
            public: dealt.public_key_package.clone(),
            pool: NoncePool::new(),
            ledger: Box::new(MemoryLedger::new()),
        };
        let mut app = App::new(p, Some(signer), Some(dealt.group_key), BTreeMap::new());
        app.set_rng(Box::new(ChaCha20Rng::seed_from_u64(
            sc.seed ^ (u64::from(m) << 32),
        )));
        let cursor = pb::Cursor {
            chain_id: CHAIN,
            block_number: total,
            block_hash: vec![1; 32],
            next_nonce: total,
        };
        app.observe((0..total).map(message), Some(cursor.clone()));
        for other in 1..=n {
            app.on_cursors(
                other,
                &pb::Cursors {
                    cursors: vec![cursor.clone()],
                },
            );
        }
        let cs = Consensus::new(
            Some(m),
            validators.clone(),
            Params {
                propose_ms: 300,
                prevote_ms: 150,
                precommit_ms: 150,
                delta_ms: 100,
                ..Params::default()
            },
            1,
        );
        nodes.insert(
            m,
            Node {
                cs,
                app,
                pending_request: None,
                decided: BTreeMap::new(),
                attested: BTreeSet::new(),
                own: Vec::new(),
                cert: Vec::new(),
                certs: BTreeMap::new(),
            },
        );
    }
    let mut sim = Sim {
        sc: sc.clone(),
        rng,
        now: 0,
        seq: 0,
        queue: BTreeMap::new(),
        nodes,
        group_key: dealt.group_key,
        report: AppReport::default(),
    };
    // Publish commitments (reliably, before the first height), then start.
    let lists: Vec<(u16, pb::NonceCommitments)> = sim
        .nodes
        .iter_mut()
        .filter_map(|(m, node)| {
            node.app
                .refresh_commitments()
                .ok()
                .flatten()
                .map(|l| (*m, l))
        })
        .collect();
    for (from, l) in &lists {
        for (to, node) in sim.nodes.iter_mut() {
            if to != from {
                node.app.on_commitments(*from, l);
            }
        }
    }
    for m in 1..=n {
        sim.input(m, Input::StartHeight(1));
        sim.push(100, Ev::Tick { node: m });
    }
    while sim.now < 600_000 && sim.report.violation.is_none() && sim.step() {}
    let honest: Vec<u16> = (1..=n)
        .filter(|m| Some(*m) != sc.bad_share && Some(*m) != sc.double_voter)
        .collect();
    if sim.report.violation.is_none() {
        for m in &honest {
            let node = &sim.nodes[m];
            if (node.decided.len() as u64) < sc.heights || (node.attested.len() as u64) < sc.heights
            {
                let all: Vec<String> = sim
                    .nodes
                    .iter()
                    .map(|(k, n)| {
                        format!(
                            "{k}: h{} r{} {:?} decided {} attested {} open {:?}",
                            n.cs.height(),
                            n.cs.round(),
                            n.cs.step(),
                            n.decided.len(),
                            n.attested.len(),
                            n.app.unattested()
                        )
                    })
                    .collect();
                sim.report.violation = Some(format!(
                    "liveness (t={} ms, nodes {all:?}): node {m} decided {} and attested {} of {} heights",
                    sim.now,
                    node.decided.len(),
                    node.attested.len(),
                    sc.heights
                ));
                break;
            }
        }
    }
    Ok(sim.report)
}
