//! Key files in the node home, all encrypted with the operator's passphrase
//! (scrypt + XChaCha20-Poly1305, [`sigil_crypto::keystore`]):
//!
//! - `node_key.json`: the 32-byte secp256k1 node key (p2p identity, consensus votes);
//! - `keys/share-epoch-<e>.json`: the FROST key share of key epoch e from `sigil dkg`
//!   ([`KeyShare`], JSON), one file per epoch: a new epoch's share never replaces an older
//!   one, which stays until `sigil epoch prune` erases it (after the old epoch's grace
//!   period has ended on every inbox). A `key_share.json` from before per-epoch storage is
//!   still read for the epoch it holds;
//! - `keys/group_key-epoch-<e>.json` and `group_key.json` (the latest): the group key,
//!   public, unencrypted ([`GroupKeyFile`]).
//!
//! The passphrase comes from `SIGIL_PASSPHRASE`, the file named by `SIGIL_PASSPHRASE_FILE`,
//! or a prompt on the terminal.

use crate::identity::NodeKey;
use anyhow::{Context, Result, bail};
use frost_secp256k1::keys::{KeyPackage, PublicKeyPackage};
use sigil_crypto::GroupKey;
use sigil_crypto::keystore::{self, ScryptParams};
use std::path::Path;
use zeroize::Zeroizing;

/// Node key file name.
pub const NODE_KEY: &str = "node_key.json";
/// Key share file name from before per-epoch storage (read for the epoch it holds).
pub const KEY_SHARE: &str = "key_share.json";
/// Directory of the per-epoch key shares and group keys.
pub const KEYS_DIR: &str = "keys";

/// Where the key share of `epoch` is stored: `<home>/keys/share-epoch-<epoch>.json`.
pub fn key_share_path(home: &Path, epoch: u64) -> std::path::PathBuf {
    home.join(KEYS_DIR)
        .join(format!("share-epoch-{epoch}.json"))
}

/// Where the public group key of `epoch` is stored: `<home>/keys/group_key-epoch-<epoch>.json`.
pub fn group_key_path(home: &Path, epoch: u64) -> std::path::PathBuf {
    home.join(KEYS_DIR)
        .join(format!("group_key-epoch-{epoch}.json"))
}
/// Public group key file name.
pub const GROUP_KEY: &str = "group_key.json";

/// A member's FROST key share and the committee's public keys.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyShare {
    /// Key epoch.
    pub epoch: u64,
    /// Member index (1-based).
    pub member: u16,
    /// Committee size.
    pub n: u16,
    /// Threshold.
    pub t: u16,
    /// Secret key package.
    pub key_package: KeyPackage,
    /// Public key package.
    pub public_key_package: PublicKeyPackage,
}

/// The public group key as written next to the key share (and read by the devnet).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupKeyFile {
    /// Key epoch.
    pub epoch: u64,
    /// 33-byte compressed point, hex.
    pub compressed: String,
    /// x, 32 bytes hex (`0x`-prefixed).
    pub x: String,
    /// y, 32 bytes hex (`0x`-prefixed).
    pub y: String,
    /// y parity (0 even, 1 odd).
    pub parity: u8,
}

impl GroupKeyFile {
    /// From a group key.
    pub fn new(epoch: u64, k: &GroupKey) -> Self {
        Self {
            epoch,
            compressed: hex::encode(k.compressed()),
            x: k.x().to_string(),
            y: k.y().to_string(),
            parity: k.parity(),
        }
    }
}

/// Where the passphrase comes from.
pub fn passphrase() -> Result<Zeroizing<Vec<u8>>> {
    if let Ok(p) = std::env::var("SIGIL_PASSPHRASE") {
        return Ok(Zeroizing::new(p.into_bytes()));
    }
    if let Ok(f) = std::env::var("SIGIL_PASSPHRASE_FILE") {
        let s = std::fs::read_to_string(&f)
            .with_context(|| format!("reading SIGIL_PASSPHRASE_FILE={f}"))?;
        return Ok(Zeroizing::new(
            s.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
        ));
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: set SIGIL_PASSPHRASE or SIGIL_PASSPHRASE_FILE");
    }
    eprint!("keystore passphrase: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
    ))
}

/// KDF cost: production scrypt unless `SIGIL_INSECURE_FAST_KDF=1` (devnets, tests) or in
/// this crate's unit tests.
pub fn kdf() -> ScryptParams {
    if cfg!(test) || std::env::var("SIGIL_INSECURE_FAST_KDF").as_deref() == Ok("1") {
        ScryptParams::insecure_fast()
    } else {
        ScryptParams::default()
    }
}

