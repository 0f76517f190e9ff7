//! The vote keeper: per (round, kind), a voter's first vote and at most
//! [`MAX_VALUES_PER_VOTER`] − 1 conflicting ones, power tallies per value id, and
//! equivocation detection.
//!
//! An equivocator's votes are all counted, each toward its own value (a voter adds its
//! power at most once per value). The host decides which conflicting votes reach the
//! machine (Sigil's driver admits only votes for values in play: nil, a proposed value, or
//! one another member voted for). This is what the paper's gossip assumption needs for
//! liveness: a correct process that saw a quorum including an equivocator's vote for `v`
//! relays that vote, and every correct process must then see the same quorum, whatever the
//! equivocator sent it first (Buchman, Kwon, Milosevic 2018, §4 "gossip communication").
//! Safety is unchanged: two quorums for different values in one (round, kind) share at
//! least f + 1 voters, so at least one correct voter would have voted twice.

use crate::types::{Address, Round, ValidatorSet, Vote, VoteKind};
use std::collections::BTreeMap;

/// Most distinct values counted for one voter in one (round, kind): its first vote and
/// conflicting ones (memory bound; further votes are evidence only).
pub const MAX_VALUES_PER_VOTER: usize = 16;

/// Result of adding a vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddVote<A, I> {
    /// Counted.
    Added,
    /// An identical vote was already counted.
    Duplicate,
    /// The voter already voted differently in this round and step: evidence. The vote is
    /// counted toward its own value as well (see the module docs) unless the voter already
    /// holds [`MAX_VALUES_PER_VOTER`] distinct values.
    Equivocation {
        /// The vote counted earlier.
        first: Vote<A, I>,
    },
    /// Not a validator: ignored.
    NotValidator,
}

/// Votes of one kind in one round.
#[derive(Debug, Clone)]
pub struct VoteSet<A, I> {
    /// Each voter's first vote.
    votes: BTreeMap<A, Vote<A, I>>,
    /// An equivocator's further, different votes (fewer than [`MAX_VALUES_PER_VOTER`]).
    others: BTreeMap<A, Vec<Vote<A, I>>>,
    tally: BTreeMap<Option<I>, u64>,
    total: u64,
}

impl<A: Address, I: Clone + Ord + std::fmt::Debug> Default for VoteSet<A, I> {
    fn default() -> Self {
        Self {
            votes: BTreeMap::new(),
            others: BTreeMap::new(),
            tally: BTreeMap::new(),
            total: 0,
        }
    }
}

impl<A: Address, I: Clone + Ord + std::fmt::Debug> VoteSet<A, I> {
    /// Adds `vote` with the voter's power from `validators`.
    pub fn add(&mut self, vote: Vote<A, I>, validators: &ValidatorSet<A>) -> AddVote<A, I> {
        let Some(power) = validators.power_of(&vote.voter) else {
            return AddVote::NotValidator;
        };
        if let Some(prev) = self.votes.get(&vote.voter) {
            if prev.value == vote.value {
                return AddVote::Duplicate;
            }
            let first = prev.clone();
            let others = self.others.entry(vote.voter.clone()).or_default();
            if others.iter().any(|o| o.value == vote.value) {
                return AddVote::Duplicate;
            }
            if others.len() + 1 < MAX_VALUES_PER_VOTER {
                *self.tally.entry(vote.value.clone()).or_insert(0) += power;
                others.push(vote);
            }
            return AddVote::Equivocation { first };
        }
        *self.tally.entry(vote.value.clone()).or_insert(0) += power;
        self.total += power;
        self.votes.insert(vote.voter.clone(), vote);
        AddVote::Added
    }

    /// Power that voted for exactly `value` (None = nil), each voter at most once.
    pub fn power_for(&self, value: &Option<I>) -> u64 {
        self.tally.get(value).copied().unwrap_or(0)
    }

    /// Power of distinct voters that voted at all (any value or nil).
    pub fn power_any(&self) -> u64 {
        self.total
    }

    /// The value id (not nil) holding a quorum, if any. At most one value can (quorum
    /// intersection), unless more than f voters equivocated.
    pub fn quorum_value(&self, validators: &ValidatorSet<A>) -> Option<I> {
        self.tally
            .iter()
            .find(|(v, p)| v.is_some() && validators.is_quorum(**p))
            .and_then(|(v, _)| v.clone())
    }

