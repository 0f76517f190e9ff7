//! Deterministic cluster simulator: N consensus nodes in one process on a virtual clock.
//!
//! - One event queue ordered by (virtual time ms, sequence number); one seeded ChaCha RNG
//!   drives every random choice, so a seed fully determines the run ([`Report::trace_hash`]).
//! - Links have latency, jitter and loss; partitions split the nodes into groups for a time
//!   window and then heal.
//! - Each node's host keeps a simulated disk: a write-ahead log of consensus inputs that is
//!   flushed before any own vote or proposal leaves the node, a signed-vote guard, and its
//!   decided blocks. A crash loses everything not flushed; a restart rebuilds the machine by
//!   replaying the flushed WAL.
//! - Byzantine members: double voter, equivocating proposer, silent member, invalid-value
//!   proposer, replayer of old messages.
//! - Invariants checked after every event: agreement, validity, no honest equivocation
//!   (across restarts). Liveness: every honest node decides every target height before
//!   [`Scenario::liveness_bound_ms`].
//!
//! The node host here is deliberately small (gossip of own messages, catch-up by certificate)
//! and takes the application through [`Block`]; the committee runtime plugs its application
//! core in at the same seams (value requests and validity answers).

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use sigil_consensus::{
    Consensus, Height, Input, Output, Params, Proposal, Round, ValidatorSet, ValidatorSetError,
    Value, Vote, VoteKind,
};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// Node index in the simulated committee.
pub type NodeId = u16;

/// The simulated application value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    /// Height it was proposed for.
    pub height: Height,
    /// Who built it.
    pub proposer: NodeId,
    /// Distinguishes blocks built by one proposer.
    pub salt: u64,
    /// What honest validity checks answer.
    pub valid: bool,
}

impl Value for Block {
    type Id = (Height, NodeId, u64, bool);
    fn id(&self) -> Self::Id {
        (self.height, self.proposer, self.salt, self.valid)
    }
}

type BlockId = <Block as Value>::Id;

/// A network message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Msg {
    Proposal(Proposal<NodeId, Block>),
    Vote(Vote<NodeId, BlockId>),
    SyncRequest {
        height: Height,
    },
    SyncResponse {
        proposal: Proposal<NodeId, Block>,
        precommits: Vec<Vote<NodeId, BlockId>>,
    },
}

/// Faults a Byzantine member commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Byzantine {
    /// Sends a conflicting vote to half of the peers for every vote.
    DoubleVoter,
    /// Sends a different (valid) block to half of the peers for every proposal.
    EquivocatingProposer,
    /// Sends nothing.
    Silent,
    /// Proposes blocks that honest validity checks reject.
    InvalidProposer,
    /// Re-sends old messages at random on every gossip tick.
    Replayer,
}

/// The fault models swept in CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultModel {
    /// Reliable links, no faults.
    None,
    /// 10% message loss on every link.
    Lossy,
    /// A minority is cut off for a while, then the partition heals.
    Partition,
    /// f members crash at random times and restart from their disk.
    CrashRestart,
    /// f double voters.
    DoubleVoter,
    /// f equivocating proposers.
    EquivocatingProposer,
    /// f silent members.
    Silent,
    /// f members proposing invalid values.
    InvalidProposer,
    /// f members replaying old messages.
    Replayer,
}

impl FaultModel {
    /// Every model.
    pub const ALL: [FaultModel; 9] = [
        FaultModel::None,
        FaultModel::Lossy,
        FaultModel::Partition,
        FaultModel::CrashRestart,
        FaultModel::DoubleVoter,
        FaultModel::EquivocatingProposer,
        FaultModel::Silent,
        FaultModel::InvalidProposer,
        FaultModel::Replayer,
    ];

    /// CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            FaultModel::None => "none",
            FaultModel::Lossy => "lossy",
            FaultModel::Partition => "partition",
            FaultModel::CrashRestart => "crash-restart",
            FaultModel::DoubleVoter => "double-voter",
            FaultModel::EquivocatingProposer => "equivocating-proposer",
            FaultModel::Silent => "silent",
            FaultModel::InvalidProposer => "invalid-proposer",
            FaultModel::Replayer => "replayer",
        }
    }

    /// Parses a CLI name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|m| m.name() == s)
    }
}

