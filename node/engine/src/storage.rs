//! The engine's port to durable storage, and an in-memory simulated disk.
//!
//! Storage is a synchronous port, not an effect the host answers later: every call the engine
//! makes has returned (durably, where the method says so) before the engine produces the next
//! effect. That is what makes "WAL synced before any own vote leaves" hold by construction —
//! [`Storage::sync_wal`] returns before the publish effect even exists. RocksDB calls are
//! synchronous anyway, and the simulator's [`MemStorage`] models a disk that loses every
//! unsynced WAL record on a crash.

use crate::types::Member;
use alloy_primitives::B256;
use prost::Message as _;
use sigil_consensus::{Height, Round};
use sigil_proto as pb;
use std::collections::BTreeMap;

/// A storage failure (the backend's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage {op}: {detail}")]
pub struct StorageError {
    /// The operation that failed (`wal_append`, `put_block`, …).
    pub op: &'static str,
    /// The backend's description.
    pub detail: String,
}

/// One signature share as this member recorded it: its own, just before it left (the nonce
/// was already consumed durably in the ledger), or another member's, once it went into a
/// group signature that verified. The auditor reads these from every store to check that no
/// member made two shares under one nonce commitment and that every share seen on the wire
/// was recorded by its signer (DESIGN.md "Cryptography": a nonce signs once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    /// The committee epoch the share was made in.
    pub epoch: u64,
    /// The signer's member index in that epoch.
    pub member: Member,
    /// The signer's nonce id (its ledger's id, as published with the commitment).
    pub nonce_id: u64,
    /// SHA-256 of the signer's serialized nonce commitment (RFC 9591 §5.1 `(D, E)`), 32 bytes.
    pub commitment: B256,
    /// The decided height the share signs for.
    pub height: Height,
    /// The signing attempt (0: the decided block's signers; then ROAST-style retries).
    pub attempt: u32,
    /// The 32-byte digest the group signs (batch digest or key-rotation digest).
    pub digest: B256,
    /// The serialized share (RFC 9591 §4.1 scalar, 32 bytes).
    pub share: [u8; 32],
    /// Whether this member made it (true) or saw it in a verified group signature.
    pub own: bool,
}

impl ShareRecord {
    /// Length of [`ShareRecord::encode`]'s output (bytes).
    pub const ENCODED_LEN: usize = 8 + 2 + 8 + 32 + 8 + 4 + 32 + 32 + 1;

    /// The record as 127 bytes: epoch u64 · member u16 · nonce id u64 · commitment 32 ·
    /// height u64 · attempt u32 · digest 32 · share 32 · own u8, integers big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::ENCODED_LEN);
        v.extend_from_slice(&self.epoch.to_be_bytes());
        v.extend_from_slice(&self.member.to_be_bytes());
        v.extend_from_slice(&self.nonce_id.to_be_bytes());
        v.extend_from_slice(self.commitment.as_slice());
        v.extend_from_slice(&self.height.to_be_bytes());
        v.extend_from_slice(&self.attempt.to_be_bytes());
        v.extend_from_slice(self.digest.as_slice());
        v.extend_from_slice(&self.share);
        v.push(u8::from(self.own));
        v
    }

    /// Decodes [`ShareRecord::encode`]'s output. `None`: wrong length or an `own` byte
    /// other than 0/1.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::ENCODED_LEN {
            return None;
        }
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(Self {
            epoch: u64_at(0),
            member: u16::from_be_bytes([b[8], b[9]]),
            nonce_id: u64_at(10),
            commitment: B256::from_slice(&b[18..50]),
            height: u64_at(50),
            attempt: u32::from_be_bytes(b[58..62].try_into().ok()?),
            digest: B256::from_slice(&b[62..94]),
            share: b[94..126].try_into().ok()?,
            own: match b[126] {
                0 => false,
                1 => true,
                _ => return None,
            },
        })
    }

    /// The key records are unique under: (epoch, member, commitment hash). A second record
    /// under one key with another digest or share is a nonce used twice. Not the nonce id:
    /// a signing request names (member, nonce id, commitment) and only the commitment is
    /// bound by the signature, so a faulty coordinator could label an honest member's
    /// commitment with another of its ids and make a false conflict appear.
    pub fn key(&self) -> (u64, Member, B256) {
        (self.epoch, self.member, self.commitment)
    }

    /// Whether `other` is the same share (same commitment, digest and share bytes; who
    /// recorded it, under which nonce id label and in which attempt may differ).
    pub fn same_share(&self, other: &Self) -> bool {
        self.key() == other.key() && self.digest == other.digest && self.share == other.share
    }
}

