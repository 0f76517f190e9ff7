//! Unit tests of the new group key's decision: only a key every incoming member confirmed,
//! after the rotation, once per epoch.

use super::tests::{committee, exchange_commitments, route};
use super::*;
use k256::ecdsa::SigningKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The incoming committee: node keys, the rotation naming them, and a key commit built
/// from a real DKG among them (every member's signed confirmation, in member order).
struct Incoming {
    keys: Vec<SigningKey>,
    rotation: pb::Rotation,
    commit: pb::KeyCommit,
    outputs: BTreeMap<u16, sigil_crypto::dkg::DkgOutput>,
}

fn confirm(epoch: u64, o: &sigil_crypto::dkg::DkgOutput) -> pb::DkgConfirm {
    pb::DkgConfirm {
        epoch,
        group_key: o.group_key.compressed().to_vec(),
        round1_digest: o.transcript.round1_digest.to_vec(),
        verifying_shares_digest: o.transcript.verifying_shares_digest.to_vec(),
        round1_packages: o.transcript.round1.iter().map(|h| h.to_vec()).collect(),
    }
}

fn sealed(key: &SigningKey, member: u16, c: pb::DkgConfirm) -> pb::Envelope {
    crate::envelope::seal(
        key,
        member,
        &pb::Body {
            kind: Some(pb::body::Kind::DkgConfirm(c)),
        },
    )
}

/// Two destination inboxes (chain 2 and chain 3).
pub(super) fn inboxes() -> Vec<pb::Inbox> {
    vec![
        pb::Inbox {
            chain_id: 2,
            address: vec![0xb2; 20],
        },
        pb::Inbox {
            chain_id: 3,
            address: vec![0xb3; 20],
        },
    ]
}

fn incoming(n: u16, seed: u64) -> Incoming {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::random(&mut rng)).collect();
    let (_, t) = sigil_crypto::keys::thresholds(n);
    let rotation = pb::Rotation {
        epoch: 2,
        members: keys
            .iter()
            .map(|k| k.verifying_key().to_encoded_point(true).as_bytes().to_vec())
            .collect(),
        threshold: u32::from(t),
        inboxes: inboxes(),
    };
    let outputs = sigil_crypto::dkg::run_local(t, n, &mut rng).unwrap();
    let commit = pb::KeyCommit {
        epoch: 2,
        group_key: outputs[&1].group_key.compressed().to_vec(),
        confirmations: (1..=n)
            .map(|i| sealed(&keys[usize::from(i) - 1], i, confirm(2, &outputs[&i])))
            .collect(),
    };
    Incoming {
        keys,
        rotation,
        commit,
        outputs,
    }
}

#[test]
fn a_key_commit_is_checked_against_every_incoming_member() {
    let inc = incoming(5, 1);
    let key = check_key_commit(&inc.commit, &inc.rotation).unwrap();
    assert_eq!(key, inc.outputs[&1].group_key);
    let other = incoming(5, 2);
    let mut cases: Vec<(pb::KeyCommit, &str)> = Vec::new();
    // One member's confirmation missing (withheld): not decidable.
    let mut c = inc.commit.clone();
    c.confirmations.pop();
    cases.push((c, "4 confirmations"));
    // Out of order.
    let mut c = inc.commit.clone();
    c.confirmations.swap(0, 1);
    cases.push((c, "member order"));
    // A confirmation signed by a key outside the incoming committee.
    let mut c = inc.commit.clone();
    c.confirmations[2] = sealed(&other.keys[2], 3, confirm(2, &inc.outputs[&3]));
    cases.push((c, "confirmation 3"));
    // A proposer's own key, with confirmations of another DKG it ran with keys it holds:
    // the envelopes do not verify under the rotation's keys.
    cases.push((other.commit.clone(), "confirmation 1"));
    // The real confirmations but another group key named in the commit.
    let mut c = inc.commit.clone();
    c.group_key = other.commit.group_key.clone();
    cases.push((c, "another group key"));
    // One member saw a different round-1 package (an equivocating dealer): named.
    let mut c = inc.commit.clone();
    let mut bad = confirm(2, &inc.outputs[&4]);
    bad.round1_packages[1][0] ^= 1;
    let hashes: Vec<[u8; 32]> = bad
        .round1_packages
        .iter()
        .map(|h| h.as_slice().try_into().unwrap())
        .collect();
    bad.round1_digest = sigil_crypto::dkg::round1_digest(&hashes).to_vec();
    c.confirmations[3] = sealed(&inc.keys[3], 4, bad);
    cases.push((c, "member 2"));
    // Another epoch.
    let mut c = inc.commit.clone();
    c.epoch = 3;
    cases.push((c, "epoch"));
    let mut c = inc.commit.clone();
    c.confirmations[0] = sealed(&inc.keys[0], 1, confirm(3, &inc.outputs[&1]));
    cases.push((c, "epoch 3"));
    for (c, word) in cases {
        let e = check_key_commit(&c, &inc.rotation).expect_err(word);
        assert!(e.contains(word), "{e:?} should name {word}");
    }
}

