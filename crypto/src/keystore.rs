//! Passphrase-encrypted key files: scrypt (RFC 7914) derives a 32-byte key that seals the
//! secret with XChaCha20-Poly1305 (RFC 8439 with a 24-byte nonce), both from RustCrypto.
//! The JSON envelope (`version`, KDF parameters, salt, nonce, a public `label`) is bound to
//! the ciphertext as associated data, so any edit to it fails decryption. Files are written
//! with mode 0600 through a temporary file and a rename. Decrypted secrets are returned in
//! [`Zeroizing`] buffers.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{CryptoRng, RngCore};
use std::path::Path;
use zeroize::Zeroizing;

/// Envelope format version written by this crate.
pub const VERSION: u32 = 1;

/// Errors reading or writing a keystore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The passphrase is wrong or the file was modified.
    #[error("wrong passphrase, or the key file was modified")]
    WrongPassphrase,
    /// The file is not a keystore this version understands.
    #[error("malformed keystore: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The scrypt parameters are out of range.
    #[error("invalid scrypt parameters (log_n {log_n}, r {r}, p {p})")]
    InvalidParams {
        /// log2 of the CPU/memory cost.
        log_n: u8,
        /// Block size.
        r: u32,
        /// Parallelism.
        p: u32,
    },
    /// Reading or writing the file failed.
    #[error("keystore file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// scrypt cost parameters. The default (log_n 15, r 8, p 1: 32 MiB, ~0.1 s) follows the
/// interactive-login guidance of RFC 7914 §2; tests use [`ScryptParams::insecure_fast`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScryptParams {
    /// log2 of the CPU/memory cost N.
    pub log_n: u8,
    /// Block size r.
    pub r: u32,
    /// Parallelism p.
    pub p: u32,
}

impl Default for ScryptParams {
    fn default() -> Self {
        Self {
            log_n: 15,
            r: 8,
            p: 1,
        }
    }
}

impl ScryptParams {
    /// The most memory a key file may make scrypt use (bytes): 1 GiB, 32 times the default.
    /// scrypt needs 128 · r · 2^log_n bytes (RFC 7914 §2); a file asking for more (a
    /// corrupted or hostile one) is refused before any of it is allocated, instead of
    /// aborting the process on allocation failure or running for hours.
    pub const MAX_MEMORY: u64 = 1 << 30;

    /// The largest parallelism p accepted (CPU time grows with p at constant memory).
    pub const MAX_P: u32 = 16;

    /// Checks the cost bounds ([`Self::MAX_MEMORY`], [`Self::MAX_P`]) and scrypt's own
    /// parameter rules. Errors: [`KeystoreError::InvalidParams`].
    pub fn check(&self) -> Result<(), KeystoreError> {
        let bad = KeystoreError::InvalidParams {
            log_n: self.log_n,
            r: self.r,
            p: self.p,
        };
        let memory = 1u64
            .checked_shl(u32::from(self.log_n))
            .and_then(|n| n.checked_mul(128))
            .and_then(|b| b.checked_mul(u64::from(self.r)));
        match memory {
            Some(m) if m <= Self::MAX_MEMORY && self.p >= 1 && self.p <= Self::MAX_P => {}
            _ => return Err(bad),
        }
        scrypt::Params::new(self.log_n, self.r, self.p, 32).map_err(|_| bad)?;
        Ok(())
    }

    /// Cheap parameters for tests and devnets only.
    pub fn insecure_fast() -> Self {
        Self {
            log_n: 8,
            r: 8,
            p: 1,
        }
    }
}

/// The on-disk JSON envelope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// Public description (e.g. "frost key share, member 2, epoch 1, group key 02…").
    pub label: String,
    /// scrypt parameters.
    pub kdf: ScryptParams,
    /// scrypt salt, hex (32 bytes).
    pub salt: String,
    /// XChaCha20-Poly1305 nonce, hex (24 bytes).
    pub nonce: String,
    /// Ciphertext with the 16-byte tag, hex.
    pub ciphertext: String,
}

impl Envelope {
    fn aad(&self) -> Vec<u8> {
        format!(
            "sigil-keystore/{}/{}/{}/{}/{}/{}/{}",
            self.version, self.kdf.log_n, self.kdf.r, self.kdf.p, self.salt, self.nonce, self.label
        )
        .into_bytes()
    }
}

fn derive(
    passphrase: &[u8],
    salt: &[u8],
    kdf: ScryptParams,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let bad = KeystoreError::InvalidParams {
        log_n: kdf.log_n,
        r: kdf.r,
        p: kdf.p,
    };
    kdf.check()?;
    let params = scrypt::Params::new(kdf.log_n, kdf.r, kdf.p, 32).map_err(|_| bad)?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase, salt, &params, key.as_mut()).map_err(|_| {
        KeystoreError::InvalidParams {
            log_n: kdf.log_n,
            r: kdf.r,
            p: kdf.p,
        }
    })?;
    Ok(key)
}

/// Encrypts `secret` under `passphrase`. Errors: [`KeystoreError::InvalidParams`].
pub fn seal<R: RngCore + CryptoRng>(
    secret: &[u8],
    passphrase: &[u8],
    label: &str,
    kdf: ScryptParams,
    rng: &mut R,
) -> Result<Envelope, KeystoreError> {
    let mut salt = [0u8; 32];
    rng.fill_bytes(&mut salt);
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let mut env = Envelope {
        version: VERSION,
        label: label.to_owned(),
        kdf,
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        ciphertext: String::new(),
    };
    let key = derive(passphrase, &salt, kdf)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let aad = env.aad();
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: &aad,
            },
        )
        .map_err(|_| KeystoreError::Malformed {
            reason: "encryption failed",
        })?;
    env.ciphertext = hex::encode(ct);
    Ok(env)
}