/// A whole simulated run's settings.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Committee size.
    pub n: u16,
    /// RNG seed.
    pub seed: u64,
    /// Heights every honest node must decide.
    pub heights: Height,
    /// Consensus timeouts.
    pub params: Params,
    /// Minimum one-way link latency (ms).
    pub latency_ms: u64,
    /// Added uniformly random jitter, 0..jitter (ms).
    pub jitter_ms: u64,
    /// Per-message loss probability in parts per thousand.
    pub loss_permille: u32,
    /// (start ms, end ms, nodes cut off from the rest).
    pub partition: Option<(u64, u64, BTreeSet<NodeId>)>,
    /// (node, crash at ms, restart at ms).
    pub crashes: Vec<(NodeId, u64, u64)>,
    /// Members that are down for the whole run (crash faults that never recover); they count
    /// toward f and are excluded from the liveness check.
    pub down: BTreeSet<NodeId>,
    /// Byzantine members and their behaviour.
    pub byzantine: BTreeMap<NodeId, Byzantine>,
    /// Own-message gossip period (ms).
    pub gossip_ms: u64,
    /// Liveness bound: all honest nodes must have decided `heights` by then (virtual ms).
    pub liveness_bound_ms: u64,
    /// Keep a human-readable trace.
    pub keep_trace: bool,
}

impl Scenario {
    /// The scenario for `model` with `n` nodes and `seed`: f = (n - 1) / 3 faulty members
    /// chosen by the seed, fault times drawn from the seed.
    pub fn new(model: FaultModel, n: u16, seed: u64, heights: Height) -> Self {
        let n = n.max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed);
        let f = (n - 1) / 3;
        let mut faulty = BTreeSet::new();
        while faulty.len() < usize::from(f) {
            faulty.insert((rng.next_u32() % u32::from(n)) as NodeId);
        }
        let params = Params {
            propose_ms: 300,
            prevote_ms: 200,
            precommit_ms: 200,
            delta_ms: 100,
            ..Params::default()
        };
        let mut s = Scenario {
            n,
            seed,
            heights,
            params,
            latency_ms: 5,
            jitter_ms: 45,
            loss_permille: 0,
            partition: None,
            crashes: Vec::new(),
            down: BTreeSet::new(),
            byzantine: BTreeMap::new(),
            gossip_ms: 250,
            liveness_bound_ms: 0,
            keep_trace: false,
        };
        let mut heal = 0;
        let behaviour = |b| faulty.iter().map(|i| (*i, b)).collect();
        match model {
            FaultModel::None => {}
            FaultModel::Lossy => s.loss_permille = 100,
            FaultModel::Partition => {
                let start = rng.next_u64() % 400;
                let end = start + 300 + rng.next_u64() % 3_000;
                heal = end;
                let cut: BTreeSet<NodeId> = faulty
                    .iter()
                    .copied()
                    .chain(std::iter::once((rng.next_u32() % u32::from(n)) as NodeId))
                    .collect();
                s.partition = Some((start, end, cut));
            }
            FaultModel::CrashRestart => {
                for &i in &faulty {
                    let at = rng.next_u64() % 600;
                    let back = at + 100 + rng.next_u64() % 2_000;
                    heal = heal.max(back);
                    s.crashes.push((i, at, back));
                }
            }
            FaultModel::DoubleVoter => s.byzantine = behaviour(Byzantine::DoubleVoter),
            FaultModel::EquivocatingProposer => {
                s.byzantine = behaviour(Byzantine::EquivocatingProposer)
            }
            FaultModel::Silent => s.byzantine = behaviour(Byzantine::Silent),
            FaultModel::InvalidProposer => s.byzantine = behaviour(Byzantine::InvalidProposer),
            FaultModel::Replayer => s.byzantine = behaviour(Byzantine::Replayer),
        }
        // Stated bound: after the last fault heals, each height takes at most a few rounds
        // whose timeouts grow by delta per round; 6 s per height is generous for n <= 19 with
        // <= 50 ms links (measured worst cases stay far below it).
        s.liveness_bound_ms = heal + 6_000 * heights + 2_000;
        s
    }
}

