//! Committee epochs at the host: the operator's approval of the next committee (a file the
//! `sigil epoch approve` command writes and the running node re-reads), and the epoch view
//! `/v1/status` and `sigil epoch status` show.
//!
//! The rule itself — propose and prevote only a rotation the operator approved exactly, at
//! most one decided per epoch — is the engine's ([`sigil_engine::app::check_rotation`] and
//! `App::approve_rotation`); this module only moves the operator's decision to it.
//!
//! The approval file, `<home>/rotation-approval.toml`:
//!
//! ```toml
//! epoch = 2          # the current epoch + 1
//! threshold = 3      # 2f + 1 for the new size
//! members = ["02…", "03…", "02…", "03…"]   # node keys (33-byte compressed, hex), in order
//! ```

use serde::{Deserialize, Serialize};
use sigil_proto as pb;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// File name of the operator's approval in the node home.
pub const APPROVAL_FILE: &str = "rotation-approval.toml";

/// Largest approval file read (bytes): 1,000 members of 66 hex characters fit easily.
pub const MAX_APPROVAL_BYTES: u64 = 128 * 1024;

/// The approval file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The epoch the next committee signs under (the current epoch + 1).
    pub epoch: u64,
    /// Signing threshold t of the next committee (2f + 1 of its size).
    pub threshold: u32,
    /// Node keys of the next committee in member order (33-byte compressed secp256k1, hex,
    /// optional `0x`).
    pub members: Vec<String>,
}

/// Why an approval file was refused; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_APPROVAL_BYTES`].
    #[error("{path}: {len} bytes, at most {MAX_APPROVAL_BYTES}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length (bytes).
        len: u64,
    },
    /// TOML syntax or a missing/unknown field.
    #[error("{path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the field).
        detail: String,
    },
    /// A field has a bad value.
    #[error("{path}: field `{field}`: {detail}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        detail: String,
    },
}

impl Approval {
    /// The next committee for `members` (hex node keys) after `current_epoch`, with the
    /// threshold 2f + 1 of its size ([`sigil_crypto::keys::thresholds`]).
    pub fn next(current_epoch: u64, members: Vec<String>) -> Self {
        let n = u16::try_from(members.len()).unwrap_or(u16::MAX);
        Self {
            epoch: current_epoch.saturating_add(1),
            threshold: u32::from(sigil_crypto::keys::thresholds(n).1),
            members,
        }
    }

