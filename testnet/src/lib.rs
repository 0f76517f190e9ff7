//! # sigil-testnet
//!
//! Test harnesses for Sigil: [`sim`], the deterministic cluster simulator that drives the
//! real consensus crate, and [`chain`], helpers that start anvil chains and deploy
//! the Foundry-built contracts through alloy, used by the end-to-end tests. The
//! deterministic cluster simulator and the devnet orchestrator build on it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod appsim;
pub mod chain;
pub mod devnet;
pub mod sim;
