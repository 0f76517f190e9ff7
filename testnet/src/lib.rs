//! # sigil-testnet
//!
//! Test harnesses for Sigil: [`membersim`], the deterministic simulation of whole members
//! (the same `sigil_engine::Driver` the binary runs, with Byzantine members acting through
//! the real wire format), [`sim`], its consensus-only mode that sweeps the bare machine
//! with abstract blocks, and [`chain`], helpers that start anvil chains and deploy
//! the Foundry-built contracts through alloy, used by the end-to-end tests. The
//! deterministic cluster simulator and the devnet orchestrator build on it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod chain;
pub mod delayproxy;
pub mod devnet;
pub mod faultproxy;
pub mod membersim;
pub mod sim;