#[test]
fn the_new_key_is_decided_once_after_the_rotation() {
    let mut apps = committee(4);
    let inc = incoming(5, 3);
    // Before any rotation is decided a key commit is refused, offered or proposed.
    assert!(apps[0].offer_key_commit(inc.commit.clone()).is_err());
    let b1 = apps[0].build_block(1, 0).unwrap();
    let mut early = b1.clone();
    early.0.key_commit = Some(inc.commit.clone());
    for a in &apps {
        assert!(
            matches!(a.validate(1, &early), Validity::Invalid(e) if e.contains("no rotation")),
            "no key before the rotation"
        );
    }
    // Height 1: messages and the rotation every operator approved.
    for a in apps.iter_mut() {
        a.approve_rotation(Some(inc.rotation.clone())).unwrap();
    }
    let b1 = apps[0].build_block(1, 0).unwrap();
    assert!(b1.0.rotation.is_some());
    let mut log = Vec::new();
    for i in 0..4 {
        let e = apps[i].on_decided(1, &b1, None, 0);
        route(&mut apps, i as Member + 1, e, None, 0, &mut log);
    }
    // Height 2: the key commit alone, an empty signed batch.
    for a in apps.iter_mut() {
        a.offer_key_commit(inc.commit.clone()).unwrap();
        assert!(a.has_work(), "a key to decide is worth a height");
    }
    exchange_commitments(&mut apps);
    let b2 = apps[1].build_block(2, 0).expect("the key commit");
    assert_eq!(b2.0.key_commit.as_ref(), Some(&inc.commit));
    assert!(b2.0.ranges.is_empty() && b2.0.root == B256::ZERO.as_slice());
    for a in &apps {
        assert_eq!(a.validate(2, &b2), Validity::Valid);
    }
    // A forged commit (one envelope replaced) is refused by every member.
    let mut forged = b2.clone();
    forged.0.key_commit.as_mut().unwrap().confirmations[4] =
        sealed(&incoming(5, 4).keys[4], 5, confirm(2, &inc.outputs[&5]));
    for a in &apps {
        assert!(matches!(a.validate(2, &forged), Validity::Invalid(_)));
    }
    let mut log = Vec::new();
    for i in 0..4 {
        let e = apps[i].on_decided(2, &b2, None, 0);
        route(&mut apps, i as Member + 1, e, None, 0, &mut log);
    }
    for a in &apps {
        assert_eq!(a.decided_key_commit(), Some((2, &inc.commit)));
        // What follows is the first inbox's key rotation, not the key again.
        assert_eq!(a.handover_to_propose(), Some(&inc.rotation.inboxes[0]));
    }
    let mut again = b2.clone();
    again.0.height = 3;
    assert!(
        matches!(apps[2].validate(3, &again), Validity::Invalid(e) if e.contains("already decided"))
    );
    assert!(apps[0].offer_key_commit(inc.commit.clone()).is_err());
    // After a restart the member restores the record its storage kept with the block, and
    // still refuses a second key commit.
    let record = apps[2].epoch_record();
    assert_eq!((record.rotation_height, record.key_height), (1, 2));
    let mut restarted = committee(4).remove(2);
    restarted.set_height(3);
    assert!(
        matches!(restarted.validate(3, &again), Validity::Invalid(e) if e.contains("no rotation"))
    );
    restarted.restore_epoch_record(record);
    assert_eq!(restarted.decided_key_commit(), Some((2, &inc.commit)));
    assert!(
        matches!(restarted.validate(3, &again), Validity::Invalid(e) if e.contains("already decided"))
    );
}

