//! Unit tests of rotation authorisation: only what an operator approved is prevoted.

use super::tests::{committee, exchange_commitments, route};
use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::OnchainSignature;

/// `n` compressed node keys from a seeded generator.
fn node_keys(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let sk = k256::SecretKey::random(&mut rng);
            let pk = sk.public_key();
            k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&pk, true)
                .as_bytes()
                .to_vec()
        })
        .collect()
}

fn rotation(n: usize, seed: u64) -> pb::Rotation {
    let (_, t) = sigil_crypto::keys::thresholds(n as u16);
    pb::Rotation {
        epoch: 2,
        members: node_keys(n, seed),
        threshold: u32::from(t),
        inboxes: super::handover_tests::inboxes(),
    }
}

#[test]
fn malformed_rotations_are_named() {
    let good = rotation(5, 1);
    assert_eq!(check_rotation(&good, 1), Ok(()));
    let cases: Vec<(pb::Rotation, &str)> = vec![
        (
            pb::Rotation {
                epoch: 3,
                ..good.clone()
            },
            "epoch",
        ),
        (
            pb::Rotation {
                epoch: 1,
                ..good.clone()
            },
            "epoch",
        ),
        (rotation(3, 1), "members"),
        (
            pb::Rotation {
                threshold: 4,
                ..good.clone()
            },
            "threshold",
        ),
        (
            {
                let mut r = good.clone();
                r.members[2] = r.members[0].clone();
                r
            },
            "twice",
        ),
        (
            {
                let mut r = good.clone();
                // x = 2^256 - 1 >= p: no such point.
                r.members[1] = [vec![2], vec![0xff; 32]].concat();
                r
            },
            "not a compressed",
        ),
        (
            {
                let mut r = good.clone();
                r.members[1].push(0);
                r
            },
            "not a compressed",
        ),
    ];
    for (r, word) in cases {
        let e = check_rotation(&r, 1).expect_err(word);
        assert!(e.contains(word), "{e:?} should name {word}");
    }
    assert!(
        check_rotation(&good, u64::MAX).is_err(),
        "no epoch overflow"
    );
}

#[test]
fn only_an_approved_rotation_is_prevoted() {
    let mut apps = committee(4);
    let r = rotation(5, 1);
    // Members 1..=3 approved r, member 4 approved nothing.
    for a in apps.iter_mut().take(3) {
        a.approve_rotation(Some(r.clone())).unwrap();
    }
    let block = apps[0].build_block(1, 0).expect("messages and a rotation");
    assert_eq!(
        block.0.rotation.as_ref(),
        Some(&r),
        "the approved rotation rides along"
    );
    for a in apps.iter().take(3) {
        assert_eq!(a.validate(1, &block), Validity::Valid);
    }
    assert!(
        matches!(apps[3].validate(1, &block), Validity::Invalid(e) if e.contains("not approved")),
        "a member whose operator approved nothing prevotes nil"
    );
    // A proposer that swaps in its own committee (one key changed) is refused by all.
    let mut rogue = block.clone();
    rogue.0.rotation.as_mut().unwrap().members[4] = node_keys(1, 99).remove(0);
    for a in &apps {
        assert!(matches!(a.validate(1, &rogue), Validity::Invalid(_)));
    }
    // Approving a malformed rotation is refused, naming the field.
    let mut bad = r.clone();
    bad.threshold = 5;
    assert!(
        apps[3]
            .approve_rotation(Some(bad))
            .unwrap_err()
            .contains("threshold")
    );
    assert!(apps[3].approved_rotation().is_none());
}

#[test]
fn a_rotation_alone_is_an_empty_signed_batch_and_is_decided_once() {
    let mut apps = committee(4);
    let r = rotation(4, 2);
    // Height 1 carries the messages (no approval yet).
    let b1 = apps[0].build_block(1, 0).unwrap();
    assert!(b1.0.rotation.is_none());
    let mut log = Vec::new();
    for i in 0..4 {
        let e = apps[i].on_decided(1, &b1, None, 0);
        route(&mut apps, i as Member + 1, e, None, 0, &mut log);
    }
    assert!(apps[0].build_block(2, 0).is_none(), "nothing to propose");
    for a in apps.iter_mut() {
        a.approve_rotation(Some(r.clone())).unwrap();
        assert!(a.has_work(), "an approved rotation is worth a height");
    }
    // Fresh commitments for the second height.
    exchange_commitments(&mut apps);
    let b2 = apps[1].build_block(2, 0).expect("the rotation alone");
    assert!(b2.0.ranges.is_empty() && b2.0.count == 0);
    assert_eq!(b2.0.root, B256::ZERO.as_slice());
    for a in &apps {
        assert_eq!(a.validate(2, &b2), Validity::Valid);
    }
    let mut nonzero = b2.clone();
    nonzero.0.root[31] = 1;
    assert!(matches!(
        apps[0].validate(2, &nonzero),
        Validity::Invalid(_)
    ));
    let mut log = Vec::new();
    for i in 0..4 {
        let e = apps[i].on_decided(2, &b2, None, 0);
        route(&mut apps, i as Member + 1, e, None, 0, &mut log);
    }
    let attested: Vec<&pb::Attestation> = log
        .iter()
        .filter_map(|(_, e)| match e {
            Effect::Attested(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(
        attested.len(),
        4,
        "the empty batch is signed like any other"
    );
    let gk = *apps[0].group_key().unwrap();
    for a in attested {
        let sig = OnchainSignature::from_bytes(&a.signature)
            .unwrap()
            .to_frost()
            .unwrap();
        sigil_crypto::signing::verify(&gk, sigil_crypto::batch_digest(1, 2, B256::ZERO), &sig)
            .unwrap();
    }
    for a in &apps {
        assert_eq!(a.decided_rotation(), Some((2, &r)));
        assert!(!a.has_work(), "a decided rotation is not proposed again");
    }
    assert!(apps[0].build_block(3, 0).is_none());
    // A second rotation in the same epoch is refused even if approved.
    let mut again = b2.clone();
    again.0.height = 3;
    assert!(
        matches!(apps[2].validate(3, &again), Validity::Invalid(e) if e.contains("already decided"))
    );
}
