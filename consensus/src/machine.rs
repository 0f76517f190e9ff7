//! The Tendermint state machine (Buchman, Kwon, Milosevic, "The latest gossip on BFT
//! consensus", arXiv:1807.04938, Algorithm 1). Comments `// L22` name the paper's lines.
//!
//! After each input the machine re-evaluates every `upon` rule until none fires, so the
//! order in which proposals, votes and validity answers arrive does not matter.

use crate::types::{
    Address, Height, Params, Proposal, Round, Step, Timeout, TimeoutKind, ValidatorSet, Value,
    Vote, VoteKind,
};
use crate::votes::{AddVote, VoteKeeper};
use std::collections::{BTreeMap, BTreeSet};

/// What the host feeds in. Messages arrive already authenticated (signature checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<A, V: Value> {
    /// Start `height` (the first height, or `h_p + 1` after a [`Output::Decide`]).
    StartHeight(Height),
    /// The application's value for our proposal (paper: `getValue()`), answering
    /// [`Output::RequestValue`].
    ProposeValue {
        /// Height asked for.
        height: Height,
        /// Round asked for.
        round: Round,
        /// The value.
        value: V,
    },
    /// A proposal from the network (or our own, looped back by the host).
    Proposal(Proposal<A, V>),
    /// A vote from the network (or our own, looped back by the host).
    Vote(Vote<A, V::Id>),
    /// The application's answer to [`Output::Validate`] (paper: `valid(v)`); may come
    /// after the proposal, at any time.
    Validity {
        /// Id of the value checked.
        value: V::Id,
        /// Whether it is valid.
        valid: bool,
    },
    /// A timeout scheduled earlier fired.
    Timeout(Timeout),
    /// A commit certificate for the current height from catch-up sync: the decided round's
    /// proposal and precommits for its value holding more than 2/3 of the power. Verified on
    /// its own (L49 without our local vote view), so a conflicting vote we counted from an
    /// equivocator cannot block catching up.
    Certificate {
        /// The proposal of the decided round.
        proposal: Proposal<A, V>,
        /// The precommits.
        precommits: Vec<Vote<A, V::Id>>,
    },
}

/// What the host must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<A, V: Value> {
    /// Persist, sign and broadcast our proposal (already applied to this machine).
    Proposal(Proposal<A, V>),
    /// Persist, sign and broadcast our vote (already applied to this machine). The host MUST
    /// write it to its WAL before it leaves the process.
    Vote(Vote<A, V::Id>),
    /// Fire `timeout` after `after_ms` milliseconds.
    ScheduleTimeout {
        /// The timeout.
        timeout: Timeout,
        /// Delay (ms).
        after_ms: u64,
    },
    /// Ask the application for a value to propose; answer with [`Input::ProposeValue`].
    RequestValue {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
    },
    /// Ask the application whether `value` is valid; answer with [`Input::Validity`].
    Validate {
        /// The value.
        value: V,
    },
    /// The height is decided (L49).
    Decide(Decision<A, V>),
    /// A validator signed two different votes for one height, round and step.
    Equivocation {
        /// The vote counted.
        first: Vote<A, V::Id>,
        /// The conflicting vote (counted toward its own value when it is the voter's second
        /// distinct vote; see [`crate::votes`]).
        second: Vote<A, V::Id>,
    },
}

/// A decided value with its commit certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<A, V: Value> {
    /// Height.
    pub height: Height,
    /// Round in which it was decided.
    pub round: Round,
    /// The value.
    pub value: V,
    /// Precommits for `value` in `round` holding more than 2/3 of the power.
    pub certificate: Vec<Vote<A, V::Id>>,
}

/// Per-round bookkeeping.
#[derive(Debug, Clone)]
struct RoundState<A, V> {
    /// First proposal from the round's proposer (drives L22/L28).
    proposal: Option<Proposal<A, V>>,
    /// Further, different proposals from an equivocating proposer, at most
    /// [`MAX_EXTRA_PROPOSALS`] (L36 and L49 match any proposal whose id holds a quorum).
    others: Vec<Proposal<A, V>>,
    /// Timeouts already scheduled by the "first time" rules L34 and L47.
    scheduled: BTreeSet<TimeoutKind>,
    /// L36 fired.
    locked_or_valid: bool,
}

