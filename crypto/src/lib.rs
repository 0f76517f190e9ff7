//! # sigil-crypto
//!
//! The attestation core of Sigil: everything needed to turn a decided batch of cross-chain
//! messages into one FROST(secp256k1, SHA-256) signature (RFC 9591) that `SigilInbox`
//! verifies on-chain for about the gas of one `ecrecover`.
//!
//! - [`keys`]: group key in on-chain form (x < n enforced), member identifiers, a
//!   trusted-dealer split for tests.
//! - [`dkg`]: FROST DKG as a transport-agnostic per-member state machine.
//! - [`nonce`]: single-use nonce pool and the durable [`NonceLedger`] contract.
//! - [`signing`]: signing packages, shares, cheater-detecting aggregation, verification,
//!   and the [`OnchainSignature`] form.
//! - [`merkle`]: the batch tree (OpenZeppelin StandardMerkleTree compatible).
//! - [`encoding`]: `messageId`, leaf and EIP-712 digests, byte-equal to the contracts.
//! - [`keystore`]: passphrase-encrypted key files.
//!
//! Nothing here does I/O except [`keystore`] file helpers; randomness is always passed in.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod dkg;
pub mod encoding;
pub mod keys;
pub mod keystore;
pub mod merkle;
pub mod nonce;
pub mod signing;

pub use encoding::{Message, batch_digest, message_id, rotation_digest};
pub use keys::{GroupKey, KeyError, MemberIndex};
pub use merkle::{BatchTree, MultiProof};
pub use nonce::{MemoryLedger, NonceError, NonceId, NonceLedger, NoncePool};
pub use signing::{OnchainSignature, SigningError};

/// Re-export of the FROST ciphersuite crate, so callers name the same types.
pub use frost_secp256k1 as frost;