/// Writes a new node key. Errors if one exists (never overwritten).
pub fn write_node_key(home: &Path, key: &NodeKey, pass: &[u8]) -> Result<()> {
    let p = home.join(NODE_KEY);
    if p.exists() {
        bail!("{} exists; refusing to overwrite a key", p.display());
    }
    keystore::write_file(
        &p,
        &key.to_bytes(),
        pass,
        "sigil-node-key",
        kdf(),
        &mut rand_core::OsRng,
    )?;
    Ok(())
}

/// Reads the node key.
pub fn read_node_key(home: &Path, pass: &[u8]) -> Result<NodeKey> {
    let p = home.join(NODE_KEY);
    let bytes =
        keystore::read_file(&p, pass).with_context(|| format!("opening {}", p.display()))?;
    Ok(NodeKey::from_bytes(&bytes)?)
}

/// Writes the key share of `share.epoch` (encrypted) and the public group key files (the
/// epoch's and `group_key.json`, the latest). Shares of other epochs are never touched.
///
/// Errors: a share for that epoch exists and `replace` is false (replacing a share whose
/// group key an inbox already holds strands the node; `sigil dkg --replace` asks for it),
/// or I/O.
pub fn write_key_share(
    home: &Path,
    share: &KeyShare,
    group_key: &GroupKey,
    pass: &[u8],
    replace: bool,
) -> Result<()> {
    let p = key_share_path(home, share.epoch);
    if p.exists() && !replace {
        bail!(
            "{} exists: a key share for epoch {} is stored; pass --replace to overwrite it",
            p.display(),
            share.epoch
        );
    }
    write_share_file(home, &p, share, pass)?;
    let g = serde_json::to_string_pretty(&GroupKeyFile::new(share.epoch, group_key))?;
    std::fs::write(group_key_path(home, share.epoch), &g)?;
    std::fs::write(home.join(GROUP_KEY), &g)?;
    Ok(())
}

/// Where a DKG result of `epoch` for the group key `group_key` (33 bytes compressed) waits,
/// encrypted, until a decided key commit names that key:
/// `<home>/keys/candidate-epoch-<epoch>-<first 8 bytes of the key, hex>.json`. Written
/// *before* this member's DKG confirmation leaves, so a key the committee decides always has
/// this member's share on disk, whatever happens to the session afterwards.
pub fn candidate_share_path(home: &Path, epoch: u64, group_key: &[u8]) -> std::path::PathBuf {
    let tag = hex::encode(&group_key[..group_key.len().min(9)]);
    home.join(KEYS_DIR)
        .join(format!("candidate-epoch-{epoch}-{tag}.json"))
}

/// Keeps a DKG result as a candidate share ([`candidate_share_path`]); never replaces the
/// epoch's installed share.
/// Errors: I/O.
pub fn write_candidate_share(
    home: &Path,
    share: &KeyShare,
    group_key: &GroupKey,
    pass: &[u8],
) -> Result<()> {
    let p = candidate_share_path(home, share.epoch, &group_key.compressed());
    write_share_file(home, &p, share, pass)
}

/// Writes `share` encrypted to `p` atomically (a temporary file renamed over it).
fn write_share_file(home: &Path, p: &Path, share: &KeyShare, pass: &[u8]) -> Result<()> {
    std::fs::create_dir_all(home.join(KEYS_DIR))?;
    let json = Zeroizing::new(serde_json::to_vec(share)?);
    let tmp = p.with_extension("json.tmp");
    if tmp.exists() {
        std::fs::remove_file(&tmp)?;
    }
    keystore::write_file(
        &tmp,
        &json,
        pass,
        "sigil-key-share",
        kdf(),
        &mut rand_core::OsRng,
    )?;
    std::fs::rename(&tmp, p)?;
    Ok(())
}

/// The candidate share of `epoch` for `group_key` (compressed), made the epoch's share
/// (`share-epoch-<epoch>.json` and its group key files, replacing any other) and returned;
/// `Ok(None)` when no candidate holds that key.
/// Errors: a wrong passphrase, a corrupt file, I/O.
pub fn install_candidate_share(
    home: &Path,
    pass: &[u8],
    epoch: u64,
    group_key: &[u8],
) -> Result<Option<KeyShare>> {
    let p = candidate_share_path(home, epoch, group_key);
    if !p.exists() {
        return Ok(None);
    }
    let share = read_share_file(&p, pass)?;
    let gk = GroupKey::new(*share.public_key_package.verifying_key())?;
    if share.epoch != epoch || gk.compressed().as_slice() != group_key {
        return Ok(None);
    }
    write_key_share(home, &share, &gk, pass, true)?;
    Ok(Some(share))
}

