//! The vote keeper: per (round, kind), at most one vote per validator, power tallies per
//! value id, and equivocation detection.

use crate::types::{Address, Round, ValidatorSet, Vote, VoteKind};
use std::collections::BTreeMap;

/// Result of adding a vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddVote<A, I> {
    /// Counted.
    Added,
    /// An identical vote was already counted.
    Duplicate,
    /// The voter already voted differently in this round and step: evidence. The first vote
    /// stays counted; the second is not.
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
    votes: BTreeMap<A, Vote<A, I>>,
    tally: BTreeMap<Option<I>, u64>,
    total: u64,
}

impl<A: Address, I: Clone + Ord + std::fmt::Debug> Default for VoteSet<A, I> {
    fn default() -> Self {
        Self {
            votes: BTreeMap::new(),
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
            return if prev.value == vote.value {
                AddVote::Duplicate
            } else {
                AddVote::Equivocation {
                    first: prev.clone(),
                }
            };
        }
        *self.tally.entry(vote.value.clone()).or_insert(0) += power;
        self.total += power;
        self.votes.insert(vote.voter.clone(), vote);
        AddVote::Added
    }

    /// Power that voted for exactly `value` (None = nil).
    pub fn power_for(&self, value: &Option<I>) -> u64 {
        self.tally.get(value).copied().unwrap_or(0)
    }

    /// Power that voted at all (any value or nil).
    pub fn power_any(&self) -> u64 {
        self.total
    }

    /// The value id (not nil) holding a quorum, if any.
    pub fn quorum_value(&self, validators: &ValidatorSet<A>) -> Option<I> {
        self.tally
            .iter()
            .find(|(v, p)| v.is_some() && validators.is_quorum(**p))
            .and_then(|(v, _)| v.clone())
    }

    /// The votes for exactly `value`, sorted by voter (a commit certificate when a quorum).
    pub fn votes_for(&self, value: &Option<I>) -> Vec<Vote<A, I>> {
        self.votes
            .values()
            .filter(|v| &v.value == value)
            .cloned()
            .collect()
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
    fn equivocation_is_reported_and_not_counted() {
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
        assert_eq!(s.add(vote(9, None), &vs), AddVote::NotValidator);
        assert_eq!(s.power_for(&Some(7)), 1);
        assert_eq!(s.power_for(&None), 0);
        assert_eq!(s.power_any(), 1);
    }

    proptest! {
        /// Quorum iff more than 2/3 of the power voted for the value, for any n and any
        /// (possibly equivocating) vote sequence; double votes never add power.
        #[test]
        fn quorum_threshold_matches_two_thirds(n in 1u8..40, votes in proptest::collection::vec((0u8..45, proptest::option::of(0u8..3)), 0..120)) {
            let vs = ValidatorSet::equal(0..n).unwrap();
            let mut s = VoteSet::default();
            let mut first: std::collections::BTreeMap<u8, Option<u8>> = Default::default();
            for (voter, value) in votes {
                let r = s.add(vote(voter, value), &vs);
                if voter >= n {
                    prop_assert_eq!(r, AddVote::NotValidator);
                    continue;
                }
                match first.get(&voter) {
                    None => { prop_assert_eq!(r, AddVote::Added); first.insert(voter, value); }
                    Some(f) if *f == value => prop_assert_eq!(r, AddVote::Duplicate),
                    Some(_) => prop_assert!(matches!(r, AddVote::Equivocation { .. }), "equivocation must be detected"),
                }
            }
            for value in [None, Some(0), Some(1), Some(2)] {
                let count = first.values().filter(|v| **v == value).count() as u64;
                prop_assert_eq!(s.power_for(&value), count);
                let f = (u64::from(n) - 1) / 3;
                if u64::from(n) == 3 * f + 1 {
                    prop_assert_eq!(vs.is_quorum(count), count > 2 * f);
                    prop_assert_eq!(vs.is_skip(count), count > f);
                }
            }
            prop_assert_eq!(s.power_any(), first.len() as u64);
        }
    }
}