    /// The votes for exactly `value`, one per voter, sorted by voter (a commit certificate
    /// when a quorum).
    pub fn votes_for(&self, value: &Option<I>) -> Vec<Vote<A, I>> {
        let mut out: BTreeMap<&A, &Vote<A, I>> = BTreeMap::new();
        for v in self.votes.values().chain(self.others.values().flatten()) {
            if &v.value == value {
                out.entry(&v.voter).or_insert(v);
            }
        }
        out.into_values().cloned().collect()
    }

    /// Voters that voted (for the f + 1 round-skip rule).
    pub fn voters(&self) -> impl Iterator<Item = &A> {
        self.votes.keys()
    }
}

/// Prevotes and precommits of one round.
type RoundVotes<A, I> = (VoteSet<A, I>, VoteSet<A, I>);

/// All votes of one height, by round.
#[derive(Debug, Clone)]
pub struct VoteKeeper<A, I> {
    rounds: BTreeMap<Round, RoundVotes<A, I>>,
}

impl<A: Address, I: Clone + Ord + std::fmt::Debug> Default for VoteKeeper<A, I> {
    fn default() -> Self {
        Self {
            rounds: BTreeMap::new(),
        }
    }
}

impl<A: Address, I: Clone + Ord + std::fmt::Debug> VoteKeeper<A, I> {
    /// Adds a vote to its round and kind.
    pub fn add(&mut self, vote: Vote<A, I>, validators: &ValidatorSet<A>) -> AddVote<A, I> {
        let (pv, pc) = self.rounds.entry(vote.round).or_default();
        match vote.kind {
            VoteKind::Prevote => pv.add(vote, validators),
            VoteKind::Precommit => pc.add(vote, validators),
        }
    }

    /// The vote set of (round, kind), if any vote arrived.
    pub fn get(&self, round: Round, kind: VoteKind) -> Option<&VoteSet<A, I>> {
        self.rounds.get(&round).map(|(pv, pc)| match kind {
            VoteKind::Prevote => pv,
            VoteKind::Precommit => pc,
        })
    }

    /// Power for `value` in (round, kind).
    pub fn power_for(&self, round: Round, kind: VoteKind, value: &Option<I>) -> u64 {
        self.get(round, kind).map_or(0, |s| s.power_for(value))
    }

    /// Power of all votes in (round, kind).
    pub fn power_any(&self, round: Round, kind: VoteKind) -> u64 {
        self.get(round, kind).map_or(0, |s| s.power_any())
    }

    /// Power of distinct validators with any vote in `round` (for L55).
    pub fn round_participation(&self, round: Round, validators: &ValidatorSet<A>) -> u64 {
        let Some((pv, pc)) = self.rounds.get(&round) else {
            return 0;
        };
        let voters: std::collections::BTreeSet<&A> = pv.voters().chain(pc.voters()).collect();
        voters.iter().filter_map(|a| validators.power_of(a)).sum()
    }

    /// Rounds that hold any vote.
    pub fn rounds(&self) -> impl Iterator<Item = Round> + '_ {
        self.rounds.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vote(voter: u8, value: Option<u8>) -> Vote<u8, u8> {
        Vote {
            kind: VoteKind::Prevote,
            height: 1,
            round: 0,
            value,
            voter,
        }
    }

    #[test]
    fn equivocation_is_reported_and_counted_once_per_value() {
        let vs = ValidatorSet::equal(0u8..4).unwrap();
        let mut s = VoteSet::default();
        assert_eq!(s.add(vote(1, Some(7)), &vs), AddVote::Added);
        assert_eq!(s.add(vote(1, Some(7)), &vs), AddVote::Duplicate);
        assert_eq!(
            s.add(vote(1, None), &vs),
            AddVote::Equivocation {
                first: vote(1, Some(7))
            }
        );
        assert_eq!(s.add(vote(1, None), &vs), AddVote::Duplicate);
        // A third distinct value is evidence again, and counted toward its own value.
        assert!(matches!(
            s.add(vote(1, Some(8)), &vs),
            AddVote::Equivocation { .. }
        ));
        // Past the per-voter bound, evidence only.
        for v in 9..40 {
            assert!(matches!(
                s.add(vote(1, Some(v)), &vs),
                AddVote::Equivocation { .. }
            ));
        }
        assert_eq!(s.add(vote(9, None), &vs), AddVote::NotValidator);
        assert_eq!(s.power_for(&Some(7)), 1);
        assert_eq!(s.power_for(&None), 1);
        assert_eq!(s.power_for(&Some(8)), 1);
        let counted = (9..40).filter(|v| s.power_for(&Some(*v)) == 1).count();
        assert_eq!(counted, MAX_VALUES_PER_VOTER - 3, "bounded per voter");
        assert_eq!(s.power_any(), 1, "one distinct voter");
        assert_eq!(s.votes_for(&None), vec![vote(1, None)]);
    }

