//! RocksDB storage: one column family per kind of record, typed big-endian keys, and a
//! stored schema version checked at open.
//!
//! | column family | key                                   | value                      |
//! |---------------|---------------------------------------|----------------------------|
//! | observations  | chain_id u64 · nonce u64              | 0x01 · `pb::StoredObservation` ([`Observation`]; JSON before) |
//! | cursors       | chain_id u64                          | [`Cursor`] (JSON)          |
//! | blocks        | height u64                            | `pb::CommittedBlock`       |
//! | msgindex      | message id (32 bytes)                 | height u64                 |
//! | wal           | height u64 · seq u64                  | `pb::WalEntry`             |
//! | votes         | height u64 · round u32 · step u8      | value id (own, as sent)    |
//! | nonces        | `next` / `floor` / `c`·id u64         | u64 / marker               |
//! | evidence      | height u64 · round u32 · step u8 · member u16 | `pb::Evidence`     |
//! | shares        | epoch u64 · member u16 · commitment hash 32 [· 1] | [`ShareRecord`] (127 B) |
//! | meta          | `schema`, `next_nonce`·chain u64      | u32 / u64                  |
//! | meta          | `epoch`·epoch u64                     | `pb::EpochRecord`          |
//! | meta          | `paused`·chain u64                    | marker (operator's stop)   |

use alloy_primitives::B256;
use prost::Message as _;
use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};
use sigil_crypto::nonce::NonceStatus;
use sigil_crypto::{NonceError, NonceId, NonceLedger};
use sigil_proto as pb;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// An own vote as recorded: (height, round, step 0 proposal / 1 prevote / 2 precommit, value id).
pub type OwnVote = (u64, u32, u8, Vec<u8>);

/// Current on-disk schema version. 2: observations as `pb::StoredObservation`.
pub const SCHEMA_VERSION: u32 = 2;

/// Earlier schema versions this binary opens and upgrades in place: version 1 differs only
/// in its JSON observation records, which are still read. The store is marked with the
/// current version together with its first protobuf observation record; a binary of
/// version 1 then refuses it instead of misreading it.
const UPGRADABLE_FROM: &[u32] = &[1];

const CFS: &[&str] = &[
    "observations",
    "cursors",
    "blocks",
    "msgindex",
    "wal",
    "votes",
    "nonces",
    "evidence",
    "shares",
    "meta",
];

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    /// The database was written by another schema version.
    #[error(
        "database schema version {found}, this binary needs {expected}; use a fresh home or a matching binary"
    )]
    Schema {
        /// Stored version.
        found: u32,
        /// Expected version.
        expected: u32,
    },
    /// A record failed to decode.
    #[error("corrupt record in {cf}: {detail}")]
    Corrupt {
        /// Column family.
        cf: &'static str,
        /// What failed.
        detail: String,
    },
}

pub use sigil_engine::storage::ShareRecord;
pub use sigil_engine::{Cursor, Observation};

/// The node's database (cheap to clone).
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    /// Still marked with an older schema this binary reads (see `UPGRADABLE_FROM`): the
    /// first write of a record only this schema reads marks it [`SCHEMA_VERSION`] in the
    /// same batch, so opening a store (a helper command, the devnet's auditor) never locks
    /// an older binary out of a store it can still read.
    older: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn sync() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// Leading byte of an observation stored as `pb::StoredObservation`. Records written
/// before it existed are JSON (they start with `{`) and are still read.
const OBSERVATION_PB: u8 = 0x01;

/// An observation as the `observations` column family stores it: [`OBSERVATION_PB`] and
/// the protobuf encoding (~200 bytes plus the payload). It replaced JSON, whose
/// checksummed addresses cost four keccak256 per message on the watcher's path.
fn encode_observation(o: &Observation) -> Vec<u8> {
    let m = &o.message;
    let pb = pb::StoredObservation {
        source_chain_id: m.source_chain_id,
        source_gateway: m.source_gateway.to_vec(),
        nonce: m.nonce,
        sender: m.sender.to_vec(),
        dest_chain_id: m.dest_chain_id,
        dest_inbox: m.dest_inbox.to_vec(),
        recipient: m.recipient.to_vec(),
        gas_limit: m.gas_limit,
        payload: m.payload.to_vec(),
        block_number: o.block_number,
        block_hash: o.block_hash.to_vec(),
        observed_at_ms: o.observed_at_ms,
        block_time: o.block_time,
    };
    let body = pb.encode_to_vec();
    let mut v = Vec::with_capacity(1 + body.len());
    v.push(OBSERVATION_PB);
    v.extend_from_slice(&body);
    v
}

