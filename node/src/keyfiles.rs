//! Key files in the node home, all encrypted with the operator's passphrase
//! (scrypt + XChaCha20-Poly1305, [`sigil_crypto::keystore`]):
//!
//! - `node_key.json`: the 32-byte secp256k1 node key (p2p identity, consensus votes);
//! - `key_share.json`: the FROST key share from `sigil dkg` ([`KeyShare`], JSON);
//! - `group_key.json`: the group key, public, unencrypted ([`GroupKeyFile`]).
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
/// Key share file name.
pub const KEY_SHARE: &str = "key_share.json";
/// Public group key file name.
pub const GROUP_KEY: &str = "group_key.json";

/// A member's FROST key share and the committee's public keys.
#[derive(serde::Serialize, serde::Deserialize)]
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

/// KDF cost: production scrypt unless `SIGIL_INSECURE_FAST_KDF=1` (devnets, tests).
pub fn kdf() -> ScryptParams {
    if std::env::var("SIGIL_INSECURE_FAST_KDF").as_deref() == Ok("1") {
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

/// Writes the key share (encrypted) and the public group key file.
pub fn write_key_share(
    home: &Path,
    share: &KeyShare,
    group_key: &GroupKey,
    pass: &[u8],
) -> Result<()> {
    let json = Zeroizing::new(serde_json::to_vec(share)?);
    let p = home.join(KEY_SHARE);
    if p.exists() {
        std::fs::remove_file(&p)?;
    }
    keystore::write_file(
        &p,
        &json,
        pass,
        "sigil-key-share",
        kdf(),
        &mut rand_core::OsRng,
    )?;
    let g = GroupKeyFile::new(share.epoch, group_key);
    std::fs::write(home.join(GROUP_KEY), serde_json::to_string_pretty(&g)?)?;
    Ok(())
}

/// Reads the key share, if present.
pub fn read_key_share(home: &Path, pass: &[u8]) -> Result<Option<KeyShare>> {
    let p = home.join(KEY_SHARE);
    if !p.exists() {
        return Ok(None);
    }
    let bytes =
        keystore::read_file(&p, pass).with_context(|| format!("opening {}", p.display()))?;
    Ok(Some(serde_json::from_slice(&bytes)?))
}