impl<A, V> Default for RoundState<A, V> {
    fn default() -> Self {
        Self {
            proposal: None,
            others: Vec::new(),
            scheduled: BTreeSet::new(),
            locked_or_valid: false,
        }
    }
}

/// A verified commit certificate waiting for the value's validity answer.
type Certified<A, V> = (Round, V, Vec<Vote<A, <V as Value>::Id>>);

/// Different proposals kept per round beyond the first (an honest proposer sends one).
const MAX_EXTRA_PROPOSALS: usize = 3;

/// One validator's (or observer's) consensus instance. Pure: no clock, I/O or randomness.
#[derive(Debug, Clone)]
pub struct Consensus<A: Address, V: Value> {
    me: Option<A>,
    validators: ValidatorSet<A>,
    params: Params,
    height: Height,
    started: bool,
    round: Round,
    step: Step,
    locked: Option<(Round, V)>,
    valid: Option<(Round, V)>,
    decision: Option<V>,
    rounds: BTreeMap<Round, RoundState<A, V>>,
    votes: VoteKeeper<A, V::Id>,
    validity: BTreeMap<V::Id, bool>,
    asked: BTreeSet<V::Id>,
    value_requested: Option<Round>,
    certified: Option<Certified<A, V>>,
    future: Vec<Input<A, V>>,
    dropped: u64,
}

impl<A: Address, V: Value> Consensus<A, V> {
    /// A new instance for validator `me` (None: observer that never votes), positioned before
    /// `height`; call [`Input::StartHeight`] to begin.
    pub fn new(me: Option<A>, validators: ValidatorSet<A>, params: Params, height: Height) -> Self {
        Self {
            me,
            validators,
            params,
            height,
            started: false,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            decision: None,
            rounds: BTreeMap::new(),
            votes: VoteKeeper::default(),
            validity: BTreeMap::new(),
            asked: BTreeSet::new(),
            value_requested: None,
            certified: None,
            future: Vec::new(),
            dropped: 0,
        }
    }

    /// Current height (`h_p`).
    pub fn height(&self) -> Height {
        self.height
    }

    /// Current round (`round_p`).
    pub fn round(&self) -> Round {
        self.round
    }

    /// Current step (`step_p`).
    pub fn step(&self) -> Step {
        self.step
    }

    /// Locked value and round (`lockedValue`, `lockedRound`).
    pub fn locked(&self) -> Option<&(Round, V)> {
        self.locked.as_ref()
    }

    /// Valid value and round (`validValue`, `validRound`).
    pub fn valid(&self) -> Option<&(Round, V)> {
        self.valid.as_ref()
    }

    /// The validator set.
    pub fn validators(&self) -> &ValidatorSet<A> {
        &self.validators
    }

    /// Messages dropped as out of window (far-future height/round, full buffer, non-member,
    /// wrong proposer). The host exports it as a metric.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Processes one input and returns what the host must do, in order.
    pub fn process(&mut self, input: Input<A, V>) -> Vec<Output<A, V>> {
        let mut out = Vec::new();
        match input {
            Input::StartHeight(h) => self.start_height(h, &mut out),
            Input::ProposeValue {
                height,
                round,
                value,
            } => {
                if self.started
                    && height == self.height
                    && round == self.round
                    && self.step == Step::Propose
                {
                    self.value_requested = None;
                    self.broadcast_proposal(value, None, &mut out);
                }
            }
            Input::Proposal(p) => self.on_proposal(p, &mut out),
            Input::Vote(v) => self.on_vote(v, &mut out),
            Input::Validity { value, valid } => {
                self.validity.insert(value, valid);
            }
            Input::Timeout(t) => self.on_timeout(t, &mut out),
            Input::Certificate {
                proposal,
                precommits,
            } => self.on_certificate(proposal, precommits, &mut out),
        }
        if self.started {
            self.apply_rules(&mut out);
        }
        out
    }