/// Decides `b` at `height` on every member and routes the signing effects; returns the
/// attestations formed.
fn decide_all(apps: &mut [App], height: Height, b: &Block) -> Vec<pb::Attestation> {
    let mut log = Vec::new();
    for i in 0..apps.len() {
        let e = apps[i].on_decided(height, b, None, 0);
        route(apps, i as Member + 1, e, None, 0, &mut log);
    }
    log.into_iter()
        .filter_map(|(_, e)| match e {
            Effect::Attested(a) => Some(a),
            _ => None,
        })
        .collect()
}

#[test]
fn the_outgoing_committee_signs_one_key_rotation_per_inbox_then_stops() {
    let mut apps = committee(4);
    let inc = incoming(5, 5);
    for a in apps.iter_mut() {
        a.approve_rotation(Some(inc.rotation.clone())).unwrap();
    }
    // Height 1: messages and the rotation.
    let b1 = apps[0].build_block(1, 0).unwrap();
    assert!(b1.0.rotation.is_some() && !b1.0.ranges.is_empty());
    assert!(b1.0.carry.is_empty() && b1.0.handover.is_none());
    decide_all(&mut apps, 1, &b1);
    // A key-rotation block before the key commit is refused.
    exchange_commitments(&mut apps);
    let mut early = b1.clone();
    early.0.height = 2;
    early.0.rotation = None;
    early.0.handover = Some(inboxes()[0].clone());
    assert!(
        matches!(apps[1].validate(2, &early), Validity::Invalid(e) if e.contains("before the key commit"))
    );
    // Height 2: the key commit, carrying the nonces the next committee continues from.
    for a in apps.iter_mut() {
        a.offer_key_commit(inc.commit.clone()).unwrap();
    }
    let b2 = apps[1].build_block(2, 0).unwrap();
    let next = apps[0].next_nonces()[&super::tests::CHAIN];
    assert_eq!(
        b2.0.carry,
        vec![pb::ChainNonce {
            chain_id: super::tests::CHAIN,
            next_nonce: next
        }]
    );
    for a in &apps {
        assert_eq!(a.validate(2, &b2), Validity::Valid);
    }
    let mut wrong = b2.clone();
    wrong.0.carry[0].next_nonce += 1;
    let mut missing = b2.clone();
    missing.0.carry.clear();
    for bad in [&wrong, &missing] {
        assert!(
            matches!(apps[2].validate(2, bad), Validity::Invalid(e) if e.contains("carried")),
            "a key commit must carry our nonces"
        );
    }
    decide_all(&mut apps, 2, &b2);
    // Heights 3 and 4: one key rotation per inbox, in order, nothing else.
    let old = *apps[0].group_key().unwrap();
    let new = inc.outputs[&1].group_key;
    for (i, inbox) in inboxes().iter().enumerate() {
        let h = 3 + i as u64;
        assert!(apps.iter().all(|a| a.has_work() && a.epoch_end().is_none()));
        exchange_commitments(&mut apps);
        let b = apps[i].build_block(h, 0).unwrap();
        assert_eq!(b.0.handover.as_ref(), Some(inbox));
        assert!(b.0.ranges.is_empty() && b.0.key_commit.is_none());
        for a in &apps {
            assert_eq!(a.validate(h, &b), Validity::Valid);
        }
        // Another inbox, messages, or the next inbox out of order: refused.
        let mut other = b.clone();
        other.0.handover = Some(inboxes()[1 - i].clone());
        let mut loaded = b.clone();
        loaded.0.ranges = b1.0.ranges.clone();
        let mut plain = b.clone();
        plain.0.handover = None;
        for bad in [&other, &loaded, &plain] {
            assert!(matches!(apps[3].validate(h, bad), Validity::Invalid(_)));
        }
        let attested = decide_all(&mut apps, h, &b);
        assert_eq!(attested.len(), 4);
        let address = alloy_primitives::Address::from_slice(&inbox.address);
        let digest = sigil_crypto::rotation_digest(
            inbox.chain_id,
            address,
            1,
            old.x(),
            old.parity(),
            2,
            new.x(),
            new.parity(),
        );
        for a in attested {
            let handover = a.handover.as_ref().expect("a key-rotation attestation");
            assert_eq!(handover.inbox.as_ref(), Some(inbox));
            assert_eq!(
                (handover.new_epoch, &handover.new_group_key),
                (2, &inc.commit.group_key)
            );
            let sig = sigil_crypto::OnchainSignature::from_bytes(&a.signature)
                .unwrap()
                .to_frost()
                .unwrap();
            sigil_crypto::signing::verify(&old, digest, &sig)
                .expect("signed by the old key over the inbox's rotation digest");
            assert!(
                sigil_crypto::signing::verify(
                    &old,
                    sigil_crypto::batch_digest(1, h, B256::ZERO),
                    &sig
                )
                .is_err()
            );
        }
    }
    // The epoch is over at height 4: nothing more is built, proposed or valid here.
    for a in &apps {
        assert_eq!(a.epoch_end(), Some(4));
        assert!(!a.has_work());
        assert_eq!(a.epoch_record().handover_heights, vec![3, 4]);
    }
    exchange_commitments(&mut apps);
    assert!(apps[0].build_block(5, 0).is_none());
    let mut after = b1.clone();
    after.0.height = 5;
    after.0.rotation = None;
    assert!(matches!(apps[0].validate(5, &after), Validity::Invalid(e) if e.contains("complete")));
    // A restarted member restores the hand-over from its record.
    let record = apps[1].epoch_record();
    let mut restarted = committee(4).remove(1);
    restarted.restore_epoch_record(record);
    assert_eq!(restarted.epoch_end(), Some(4));
}