/// A violated safety or liveness property, with enough context to debug it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Two honest nodes decided different blocks at one height.
    Agreement {
        /// Height.
        height: Height,
        /// Node that disagreed.
        node: NodeId,
    },
    /// An honest node decided a block honest validity rejects.
    Validity {
        /// Height.
        height: Height,
        /// Node.
        node: NodeId,
    },
    /// An honest node signed two different votes for one height, round and step.
    HonestEquivocation {
        /// Node.
        node: NodeId,
        /// Height.
        height: Height,
        /// Round.
        round: Round,
    },
    /// Some honest node had not decided every height by the bound.
    Liveness {
        /// Node.
        node: NodeId,
        /// Heights it decided.
        decided: Height,
        /// The bound (virtual ms).
        bound_ms: u64,
    },
}

/// Outcome of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// First violation found, if any.
    pub violation: Option<Violation>,
    /// Virtual time at the end (ms).
    pub end_ms: u64,
    /// Virtual time at which the last honest node decided the last height (ms).
    pub all_decided_ms: Option<u64>,
    /// Events processed.
    pub events: u64,
    /// Messages delivered to nodes.
    pub messages: u64,
    /// Equivocation evidence produced by honest machines.
    pub evidence: u64,
    /// Hash of the whole event sequence (determinism check).
    pub trace_hash: u64,
    /// The trace, when `keep_trace`.
    pub trace: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: Msg,
    },
    Timeout {
        node: NodeId,
        timeout: sigil_consensus::Timeout,
    },
    Gossip {
        node: NodeId,
    },
    Crash {
        node: NodeId,
    },
    Restart {
        node: NodeId,
    },
}

/// A decided block's proposal and commit certificate.
type Committed = (Proposal<NodeId, Block>, Vec<Vote<NodeId, BlockId>>);

/// The simulated durable state of a node.
#[derive(Debug, Default)]
struct Disk {
    /// Inputs since the current height started; `[..flushed]` survives a crash.
    wal: Vec<Input<NodeId, Block>>,
    flushed: usize,
    /// Signed votes (survives crashes: written with the flush that precedes sending).
    signed: BTreeMap<(Height, Round, VoteKind), Option<BlockId>>,
    /// Decided blocks with their proposal and certificate, by height.
    decided: BTreeMap<Height, Committed>,
}

struct Node {
    cs: Option<Consensus<NodeId, Block>>,
    disk: Disk,
    own: Vec<Msg>,
    history: Vec<Msg>,
    sync_asked: BTreeMap<NodeId, Height>,
    salt: u64,
}

/// The simulator.
pub struct Sim {
    sc: Scenario,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    nodes: Vec<Node>,
    validators: ValidatorSet<NodeId>,
    decided: BTreeMap<Height, BlockId>,
    report: Report,
    hasher: std::collections::hash_map::DefaultHasher,
}

impl Sim {
    /// Builds the cluster for `sc`. Errors: [`ValidatorSetError::Empty`] when `sc.n == 0`.
    pub fn new(sc: Scenario) -> Result<Self, ValidatorSetError> {
        let validators = ValidatorSet::equal(0..sc.n)?;
        let nodes = (0..sc.n)
            .map(|_| Node {
                cs: None,
                disk: Disk::default(),
                own: Vec::new(),
                history: Vec::new(),
                sync_asked: BTreeMap::new(),
                salt: 0,
            })
            .collect();
        let rng = ChaCha8Rng::seed_from_u64(sc.seed);
        Ok(Sim {
            sc,
            rng,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            validators,
            decided: BTreeMap::new(),
            report: Report {
                violation: None,
                end_ms: 0,
                all_decided_ms: None,
                events: 0,
                messages: 0,
                evidence: 0,
                trace_hash: 0,
                trace: Vec::new(),
            },
            hasher: std::collections::hash_map::DefaultHasher::new(),
        })
    }

    fn honest(&self, i: NodeId) -> bool {
        !self.sc.byzantine.contains_key(&i)
    }

