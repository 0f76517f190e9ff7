//! # sigil-fuzz
//!
//! One fuzz target per kind of untrusted bytes Sigil reads, each a `fn(&[u8])` that must
//! never panic and that asserts the safety property of its input path (an oracle), not only
//! the absence of crashes:
//!
//! | target | bytes | oracle |
//! |---|---|---|
//! | `member` | frames a faulty member 2 sends member 1: raw gossip, bodies under member 2's valid signature, requests, sync responses | member 1 never decides, attests or publishes a signature share (one faulty member of 4 cannot make an honest one sign) |
//! | `dkg` | a round-1 or round-2 DKG package (JSON) from member 2 | no panic; a refused package names member 2 |
//! | `keystore` | a key-file JSON envelope | no panic, no allocation beyond [`sigil_crypto::keystore::ScryptParams::MAX_MEMORY`]; only the genuine file opens |
//! | `config` | `sigil.toml` text | no panic; an accepted config re-parses to the same config |
//! | `attestation` | the JSON `sigil verify` reads | nothing but the genuine attestation verifies under the pinned group key |
//! | `api` | an HTTP request (method, path, body) to the node API | no panic, no 5xx |
//!
//! Two ways to run them:
//! - [`campaign`]: a stable, in-process mutational runner (no coverage feedback) that
//!   replays the committed corpus (`fuzz/corpus/<target>/`) and mutates it; the test suite
//!   runs a short pass of every target, `sigil-fuzz run` a long one.
//! - AFL++ (`scripts/fuzz.sh <target> <seconds>`): `cargo afl` builds `sigil-fuzz afl
//!   <target>` with coverage instrumentation on the stable toolchain; new corpus entries
//!   it finds are minimised into `fuzz/corpus/<target>/` and committed. Targets inside
//!   `sigil-node` (`config`, `attestation`, `api`) run only in-process: instrumenting them
//!   would rebuild RocksDB and libp2p (see RELIABILITY.md).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dkg;
pub mod keystore;
pub mod member;
#[cfg(feature = "node")]
pub mod node;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    /// Name (the corpus directory and the CLI argument).
    pub name: &'static str,
    /// Runs one input; panics when the input breaks the target's oracle.
    pub run: fn(&[u8]),
    /// Generated seed inputs (valid traffic), for a corpus that has none yet.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Largest input worth trying (bytes).
    pub max_len: usize,
    /// Whether AFL++ may run it (no `sigil-node` code).
    pub afl: bool,
}

/// Every target this build has (the `node` feature adds `config`, `attestation`, `api`).
pub fn targets() -> Vec<Target> {
    #[allow(unused_mut)]
    let mut t = vec![
        Target {
            name: "member",
            run: member::run,
            seeds: member::seeds,
            max_len: 64 * 1024,
            afl: true,
        },
        Target {
            name: "dkg",
            run: dkg::run,
            seeds: dkg::seeds,
            max_len: 16 * 1024,
            afl: true,
        },
        Target {
            name: "keystore",
            run: keystore::run,
            seeds: keystore::seeds,
            max_len: 4 * 1024,
            afl: true,
        },
    ];
    #[cfg(feature = "node")]
    t.extend(node::targets());
    t
}

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    targets().into_iter().find(|t| t.name == name)
}

/// The committed corpus directory of `name` (`fuzz/corpus/<name>`).
pub fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

/// Reads every file of `dir` (sorted by name; none if it does not exist). Errors: I/O.
pub fn read_corpus(dir: &Path) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let p = e?.path();
        if p.is_file() {
            out.push((p.clone(), std::fs::read(&p)?));
        }
    }
    out.sort();
    Ok(out)
}

/// A content-addressed file name for a corpus entry (first 8 bytes of SHA-256, hex).
pub fn entry_name(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(data)[..8])
}

/// An input that broke a target.
#[derive(Debug)]
pub struct Crash {
    /// The input.
    pub input: Vec<u8>,
    /// The panic message.
    pub message: String,
}

/// What a campaign did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Inputs run (corpus replays plus mutations).
    pub execs: u64,
    /// Corpus entries replayed.
    pub replayed: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs `t` on `input`, turning a panic into a [`Crash`].