/// What the engine needs from durable storage. Implemented by the node's RocksDB store and
/// by [`MemStorage`].
pub trait Storage {
    /// Appends a consensus WAL record for `height` under sequence number `seq` (not yet
    /// durable). Errors: backend failure; the engine then does not process the input.
    fn wal_append(
        &mut self,
        height: Height,
        seq: u64,
        entry: &pb::WalEntry,
    ) -> Result<(), StorageError>;
    /// Makes every appended WAL record durable. MUST return `Ok` only once they would
    /// survive a crash.
    fn sync_wal(&mut self) -> Result<(), StorageError>;
    /// WAL records of `height` in append order.
    fn wal(&self, height: Height) -> Result<Vec<pb::WalEntry>, StorageError>;
    /// The highest sequence number among the WAL records still held (0 if none). A new
    /// process continues above it, so replay order survives any number of restarts.
    fn last_wal_seq(&self) -> Result<u64, StorageError>;
    /// Records an own proposal/vote (step 0/1/2) durably before it is sent. Returns the
    /// value id already recorded for (height, round, step) if it differs: the caller MUST
    /// then not send.
    fn record_own_vote(
        &mut self,
        height: Height,
        round: Round,
        step: u8,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError>;
    /// Stores a decided block with its certificate and, when present, its attestation
    /// (durable), the next undecided gateway nonce per chain, and drops the WAL of every
    /// height ≤ `height`. When `record` is given, the block changed what is decided about
    /// the next epoch (a rotation, a key commit): `record` replaces the stored one for
    /// `epoch` in the same durable write (a crash never keeps the block and loses the
    /// record), and [`Storage::epoch_record`] returns it from then on.
    fn put_block(
        &mut self,
        height: Height,
        block: &pb::CommittedBlock,
        next_nonces: &[(u64, u64)],
        record: Option<(u64, &pb::EpochRecord)>,
    ) -> Result<(), StorageError>;
    /// What the stored blocks decided about `epoch` (the engine restores it at start:
    /// committee epochs).
    fn epoch_record(&self, epoch: u64) -> Result<Option<pb::EpochRecord>, StorageError>;
    /// The decided block at `height`.
    fn block(&self, height: Height) -> Result<Option<pb::CommittedBlock>, StorageError>;
    /// Highest decided height (0 if none).
    fn last_height(&self) -> Result<Height, StorageError>;
    /// Stores equivocation evidence: two different signed votes of `member` for one
    /// (height, round, step).
    fn put_evidence(
        &mut self,
        height: Height,
        round: Round,
        step: u8,
        member: Member,
        first: &pb::Envelope,
        second: &pb::Envelope,
    ) -> Result<(), StorageError>;
    /// Records signature shares ([`ShareRecord`]; not synced: they survive a process crash,
    /// and the nonce ledger's synced consumption is what keeps a nonce single-use). A record
    /// whose key is already held with a different share is kept as well (both are
    /// evidence); the earlier record of each such conflict is returned.
    fn record_shares(&mut self, records: &[ShareRecord]) -> Result<Vec<ShareRecord>, StorageError>;
}

/// An in-memory disk for tests and the simulator. Everything but the WAL is written
/// synchronously; WAL records appended since the last [`Storage::sync_wal`] are lost by
/// [`MemStorage::crash`].
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    wal: BTreeMap<(Height, u64), Vec<u8>>,
    unsynced: BTreeMap<(Height, u64), Vec<u8>>,
    votes: BTreeMap<(Height, Round, u8), Vec<u8>>,
    blocks: BTreeMap<Height, Vec<u8>>,
    next_nonces: BTreeMap<u64, u64>,
    epochs: BTreeMap<u64, pb::EpochRecord>,
    evidence: BTreeMap<(Height, Round, u8, Member), (pb::Envelope, pb::Envelope)>,
    shares: BTreeMap<(u64, Member, B256), Vec<ShareRecord>>,
    /// Fail every operation (a broken disk), for tests.
    pub fail: bool,
}

impl MemStorage {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// A crash: unsynced WAL records are gone.
    pub fn crash(&mut self) {
        self.unsynced.clear();
    }

    /// Durable WAL records, all heights (for size bounds).
    pub fn wal_len(&self) -> usize {
        self.wal.len() + self.unsynced.len()
    }

    /// Own votes recorded: (height, round, step) → value id.
    pub fn own_votes(&self) -> &BTreeMap<(Height, Round, u8), Vec<u8>> {
        &self.votes
    }

    /// Evidence records stored.
    pub fn evidence_count(&self) -> usize {
        self.evidence.len()
    }

    /// Every share record held, in key order (conflicting records under one key together).
    pub fn share_records(&self) -> impl Iterator<Item = &ShareRecord> {
        self.shares.values().flatten()
    }