    fn start_height(&mut self, h: Height, out: &mut Vec<Output<A, V>>) {
        let next_ok = (!self.started && h == self.height)
            || (self.decision.is_some() && h == self.height + 1);
        if !next_ok {
            return;
        }
        self.height = h;
        self.started = true;
        self.locked = None;
        self.valid = None;
        self.decision = None;
        self.rounds.clear();
        self.votes = VoteKeeper::default();
        self.validity.clear();
        self.asked.clear();
        self.certified = None;
        self.start_round(0, out); // L10 via L54
        let buffered = std::mem::take(&mut self.future);
        for input in buffered {
            match input {
                Input::Proposal(p) if p.height == h => self.on_proposal(p, out),
                Input::Vote(v) if v.height == h => self.on_vote(v, out),
                _ => {}
            }
        }
    }

    /// L11–L21: StartRound(round).
    fn start_round(&mut self, round: Round, out: &mut Vec<Output<A, V>>) {
        self.round = round; // L12
        self.step = Step::Propose; // L13
        self.value_requested = None;
        if self.me.as_ref() == Some(self.validators.proposer(self.height, round)) {
            // L14
            if let Some((vr, v)) = self.valid.clone() {
                // L15-L16
                self.broadcast_proposal(v, Some(vr), out);
            } else {
                // L18: getValue()
                self.value_requested = Some(round);
                out.push(Output::RequestValue {
                    height: self.height,
                    round,
                });
            }
        }
        // L21 (we schedule it also as proposer, harmless: the step changes once we prevote).
        self.schedule(TimeoutKind::Propose, round, out);
    }

    fn broadcast_proposal(
        &mut self,
        value: V,
        valid_round: Option<Round>,
        out: &mut Vec<Output<A, V>>,
    ) {
        let Some(me) = self.me.clone() else { return };
        let p = Proposal {
            height: self.height,
            round: self.round,
            value,
            valid_round,
            proposer: me,
        };
        out.push(Output::Proposal(p.clone())); // L19
        self.on_proposal(p, out);
    }

    fn schedule(&self, kind: TimeoutKind, round: Round, out: &mut Vec<Output<A, V>>) {
        out.push(Output::ScheduleTimeout {
            timeout: Timeout {
                kind,
                height: self.height,
                round,
            },
            after_ms: self.params.duration_ms(kind, round),
        });
    }

    fn vote(&mut self, kind: VoteKind, value: Option<V::Id>, out: &mut Vec<Output<A, V>>) {
        let Some(me) = self.me.clone() else { return };
        if self.validators.power_of(&me).is_none() {
            return;
        }
        let v = Vote {
            kind,
            height: self.height,
            round: self.round,
            value,
            voter: me,
        };
        out.push(Output::Vote(v.clone()));
        self.on_vote(v, out);
    }

    /// Window check shared by proposals and votes: Some(true) = process now, Some(false) =
    /// buffered for the next height, None = dropped.
    fn admit(&mut self, height: Height, round: Round) -> Option<bool> {
        if height == self.height && self.started && self.decision.is_none() {
            if round > self.round.saturating_add(self.params.max_round_ahead) {
                self.dropped += 1;
                return None;
            }
            return Some(true);
        }
        let next = if self.started {
            self.height + 1
        } else {
            self.height
        };
        if height == next || (height == self.height && self.decision.is_some()) {
            if height == self.height && self.decision.is_some() {
                // Late messages for a decided height carry no information we need.
                return None;
            }
            if self.future.len() >= self.params.future_height_buffer {
                self.dropped += 1;
                return None;
            }
            return Some(false);
        }
        None
    }