    /// The liveness gap this closes: correct members 0 and 1 prevote `v`, correct member 2
    /// prevotes nil, equivocator 3 sends `v` to member 0 and nil to the others. Once member
    /// 0 relays 3's `v` prevote, every member counts the same quorum for `v`.
    #[test]
    fn relayed_equivocation_completes_the_same_quorum_everywhere() {
        let vs = ValidatorSet::equal(0u8..4).unwrap();
        let mut at0 = VoteSet::default();
        let mut at1 = VoteSet::default();
        for v in [
            vote(0, Some(5)),
            vote(1, Some(5)),
            vote(2, None),
            vote(3, Some(5)),
        ] {
            at0.add(v, &vs);
        }
        for v in [
            vote(0, Some(5)),
            vote(1, Some(5)),
            vote(2, None),
            vote(3, None),
        ] {
            at1.add(v, &vs);
        }
        assert_eq!(at0.quorum_value(&vs), Some(5));
        assert_eq!(at1.quorum_value(&vs), None);
        at1.add(vote(3, Some(5)), &vs); // relayed by member 0
        assert_eq!(at1.quorum_value(&vs), Some(5));
        assert_eq!(at1.votes_for(&Some(5)).len(), 3);
    }

    proptest! {
        /// Quorum iff more than 2/3 of the power voted for the value, for any n and any
        /// (possibly equivocating) vote sequence; a voter adds power at most once per value,
        /// for at most `MAX_VALUES_PER_VOTER` values; two values never both reach a quorum
        /// unless more than f voters equivocated.
        #[test]
        fn quorum_threshold_matches_two_thirds(n in 1u8..40, votes in proptest::collection::vec((0u8..45, proptest::option::of(0u8..3)), 0..120)) {
            let vs = ValidatorSet::equal(0..n).unwrap();
            let mut s = VoteSet::default();
            let mut counted: std::collections::BTreeMap<u8, Vec<Option<u8>>> = Default::default();
            for (voter, value) in votes {
                let r = s.add(vote(voter, value), &vs);
                if voter >= n {
                    prop_assert_eq!(r, AddVote::NotValidator);
                    continue;
                }
                let c = counted.entry(voter).or_default();
                if c.is_empty() {
                    prop_assert_eq!(r, AddVote::Added);
                    c.push(value);
                } else if c.contains(&value) {
                    prop_assert_eq!(r, AddVote::Duplicate);
                } else {
                    prop_assert!(matches!(r, AddVote::Equivocation { .. }), "equivocation must be detected");
                    if c.len() < MAX_VALUES_PER_VOTER {
                        c.push(value);
                    }
                }
            }
            let f = (u64::from(n) - 1) / 3;
            let equivocators = counted.values().filter(|c| c.len() > 1).count() as u64;
            let mut quorums = 0;
            for value in [None, Some(0), Some(1), Some(2)] {
                let count = counted.values().filter(|c| c.contains(&value)).count() as u64;
                prop_assert_eq!(s.power_for(&value), count);
                prop_assert_eq!(s.votes_for(&value).len() as u64, count);
                if vs.is_quorum(count) {
                    quorums += 1;
                }
                if u64::from(n) == 3 * f + 1 {
                    prop_assert_eq!(vs.is_quorum(count), count > 2 * f);
                    prop_assert_eq!(vs.is_skip(count), count > f);
                }
            }
            if equivocators <= f {
                prop_assert!(quorums <= 1, "two quorums with only {} equivocators", equivocators);
            }
            prop_assert_eq!(s.power_any(), counted.len() as u64);
        }
    }
}
