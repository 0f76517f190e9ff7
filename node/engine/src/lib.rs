//! # sigil-engine
//!
//! One Sigil committee member as pure code: no tokio, no clock, no sockets, no disk of its
//! own. The node host (`sigil-node`) and the deterministic simulator (`sigil-testnet`)
//! drive the same [`Driver`], so every rule the simulator checks is a rule the binary runs.
//!
//! - [`envelope`]: signed envelopes, the only way peer bytes become messages;
//! - [`wire`]: every conversion between wire messages and consensus types;
//! - [`app`]: observation pool, block building and validity, nonce commitments, FROST
//!   signing sessions (RFC 9591 §5.1–5.3) with ROAST-style retries;
//! - [`driver`]: `Driver::handle(Input, now_ms) -> Vec<Effect>`: admission windows, WAL,
//!   replay, catch-up, decisions, attestations;
//! - [`epochs`]: the switch from one committee epoch to the next (resume, joiners);
//! - [`storage`]: the synchronous storage port and the simulator's crash-losing disk.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod app;
pub mod driver;
pub mod envelope;
pub mod epochs;
pub mod storage;
pub mod types;
pub mod wire;

pub use driver::{
    Driver, DriverConfig, DriverError, DriverStatus, Effect, Event, Input, Topic, Verdict,
};
pub use envelope::{Committee, EnvelopeError};
pub use storage::{MemStorage, Storage, StorageError};
pub use types::{ChainEvent, Cursor, Member, Observation};