    fn on_proposal(&mut self, p: Proposal<A, V>, out: &mut Vec<Output<A, V>>) {
        match self.admit(p.height, p.round) {
            None => return,
            Some(false) => {
                self.future.push(Input::Proposal(p));
                return;
            }
            Some(true) => {}
        }
        if &p.proposer != self.validators.proposer(p.height, p.round) {
            self.dropped += 1;
            return;
        }
        let id = p.value.id();
        // A value holding a precommit or prevote quorum in this round is always kept, so a
        // flood of equivocating proposals cannot hide the decided one.
        let wanted = [VoteKind::Precommit, VoteKind::Prevote].iter().any(|k| {
            self.votes
                .get(p.round, *k)
                .and_then(|s| s.quorum_value(&self.validators))
                .as_ref()
                == Some(&id)
        });
        let rs = self.rounds.entry(p.round).or_default();
        match &rs.proposal {
            None => rs.proposal = Some(p.clone()),
            Some(first) if first.value.id() == id => return,
            Some(_) => {
                if rs.others.iter().any(|o| o.value.id() == id) {
                    return;
                }
                if rs.others.len() >= MAX_EXTRA_PROPOSALS && !wanted {
                    self.dropped += 1;
                    return;
                }
                rs.others.push(p.clone());
            }
        }
        if !self.validity.contains_key(&id) && self.asked.insert(id) {
            out.push(Output::Validate { value: p.value });
        }
    }

    fn on_vote(&mut self, v: Vote<A, V::Id>, out: &mut Vec<Output<A, V>>) {
        match self.admit(v.height, v.round) {
            None => return,
            Some(false) => {
                self.future.push(Input::Vote(v));
                return;
            }
            Some(true) => {}
        }
        match self.votes.add(v.clone(), &self.validators) {
            AddVote::Added | AddVote::Duplicate => {}
            AddVote::Equivocation { first } => out.push(Output::Equivocation { first, second: v }),
            AddVote::NotValidator => self.dropped += 1,
        }
    }

    fn on_timeout(&mut self, t: Timeout, out: &mut Vec<Output<A, V>>) {
        if !self.started
            || t.height != self.height
            || t.round != self.round
            || self.decision.is_some()
        {
            return;
        }
        match t.kind {
            TimeoutKind::Propose if self.step == Step::Propose => {
                // L57-L60
                self.vote(VoteKind::Prevote, None, out);
                self.step = Step::Prevote;
            }
            TimeoutKind::Prevote if self.step == Step::Prevote => {
                // L61-L64
                self.vote(VoteKind::Precommit, None, out);
                self.step = Step::Precommit;
            }
            TimeoutKind::Precommit => {
                // L65-L67
                self.start_round(self.round + 1, out);
            }
            _ => {}
        }
    }

    fn on_certificate(
        &mut self,
        p: Proposal<A, V>,
        precommits: Vec<Vote<A, V::Id>>,
        _out: &mut Vec<Output<A, V>>,
    ) {
        if !self.started
            || p.height != self.height
            || self.decision.is_some()
            || self.certified.is_some()
        {
            return;
        }
        if &p.proposer != self.validators.proposer(p.height, p.round) {
            self.dropped += 1;
            return;
        }
        let id = p.value.id();
        let mut voters = BTreeSet::new();
        let mut power = 0u64;
        for v in &precommits {
            let ok = v.kind == VoteKind::Precommit
                && v.height == p.height
                && v.round == p.round
                && v.value.as_ref() == Some(&id)
                && voters.insert(v.voter.clone());
            match (ok, self.validators.power_of(&v.voter)) {
                (true, Some(w)) => power += w,
                _ => {
                    self.dropped += 1;
                    return;
                }
            }
        }
        if !self.validators.is_quorum(power) {
            self.dropped += 1;
            return;
        }
        // No validity check of our own: 2f+1 precommits mean at least f+1 correct members
        // validated the value (L49 needs only the proposal and the precommit quorum). The
        // certificate is the authority; the host MUST NOT answer validity on its behalf.
        self.certified = Some((p.round, p.value, precommits));
    }

    /// A proposal of `round` whose value has id `id` (first or extra).
    fn proposal_for(&self, round: Round, id: &V::Id) -> Option<Proposal<A, V>> {
        let rs = self.rounds.get(&round)?;
        rs.proposal
            .iter()
            .chain(rs.others.iter())
            .find(|p| p.value.id() == *id)
            .cloned()
    }

