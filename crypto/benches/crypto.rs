//! Attestation-core benchmarks, printed as Markdown tables (BENCHMARKS.md).
//!
//! Run: `cargo bench -p sigil-crypto --bench crypto` (add `-- --quick` for fewer samples).
//! Each figure is the median (and p95) of repeated single operations on this machine. The
//! baseline, run in the same process, is what an ECDSA-multisig committee does for the same
//! assurance: t independent secp256k1 ECDSA verifications (k256).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use alloy_primitives::{B256, keccak256};
use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use k256::ecdsa::{Signature as EcdsaSignature, SigningKey, VerifyingKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::keys::trusted_dealer;
use sigil_crypto::merkle::process_proof;
use sigil_crypto::signing::{aggregate, sign, signing_package, verify, verify_share};
use sigil_crypto::{BatchTree, MemoryLedger, NoncePool};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

struct Stat {
    median: Duration,
    p95: Duration,
}

fn measure(samples: usize, mut f: impl FnMut()) -> Stat {
    f(); // warm-up
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    Stat {
        median: times[times.len() / 2],
        p95: times[(times.len() * 95 / 100).min(times.len() - 1)],
    }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn cell(s: &Stat, f: fn(Duration) -> String) -> String {
    format!("{} ({})", f(s.median), f(s.p95))
}

fn signing_table(quick: bool) {
    println!("### FROST signing (µs, median (p95))\n");
    println!(
        "| (t, n) | sign share | verify share | aggregate | verify group sig | baseline: t × ECDSA verify |"
    );
    println!("|---|---|---|---|---|---|");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for (t, n) in [(3u16, 4u16), (5, 7), (13, 19), (67, 100)] {
        let samples = if quick {
            10
        } else if t > 20 {
            30
        } else {
            100
        };
        let keys = trusted_dealer(t, n, &mut rng).unwrap();
        let signers: Vec<u16> = (1..=t).collect();
        let digest = keccak256(b"bench batch");
        // One prepared round: pools/ledgers with plenty of nonces per signer.
        let mut pools: BTreeMap<u16, (NoncePool, MemoryLedger)> = BTreeMap::new();
        let round = |pools: &mut BTreeMap<u16, (NoncePool, MemoryLedger)>,
                     rng: &mut ChaCha20Rng| {
            let mut commitments = BTreeMap::new();
            let mut ids = BTreeMap::new();
            for &i in &signers {
                let (pool, ledger) = pools
                    .entry(i)
                    .or_insert_with(|| (NoncePool::new(), MemoryLedger::new()));
                let (id, c) = pool
                    .refill(&keys.key_packages[&i], 1, ledger, rng)
                    .unwrap()
                    .remove(0);
                commitments.insert(i, c);
                ids.insert(i, id);
            }
            (signing_package(&commitments, digest).unwrap(), ids)
        };
        // sign share: one member, fresh nonce each sample.
        let mut prepared: Vec<_> = (0..samples + 1)
            .map(|_| round(&mut pools, &mut rng))
            .collect();
        let kp = &keys.key_packages[&1];
        let sign_stat = {
            let mut it = prepared.iter_mut();
            measure(samples, || {
                let (pkg, ids) = it.next().unwrap();
                let (pool, ledger) = pools.get_mut(&1).unwrap();
                black_box(sign(kp, pkg, ids[&1], pool, ledger).unwrap());
            })
        };
        // Full share sets for the remaining measurements.
        let (pkg, ids) = round(&mut pools, &mut rng);
        let mut shares = BTreeMap::new();
        for &i in &signers {
            let (pool, ledger) = pools.get_mut(&i).unwrap();
            shares.insert(
                i,
                sign(&keys.key_packages[&i], &pkg, ids[&i], pool, ledger).unwrap(),
            );
        }
        let vshare = measure(samples, || {
            verify_share(&pkg, 1, &shares[&1], &keys.public_key_package).unwrap()
        });
        let agg = measure(samples, || {
            black_box(aggregate(&pkg, &shares, &keys.public_key_package).unwrap());
        });
        let sig = aggregate(&pkg, &shares, &keys.public_key_package).unwrap();
        let ver = measure(samples, || verify(&keys.group_key, digest, &sig).unwrap());
        // Baseline: t ECDSA verifications over the same digest.
        let ecdsa: Vec<(VerifyingKey, EcdsaSignature)> = (0..t)
            .map(|i| {
                let sk = SigningKey::from_slice(keccak256(i.to_be_bytes()).as_slice()).unwrap();
                let s: EcdsaSignature = sk.sign_prehash(digest.as_slice()).unwrap();
                (*sk.verifying_key(), s)
            })
            .collect();
        let base = measure(samples, || {
            for (vk, s) in &ecdsa {
                vk.verify_prehash(digest.as_slice(), s).unwrap();
            }
        });
        println!(
            "| ({t}, {n}) | {} | {} | {} | {} | {} |",
            cell(&sign_stat, us),
            cell(&vshare, us),
            cell(&agg, us),
            cell(&ver, us),
            cell(&base, us)
        );
    }
    println!();
}

fn merkle_table(quick: bool) {
    println!("### Batch Merkle tree (median (p95))\n");
    println!(
        "| leaves | build tree + root (ms) | one proof (µs) | verify one proof (µs) | multiproof of 64 leaves (µs) |"
    );
    println!("|---|---|---|---|---|");
    for n in [1_000usize, 64_000] {
        let samples = if quick {
            5
        } else if n > 10_000 {
            20
        } else {
            100
        };
        let leaves: Vec<B256> = (0..n as u64).map(|i| keccak256(i.to_be_bytes())).collect();
        let build = measure(samples, || {
            black_box(BatchTree::new(&leaves).unwrap().root());
        });
        let tree = BatchTree::new(&leaves).unwrap();
        let mut k = 0usize;
        let proof = measure(samples * 10, || {
            k = (k + 7919) % n;
            black_box(tree.proof(&leaves[k]).unwrap());
        });
        let p = tree.proof(&leaves[1]).unwrap();
        let vp = measure(samples * 10, || {
            assert_eq!(process_proof(&leaves[1], &p), tree.root())
        });
        let chosen: Vec<B256> = leaves.iter().step_by(n / 64).take(64).copied().collect();
        let mp = measure(samples, || {
            black_box(tree.multiproof(&chosen).unwrap());
        });
        println!(
            "| {n} | {} | {} | {} | {} |",
            cell(&build, ms),
            cell(&proof, us),
            cell(&vp, us),
            cell(&mp, us)
        );
    }
    println!();
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    signing_table(quick);
    merkle_table(quick);
}