#[test]
fn a_rotation_without_its_key_expires_and_the_next_approval_is_decided() {
    // `committee` uses rotation_expiry_heights = 20.
    let mut apps = committee(4);
    let absent = incoming(5, 6);
    let second = incoming(5, 7);
    for a in apps.iter_mut() {
        a.approve_rotation(Some(absent.rotation.clone())).unwrap();
    }
    let b1 = apps[0].build_block(1, 0).unwrap();
    decide_all(&mut apps, 1, &b1);
    // Up to height 21 the rotation is live: no second rotation, its key commit is accepted.
    for a in apps.iter_mut() {
        a.approve_rotation(Some(second.rotation.clone())).unwrap();
    }
    exchange_commitments(&mut apps);
    assert!(!apps[0].rotation_expired(21));
    let mut rot21 = apps[0].build_block(21, 0).unwrap_or_else(|| b1.clone());
    rot21.0.height = 21;
    rot21.0.ranges.clear();
    rot21.0.count = 0;
    rot21.0.root = B256::ZERO.to_vec();
    rot21.0.rotation = Some(second.rotation.clone());
    assert!(
        matches!(apps[1].validate(21, &rot21), Validity::Invalid(e) if e.contains("already decided"))
    );
    // From height 22 on it has expired: the next approval is built, valid and decided...
    assert!(apps[0].rotation_expired(22));
    let b22 = apps[0].build_block(22, 0).expect("the next rotation");
    assert_eq!(b22.0.rotation.as_ref(), Some(&second.rotation));
    for a in &apps {
        assert_eq!(a.validate(22, &b22), Validity::Valid);
    }
    // ...and the expired rotation's key commit is refused in a block at that height.
    let mut stale = b22.clone();
    stale.0.rotation = None;
    stale.0.key_commit = Some(absent.commit.clone());
    stale.0.carry = apps[0].carry_after(&[]);
    assert!(matches!(apps[1].validate(22, &stale), Validity::Invalid(e) if e.contains("expired")));
    decide_all(&mut apps, 22, &b22);
    for a in apps.iter_mut() {
        assert_eq!(a.decided_rotation(), Some((22, &second.rotation)));
        assert!(a.offer_key_commit(absent.commit.clone()).is_err());
        a.set_height(23);
        a.offer_key_commit(second.commit.clone()).unwrap();
    }
    exchange_commitments(&mut apps);
    let b23 = apps[2].build_block(23, 0).unwrap();
    assert_eq!(b23.0.key_commit.as_ref(), Some(&second.commit));
    for a in &apps {
        assert_eq!(a.validate(23, &b23), Validity::Valid);
    }
    decide_all(&mut apps, 23, &b23);
    // A decided key pins the rotation: it never expires.
    assert!(!apps[0].rotation_expired(10_000));
    assert_eq!(
        apps[0].handover_to_propose(),
        Some(&second.rotation.inboxes[0])
    );
}