/// Reads the key share of `epoch`, if stored (per-epoch file, else a `key_share.json` from
/// before per-epoch storage that holds that epoch).
///
/// Errors: a wrong passphrase, a corrupt file, or a file whose epoch is not `epoch`.
pub fn read_key_share(home: &Path, pass: &[u8], epoch: u64) -> Result<Option<KeyShare>> {
    let p = key_share_path(home, epoch);
    if p.exists() {
        let share = read_share_file(&p, pass)?;
        if share.epoch != epoch {
            bail!(
                "{} holds a share of epoch {}, not {epoch}",
                p.display(),
                share.epoch
            );
        }
        return Ok(Some(share));
    }
    let legacy = home.join(KEY_SHARE);
    if legacy.exists() {
        let share = read_share_file(&legacy, pass)?;
        if share.epoch == epoch {
            return Ok(Some(share));
        }
    }
    Ok(None)
}

fn read_share_file(p: &Path, pass: &[u8]) -> Result<KeyShare> {
    let bytes = keystore::read_file(p, pass).with_context(|| format!("opening {}", p.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("decoding {}", p.display()))
}

/// Where the share of `epoch` is kept during a refresh: `<home>/keys/share-epoch-<epoch>.pre-refresh.json`.
pub fn pre_refresh_path(home: &Path, epoch: u64) -> std::path::PathBuf {
    home.join(KEYS_DIR)
        .join(format!("share-epoch-{epoch}.pre-refresh.json"))
}

/// Before a refreshed share overwrites the share of `epoch`, keeps the old one as
/// [`pre_refresh_path`] (encrypted as before), so a refresh that some members finished and
/// others did not can be undone ([`undo_refresh`]). `sigil epoch prune` erases it once the
/// committee signs with the refreshed shares. Returns whether there was a share to keep.
/// Errors: I/O.
pub fn keep_pre_refresh(home: &Path, epoch: u64) -> Result<bool> {
    let p = key_share_path(home, epoch);
    if !p.exists() {
        return Ok(false);
    }
    std::fs::rename(&p, pre_refresh_path(home, epoch))?;
    Ok(true)
}

/// Puts the pre-refresh share of `epoch` back (the refreshed one is erased).
/// Errors: no pre-refresh share is kept, or I/O.
pub fn undo_refresh(home: &Path, epoch: u64) -> Result<()> {
    let kept = pre_refresh_path(home, epoch);
    if !kept.exists() {
        bail!("{} does not exist: nothing to undo", kept.display());
    }
    std::fs::rename(&kept, key_share_path(home, epoch))?;
    Ok(())
}

/// The epochs whose key shares are stored in `keys/` (ascending).
/// Errors: I/O reading the directory.
pub fn stored_epochs(home: &Path) -> Result<Vec<u64>> {
    let dir = home.join(KEYS_DIR);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut epochs = Vec::new();
    for e in std::fs::read_dir(&dir)? {
        let name = e?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("share-epoch-"))
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            epochs.push(n);
        }
    }
    epochs.sort_unstable();
    Ok(epochs)
}