    /// The wire rotation, after the engine's shape check against `current_epoch`. The
    /// destination inboxes the key rotation is signed for are this node's configured
    /// `[[chains]]` inboxes ([`inboxes`]): every member's config lists the same chains, so
    /// honest members build the same rotation.
    /// Errors: [`ApprovalError::Field`] naming `members[i]` (not hex) or the engine's check.
    pub fn to_rotation(
        &self,
        path: &Path,
        current_epoch: u64,
        inboxes: &[pb::Inbox],
    ) -> Result<pb::Rotation, ApprovalError> {
        let field = |field: String, detail: String| ApprovalError::Field {
            path: path.to_owned(),
            field,
            detail,
        };
        let members = self
            .members
            .iter()
            .enumerate()
            .map(|(i, k)| {
                hex::decode(k.trim().trim_start_matches("0x"))
                    .map_err(|e| field(format!("members[{i}]"), format!("not hex: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let r = pb::Rotation {
            epoch: self.epoch,
            members,
            threshold: self.threshold,
            inboxes: inboxes.to_vec(),
        };
        sigil_engine::app::check_rotation(&r, current_epoch)
            .map_err(|e| field("epoch/members/threshold".into(), e))?;
        Ok(r)
    }

    /// Reads the approval at `path`; `Ok(None)` when there is none.
    /// Errors: [`ApprovalError`] (I/O, size, TOML).
    pub fn read(path: &Path) -> Result<Option<Self>, ApprovalError> {
        let io = |source| ApprovalError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if meta.len() > MAX_APPROVAL_BYTES {
            return Err(ApprovalError::TooLarge {
                path: path.to_owned(),
                len: meta.len(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| ApprovalError::Parse {
                path: path.to_owned(),
                detail: e.to_string(),
            })
    }

    /// Writes the approval to `path` atomically (a temporary file renamed over it), so a
    /// running node never reads half a file.
    /// Errors: I/O.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

/// Lower-case hex without `0x`, for comparing keys however they were written.
fn norm(k: &str) -> String {
    k.trim().trim_start_matches("0x").to_ascii_lowercase()
}

/// The next committee's member list for `sigil epoch approve`: `members` when given (the
/// whole list, in order), otherwise the `current` committee with `remove` taken out and
/// `add` appended (in the order given).
///
/// Errors: a removed key that is not a member, an added key that already is, or nothing
/// given at all (each naming the key).
pub fn next_members(
    current: &[String],
    members: Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
) -> Result<Vec<String>, String> {
    if !members.is_empty() {
        return Ok(members.iter().map(|k| norm(k)).collect());
    }
    if add.is_empty() && remove.is_empty() {
        return Err("name the next committee: --member (the whole list) or --add/--remove".into());
    }
    let mut next: Vec<String> = current.iter().map(|k| norm(k)).collect();
    for k in remove.iter().map(|k| norm(k)) {
        let before = next.len();
        next.retain(|m| *m != k);
        if next.len() == before {
            return Err(format!(
                "--remove {k}: not a member of the current committee"
            ));
        }
    }
    for k in add.iter().map(|k| norm(k)) {
        if next.contains(&k) {
            return Err(format!("--add {k}: already a member"));
        }
        next.push(k);
    }
    Ok(next)
}

/// What `sigil epoch show` prints: the epoch and committee of `cfg`, and the approval in
/// `home` (checked as the node would check it).
pub fn show(cfg: &crate::config::Config, home: &Path) -> String {
    use std::fmt::Write as _;
    let c = &cfg.committee;
    let n = u16::try_from(c.members.len()).unwrap_or(u16::MAX);
    let (f, t) = sigil_crypto::keys::thresholds(n);
    let mut out = String::new();
    let _ = writeln!(out, "epoch:     {}", c.epoch);
    let _ = writeln!(
        out,
        "committee: {n} members, threshold {t}, tolerates {f} faulty"
    );
    for (i, m) in c.members.iter().enumerate() {
        let _ = writeln!(out, "  {:>3}  {}  {}", i + 1, norm(&m.key), m.address);
    }
    match crate::keyfiles::stored_epochs(home) {
        Ok(e) => {
            let _ = writeln!(out, "key shares stored for epochs: {e:?}");
        }
        Err(e) => {
            let _ = writeln!(out, "key shares: cannot list: {e}");
        }
    }
    let path = home.join(APPROVAL_FILE);
    match Approval::read(&path) {
        Ok(None) => {
            let _ = writeln!(
                out,
                "approved next committee: none ({} absent)",
                path.display()
            );
        }
        Ok(Some(a)) => {
            let verdict = match a.to_rotation(&path, c.epoch, &inboxes(cfg)) {
                Ok(_) => "valid".to_string(),
                Err(e) => format!("REFUSED: {e}"),
            };
            let _ = writeln!(
                out,
                "approved next committee: epoch {}, {} members, threshold {} ({verdict})",
                a.epoch,
                a.members.len(),
                a.threshold
            );
            let current: Vec<String> = c.members.iter().map(|m| norm(&m.key)).collect();
            for (i, k) in a.members.iter().enumerate() {
                let tag = if current.contains(&norm(k)) {
                    ""
                } else {
                    "  (joins)"
                };
                let _ = writeln!(out, "  {:>3}  {}{tag}", i + 1, norm(k));
            }
            for k in current
                .iter()
                .filter(|k| !a.members.iter().any(|m| norm(m) == **k))
            {
                let _ = writeln!(out, "    -  {k}  (leaves)");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "approved next committee: REFUSED: {e}");
        }
    }
    out
}

/// The destination inboxes of a config, in `[[chains]]` order: the rotation is signed once
/// for each (contracts/V2.md §5).
pub fn inboxes(cfg: &crate::config::Config) -> Vec<pb::Inbox> {
    cfg.chains
        .iter()
        .map(|c| pb::Inbox {
            chain_id: c.chain_id,
            address: c.inbox.to_vec(),
        })
        .collect()
}

/// Re-reads the approval file when it changes (modification time or length), for the
/// running node. Polled about once a second: a stat per poll.
#[derive(Debug)]
pub struct ApprovalWatch {
    path: PathBuf,
    current_epoch: u64,
    inboxes: Vec<pb::Inbox>,
    seen: Option<Option<(SystemTime, u64)>>,
}

impl ApprovalWatch {
    /// Watches `path` for a committee after `current_epoch`, signing the key rotation for
    /// `inboxes` ([`inboxes`]).
    pub fn new(path: PathBuf, current_epoch: u64, inboxes: Vec<pb::Inbox>) -> Self {
        Self {
            path,
            current_epoch,
            inboxes,
            seen: None,
        }
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `None` when the file is unchanged since the last poll; otherwise the approval it now
    /// holds (`Ok(None)`: no file, i.e. withdrawn) or why it was refused. A refused file
    /// withdraws the approval: the node never prevotes what its operator did not approve
    /// exactly.
    pub fn poll(&mut self) -> Option<Result<Option<pb::Rotation>, ApprovalError>> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if self.seen == Some(stamp) {
            return None;
        }
        self.seen = Some(stamp);
        Some(Approval::read(&self.path).and_then(|a| {
            // An approval of an epoch this node already reached was carried out: nothing
            // is approved now (not an error).
            a.filter(|a| a.epoch > self.current_epoch)
                .map(|a| a.to_rotation(&self.path, self.current_epoch, &self.inboxes))
                .transpose()
        }))
    }
}

/// A committee rotation as `/v1/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationView {
    /// The epoch the next committee signs under.
    pub epoch: u64,
    /// Its threshold t.
    pub threshold: u32,
    /// Its node keys in member order (compressed hex).
    pub members: Vec<String>,
    /// The height of the block that decided it (decided rotations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
}

impl RotationView {
    /// The view of `r`, decided at `height` if given.
    pub fn of(r: &pb::Rotation, height: Option<u64>) -> Self {
        Self {
            epoch: r.epoch,
            threshold: r.threshold,
            members: r.members.iter().map(hex::encode).collect(),
            height,
        }
    }
}

/// The epoch part of `/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochStatus {
    /// The epoch this committee signs under.
    pub epoch: u64,
    /// `none` (nothing approved or decided), `approved` (this operator approved a next
    /// committee, not yet decided), `decided` (the committee decided a rotation; the new
    /// committee's DKG runs), `key` (the new key's commit is decided; the key rotations are
    /// being signed) or `handedOver` (every inbox's key rotation is decided: the epoch ends
    /// at `epochEnd`, then the new committee takes over).
    pub stage: String,
    /// The height that decided the new key's commit.
    pub key_height: Option<u64>,
    /// The heights of the decided key-rotation blocks (one per inbox).
    pub handover_heights: Vec<u64>,
    /// The epoch's last height, once the hand-over is decided.
    pub epoch_end: Option<u64>,
    /// What this member's operator approved.
    pub approved: Option<RotationView>,
    /// Why the approval file was refused, if it was (the approval is then withdrawn).
    pub approval_error: Option<String>,
    /// The rotation the committee decided in this epoch.
    pub decided: Option<RotationView>,
}

impl EpochStatus {
    /// The status from the engine's view.
    pub fn new(
        epoch: u64,
        approved: Option<&pb::Rotation>,
        decided: Option<(u64, &pb::Rotation)>,
        approval_error: Option<String>,
    ) -> Self {
        let stage = match (decided, approved) {
            (Some(_), _) => "decided",
            (None, Some(_)) => "approved",
            (None, None) => "none",
        };
        Self {
            epoch,
            stage: stage.into(),
            key_height: None,
            handover_heights: Vec::new(),
            epoch_end: None,
            approved: approved.map(|r| RotationView::of(r, None)),
            approval_error,
            decided: decided.map(|(h, r)| RotationView::of(r, Some(h))),
        }
    }

    /// Adds the hand-over's progress from the engine's epoch record: the key commit's
    /// height, the key-rotation heights and the epoch's end (stages `key`, `handedOver`).
    pub fn with_handover(mut self, record: &pb::EpochRecord, end: Option<u64>) -> Self {
        if record.key_commit.is_some() {
            self.key_height = Some(record.key_height);
            self.stage = "key".into();
        }
        self.handover_heights = record.handover_heights.clone();
        if end.is_some() {
            self.epoch_end = end;
            self.stage = "handedOver".into();
        }
        self
    }

    /// The stage as a number for the `sigil_rotation_stage` gauge: 0 none, 1 approved,
    /// 2 decided, 3 key, 4 handedOver.
    pub fn stage_code(&self) -> i64 {
        match self.stage.as_str() {
            "approved" => 1,
            "decided" => 2,
            "key" => 3,
            "handedOver" => 4,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_inboxes() -> Vec<pb::Inbox> {
        vec![pb::Inbox {
            chain_id: 31337,
            address: vec![0xbb; 20],
        }]
    }

    fn keys(n: usize) -> Vec<String> {
        (1..=n)
            .map(|i| {
                let sk = k256::SecretKey::from_slice(&[i as u8; 32]).unwrap();
                hex::encode(sk.public_key().to_sec1_bytes())
            })
            .collect()
    }

    #[test]
    fn an_approval_round_trips_and_converts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(APPROVAL_FILE);
        let a = Approval::next(1, keys(5));
        assert_eq!((a.epoch, a.threshold), (2, 3));
        a.write(&path).unwrap();
        let back = Approval::read(&path).unwrap().unwrap();
        assert_eq!(back, a);
        let r = back.to_rotation(&path, 1, &test_inboxes()).unwrap();
        assert_eq!(r.members.len(), 5);
        assert_eq!(r.members[0].len(), 33);
    }

    #[test]
    fn bad_approvals_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(APPROVAL_FILE);
        let mut a = Approval::next(1, keys(4));
        a.members[2] = "zz".into();
        let e = a
            .to_rotation(&path, 1, &test_inboxes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("members[2]"), "{e}");
        let a = Approval::next(2, keys(4));
        let e = a
            .to_rotation(&path, 1, &test_inboxes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("epoch 3 but the current epoch is 1"), "{e}");
        let mut a = Approval::next(1, keys(4));
        a.threshold = 2;
        let e = a
            .to_rotation(&path, 1, &test_inboxes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("threshold 2"), "{e}");
        std::fs::write(&path, "epoch = 2\nthreshold = 3\nmembers = []\nextra = 1\n").unwrap();
        let e = Approval::read(&path).unwrap_err().to_string();
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn next_members_adds_and_removes_against_the_current_committee() {
        let k = keys(6);
        let current = k[..4].to_vec();
        let next = next_members(
            &current,
            vec![],
            vec![k[4].clone()],
            vec![format!("0x{}", k[1].to_uppercase())],
        )
        .unwrap();
        assert_eq!(
            next,
            vec![k[0].clone(), k[2].clone(), k[3].clone(), k[4].clone()]
        );
        assert!(
            next_members(&current, vec![], vec![], vec![k[5].clone()])
                .unwrap_err()
                .contains("not a member")
        );
        assert!(
            next_members(&current, vec![], vec![k[0].clone()], vec![])
                .unwrap_err()
                .contains("already a member")
        );
        assert!(next_members(&current, vec![], vec![], vec![]).is_err());
        assert_eq!(
            next_members(&current, k[2..].to_vec(), vec![], vec![]).unwrap(),
            k[2..].to_vec()
        );
    }

    #[test]
    fn the_watch_reports_changes_and_withdrawals_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(APPROVAL_FILE);
        let mut w = ApprovalWatch::new(path.clone(), 1, test_inboxes());
        assert!(
            matches!(w.poll(), Some(Ok(None))),
            "no file: nothing approved"
        );
        assert!(w.poll().is_none(), "unchanged");
        Approval::next(1, keys(4)).write(&path).unwrap();
        let r = w.poll().unwrap().unwrap().unwrap();
        assert_eq!(r.epoch, 2);
        assert!(w.poll().is_none(), "unchanged");
        std::fs::write(&path, "not toml").unwrap();
        assert!(matches!(w.poll(), Some(Err(ApprovalError::Parse { .. }))));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(w.poll(), Some(Ok(None))), "withdrawn");
    }

    #[test]
    fn status_follows_the_hand_over_stages() {
        let r = pb::Rotation {
            epoch: 2,
            ..Default::default()
        };
        let decided = EpochStatus::new(1, None, Some((5, &r)), None);
        assert_eq!(
            (decided.stage.as_str(), decided.stage_code()),
            ("decided", 2)
        );
        let mut record = pb::EpochRecord {
            rotation: Some(r.clone()),
            rotation_height: 5,
            key_commit: Some(pb::KeyCommit::default()),
            key_height: 7,
            handover_heights: vec![8],
            joined: false,
        };
        let key = decided.clone().with_handover(&record, None);
        assert_eq!((key.stage.as_str(), key.stage_code()), ("key", 3));
        assert_eq!((key.key_height, key.epoch_end), (Some(7), None));
        record.handover_heights.push(9);
        let over = decided.with_handover(&record, Some(9));
        assert_eq!((over.stage.as_str(), over.stage_code()), ("handedOver", 4));
        assert_eq!(
            (over.handover_heights, over.epoch_end),
            (vec![8, 9], Some(9))
        );
    }
}
