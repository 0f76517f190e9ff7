//! The `dkg` target: a DKG package from member 2, decoded as the node decodes it (JSON,
//! `sigil-node` `dkg.rs`) and fed to member 1's [`Dkg`] after every other member's genuine
//! packages, so a round-1 package completes round 1 and a round-2 package completes the DKG.
//!
//! Input: `[round byte][JSON]`; an even first byte is a round-1 package, odd a round-2 one.
//! Oracle: every refusal that blames someone blames member 2; a round-2 package other than
//! the genuine one never completes the DKG (a forged secret share is always caught).

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::dkg::{Dkg, DkgError, Outgoing};
use sigil_crypto::frost::keys::dkg::{round1, round2};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Genuine packages of a 3-of-4 DKG.
struct Fixture {
    seed: u64,
    /// Each member's round-1 package.
    round1: BTreeMap<u16, round1::Package>,
    /// Round-2 packages addressed to member 1, by sender.
    round2_to_1: BTreeMap<u16, round2::Package>,
}

fn machine(seed: u64, me: u16) -> (Dkg, round1::Package) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ u64::from(me));
    let (m, out) = Dkg::start(me, 3, 4, &mut rng).expect("dkg start");
    let Outgoing::Broadcast(p) = out else {
        panic!("round 1 is a broadcast")
    };
    (m, p)
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // A seed whose group key is usable (x < n; see `Dkg::try_finish`).
        for seed in 0u64.. {
            let mut ms = BTreeMap::new();
            let mut r1 = BTreeMap::new();
            for i in 1..=4u16 {
                let (m, p) = machine(seed, i);
                ms.insert(i, m);
                r1.insert(i, p);
            }
            let mut to_1 = BTreeMap::new();
            for (i, m) in ms.iter_mut() {
                for (j, p) in &r1 {
                    if i == j {
                        continue;
                    }
                    for o in m.receive_round1(*j, p.clone()).expect("genuine round 1") {
                        if let Outgoing::Direct { to: 1, package } = o {
                            to_1.insert(*i, package);
                        }
                    }
                }
            }
            let mut m1 = ms.remove(&1).expect("member 1");
            let mut done = None;
            for (from, p) in &to_1 {
                match m1.receive_round2(*from, p.clone()) {
                    Ok(Some(out)) => done = Some(out),
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
            if done.is_some() {
                return Fixture {
                    seed,
                    round1: r1,
                    round2_to_1: to_1,
                };
            }
        }
        unreachable!("some seed gives a usable group key")
    })
}

fn blames_only_member_2(e: &DkgError) {
    match e {
        DkgError::InvalidProofOfKnowledge { culprit } => assert_eq!(*culprit, 2, "{e}"),
        DkgError::InvalidSecretShare { culprit } => {
            assert!(matches!(culprit, Some(2) | None), "{e}")
        }
        DkgError::ConflictingPackage { from, .. }
        | DkgError::MalformedRefreshPackage { from, .. } => {
            assert_eq!(*from, 2, "{e}")
        }
        _ => {}
    }
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    let Some((&round, json)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let (mut m1, _) = machine(f.seed, 1);
    for from in [3u16, 4] {
        m1.receive_round1(from, f.round1[&from].clone())
            .expect("genuine round 1");
    }
    if round % 2 == 0 {
        let Ok(p) = serde_json::from_slice::<round1::Package>(json) else {
            return;
        };
        match m1.receive_round1(2, p) {
            Ok(_) => {
                if let Err(e) = m1.try_finish() {
                    blames_only_member_2(&e);
                }
            }
            Err(e) => blames_only_member_2(&e),
        }
        return;
    }
    let Ok(p) = serde_json::from_slice::<round2::Package>(json) else {
        return;
    };
    m1.receive_round1(2, f.round1[&2].clone())
        .expect("genuine round 1");
    for from in [3u16, 4] {
        assert!(
            matches!(
                m1.receive_round2(from, f.round2_to_1[&from].clone()),
                Ok(None)
            ),
            "genuine round 2"
        );
    }
    let genuine = p == f.round2_to_1[&2];
    match m1.receive_round2(2, p) {
        Ok(Some(_)) => assert!(genuine, "a forged round-2 package completed the DKG"),
        Ok(None) => {}
        Err(e) => blames_only_member_2(&e),
    }
}

/// Seeds: member 2's genuine round-1 package and its round-2 package to member 1.
pub fn seeds() -> Vec<Vec<u8>> {
    let f = fixture();
    let mut a = vec![0u8];
    a.extend(serde_json::to_vec(&f.round1[&2]).expect("json"));
    let mut b = vec![1u8];
    b.extend(serde_json::to_vec(&f.round2_to_1[&2]).expect("json"));
    vec![a, b]
}