    fn is_valid(&self, v: &V) -> Option<bool> {
        self.validity.get(&v.id()).copied()
    }

    /// Re-evaluates the `upon` rules until none fires.
    fn apply_rules(&mut self, out: &mut Vec<Output<A, V>>) {
        loop {
            if self.decision.is_some() {
                return;
            }
            let fired = self.rule_decide(out)
                || self.rule_skip_round(out)
                || self.rule_proposal_fresh(out)
                || self.rule_proposal_valid_round(out)
                || self.rule_prevote_any(out)
                || self.rule_prevote_quorum_value(out)
                || self.rule_prevote_quorum_nil(out)
                || self.rule_precommit_any(out);
            if !fired {
                return;
            }
        }
    }

    /// L22-L27: PROPOSAL(h, r, v, -1) while step = propose.
    fn rule_proposal_fresh(&mut self, out: &mut Vec<Output<A, V>>) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let Some(p) = self
            .rounds
            .get(&self.round)
            .and_then(|r| r.proposal.clone())
        else {
            return false;
        };
        if p.valid_round.is_some() {
            return false;
        }
        let Some(valid) = self.is_valid(&p.value) else {
            return false;
        };
        let ok = valid && self.locked.as_ref().is_none_or(|(_, lv)| *lv == p.value); // L23
        self.vote(VoteKind::Prevote, ok.then(|| p.value.id()), out); // L24 / L26
        self.step = Step::Prevote; // L27
        true
    }

    /// L28-L33: PROPOSAL(h, r, v, vr) and 2f+1 PREVOTE(h, vr, id(v)), 0 <= vr < r.
    fn rule_proposal_valid_round(&mut self, out: &mut Vec<Output<A, V>>) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let Some(p) = self
            .rounds
            .get(&self.round)
            .and_then(|r| r.proposal.clone())
        else {
            return false;
        };
        let Some(vr) = p.valid_round else {
            return false;
        };
        if vr >= self.round {
            return false;
        }
        let id = p.value.id();
        if !self.validators.is_quorum(self.votes.power_for(
            vr,
            VoteKind::Prevote,
            &Some(id.clone()),
        )) {
            return false;
        }
        let Some(valid) = self.is_valid(&p.value) else {
            return false;
        };
        let ok = valid
            && self
                .locked
                .as_ref()
                .is_none_or(|(lr, lv)| *lr <= vr || *lv == p.value); // L29
        self.vote(VoteKind::Prevote, ok.then_some(id), out); // L30 / L32
        self.step = Step::Prevote; // L33
        true
    }

    /// L34-L35: 2f+1 PREVOTE(h, r, *) while step = prevote, first time.
    fn rule_prevote_any(&mut self, out: &mut Vec<Output<A, V>>) -> bool {
        self.step == Step::Prevote
            && self.schedule_on_quorum_any(VoteKind::Prevote, TimeoutKind::Prevote, out)
    }

    /// L47-L48: 2f+1 PRECOMMIT(h, r, *), first time.
    fn rule_precommit_any(&mut self, out: &mut Vec<Output<A, V>>) -> bool {
        self.schedule_on_quorum_any(VoteKind::Precommit, TimeoutKind::Precommit, out)
    }

    /// Shared body of L34 and L47: the first time votes of `kind` for any value (or nil) in
    /// the current round hold a quorum, schedule `timeout`.
    fn schedule_on_quorum_any(
        &mut self,
        kind: VoteKind,
        timeout: TimeoutKind,
        out: &mut Vec<Output<A, V>>,
    ) -> bool {
        let r = self.round;
        if self
            .rounds
            .get(&r)
            .is_some_and(|s| s.scheduled.contains(&timeout))
        {
            return false;
        }
        if !self.validators.is_quorum(self.votes.power_any(r, kind)) {
            return false;
        }
        self.rounds.entry(r).or_default().scheduled.insert(timeout);
        self.schedule(timeout, r, out);
        true
    }

    /// L36-L43: PROPOSAL(h, r, v, *) and 2f+1 PREVOTE(h, r, id(v)) while valid(v) and
    /// step >= prevote, first time.
    fn rule_prevote_quorum_value(&mut self, out: &mut Vec<Output<A, V>>) -> bool {
        let r = self.round;
        if self.step < Step::Prevote || self.rounds.get(&r).is_some_and(|s| s.locked_or_valid) {
            return false;
        }
        let Some(id) = self
            .votes
            .get(r, VoteKind::Prevote)
            .and_then(|s| s.quorum_value(&self.validators))
        else {
            return false;
        };
        let Some(p) = self.proposal_for(r, &id) else {
            return false;
        };
        if self.is_valid(&p.value) != Some(true) {
            return false;
        }
        self.rounds.entry(r).or_default().locked_or_valid = true;
        if self.step == Step::Prevote {
            self.locked = Some((r, p.value.clone())); // L38-L39
            self.vote(VoteKind::Precommit, Some(id), out); // L40
            self.step = Step::Precommit; // L41
        }
        self.valid = Some((r, p.value)); // L42-L43
        true
    }

    /// L44-L46: 2f+1 PREVOTE(h, r, nil) while step = prevote.
    fn rule_prevote_quorum_nil(&mut self, out: &mut Vec<Output<A, V>>) -> bool {
        if self.step != Step::Prevote {
            return false;
        }
        if !self
            .validators
            .is_quorum(self.votes.power_for(self.round, VoteKind::Prevote, &None))
        {
            return false;
        }
        self.vote(VoteKind::Precommit, None, out); // L45
        self.step = Step::Precommit; // L46
        true
    }

    /// L49-L54: PROPOSAL(h, r, v, *) and 2f+1 PRECOMMIT(h, r, id(v)) for any round r.
    fn rule_decide(&mut self, out: &mut Vec<Output<A, V>>) -> bool {
        if let Some((r, v, certificate)) = self.certified.clone() {
            self.decision = Some(v.clone()); // L51 from a verified certificate
            self.step = Step::Commit;
            out.push(Output::Decide(Decision {
                height: self.height,
                round: r,
                value: v,
                certificate,
            }));
            return true;
        }
        let rounds: Vec<Round> = self.votes.rounds().collect();
        for r in rounds {
            let Some(set) = self.votes.get(r, VoteKind::Precommit) else {
                continue;
            };
            let Some(id) = set.quorum_value(&self.validators) else {
                continue;
            };
            let Some(p) = self.proposal_for(r, &id) else {
                continue;
            };
            if self.is_valid(&p.value) != Some(true) {
                continue;
            }
            let certificate = set.votes_for(&Some(id));
            self.decision = Some(p.value.clone()); // L51
            self.step = Step::Commit;
            out.push(Output::Decide(Decision {
                height: self.height,
                round: r,
                value: p.value,
                certificate,
            }));
            return true;
        }
        false
    }

    /// L55-L56: f+1 messages of a round r > round_p: StartRound(r).
    fn rule_skip_round(&mut self, out: &mut Vec<Output<A, V>>) -> bool {
        let higher: Vec<Round> = self.votes.rounds().filter(|r| *r > self.round).collect();
        for r in higher.into_iter().rev() {
            let mut power = self.votes.round_participation(r, &self.validators);
            // The round's proposer counts too if only its proposal arrived.
            if let Some(p) = self.rounds.get(&r).and_then(|s| s.proposal.as_ref()) {
                let voted = [VoteKind::Prevote, VoteKind::Precommit].iter().any(|k| {
                    self.votes
                        .get(r, *k)
                        .is_some_and(|s| s.voters().any(|a| *a == p.proposer))
                });
                if !voted {
                    power += self.validators.power_of(&p.proposer).unwrap_or(0);
                }
            }
            if self.validators.is_skip(power) {
                self.start_round(r, out);
                return true;
            }
        }
        false
    }
}