/// Reads a stored observation, either encoding. Errors: [`StoreError::Corrupt`] naming
/// the field for an undecodable record or an address or hash of the wrong length.
fn decode_observation(v: &[u8]) -> Result<Observation, StoreError> {
    use alloy_primitives::Address;
    let Some((&OBSERVATION_PB, rest)) = v.split_first() else {
        return serde_json::from_slice(v).map_err(|e| corrupt("observations", e));
    };
    let p = pb::StoredObservation::decode(rest).map_err(|e| corrupt("observations", e))?;
    let addr = |name: &str, b: &[u8]| {
        <[u8; 20]>::try_from(b).map(Address::from).map_err(|_| {
            corrupt(
                "observations",
                format!("{name}: {} bytes, need 20", b.len()),
            )
        })
    };
    let block_hash = B256::try_from(p.block_hash.as_slice()).map_err(|_| {
        corrupt(
            "observations",
            format!("block_hash: {} bytes, need 32", p.block_hash.len()),
        )
    })?;
    Ok(Observation {
        message: sigil_crypto::Message {
            source_chain_id: p.source_chain_id,
            source_gateway: addr("source_gateway", &p.source_gateway)?,
            nonce: p.nonce,
            sender: addr("sender", &p.sender)?,
            dest_chain_id: p.dest_chain_id,
            dest_inbox: addr("dest_inbox", &p.dest_inbox)?,
            recipient: addr("recipient", &p.recipient)?,
            gas_limit: p.gas_limit,
            payload: p.payload.into(),
        },
        block_number: p.block_number,
        block_hash,
        observed_at_ms: p.observed_at_ms,
        block_time: p.block_time,
    })
}

fn corrupt(cf: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        cf,
        detail: e.to_string(),
    }
}

fn u64_of(cf: &'static str, v: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(
        v.try_into().map_err(|_| corrupt(cf, "not 8 bytes"))?,
    ))
}

