//! Single-use signing nonces (RFC 9591 §5.1 `commit`) with a durable consumption ledger.
//!
//! Invariant (DESIGN.md "Cryptography"): a nonce is recorded as consumed, durably, before any
//! signature share made with it leaves the process, and a request naming a consumed or unknown
//! nonce is refused. The [`NoncePool`] keeps the secret nonces in memory only, so after a
//! crash every nonce whose fate is uncertain is simply gone; the [`NonceLedger`] makes sure
//! its id is never honoured again and that fresh ids never repeat old ones.

use frost::keys::KeyPackage;
use frost::round1::{SigningCommitments, SigningNonces};
use frost_secp256k1 as frost;
use rand_core::{CryptoRng, RngCore};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Stable identifier of one pre-generated nonce pair of one member (monotonic u64, never
/// reused, also across restarts: the ledger hands out the ranges).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct NonceId(pub u64);

impl std::fmt::Display for NonceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nonce#{}", self.0)
    }
}

/// What the ledger knows of an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Never issued by this ledger.
    Unknown,
    /// Issued and not yet consumed.
    Issued,
    /// Consumed (or discarded after a restart): must never be used again.
    Consumed,
}

/// Errors from the nonce ledger or pool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// The ledger never issued this id, or this process no longer holds its secret nonce
    /// (e.g. it was generated before a restart).
    #[error("{id} is unknown to this signer")]
    Unknown {
        /// The id requested.
        id: NonceId,
    },
    /// The id was already consumed; signing again would leak the key.
    #[error("{id} was already consumed")]
    AlreadyConsumed {
        /// The id requested.
        id: NonceId,
    },
    /// The durable store failed; nothing was released.
    #[error("nonce ledger storage failed: {source}")]
    Storage {
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Durable record of nonce ids (the node implements it on RocksDB; [`MemoryLedger`] for tests).
pub trait NonceLedger {
    /// Durably reserves `count` fresh ids and returns them. Ids never repeat, including
    /// across restarts. Errors: [`NonceError::Storage`].
    fn issue(&mut self, count: u32) -> Result<Range<u64>, NonceError>;

    /// Durably marks `id` consumed. MUST return `Ok` only once the record would survive a
    /// crash. Errors: [`NonceError::Unknown`], [`NonceError::AlreadyConsumed`],
    /// [`NonceError::Storage`].
    fn consume(&mut self, id: NonceId) -> Result<(), NonceError>;

    /// The id's status.
    fn status(&self, id: NonceId) -> NonceStatus;
}

/// In-memory [`NonceLedger`] for tests and the simulator. Not durable.
#[derive(Debug, Default, Clone)]
pub struct MemoryLedger {
    next: u64,
    consumed: BTreeSet<u64>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a restart: every issued but unconsumed id becomes consumed (its secret nonce
    /// was lost with the process, and its fate is uncertain).
    pub fn restart(&mut self) {
        self.consumed.extend(0..self.next);
    }
}

impl NonceLedger for MemoryLedger {
    fn issue(&mut self, count: u32) -> Result<Range<u64>, NonceError> {
        let start = self.next;
        self.next += u64::from(count);
        Ok(start..self.next)
    }

    fn consume(&mut self, id: NonceId) -> Result<(), NonceError> {
        match self.status(id) {
            NonceStatus::Unknown => Err(NonceError::Unknown { id }),
            NonceStatus::Consumed => Err(NonceError::AlreadyConsumed { id }),
            NonceStatus::Issued => {
                self.consumed.insert(id.0);
                Ok(())
            }
        }
    }

    fn status(&self, id: NonceId) -> NonceStatus {
        if id.0 >= self.next {
            NonceStatus::Unknown
        } else if self.consumed.contains(&id.0) {
            NonceStatus::Consumed
        } else {
            NonceStatus::Issued
        }
    }
}

/// A member's pool of pre-generated nonce pairs. Secret nonces live only here, in memory,
/// and are zeroized on drop (frost's `SigningNonces` implements `ZeroizeOnDrop`).
#[derive(Default)]
pub struct NoncePool {
    nonces: BTreeMap<NonceId, SigningNonces>,
}

impl std::fmt::Debug for NoncePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoncePool")
            .field("available", &self.nonces.len())
            .finish()
    }
}

impl NoncePool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Generates `count` nonce pairs (RFC 9591 §5.1 `commit`), with ids reserved in `ledger`,
    /// and returns their public commitments to publish.
    ///
    /// Errors: [`NonceError::Storage`] from the ledger (nothing is added then).
    pub fn refill<R: RngCore + CryptoRng, L: NonceLedger + ?Sized>(
        &mut self,
        key: &KeyPackage,
        count: u32,
        ledger: &mut L,
        rng: &mut R,
    ) -> Result<Vec<(NonceId, SigningCommitments)>, NonceError> {
        let ids = ledger.issue(count)?;
        let mut out = Vec::with_capacity(count as usize);
        for id in ids {
            let (nonces, commitments) = frost::round1::commit(key.signing_share(), rng);
            self.nonces.insert(NonceId(id), nonces);
            out.push((NonceId(id), commitments));
        }
        Ok(out)
    }

    /// Number of nonces ready to use.
    pub fn available(&self) -> usize {
        self.nonces.len()
    }

    /// Ids of the nonces held, ascending.
    pub fn ids(&self) -> Vec<NonceId> {
        self.nonces.keys().copied().collect()
    }

    /// The public commitments of nonce `id`, if held.
    pub fn commitments(&self, id: NonceId) -> Option<SigningCommitments> {
        self.nonces.get(&id).map(|n| *n.commitments())
    }

    /// Drops nonce `id` (e.g. its commitment was used in a proposal that was not decided).
    /// The ledger still refuses it if it ever comes back.
    pub fn discard(&mut self, id: NonceId) {
        self.nonces.remove(&id);
    }

    /// Removes nonce `id` and records it consumed in `ledger`, in that order; the caller may
    /// use the returned nonces for exactly one share. Errors: [`NonceError::Unknown`] when the
    /// pool does not hold it, and any ledger error (the nonce is gone either way).
    pub(crate) fn take(
        &mut self,
        id: NonceId,
        ledger: &mut (impl NonceLedger + ?Sized),
    ) -> Result<SigningNonces, NonceError> {
        if ledger.status(id) == NonceStatus::Consumed {
            self.nonces.remove(&id);
            return Err(NonceError::AlreadyConsumed { id });
        }
        let nonces = self.nonces.remove(&id).ok_or(NonceError::Unknown { id })?;
        ledger.consume(id)?;
        Ok(nonces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_ledger_states() {
        let mut l = MemoryLedger::new();
        assert_eq!(l.status(NonceId(0)), NonceStatus::Unknown);
        let r = l.issue(3).unwrap();
        assert_eq!(r, 0..3);
        assert_eq!(l.status(NonceId(1)), NonceStatus::Issued);
        l.consume(NonceId(1)).unwrap();
        assert!(matches!(
            l.consume(NonceId(1)),
            Err(NonceError::AlreadyConsumed { id: NonceId(1) })
        ));
        assert!(matches!(
            l.consume(NonceId(9)),
            Err(NonceError::Unknown { id: NonceId(9) })
        ));
        l.restart();
        assert_eq!(l.status(NonceId(2)), NonceStatus::Consumed);
        assert_eq!(l.issue(2).unwrap(), 3..5, "ids continue after a restart");
    }
}