    fn push(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), e);
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        if from == to {
            return;
        }
        if let Some((start, end, cut)) = &self.sc.partition
            && self.now >= *start
            && self.now < *end
            && cut.contains(&from) != cut.contains(&to)
        {
            return;
        }
        if self.sc.loss_permille > 0 && self.rng.next_u32() % 1000 < self.sc.loss_permille {
            return;
        }
        let delay = self.sc.latency_ms
            + if self.sc.jitter_ms > 0 {
                self.rng.next_u64() % self.sc.jitter_ms
            } else {
                0
            };
        self.push(self.now + delay, Event::Deliver { from, to, msg });
    }

    fn broadcast(&mut self, from: NodeId, msg: Msg) {
        for to in 0..self.sc.n {
            self.send(from, to, msg.clone());
        }
    }

    /// Runs until every honest node decided every height or the liveness bound passes.
    pub fn run(mut self) -> Report {
        for (node, at, back) in self.sc.crashes.clone() {
            self.push(at, Event::Crash { node });
            self.push(back, Event::Restart { node });
        }
        for i in 0..self.sc.n {
            if self.sc.down.contains(&i) {
                continue;
            }
            self.start_node(i, false);
            let first = self.rng.next_u64() % self.sc.gossip_ms;
            self.push(first, Event::Gossip { node: i });
        }
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            if at > self.sc.liveness_bound_ms {
                break;
            }
            self.now = at;
            self.report.events += 1;
            ev.hash(&mut self.hasher);
            at.hash(&mut self.hasher);
            if self.sc.keep_trace {
                self.report.trace.push(format!("{at:>7} {ev:?}"));
            }
            self.handle(ev);
            if self.report.violation.is_some() {
                break;
            }
            if self.report.all_decided_ms.is_none() && self.all_decided() {
                self.report.all_decided_ms = Some(self.now);
                break;
            }
        }
        if self.report.violation.is_none()
            && self.report.all_decided_ms.is_none()
            && let Some(n) = (0..self.sc.n)
                .filter(|i| self.honest(*i) && !self.sc.down.contains(i))
                .find(|i| self.decided_count(*i) < self.sc.heights)
        {
            self.report.violation = Some(Violation::Liveness {
                node: n,
                decided: self.decided_count(n),
                bound_ms: self.sc.liveness_bound_ms,
            });
        }
        self.report.end_ms = self.now;
        self.report.trace_hash = self.hasher.finish();
        self.report
    }

    fn decided_count(&self, i: NodeId) -> Height {
        self.nodes[usize::from(i)].disk.decided.len() as Height
    }

    fn all_decided(&self) -> bool {
        (0..self.sc.n)
            .filter(|i| self.honest(*i) && !self.sc.down.contains(i))
            .all(|i| self.decided_count(i) >= self.sc.heights)
    }

    /// Builds (or rebuilds after a crash) node `i`'s machine and replays its flushed WAL.
    fn start_node(&mut self, i: NodeId, restart: bool) {
        let height = self.decided_count(i) + 1;
        let mut cs = Consensus::new(Some(i), self.validators.clone(), self.sc.params, height);
        let node = &mut self.nodes[usize::from(i)];
        node.own.clear();
        let mut replayed = Vec::new();
        if restart {
            for input in node.disk.wal.clone() {
                replayed.extend(cs.process(input));
            }
        } else {
            node.disk.wal.clear();
            node.disk.flushed = 0;
        }
        let started = node
            .disk
            .wal
            .iter()
            .any(|input| matches!(input, Input::StartHeight(_)));
        node.cs = Some(cs);
        if restart && started {
            // Re-issue what the replay asked for: timeouts (re-armed from now), messages
            // (resent, identical), validity checks; a value request only if no proposal was made.
            let proposed = replayed.iter().any(|o| matches!(o, Output::Proposal(_)));
            self.outputs(i, replayed, proposed);
        } else if height <= self.sc.heights {
            self.input(i, Input::StartHeight(height));
        }
    }

    /// Feeds one input to node `i` (WAL first), then acts on the outputs.
    fn input(&mut self, i: NodeId, input: Input<NodeId, Block>) {
        let node = &mut self.nodes[usize::from(i)];
        let Some(cs) = node.cs.as_mut() else { return };
        node.disk.wal.push(input.clone());
        let outs = cs.process(input);
        self.outputs(i, outs, false);
    }

    fn outputs(&mut self, i: NodeId, outs: Vec<Output<NodeId, Block>>, skip_requests: bool) {
        let honest = self.honest(i);
        // Persist before anything leaves: flush the WAL and record signed votes.
        if outs
            .iter()
            .any(|o| matches!(o, Output::Vote(_) | Output::Proposal(_)))
        {
            let node = &mut self.nodes[usize::from(i)];
            node.disk.flushed = node.disk.wal.len();
            for o in &outs {
                if let Output::Vote(v) = o {
                    let key = (v.height, v.round, v.kind);
                    match node.disk.signed.get(&key) {
                        Some(prev) if *prev != v.value && honest => {
                            self.report.violation = Some(Violation::HonestEquivocation {
                                node: i,
                                height: v.height,
                                round: v.round,
                            });
                            return;
                        }
                        _ => {
                            node.disk.signed.insert(key, v.value);
                        }
                    }
                }
            }
        }
        let mut follow = Vec::new();
        for o in outs {
            match o {
                Output::Proposal(p) => self.emit(i, Msg::Proposal(p)),
                Output::Vote(v) => self.emit(i, Msg::Vote(v)),
                Output::ScheduleTimeout { timeout, after_ms } => {
                    self.push(self.now + after_ms, Event::Timeout { node: i, timeout })
                }
                Output::RequestValue { height, round } => {
                    if !skip_requests {
                        let node = &mut self.nodes[usize::from(i)];
                        node.salt += 1;
                        let valid = self.sc.byzantine.get(&i) != Some(&Byzantine::InvalidProposer);
                        let value = Block {
                            height,
                            proposer: i,
                            salt: node.salt + self.rng.next_u64() % 1000,
                            valid,
                        };
                        follow.push(Input::ProposeValue {
                            height,
                            round,
                            value,
                        });
                    }
                }
                Output::Validate { value } => {
                    // Honest application: the block's own flag, and it must be for this height.
                    let h = self.nodes[usize::from(i)]
                        .cs
                        .as_ref()
                        .map_or(0, |c| c.height());
                    follow.push(Input::Validity {
                        value: value.id(),
                        valid: value.valid && value.height == h,
                    });
                }
                Output::Decide(d) => {
                    self.on_decide(i, d);
                    let next = self.decided_count(i) + 1;
                    if next <= self.sc.heights {
                        follow.push(Input::StartHeight(next));
                    }
                }
                Output::Equivocation { .. } => self.report.evidence += 1,
            }
        }
        for input in follow {
            self.input(i, input);
        }
    }

    fn on_decide(&mut self, i: NodeId, d: sigil_consensus::Decision<NodeId, Block>) {
        let node = &mut self.nodes[usize::from(i)];
        let proposal = Proposal {
            height: d.height,
            round: d.round,
            value: d.value.clone(),
            valid_round: None,
            proposer: self.validators.proposer(d.height, d.round).to_owned(),
        };
        node.disk
            .decided
            .insert(d.height, (proposal, d.certificate));
        // The decision is written durably (a flush). The WAL restarts for the next height but
        // keeps next-height messages the machine already buffered: replaying without them
        // would rebuild a different state than the one that voted.
        let h = d.height;
        node.disk.wal.retain(|input| match input {
            Input::Proposal(p) => p.height > h,
            Input::Vote(v) => v.height > h,
            _ => false,
        });
        node.disk.flushed = node.disk.wal.len();
        node.own.clear();
        if !self.honest(i) {
            return;
        }
        if !d.value.valid {
            self.report.violation = Some(Violation::Validity {
                height: d.height,
                node: i,
            });
            return;
        }
        match self.decided.get(&d.height) {
            Some(id) if *id != d.value.id() => {
                self.report.violation = Some(Violation::Agreement {
                    height: d.height,
                    node: i,
                })
            }
            Some(_) => {}
            None => {
                self.decided.insert(d.height, d.value.id());
            }
        }
    }

    /// Sends an own message, applying this node's Byzantine behaviour.
    fn emit(&mut self, i: NodeId, msg: Msg) {
        let node = &mut self.nodes[usize::from(i)];
        node.own.push(msg.clone());
        node.history.push(msg.clone());
        if node.history.len() > 256 {
            node.history.remove(0);
        }
        match self.sc.byzantine.get(&i).copied() {
            Some(Byzantine::Silent) => {}
            Some(Byzantine::DoubleVoter) => {
                if let Msg::Vote(v) = &msg {
                    let other = Vote {
                        value: if v.value.is_some() {
                            None
                        } else {
                            Some((v.height, i, 999_999, true))
                        },
                        ..v.clone()
                    };
                    for to in 0..self.sc.n {
                        let m = if to % 2 == 0 {
                            msg.clone()
                        } else {
                            Msg::Vote(other.clone())
                        };
                        self.send(i, to, m);
                    }
                } else {
                    self.broadcast(i, msg);
                }
            }
            Some(Byzantine::EquivocatingProposer) => {
                if let Msg::Proposal(p) = &msg {
                    let mut q = p.clone();
                    q.value.salt += 1_000_000;
                    for to in 0..self.sc.n {
                        let m = if to % 2 == 0 {
                            msg.clone()
                        } else {
                            Msg::Proposal(q.clone())
                        };
                        self.send(i, to, m);
                    }
                } else {
                    self.broadcast(i, msg);
                }
            }
            _ => self.broadcast(i, msg),
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Deliver { from, to, msg } => {
                if self.nodes[usize::from(to)].cs.is_none() {
                    return;
                }
                self.report.messages += 1;
                self.deliver(from, to, msg);
            }
            Event::Timeout { node, timeout } => self.input(node, Input::Timeout(timeout)),
            Event::Gossip { node } => {
                if self.nodes[usize::from(node)].cs.is_some()
                    && self.sc.byzantine.get(&node) != Some(&Byzantine::Silent)
                {
                    let own = self.nodes[usize::from(node)].own.clone();
                    for m in own {
                        self.broadcast(node, m);
                    }
                    if self.sc.byzantine.get(&node) == Some(&Byzantine::Replayer) {
                        let hist = &self.nodes[usize::from(node)].history;
                        if !hist.is_empty() {
                            let k = (self.rng.next_u64() % hist.len() as u64) as usize;
                            let m = hist[k].clone();
                            self.broadcast(node, m);
                        }
                    }
                }
                // Catch-up poll: ask one random peer for the certificate of our height; a
                // peer answers only if it decided it.
                if let Some(h) = self.nodes[usize::from(node)]
                    .cs
                    .as_ref()
                    .map(|c| c.height())
                {
                    let peer = (self.rng.next_u32() % u32::from(self.sc.n)) as NodeId;
                    if h <= self.sc.heights && peer != node {
                        self.send(node, peer, Msg::SyncRequest { height: h });
                    }
                }
                let next = self.now + self.sc.gossip_ms;
                self.push(next, Event::Gossip { node });
            }
            Event::Crash { node } => {
                let n = &mut self.nodes[usize::from(node)];
                n.cs = None;
                n.disk.wal.truncate(n.disk.flushed);
            }
            Event::Restart { node } => self.start_node(node, true),
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        let my_height = self.nodes[usize::from(to)]
            .cs
            .as_ref()
            .map_or(0, |c| c.height());
        let msg_height = match &msg {
            Msg::Proposal(p) => Some(p.height),
            Msg::Vote(v) => Some(v.height),
            _ => None,
        };
        if let Some(h) = msg_height {
            // Catch-up: a peer is ahead of us; ask it for our height's certificate.
            let asked = self.nodes[usize::from(to)]
                .sync_asked
                .get(&from)
                .copied()
                .unwrap_or(0);
            if h > my_height && asked < my_height && my_height <= self.sc.heights {
                self.nodes[usize::from(to)]
                    .sync_asked
                    .insert(from, my_height);
                self.send(to, from, Msg::SyncRequest { height: my_height });
            }
        }
        match msg {
            Msg::Proposal(p) => self.input(to, Input::Proposal(p)),
            Msg::Vote(v) => self.input(to, Input::Vote(v)),
            Msg::SyncRequest { height } => {
                if self.sc.byzantine.get(&to) == Some(&Byzantine::Silent) {
                    return;
                }
                if let Some((proposal, precommits)) = self.nodes[usize::from(to)]
                    .disk
                    .decided
                    .get(&height)
                    .cloned()
                {
                    self.send(
                        to,
                        from,
                        Msg::SyncResponse {
                            proposal,
                            precommits,
                        },
                    );
                }
            }
            Msg::SyncResponse {
                proposal,
                precommits,
            } => {
                self.nodes[usize::from(to)].sync_asked.remove(&from);
                self.input(
                    to,
                    Input::Certificate {
                        proposal,
                        precommits,
                    },
                );
            }
        }
    }
}

/// Runs one scenario. Errors: [`ValidatorSetError::Empty`] when `sc.n == 0`.
pub fn run(sc: Scenario) -> Result<Report, ValidatorSetError> {
    Ok(Sim::new(sc)?.run())
}

/// The command that replays one schedule.
pub fn replay_command(model: FaultModel, n: u16, seed: u64, heights: Height) -> String {
    format!(
        "cargo run -p sigil-testnet --bin sigil-sim -- run --model {} --nodes {n} --seed {seed} --heights {heights} --trace",
        model.name()
    )
}