pub fn run_one(t: &Target, input: &[u8]) -> Result<(), Crash> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.run)(input))).map_err(|p| {
        let message = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic with a non-string payload".into());
        Crash {
            input: input.to_vec(),
            message,
        }
    })
}

/// A stable, in-process campaign: replays `corpus` (falling back to the target's seeds
/// when empty), then runs mutations of it (deterministic for `seed`) until `budget` inputs
/// or `time` have passed, whichever comes first. Returns at the first [`Crash`].
pub fn campaign(
    t: &Target,
    corpus: &[Vec<u8>],
    seed: u64,
    budget: u64,
    time: Duration,
) -> Result<Stats, Crash> {
    let t0 = Instant::now();
    let seeds;
    let corpus = if corpus.is_empty() {
        seeds = (t.seeds)();
        &seeds[..]
    } else {
        corpus
    };
    let mut stats = Stats::default();
    for c in corpus {
        run_one(t, c)?;
        stats.execs += 1;
        stats.replayed += 1;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut buf = Vec::new();
    while stats.execs < budget && t0.elapsed() < time {
        buf.clear();
        if corpus.is_empty() {
            buf.resize((rng.next_u32() % 64) as usize, 0);
            rng.fill_bytes(&mut buf);
        } else {
            buf.extend_from_slice(&corpus[(rng.next_u64() % corpus.len() as u64) as usize]);
            for _ in 0..1 + rng.next_u32() % 4 {
                mutate(&mut buf, corpus, t.max_len, &mut rng);
            }
        }
        run_one(t, &buf)?;
        stats.execs += 1;
    }
    stats.elapsed = t0.elapsed();
    Ok(stats)
}

/// Interesting integers (little- and big-endian): boundaries of the widths protobuf,
/// JSON and the engine use.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    u64::MAX / 2,
    u64::MAX - 1,
    u64::MAX,
];

/// One AFL-style mutation of `buf` (bit flip, byte set, interesting integer, insert,
/// delete, duplicate a block, splice from another corpus entry), keeping it ≤ `max_len`.
pub fn mutate(buf: &mut Vec<u8>, corpus: &[Vec<u8>], max_len: usize, rng: &mut ChaCha20Rng) {
    let mut pick = |n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    let op = pick(8);
    if buf.is_empty() && op != 4 && op != 7 {
        buf.push(pick(256) as u8);
        return;
    }
    match op {
        0 => {
            let i = pick(buf.len());
            buf[i] ^= 1 << pick(8);
        }
        1 => {
            let i = pick(buf.len());
            buf[i] = pick(256) as u8;
        }
        2 => {
            let v = INTERESTING[pick(INTERESTING.len())];
            let w = [1usize, 2, 4, 8][pick(4)];
            let bytes = if pick(2) == 0 {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            let i = pick(buf.len());
            let src = if bytes[0] == 0 && w < 8 {
                &bytes[8 - w..]
            } else {
                &bytes[..w]
            };
            for (k, b) in src.iter().enumerate() {
                if let Some(x) = buf.get_mut(i + k) {
                    *x = *b;
                }
            }
        }
        3 => {
            let i = pick(buf.len());
            let n = 1 + pick(buf.len() - i).min(64);
            buf.drain(i..i + n);
        }
        4 => {
            let i = pick(buf.len() + 1);
            let n = 1 + pick(16);
            let bytes: Vec<u8> = (0..n).map(|_| pick(256) as u8).collect();
            buf.splice(i..i, bytes);
        }
        5 => {
            let i = pick(buf.len());
            let n = 1 + pick(buf.len() - i).min(256);
            let block = buf[i..i + n].to_vec();
            let j = pick(buf.len() + 1);
            buf.splice(j..j, block);
        }
        6 => {
            // Text inputs: swap in a structural character.
            const CHARS: &[u8] = b"{}[]\":,=.\\\n -0123456789abcdefx";
            let i = pick(buf.len());
            buf[i] = CHARS[pick(CHARS.len())];
        }
        _ => {
            if let Some(other) = corpus.get(pick(corpus.len()))
                && !other.is_empty()
            {
                let i = pick(buf.len() + 1);
                let j = pick(other.len());
                let n = 1 + pick(other.len() - j);
                buf.truncate(i);
                buf.extend_from_slice(&other[j..j + n]);
            }
        }
    }
    buf.truncate(max_len);
}
