//! Every conversion between wire messages ([`sigil_proto`]) and consensus types, in one place.

use crate::app::Block;
use crate::types::Member;
use alloy_primitives::B256;
use sigil_consensus::{Proposal, TimeoutKind, Vote, VoteKind};
use sigil_proto as pb;

/// Own-vote step code stored per (height, round, step): the proposal.
pub const STEP_PROPOSAL: u8 = 0;
/// Own-vote step code: prevote (Tendermint paper L28–L33).
pub const STEP_PREVOTE: u8 = 1;
/// Own-vote step code: precommit (L36–L43).
pub const STEP_PRECOMMIT: u8 = 2;

/// Why a wire message does not convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A proposal without its block.
    #[error("proposal without block")]
    MissingBlock,
    /// `valid_round` is below -1 or above `u32::MAX`.
    #[error("valid_round out of range")]
    ValidRound,
    /// Vote kind is neither 1 (prevote) nor 2 (precommit).
    #[error("vote kind")]
    VoteKind,
    /// A vote's value id is neither empty (nil) nor 32 bytes.
    #[error("vote value id length")]
    ValueIdLength,
}

impl WireError {
    /// A short static reason for rejection counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingBlock => "proposal without block",
            Self::ValidRound => "valid_round",
            Self::VoteKind => "vote kind",
            Self::ValueIdLength => "vote value id length",
        }
    }
}

/// The own-vote step code of a vote kind.
pub fn step_of(kind: VoteKind) -> u8 {
    match kind {
        VoteKind::Prevote => STEP_PREVOTE,
        VoteKind::Precommit => STEP_PRECOMMIT,
    }
}

/// WAL code of a timeout kind (0 propose, 1 prevote, 2 precommit).
pub fn timeout_code(k: TimeoutKind) -> u32 {
    match k {
        TimeoutKind::Propose => 0,
        TimeoutKind::Prevote => 1,
        TimeoutKind::Precommit => 2,
    }
}

/// The timeout kind of a WAL code, `None` for an unknown code.
pub fn timeout_kind(c: u32) -> Option<TimeoutKind> {
    match c {
        0 => Some(TimeoutKind::Propose),
        1 => Some(TimeoutKind::Prevote),
        2 => Some(TimeoutKind::Precommit),
        _ => None,
    }
}

/// A wire proposal signed by `from`. Errors: [`WireError::MissingBlock`],
/// [`WireError::ValidRound`].
pub fn proposal_from_wire(
    from: Member,
    p: &pb::Proposal,
) -> Result<Proposal<Member, Block>, WireError> {
    let block = p.block.clone().ok_or(WireError::MissingBlock)?;
    let valid_round = if p.valid_round == -1 {
        None
    } else {
        Some(u32::try_from(p.valid_round).map_err(|_| WireError::ValidRound)?)
    };
    Ok(Proposal {
        height: p.height,
        round: p.round,
        value: Block(block),
        valid_round,
        proposer: from,
    })
}

/// The wire form of a proposal.
pub fn proposal_to_wire(p: &Proposal<Member, Block>) -> pb::Proposal {
    pb::Proposal {
        height: p.height,
        round: p.round,
        block: Some(p.value.0.clone()),
        valid_round: p.valid_round.map_or(-1, i64::from),
    }
}

/// A wire vote signed by `from`. Errors: [`WireError::VoteKind`],
/// [`WireError::ValueIdLength`].
pub fn vote_from_wire(from: Member, v: &pb::Vote) -> Result<Vote<Member, B256>, WireError> {
    let kind = match v.kind {
        1 => VoteKind::Prevote,
        2 => VoteKind::Precommit,
        _ => return Err(WireError::VoteKind),
    };
    let value = match v.value_id.len() {
        0 => None,
        32 => Some(B256::from_slice(&v.value_id)),
        _ => return Err(WireError::ValueIdLength),
    };
    Ok(Vote {
        kind,
        height: v.height,
        round: v.round,
        value,
        voter: from,
    })
}

/// The wire form of a vote (kind 1 prevote, 2 precommit; empty value id = nil).
pub fn vote_to_wire(v: &Vote<Member, B256>) -> pb::Vote {
    pb::Vote {
        kind: match v.kind {
            VoteKind::Prevote => 1,
            VoteKind::Precommit => 2,
        },
        height: v.height,
        round: v.round,
        value_id: v.value.map(|b| b.to_vec()).unwrap_or_default(),
    }
}
