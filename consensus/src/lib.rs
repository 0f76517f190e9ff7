//! # sigil-consensus
//!
//! Tendermint BFT (Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus",
//! arXiv:1807.04938, Algorithm 1) as a pure state machine:
//! [`Consensus::process`]`(input) -> Vec<Output>`. No clock, randomness, I/O, async or
//! threads; inputs are proposals, votes, timeouts and the application's answers, outputs are
//! messages to broadcast, timeouts to schedule, requests to the application, decisions with a
//! commit certificate, and equivocation evidence.
//!
//! The host (the node, or the simulator in `sigil-testnet`) owns the clock, network and disk.
//! It MUST persist each [`Output::Vote`] and [`Output::Proposal`] in a write-ahead log before
//! sending it. The machine feeds its own proposals and votes back into itself; the host
//! does not loop them back.
//!
//! Generic over the value ([`Value`]) and the validator identity ([`Address`]); voting
//! power is weighted, thresholds are "more than 2/3" and "more than 1/3" of total power.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod machine;
mod types;
mod votes;

pub use machine::{Consensus, Decision, Input, Output};
pub use types::{
    Address, Height, Params, Proposal, Round, Step, Timeout, TimeoutKind, Validator, ValidatorSet,
    ValidatorSetError, Value, Vote, VoteKind,
};
pub use votes::{AddVote, MAX_VALUES_PER_VOTER, VoteKeeper, VoteSet};
