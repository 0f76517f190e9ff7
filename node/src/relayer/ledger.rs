//! Persistent state and records: per-chain progress, the retry queue, and the ledger of
//! sent transactions.

use super::ChainTask;
use alloy_primitives::B256;
use anyhow::{Context, Result, anyhow};
use sigil_crypto::Message;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Progress of one destination chain (`relayer_state_<chain>.json`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct RelayState {
    pub(super) next_height: u64,
}

/// A Failed message awaiting a successful `retry` (an entry of `relayer_retry_<chain>.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RetryEntry {
    /// Height of the batch that attested it.
    pub(super) height: u64,
    /// The message.
    pub(super) message: Message,
    /// Retries tried so far.
    pub(super) attempts: u32,
    /// Next retry not before (ms since epoch).
    pub(super) next_at_ms: u64,
}

/// One relayed transaction (a line of `relayer_txs.jsonl`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxRecord {
    /// Height relayed (for a retry: the height that attested the message).
    pub height: u64,
    /// Destination chain.
    pub chain_id: u64,
    /// `submitBatch`, `deliver`, `deliverBatch` or `retry`.
    pub kind: String,
    /// Transaction hash.
    pub tx: B256,
    /// Gas used.
    pub gas_used: u64,
    /// Messages it delivered (its `MessageDelivered` events).
    pub messages: usize,
    /// Ids of the messages that ended Failed in it (its `MessageFailed` events: the
    /// recipient reverted or ran out of its gas limit); each is retried later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<B256>,
    /// When mined (ms since epoch).
    pub at_ms: u64,
}

/// Appends records to `relayer_txs.jsonl`; one writer at a time (the chain tasks share it).
pub(super) struct Ledger {
    pub(super) path: PathBuf,
    pub(super) lock: Mutex<()>,
}

impl Ledger {
    pub(super) fn append(&self, recs: &[TxRecord]) -> Result<()> {
        use std::io::Write;
        if recs.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for r in recs {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        let _guard = self
            .lock
            .lock()
            .map_err(|_| anyhow!("relayer ledger lock poisoned"))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        f.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// Reads a JSON file, `None` when it does not exist. Errors: unreadable or malformed.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(
            serde_json::from_str(&s).with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("reading {}: {e}", path.display())),
    }
}

impl ChainTask {
    pub(super) fn save_state(&self) -> Result<()> {
        std::fs::write(&self.state_path, serde_json::to_string(&self.state)?)
            .with_context(|| format!("writing {}", self.state_path.display()))
    }

    pub(super) fn save_retries(&self) -> Result<()> {
        let list: Vec<&RetryEntry> = self.retries.values().collect();
        std::fs::write(&self.retry_path, serde_json::to_string_pretty(&list)?)
            .with_context(|| format!("writing {}", self.retry_path.display()))?;
        self.publish_queue();
        Ok(())
    }
}
