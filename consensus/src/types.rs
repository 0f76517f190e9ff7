//! Consensus vocabulary: heights, rounds, values, validators, proposals and votes.

use std::fmt::Debug;
use std::hash::Hash;

/// Block height (one decision per height), starting at 1.
pub type Height = u64;

/// Round within a height, starting at 0 (Tendermint paper: `round_p`).
pub type Round = u32;

/// A value the committee decides (Sigil: a block naming a batch). Votes carry only its id.
pub trait Value: Clone + Debug + Eq {
    /// Compact identifier carried in votes (Sigil: the block hash, 32 bytes).
    type Id: Clone + Debug + Eq + Ord + Hash;
    /// The value's identifier (paper: `id(v)`).
    fn id(&self) -> Self::Id;
}

/// A validator address: any ordered, hashable identity (Sigil: a secp256k1 public key hash).
pub trait Address: Clone + Debug + Eq + Ord + Hash {}
impl<T: Clone + Debug + Eq + Ord + Hash> Address for T {}

/// One validator and its voting power.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator<A> {
    /// Identity.
    pub address: A,
    /// Voting power (> 0). Equal powers give the classic n = 3f + 1 counts.
    pub power: u64,
}

/// Errors building a validator set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidatorSetError {
    /// No validators.
    #[error("validator set is empty")]
    Empty,
    /// A validator with zero power.
    #[error("validator {index} has zero voting power")]
    ZeroPower {
        /// Position in the list.
        index: usize,
    },
    /// The same address twice.
    #[error("validator {index} duplicates an earlier address")]
    Duplicate {
        /// Position of the duplicate.
        index: usize,
    },
    /// Total power would overflow u64.
    #[error("total voting power overflows")]
    Overflow,
}

/// An ordered validator set with voting powers.
///
/// Thresholds follow the paper with powers: a quorum is more than 2/3 of the total power
/// (2f + 1 of n = 3f + 1 equal validators), a "skip" set more than 1/3 (f + 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet<A> {
    validators: Vec<Validator<A>>,
    total: u64,
}

impl<A: Address> ValidatorSet<A> {
    /// Builds a set. Errors: [`ValidatorSetError`].
    pub fn new(validators: Vec<Validator<A>>) -> Result<Self, ValidatorSetError> {
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        let mut total: u64 = 0;
        let mut seen = std::collections::BTreeSet::new();
        for (index, v) in validators.iter().enumerate() {
            if v.power == 0 {
                return Err(ValidatorSetError::ZeroPower { index });
            }
            if !seen.insert(v.address.clone()) {
                return Err(ValidatorSetError::Duplicate { index });
            }
            total = total
                .checked_add(v.power)
                .ok_or(ValidatorSetError::Overflow)?;
        }
        Ok(Self { validators, total })
    }

    /// Equal-power set (power 1 each) from addresses. Errors as [`ValidatorSet::new`].
    pub fn equal(addresses: impl IntoIterator<Item = A>) -> Result<Self, ValidatorSetError> {
        Self::new(
            addresses
                .into_iter()
                .map(|address| Validator { address, power: 1 })
                .collect(),
        )
    }

    /// Number of validators.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Always false (sets are non-empty).
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// Sum of all powers.
    pub fn total_power(&self) -> u64 {
        self.total
    }

    /// Power of `a`, or None when not a member.
    pub fn power_of(&self, a: &A) -> Option<u64> {
        self.validators
            .iter()
            .find(|v| &v.address == a)
            .map(|v| v.power)
    }

    /// The validators in order.
    pub fn validators(&self) -> &[Validator<A>] {
        &self.validators
    }

    /// Proposer of (height, round): round-robin over the list by `height + round`
    /// (paper: `proposer(h, r)`, any deterministic function).
    pub fn proposer(&self, height: Height, round: Round) -> &A {
        let n = self.validators.len() as u64;
        let i = (height.wrapping_add(u64::from(round))) % n;
        &self.validators[i as usize].address
    }

    /// More than 2/3 of the total power (paper: 2f + 1).
    pub fn is_quorum(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total) * 2
    }

    /// More than 1/3 of the total power (paper: f + 1).
    pub fn is_skip(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total)
    }
}

/// The two vote types (paper: PREVOTE, PRECOMMIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VoteKind {
    /// First voting step.
    Prevote,
    /// Second voting step.
    Precommit,
}

/// A vote, already authenticated by the host. `value: None` is a vote for nil.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vote<A, I> {
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The value id voted for, or None for nil.
    pub value: Option<I>,
    /// The voter.
    pub voter: A,
}

/// A proposal, already authenticated by the host (paper: PROPOSAL(h, r, v, validRound)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal<A, V> {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// Proposed value.
    pub value: V,
    /// The round in which the proposer saw this value get a prevote quorum, or None (-1).
    pub valid_round: Option<Round>,
    /// The sender; must be `proposer(height, round)`.
    pub proposer: A,
}

/// Step within a round (paper: `step_p`); `Commit` once the height is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// Waiting for the proposal.
    Propose,
    /// Prevoted.
    Prevote,
    /// Precommitted.
    Precommit,
    /// Decided; waiting for the host to start the next height.
    Commit,
}

/// Which timeout (paper: OnTimeoutPropose / OnTimeoutPrevote / OnTimeoutPrecommit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeoutKind {
    /// L57.
    Propose,
    /// L61.
    Prevote,
    /// L65.
    Precommit,
}

/// A timeout the host schedules and feeds back as [`crate::Input::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeout {
    /// Which timeout.
    pub kind: TimeoutKind,
    /// Height it belongs to.
    pub height: Height,
    /// Round it belongs to.
    pub round: Round,
}

/// Timeout durations in milliseconds; each grows linearly with the round
/// (paper: timeoutX(r) = initTimeoutX + r * timeoutDelta) so rounds eventually last longer
/// than the unknown message delay after GST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Base propose timeout (ms).
    pub propose_ms: u64,
    /// Base prevote timeout (ms).
    pub prevote_ms: u64,
    /// Base precommit timeout (ms).
    pub precommit_ms: u64,
    /// Added per round to each timeout (ms).
    pub delta_ms: u64,
    /// Messages for rounds above `round_p + max_round_ahead` are dropped (bounds memory).
    pub max_round_ahead: Round,
    /// At most this many messages for height `h_p + 1` are held until it starts.
    pub future_height_buffer: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            propose_ms: 1_000,
            prevote_ms: 500,
            precommit_ms: 500,
            delta_ms: 500,
            max_round_ahead: 16,
            future_height_buffer: 1_024,
        }
    }
}

impl Params {
    /// Duration of `kind` in `round` (ms).
    pub fn duration_ms(&self, kind: TimeoutKind, round: Round) -> u64 {
        let base = match kind {
            TimeoutKind::Propose => self.propose_ms,
            TimeoutKind::Prevote => self.prevote_ms,
            TimeoutKind::Precommit => self.precommit_ms,
        };
        base.saturating_add(self.delta_ms.saturating_mul(u64::from(round)))
    }
}