    /// Stored next undecided nonce of `chain`.
    pub fn next_nonce(&self, chain: u64) -> u64 {
        self.next_nonces.get(&chain).copied().unwrap_or(0)
    }

    fn check(&self, op: &'static str) -> Result<(), StorageError> {
        if self.fail {
            Err(StorageError {
                op,
                detail: "simulated disk failure".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl Storage for MemStorage {
    fn wal_append(
        &mut self,
        height: Height,
        seq: u64,
        entry: &pb::WalEntry,
    ) -> Result<(), StorageError> {
        self.check("wal_append")?;
        self.unsynced.insert((height, seq), entry.encode_to_vec());
        Ok(())
    }

    fn sync_wal(&mut self) -> Result<(), StorageError> {
        self.check("sync_wal")?;
        let pending = std::mem::take(&mut self.unsynced);
        self.wal.extend(pending);
        Ok(())
    }

    fn wal(&self, height: Height) -> Result<Vec<pb::WalEntry>, StorageError> {
        self.check("wal")?;
        let mut all: Vec<(&(Height, u64), &Vec<u8>)> = self
            .wal
            .range((height, 0)..=(height, u64::MAX))
            .chain(self.unsynced.range((height, 0)..=(height, u64::MAX)))
            .collect();
        all.sort_by_key(|(k, _)| **k);
        all.into_iter()
            .map(|(_, v)| {
                pb::WalEntry::decode(v.as_slice()).map_err(|e| StorageError {
                    op: "wal",
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    fn last_wal_seq(&self) -> Result<u64, StorageError> {
        self.check("last_wal_seq")?;
        Ok(self
            .wal
            .keys()
            .chain(self.unsynced.keys())
            .map(|(_, seq)| *seq)
            .max()
            .unwrap_or(0))
    }

    fn record_own_vote(
        &mut self,
        height: Height,
        round: Round,
        step: u8,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.check("record_own_vote")?;
        match self.votes.get(&(height, round, step)) {
            Some(prev) if prev.as_slice() != value => Ok(Some(prev.clone())),
            Some(_) => Ok(None),
            None => {
                self.votes.insert((height, round, step), value.to_vec());
                Ok(None)
            }
        }
    }

    fn put_block(
        &mut self,
        height: Height,
        block: &pb::CommittedBlock,
        next_nonces: &[(u64, u64)],
        record: Option<(u64, &pb::EpochRecord)>,
    ) -> Result<(), StorageError> {
        self.check("put_block")?;
        self.blocks.insert(height, block.encode_to_vec());
        if let Some((epoch, r)) = record {
            self.epochs.insert(epoch, r.clone());
        }
        for (c, n) in next_nonces {
            self.next_nonces.insert(*c, *n);
        }
        let keep = |k: &(Height, u64)| k.0 > height;
        self.wal.retain(|k, _| keep(k));
        self.unsynced.retain(|k, _| keep(k));
        Ok(())
    }

    fn block(&self, height: Height) -> Result<Option<pb::CommittedBlock>, StorageError> {
        self.check("block")?;
        self.blocks
            .get(&height)
            .map(|v| {
                pb::CommittedBlock::decode(v.as_slice()).map_err(|e| StorageError {
                    op: "block",
                    detail: e.to_string(),
                })
            })
            .transpose()
    }

    fn epoch_record(&self, epoch: u64) -> Result<Option<pb::EpochRecord>, StorageError> {
        self.check("epoch_record")?;
        Ok(self.epochs.get(&epoch).cloned())
    }

    fn last_height(&self) -> Result<Height, StorageError> {
        self.check("last_height")?;
        Ok(self.blocks.keys().next_back().copied().unwrap_or(0))
    }

    fn put_evidence(
        &mut self,
        height: Height,
        round: Round,
        step: u8,
        member: Member,
        first: &pb::Envelope,
        second: &pb::Envelope,
    ) -> Result<(), StorageError> {
        self.check("put_evidence")?;
        self.evidence.insert(
            (height, round, step, member),
            (first.clone(), second.clone()),
        );
        Ok(())
    }

    fn record_shares(&mut self, records: &[ShareRecord]) -> Result<Vec<ShareRecord>, StorageError> {
        self.check("record_shares")?;
        let mut conflicts = Vec::new();
        for r in records {
            let held = self.shares.entry(r.key()).or_default();
            if held.iter().any(|h| h.same_share(r)) {
                continue;
            }
            if let Some(first) = held.first() {
                conflicts.push(first.clone());
            }
            // At most two per key: one conflict is all the evidence needed.
            if held.len() < 2 {
                held.push(r.clone());
            }
        }
        Ok(conflicts)
    }
}
