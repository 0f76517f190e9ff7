//! # sigil-testnet
//!
//! Test harnesses for Sigil. Today: [`chain`], helpers that start anvil chains and deploy
//! the Foundry-built contracts through alloy, used by the end-to-end tests. The
//! deterministic cluster simulator and the devnet orchestrator build on it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod chain;