impl Store {
    /// Opens (or creates) the database at `path` and checks the schema version (an older
    /// one this binary reads is accepted, and marked current with the first record only
    /// this version reads; see `UPGRADABLE_FROM`).
    /// Errors: [`StoreError::Db`], [`StoreError::Schema`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = CFS
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let s = Self {
            db: Arc::new(db),
            older: Arc::default(),
        };
        match s.get("meta", b"schema")? {
            None => s.put_sync("meta", b"schema", &SCHEMA_VERSION.to_be_bytes())?,
            Some(v) => {
                let found = u32::from_be_bytes(
                    v.as_slice()
                        .try_into()
                        .map_err(|_| corrupt("meta", "schema"))?,
                );
                if UPGRADABLE_FROM.contains(&found) {
                    s.older.store(true, std::sync::atomic::Ordering::SeqCst);
                } else if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
        }
        Ok(s)
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| corrupt(name, "missing column family"))
    }

    fn get(&self, cf: &'static str, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(cf)?, k)?)
    }

    fn put_sync(&self, cf: &'static str, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        Ok(self.db.put_cf_opt(self.cf(cf)?, k, v, &sync())?)
    }

    // ---- observations and cursors ----

    /// Stores observations and the new cursor of `chain_id` atomically (durable).
    pub fn put_observations(
        &self,
        chain_id: u64,
        obs: &[Observation],
        cursor: &Cursor,
    ) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        let ocf = self.cf("observations")?;
        for o in obs {
            b.put_cf(
                ocf,
                obs_key(o.message.source_chain_id, o.message.nonce),
                encode_observation(o),
            );
        }
        let v = serde_json::to_vec(cursor).map_err(|e| corrupt("cursors", e))?;
        b.put_cf(self.cf("cursors")?, chain_id.to_be_bytes(), v);
        let upgrading = !obs.is_empty() && self.older.load(std::sync::atomic::Ordering::SeqCst);
        if upgrading {
            b.put_cf(self.cf("meta")?, b"schema", SCHEMA_VERSION.to_be_bytes());
        }
        self.db.write_opt(b, &sync())?;
        if upgrading {
            self.older.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// Observations of `chain_id` with nonce in `range`, in nonce order.
    pub fn observations(
        &self,
        chain_id: u64,
        range: Range<u64>,
    ) -> Result<Vec<Observation>, StoreError> {
        let cf = self.cf("observations")?;
        let start = obs_key(chain_id, range.start);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            cf,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        ) {
            let (k, v) = item?;
            if k.len() != 16 || k[..8] != chain_id.to_be_bytes() {
                break;
            }
            let nonce = u64_of("observations", &k[8..])?;
            if nonce >= range.end {
                break;
            }
            out.push(decode_observation(&v)?);
        }
        Ok(out)
    }

    /// Stored cursor of `chain_id`.
    pub fn cursor(&self, chain_id: u64) -> Result<Option<Cursor>, StoreError> {
        self.get("cursors", &chain_id.to_be_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt("cursors", e)))
            .transpose()
    }

    // ---- decided blocks and attestations ----

    /// Stores a decided block with its certificate (durable) and indexes its message ids;
    /// with `record` = (epoch, record), replaces that epoch's record (what the decided blocks
    /// settled about it) in the same write.
    pub fn put_block(
        &self,
        height: u64,
        block: &pb::CommittedBlock,
        next_nonces: &[(u64, u64)],
        record: Option<(u64, &pb::EpochRecord)>,
    ) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        if let Some((epoch, r)) = record {
            b.put_cf(self.cf("meta")?, epoch_key(epoch), r.encode_to_vec());
        }
        b.put_cf(
            self.cf("blocks")?,
            height.to_be_bytes(),
            block.encode_to_vec(),
        );
        if let Some(a) = &block.attestation {
            let idx = self.cf("msgindex")?;
            for id in &a.message_ids {
                b.put_cf(idx, id, height.to_be_bytes());
            }
        }
        let meta = self.cf("meta")?;
        for (chain, next) in next_nonces {
            b.put_cf(meta, next_nonce_key(*chain), next.to_be_bytes());
        }
        // The WAL of a decided height is no longer needed.
        b.delete_range_cf(self.cf("wal")?, wal_key(0, 0), wal_key(height + 1, 0));
        Ok(self.db.write_opt(b, &sync())?)
    }

    /// What the stored blocks decided about `epoch` (rotation, key commit, their heights).
    /// Errors: RocksDB, or a corrupt record.
    pub fn epoch_record(&self, epoch: u64) -> Result<Option<pb::EpochRecord>, StoreError> {
        self.get("meta", &epoch_key(epoch))?
            .map(|v| pb::EpochRecord::decode(v.as_slice()).map_err(|e| corrupt("meta", e)))
            .transpose()
    }

    /// The decided block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<pb::CommittedBlock>, StoreError> {
        self.get("blocks", &height.to_be_bytes())?
            .map(|v| pb::CommittedBlock::decode(v.as_slice()).map_err(|e| corrupt("blocks", e)))
            .transpose()
    }

    /// Highest decided height (0 if none).
    pub fn last_height(&self) -> Result<u64, StoreError> {
        let cf = self.cf("blocks")?;
        match self.db.iterator_cf(cf, rocksdb::IteratorMode::End).next() {
            Some(item) => u64_of("blocks", &item?.0),
            None => Ok(0),
        }
    }

    /// Height of the block that holds message `id`.
    pub fn height_of_message(&self, id: &B256) -> Result<Option<u64>, StoreError> {
        self.get("msgindex", id.as_slice())?
            .map(|v| u64_of("msgindex", &v))
            .transpose()
    }

    /// The stored next nonce (first not yet in a decided block) of `chain_id`.
    pub fn next_nonce(&self, chain_id: u64) -> Result<u64, StoreError> {
        Ok(self
            .get("meta", &next_nonce_key(chain_id))?
            .map(|v| u64_of("meta", &v))
            .transpose()?
            .unwrap_or(0))
    }

    // ---- consensus WAL and own votes ----

    /// Appends a WAL record for `height` (not yet synced: call [`Store::sync_wal`] before any
    /// own message leaves the process).
    pub fn wal_append(
        &self,
        height: u64,
        seq: u64,
        entry: &pb::WalEntry,
    ) -> Result<(), StoreError> {
        Ok(self
            .db
            .put_cf(self.cf("wal")?, wal_key(height, seq), entry.encode_to_vec())?)
    }

    /// Makes every WAL append durable.
    pub fn sync_wal(&self) -> Result<(), StoreError> {
        Ok(self.db.flush_wal(true)?)
    }

    /// WAL records of `height`, in order.
    pub fn wal(&self, height: u64) -> Result<Vec<pb::WalEntry>, StoreError> {
        let cf = self.cf("wal")?;
        let start = wal_key(height, 0);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            cf,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        ) {
            let (k, v) = item?;
            if k.len() != 16 || u64_of("wal", &k[..8])? != height {
                break;
            }
            out.push(pb::WalEntry::decode(v.as_ref()).map_err(|e| corrupt("wal", e))?);
        }
        Ok(out)
    }

    /// The highest WAL sequence number still held (0 if the WAL is empty).
    pub fn last_wal_seq(&self) -> Result<u64, StoreError> {
        let cf = self.cf("wal")?;
        let mut max = 0;
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, _) = item?;
            if k.len() == 16 {
                max = max.max(u64_of("wal", &k[8..])?);
            }
        }
        Ok(max)
    }

    /// Records an own vote before it is sent (durable). Returns the value id already recorded
    /// for this height/round/step if it differs (the caller must then not send).
    pub fn record_own_vote(
        &self,
        height: u64,
        round: u32,
        step: u8,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let k = vote_key(height, round, step);
        if let Some(prev) = self.get("votes", &k)? {
            if prev != value {
                return Ok(Some(prev));
            }
            return Ok(None);
        }
        self.put_sync("votes", &k, value)?;
        Ok(None)
    }

    /// Every own vote recorded: (height, round, step, value id).
    pub fn own_votes(&self) -> Result<Vec<OwnVote>, StoreError> {
        let cf = self.cf("votes")?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            if k.len() != 13 {
                return Err(corrupt("votes", "key length"));
            }
            out.push((
                u64_of("votes", &k[..8])?,
                u32::from_be_bytes([k[8], k[9], k[10], k[11]]),
                k[12],
                v.to_vec(),
            ));
        }
        Ok(out)
    }

    /// Stores equivocation evidence.
    pub fn put_evidence(
        &self,
        height: u64,
        round: u32,
        step: u8,
        member: u16,
        first: &pb::Envelope,
        second: &pb::Envelope,
    ) -> Result<(), StoreError> {
        let mut k = vote_key(height, round, step);
        k.extend_from_slice(&member.to_be_bytes());
        let v = pb::Evidence {
            first: Some(first.clone()),
            second: Some(second.clone()),
        };
        self.put_sync("evidence", &k, &v.encode_to_vec())
    }

    /// Records signature shares (see [`sigil_engine::Storage::record_shares`]): one write,
    /// not synced, keyed by [`ShareRecord::key`]. A record whose key holds a different
    /// share is stored under the key with a trailing `1` (at most one such per key) and the
    /// first is returned.
    /// Errors: [`StoreError::Db`], [`StoreError::Corrupt`] for an undecodable held record.
    pub fn record_shares(&self, records: &[ShareRecord]) -> Result<Vec<ShareRecord>, StoreError> {
        let cf = self.cf("shares")?;
        let mut b = WriteBatch::default();
        let mut conflicts = Vec::new();
        for r in records {
            let mut k = Vec::with_capacity(43);
            k.extend_from_slice(&r.epoch.to_be_bytes());
            k.extend_from_slice(&r.member.to_be_bytes());
            k.extend_from_slice(r.commitment.as_slice());
            match self.db.get_cf(cf, &k)? {
                None => b.put_cf(cf, &k, r.encode()),
                Some(v) => {
                    let first =
                        ShareRecord::decode(&v).ok_or_else(|| corrupt("shares", "record"))?;
                    if !first.same_share(r) {
                        k.push(1);
                        b.put_cf(cf, &k, r.encode());
                        conflicts.push(first);
                    }
                }
            }
        }
        self.db.write(b)?;
        Ok(conflicts)
    }

    /// Every share record stored, in key order. Errors: [`StoreError::Db`],
    /// [`StoreError::Corrupt`].
    pub fn share_records(&self) -> Result<Vec<ShareRecord>, StoreError> {
        let cf = self.cf("shares")?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (_, v) = item?;
            out.push(ShareRecord::decode(&v).ok_or_else(|| corrupt("shares", "record"))?);
        }
        Ok(out)
    }

    /// Nonce ids the ledger recorded consumed one by one (ids below its floor, issued to an
    /// earlier process, are refused without a record), read-only. Errors: [`StoreError`].
    pub fn consumed_nonces(&self) -> Result<Vec<u64>, StoreError> {
        let cf = self.cf("nonces")?;
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(cf, b"c") {
            let (k, _) = item?;
            if k.first() != Some(&b'c') {
                break;
            }
            out.push(u64_of("nonces", &k[1..])?);
        }
        Ok(out)
    }

    /// Records that this node's operator paused (`true`) or resumed source chain `chain`
    /// (durable: the emergency stop survives a restart). Errors: [`StoreError::Db`].
    pub fn set_paused(&self, chain: u64, paused: bool) -> Result<(), StoreError> {
        let k = paused_key(chain);
        if paused {
            self.put_sync("meta", &k, &[1])
        } else {
            Ok(self.db.delete_cf_opt(self.cf("meta")?, k, &sync())?)
        }
    }

    /// The source chains this node's operator paused. Errors: [`StoreError`].
    pub fn paused_chains(&self) -> Result<std::collections::BTreeSet<u64>, StoreError> {
        let cf = self.cf("meta")?;
        let mut out = std::collections::BTreeSet::new();
        for item in self.db.prefix_iterator_cf(cf, b"paused") {
            let (k, _) = item?;
            let Some(id) = k.strip_prefix(b"paused") else {
                break;
            };
            out.insert(u64_of("meta", id)?);
        }
        Ok(out)
    }

    /// Number of evidence records.
    pub fn evidence_count(&self) -> Result<usize, StoreError> {
        let cf = self.cf("evidence")?;
        Ok(self
            .db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .count())
    }
}