/// Decrypts an envelope. Errors: [`KeystoreError::WrongPassphrase`] (also for any tampering),
/// [`KeystoreError::Malformed`], [`KeystoreError::InvalidParams`].
pub fn open(env: &Envelope, passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    if env.version != VERSION {
        return Err(KeystoreError::Malformed {
            reason: "unsupported version",
        });
    }
    let salt = hex::decode(&env.salt).map_err(|_| KeystoreError::Malformed {
        reason: "salt is not hex",
    })?;
    let nonce = hex::decode(&env.nonce).map_err(|_| KeystoreError::Malformed {
        reason: "nonce is not hex",
    })?;
    if nonce.len() != 24 {
        return Err(KeystoreError::Malformed {
            reason: "nonce must be 24 bytes",
        });
    }
    let ct = hex::decode(&env.ciphertext).map_err(|_| KeystoreError::Malformed {
        reason: "ciphertext is not hex",
    })?;
    let key = derive(passphrase, &salt, env.kdf)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let aad = env.aad();
    cipher
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &ct,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| KeystoreError::WrongPassphrase)
}

/// Seals `secret` and writes it to `path` with mode 0600 (atomically: temp file + rename).
/// Errors: as [`seal`], plus [`KeystoreError::Io`].
pub fn write_file<R: RngCore + CryptoRng>(
    path: &Path,
    secret: &[u8],
    passphrase: &[u8],
    label: &str,
    kdf: ScryptParams,
    rng: &mut R,
) -> Result<(), KeystoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let env = seal(secret, passphrase, label, kdf, rng)?;
    let io = |source| KeystoreError::Io {
        path: path.display().to_string(),
        source,
    };
    let json = serde_json::to_vec_pretty(&env).map_err(|e| io(std::io::Error::other(e)))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(&json).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Reads and decrypts a key file. Errors: as [`open`], plus [`KeystoreError::Io`] and
/// [`KeystoreError::Malformed`] for non-JSON content.
pub fn read_file(path: &Path, passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    open(&read_envelope(path)?, passphrase)
}

/// Reads a key file's envelope without decrypting (to show its label).
/// Errors: [`KeystoreError::Io`], [`KeystoreError::Malformed`].
pub fn read_envelope(path: &Path) -> Result<Envelope, KeystoreError> {
    let bytes = std::fs::read(path).map_err(|source| KeystoreError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|_| KeystoreError::Malformed {
        reason: "not a keystore JSON document",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// A key file asking for absurd scrypt costs is refused before anything is allocated:
    /// log_n 40 would need 128 TiB (the process aborts on allocation failure), log_n 24
    /// 16 GiB and minutes of CPU.
    #[test]
    fn absurd_kdf_costs_are_refused_before_any_work() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let good = seal(b"s", b"pw", "l", ScryptParams::insecure_fast(), &mut rng).unwrap();
        for (log_n, r, p) in [
            (40, 8, 1),
            (24, 8, 1),
            (20, 64, 1),
            (63, 1, 1),
            (8, 8, 4096),
            (8, 0, 1),
            (8, 8, 0),
        ] {
            let mut env = good.clone();
            env.kdf = ScryptParams { log_n, r, p };
            let t0 = std::time::Instant::now();
            assert!(
                matches!(open(&env, b"pw"), Err(KeystoreError::InvalidParams { .. })),
                "log_n {log_n}, r {r}, p {p} accepted"
            );
            assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        }
        assert!(ScryptParams::default().check().is_ok());
        assert!(
            ScryptParams {
                log_n: 20,
                r: 8,
                p: 1
            }
            .check()
            .is_ok(),
            "1 GiB is the bound"
        );
    }

    #[test]
    fn roundtrip_wrong_passphrase_and_tamper() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let env = seal(
            b"secret share",
            b"pw",
            "label",
            ScryptParams::insecure_fast(),
            &mut rng,
        )
        .unwrap();
        assert_eq!(open(&env, b"pw").unwrap().as_slice(), b"secret share");
        assert!(matches!(
            open(&env, b"pw2"),
            Err(KeystoreError::WrongPassphrase)
        ));
        let mut t = env.clone();
        t.label = "other".into();
        assert!(matches!(
            open(&t, b"pw"),
            Err(KeystoreError::WrongPassphrase)
        ));
        assert!(!serde_json::to_string(&env).unwrap().contains("secret"));
    }

    #[test]
    fn file_is_private_and_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.json");
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        write_file(
            &p,
            b"abc",
            b"pw",
            "l",
            ScryptParams::insecure_fast(),
            &mut rng,
        )
        .unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_file(&p, b"pw").unwrap().as_slice(), b"abc");
        assert!(matches!(
            read_file(&p, b"nope"),
            Err(KeystoreError::WrongPassphrase)
        ));
        std::fs::write(&p, b"{").unwrap();
        assert!(matches!(
            read_file(&p, b"pw"),
            Err(KeystoreError::Malformed { .. })
        ));
    }
}
