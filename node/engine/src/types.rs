//! Domain types shared by the engine, the host and the simulator.

use alloy_primitives::B256;
use sigil_crypto::Message;

/// Member index in the committee list, 1-based (1..=n).
pub type Member = u16;

/// A message this member observed at finality on a source chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observation {
    /// The message as the gateway emitted it (`MessageSent` log).
    pub message: Message,
    /// Source block number that holds the log.
    pub block_number: u64,
    /// That block's hash, re-read at finality (32 bytes).
    pub block_hash: B256,
    /// When this node stored it (ms since the Unix epoch; informational).
    pub observed_at_ms: u64,
    /// Source block timestamp (s since the Unix epoch).
    #[serde(default)]
    pub block_time: u64,
}

/// How far this member observed one gateway at finality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// Last source block scanned at finality (block number).
    pub block_number: u64,
    /// Its hash (32 bytes).
    pub block_hash: B256,
    /// Next gateway nonce expected (every nonce below it was observed).
    pub next_nonce: u64,
}

/// What a chain watcher reports: observations at finality, gap-free from the previous cursor.
#[derive(Debug, Clone)]
pub struct ChainEvent {
    /// EIP-155 id of the source chain.
    pub chain_id: u64,
    /// New observations in gateway nonce order.
    pub observations: Vec<Observation>,
    /// The cursor after them.
    pub cursor: Cursor,
    /// Latest head seen (block number).
    pub head: u64,
    /// Latest final block (block number).
    pub finalized: u64,
}

impl Cursor {
    /// The wire form for `chain_id`.
    pub fn to_wire(&self, chain_id: u64) -> sigil_proto::Cursor {
        sigil_proto::Cursor {
            chain_id,
            block_number: self.block_number,
            block_hash: self.block_hash.to_vec(),
            next_nonce: self.next_nonce,
        }
    }
}