/// Erases the key shares of every epoch below `below` (the old epochs whose grace period
/// has ended on every inbox) and every pre-refresh share up to `below`; returns the epochs
/// erased. A `key_share.json` from before
/// per-epoch storage is erased too when its epoch is below `below`.
///
/// Errors: I/O; a legacy file that cannot be read with `pass` is left alone and reported.
pub fn erase_key_shares_below(home: &Path, below: u64, pass: &[u8]) -> Result<Vec<u64>> {
    let mut erased = Vec::new();
    for e in stored_epochs(home)? {
        if e < below {
            std::fs::remove_file(key_share_path(home, e))?;
            erased.push(e);
        }
    }
    let legacy = home.join(KEY_SHARE);
    if legacy.exists() {
        let share = read_share_file(&legacy, pass)?;
        if share.epoch < below {
            std::fs::remove_file(&legacy)?;
            erased.push(share.epoch);
        }
    }
    // Pre-refresh shares of every epoch up to `below` (the current one included: pruning
    // says the refreshed shares sign).
    let dir = home.join(KEYS_DIR);
    if dir.exists() {
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let epoch = name
                .to_str()
                .and_then(|n| n.strip_prefix("share-epoch-"))
                .and_then(|n| n.strip_suffix(".pre-refresh.json"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(e) = epoch.filter(|e| *e <= below) {
                std::fs::remove_file(pre_refresh_path(home, e))?;
                erased.push(e);
            }
        }
    }
    erased.sort_unstable();
    erased.dedup();
    Ok(erased)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(epoch: u64, seed: u64) -> (KeyShare, GroupKey) {
        use rand_core::SeedableRng;
        let dealt = sigil_crypto::keys::trusted_dealer(
            3,
            4,
            &mut rand_chacha::ChaCha20Rng::seed_from_u64(seed),
        )
        .unwrap();
        let s = KeyShare {
            epoch,
            member: 1,
            n: 4,
            t: 3,
            key_package: dealt.key_packages[&1].clone(),
            public_key_package: dealt.public_key_package.clone(),
        };
        (s, dealt.group_key)
    }

    #[test]
    fn shares_are_kept_per_epoch_and_only_pruned_on_request() {
        let home = tempfile::tempdir().unwrap();
        let pass = b"pw";
        let (s1, g1) = share(1, 1);
        let (s2, g2) = share(2, 2);
        write_key_share(home.path(), &s1, &g1, pass, false).unwrap();
        write_key_share(home.path(), &s2, &g2, pass, false).unwrap();
        assert_eq!(stored_epochs(home.path()).unwrap(), vec![1, 2]);
        let back1 = read_key_share(home.path(), pass, 1).unwrap().unwrap();
        assert_eq!(
            back1.key_package, s1.key_package,
            "epoch 1 kept beside epoch 2"
        );
        let back2 = read_key_share(home.path(), pass, 2).unwrap().unwrap();
        assert_eq!(back2.key_package, s2.key_package);
        assert!(read_key_share(home.path(), pass, 3).unwrap().is_none());
        let latest: GroupKeyFile =
            serde_json::from_str(&std::fs::read_to_string(home.path().join(GROUP_KEY)).unwrap())
                .unwrap();
        assert_eq!(latest.epoch, 2);
        // The same epoch is never silently replaced.
        let (other, go) = share(2, 9);
        let e = write_key_share(home.path(), &other, &go, pass, false).unwrap_err();
        assert!(e.to_string().contains("--replace"), "{e}");
        assert_eq!(
            read_key_share(home.path(), pass, 2)
                .unwrap()
                .unwrap()
                .key_package,
            s2.key_package
        );
        write_key_share(home.path(), &other, &go, pass, true).unwrap();
        assert_eq!(
            read_key_share(home.path(), pass, 2)
                .unwrap()
                .unwrap()
                .key_package,
            other.key_package
        );
        assert_eq!(
            erase_key_shares_below(home.path(), 2, pass).unwrap(),
            vec![1]
        );
        assert_eq!(stored_epochs(home.path()).unwrap(), vec![2]);
        assert!(read_key_share(home.path(), pass, 1).unwrap().is_none());
    }

    #[test]
    fn a_share_from_before_per_epoch_storage_is_read_for_its_epoch() {
        let home = tempfile::tempdir().unwrap();
        let pass = b"pw";
        let (s1, _) = share(1, 1);
        let json = serde_json::to_vec(&s1).unwrap();
        keystore::write_file(
            &home.path().join(KEY_SHARE),
            &json,
            pass,
            "sigil-key-share",
            kdf(),
            &mut rand_core::OsRng,
        )
        .unwrap();
        assert!(read_key_share(home.path(), pass, 1).unwrap().is_some());
        assert!(read_key_share(home.path(), pass, 2).unwrap().is_none());
        assert_eq!(
            erase_key_shares_below(home.path(), 2, pass).unwrap(),
            vec![1]
        );
        assert!(!home.path().join(KEY_SHARE).exists());
    }

    #[test]
    fn only_the_candidate_share_of_the_decided_key_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, ka) = share(2, 1);
        let (b, kb) = share(2, 2);
        // Two DKG runs for epoch 2 left two candidates; nothing is installed yet.
        write_candidate_share(dir.path(), &a, &ka, b"pw").unwrap();
        write_candidate_share(dir.path(), &b, &kb, b"pw").unwrap();
        assert!(read_key_share(dir.path(), b"pw", 2).unwrap().is_none());
        // The committee decided the first run's key: that share becomes epoch 2's.
        let got = install_candidate_share(dir.path(), b"pw", 2, &ka.compressed())
            .unwrap()
            .unwrap();
        assert_eq!(
            got.public_key_package.verifying_key(),
            a.public_key_package.verifying_key()
        );
        let stored = read_key_share(dir.path(), b"pw", 2).unwrap().unwrap();
        assert_eq!(
            stored.public_key_package.verifying_key(),
            a.public_key_package.verifying_key()
        );
        // A key no run derived: nothing.
        let (_, other) = share(2, 3);
        assert!(
            install_candidate_share(dir.path(), b"pw", 2, &other.compressed())
                .unwrap()
                .is_none()
        );
    }
}
