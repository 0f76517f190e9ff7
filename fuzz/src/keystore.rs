//! The `keystore` target: a key file's JSON envelope, decoded as `sigil` decodes it and
//! opened with the right passphrase.
//!
//! Oracle: no panic; KDF costs beyond [`ScryptParams::check`] are refused before any work
//! (the runner would otherwise abort on a huge allocation or time out); whatever opens
//! yields exactly the genuine secret (the envelope's every field is bound to the
//! ciphertext, so an edited file never opens to anything else).

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::keystore::{Envelope, KeystoreError, ScryptParams, open, seal};

const SECRET: &[u8] = b"fuzz secret share";
const PASSPHRASE: &[u8] = b"fuzz passphrase";

/// Scrypt memory (bytes) above which the target only checks that the parameters are
/// accepted, without deriving: keeps one input under ~10 ms.
const RUN_LIMIT: u64 = 1 << 20;

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    let Ok(env) = serde_json::from_slice::<Envelope>(data) else {
        return;
    };
    let k = env.kdf;
    // Cost in floating point: log_n can be up to 255, far past any integer width.
    let bytes = 2f64.powi(i32::from(k.log_n)) * 128.0 * f64::from(k.r);
    if bytes * f64::from(k.p) > RUN_LIMIT as f64 {
        // Too costly to derive here: the bound itself is what is checked.
        let within = k.check().is_ok();
        assert!(
            !within || bytes <= ScryptParams::MAX_MEMORY as f64,
            "parameters needing {bytes} bytes accepted"
        );
        return;
    }
    match open(&env, PASSPHRASE) {
        Ok(secret) => assert_eq!(secret.as_slice(), SECRET, "an edited key file opened"),
        Err(
            KeystoreError::WrongPassphrase
            | KeystoreError::Malformed { .. }
            | KeystoreError::InvalidParams { .. },
        ) => {}
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// Seeds: a genuine envelope with cheap parameters.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let env = seal(
        SECRET,
        PASSPHRASE,
        "fuzz key",
        ScryptParams::insecure_fast(),
        &mut rng,
    )
    .expect("seal");
    vec![
        serde_json::to_vec_pretty(&env).expect("json"),
        serde_json::to_vec(&env).expect("json"),
    ]
}