fn obs_key(chain_id: u64, nonce: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&chain_id.to_be_bytes());
    k[8..].copy_from_slice(&nonce.to_be_bytes());
    k
}

fn wal_key(height: u64, seq: u64) -> [u8; 16] {
    obs_key(height, seq)
}

fn vote_key(height: u64, round: u32, step: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(15);
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(&round.to_be_bytes());
    k.push(step);
    k
}

fn epoch_key(epoch: u64) -> Vec<u8> {
    let mut k = b"epoch".to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

fn paused_key(chain: u64) -> Vec<u8> {
    let mut k = b"paused".to_vec();
    k.extend_from_slice(&chain.to_be_bytes());
    k
}

fn next_nonce_key(chain: u64) -> Vec<u8> {
    let mut k = b"next_nonce".to_vec();
    k.extend_from_slice(&chain.to_be_bytes());
    k
}

/// The durable nonce ledger on RocksDB ([`NonceLedger`]). Ids issued before this process
/// started are treated as consumed: their secret nonces died with the old process.
#[derive(Debug)]
pub struct RocksLedger {
    store: Store,
    next: u64,
    floor: u64,
}

impl RocksLedger {
    /// Opens the ledger; every id issued by an earlier process becomes unusable.
    pub fn open(store: Store) -> Result<Self, StoreError> {
        let next = store
            .get("nonces", b"next")?
            .map(|v| u64_of("nonces", &v))
            .transpose()?
            .unwrap_or(0);
        store.put_sync("nonces", b"floor", &next.to_be_bytes())?;
        Ok(Self {
            store,
            next,
            floor: next,
        })
    }

    fn consumed_key(id: u64) -> Vec<u8> {
        let mut k = b"c".to_vec();
        k.extend_from_slice(&id.to_be_bytes());
        k
    }

    /// Ids recorded consumed (for restart-safety tests; [`Store::consumed_nonces`]).
    pub fn consumed_ids(&self) -> Result<Vec<u64>, StoreError> {
        self.store.consumed_nonces()
    }
}

fn storage(e: StoreError) -> NonceError {
    NonceError::Storage {
        source: Box::new(e),
    }
}

impl NonceLedger for RocksLedger {
    fn issue(&mut self, count: u32) -> Result<Range<u64>, NonceError> {
        let start = self.next;
        let end = start + u64::from(count);
        self.store
            .put_sync("nonces", b"next", &end.to_be_bytes())
            .map_err(storage)?;
        self.next = end;
        Ok(start..end)
    }

    fn consume(&mut self, id: NonceId) -> Result<(), NonceError> {
        match self.status(id) {
            NonceStatus::Unknown => Err(NonceError::Unknown { id }),
            NonceStatus::Consumed => Err(NonceError::AlreadyConsumed { id }),
            NonceStatus::Issued => self
                .store
                .put_sync("nonces", &Self::consumed_key(id.0), &[1])
                .map_err(storage),
        }
    }

    fn status(&self, id: NonceId) -> NonceStatus {
        if id.0 >= self.next {
            NonceStatus::Unknown
        } else if id.0 < self.floor {
            NonceStatus::Consumed
        } else {
            match self.store.get("nonces", &Self::consumed_key(id.0)) {
                Ok(None) => NonceStatus::Issued,
                // Unreadable counts as consumed: refusing is always safe.
                _ => NonceStatus::Consumed,
            }
        }
    }
}

fn port_err(op: &'static str, e: StoreError) -> sigil_engine::StorageError {
    sigil_engine::StorageError {
        op,
        detail: e.to_string(),
    }
}

/// The engine's storage port over RocksDB. Blocks, own votes and evidence are written with
/// `sync`; WAL appends are buffered until [`Store::sync_wal`].
impl sigil_engine::Storage for Store {
    fn wal_append(
        &mut self,
        height: u64,
        seq: u64,
        entry: &pb::WalEntry,
    ) -> Result<(), sigil_engine::StorageError> {
        Store::wal_append(self, height, seq, entry).map_err(|e| port_err("wal_append", e))
    }

    fn sync_wal(&mut self) -> Result<(), sigil_engine::StorageError> {
        Store::sync_wal(self).map_err(|e| port_err("sync_wal", e))
    }

    fn wal(&self, height: u64) -> Result<Vec<pb::WalEntry>, sigil_engine::StorageError> {
        Store::wal(self, height).map_err(|e| port_err("wal", e))
    }

    fn last_wal_seq(&self) -> Result<u64, sigil_engine::StorageError> {
        Store::last_wal_seq(self).map_err(|e| port_err("last_wal_seq", e))
    }

    fn record_own_vote(
        &mut self,
        height: u64,
        round: u32,
        step: u8,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, sigil_engine::StorageError> {
        Store::record_own_vote(self, height, round, step, value)
            .map_err(|e| port_err("record_own_vote", e))
    }

    fn put_block(
        &mut self,
        height: u64,
        block: &pb::CommittedBlock,
        next_nonces: &[(u64, u64)],
        record: Option<(u64, &pb::EpochRecord)>,
    ) -> Result<(), sigil_engine::StorageError> {
        Store::put_block(self, height, block, next_nonces, record)
            .map_err(|e| port_err("put_block", e))
    }

    fn epoch_record(
        &self,
        epoch: u64,
    ) -> Result<Option<pb::EpochRecord>, sigil_engine::StorageError> {
        Store::epoch_record(self, epoch).map_err(|e| port_err("epoch_record", e))
    }

    fn block(&self, height: u64) -> Result<Option<pb::CommittedBlock>, sigil_engine::StorageError> {
        Store::block(self, height).map_err(|e| port_err("block", e))
    }

    fn last_height(&self) -> Result<u64, sigil_engine::StorageError> {
        Store::last_height(self).map_err(|e| port_err("last_height", e))
    }

    fn put_evidence(
        &mut self,
        height: u64,
        round: u32,
        step: u8,
        member: u16,
        first: &pb::Envelope,
        second: &pb::Envelope,
    ) -> Result<(), sigil_engine::StorageError> {
        Store::put_evidence(self, height, round, step, member, first, second)
            .map_err(|e| port_err("put_evidence", e))
    }

    fn record_shares(
        &mut self,
        records: &[ShareRecord],
    ) -> Result<Vec<ShareRecord>, sigil_engine::StorageError> {
        Store::record_shares(self, records).map_err(|e| port_err("record_shares", e))
    }
}

#[cfg(test)]
mod tests;
