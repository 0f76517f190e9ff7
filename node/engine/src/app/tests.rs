//! Unit tests of the application core.

use super::*;
use alloy_primitives::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::{MemoryLedger, Message, OnchainSignature};

pub(super) const CHAIN: u64 = 7;

fn gateway() -> Address {
    Address::repeat_byte(0x11)
}

fn obs(nonce: u64) -> Observation {
    Observation {
        message: Message {
            source_chain_id: CHAIN,
            source_gateway: gateway(),
            nonce,
            sender: Address::repeat_byte(0x22),
            dest_chain_id: 9,
            dest_inbox: Address::repeat_byte(0x44),
            recipient: Address::repeat_byte(0x33),
            gas_limit: 200_000,
            payload: Bytes::from(format!("m{nonce}").into_bytes()),
        },
        block_number: 10 + nonce,
        block_hash: B256::repeat_byte(nonce as u8),
        observed_at_ms: 0,
        block_time: 0,
    }
}

pub(super) fn committee(n: u16) -> Vec<App> {
    let (_, t) = sigil_crypto::keys::thresholds(n);
    let dealt =
        sigil_crypto::keys::trusted_dealer(t, n, &mut ChaCha20Rng::seed_from_u64(7)).unwrap();
    let mut apps: Vec<App> = (1..=n)
        .map(|m| {
            let p = AppParams {
                me: Some(m),
                n,
                t,
                epoch: 1,
                chains: vec![(CHAIN, gateway())],
                max_messages: 10_000,
                max_bytes: 1 << 20,
                nonce_pool: 4,
                share_timeout_ms: 1000,
                rotation_expiry_heights: 20,
            };
            let signer = Signer {
                key: dealt.key_packages[&m].clone(),
                public: dealt.public_key_package.clone(),
                pool: NoncePool::new(),
                ledger: Box::new(MemoryLedger::new()),
            };
            App::new(
                p,
                Some(signer),
                Some(dealt.group_key),
                BTreeMap::new(),
                Box::new(ChaCha20Rng::seed_from_u64(u64::from(m))),
            )
        })
        .collect();
    // Everyone observes nonces 0..10 and hears every cursor and commitment list.
    let cursor = pb::Cursor {
        chain_id: CHAIN,
        block_number: 30,
        block_hash: vec![1; 32],
        next_nonce: 10,
    };
    for a in apps.iter_mut() {
        a.observe((0..10).map(obs), Some(cursor.clone()));
    }
    for a in apps.iter_mut() {
        for m in 1..=n {
            a.on_cursors(
                m,
                &pb::Cursors {
                    cursors: vec![cursor.clone()],
                },
            );
        }
    }
    exchange_commitments(&mut apps);
    apps
}

/// Every member refreshes its nonce pool and every other member hears its list (what the
/// driver's gossip period does).
pub(super) fn exchange_commitments(apps: &mut [App]) {
    let lists: Vec<_> = apps
        .iter_mut()
        .map(|a| a.refresh_commitments().unwrap().unwrap())
        .collect();
    for a in apps.iter_mut() {
        for (i, l) in lists.iter().enumerate() {
            let m = i as Member + 1;
            if Some(m) != a.params().me {
                a.on_commitments(m, l);
            }
        }
    }
}

/// Delivers broadcast effects to every other member; returns attestations and culprits.
pub(super) fn route(
    apps: &mut [App],
    from: Member,
    effects: Vec<Effect>,
    corrupt: Option<Member>,
    now: u64,
    out: &mut Vec<(Member, Effect)>,
) {
    let mut queue: Vec<(Member, Effect)> = effects.into_iter().map(|e| (from, e)).collect();
    while let Some((src, e)) = queue.pop() {
        match &e {
            Effect::Broadcast(pb::body::Kind::Share(s)) => {
                let mut s = s.clone();
                if Some(src) == corrupt {
                    s.share[31] ^= 1;
                }
                for a in apps.iter_mut() {
                    let me = a.params().me.unwrap();
                    if me != src {
                        let more = a.on_share(src, &s, now);
                        queue.extend(more.into_iter().map(|x| (me, x)));
                    }
                }
            }
            Effect::Broadcast(pb::body::Kind::SignRequest(r)) => {
                for a in apps.iter_mut() {
                    let me = a.params().me.unwrap();
                    if me != src {
                        let more = a.on_sign_request(src, r, now);
                        queue.extend(more.into_iter().map(|x| (me, x)));
                    }
                }
            }
            _ => {}
        }
        out.push((src, e));
    }
}

#[test]
fn block_is_valid_everywhere_and_tampering_is_caught() {
    let apps = committee(4);
    let block = apps[0]
        .build_block(1, 0)
        .expect("a quorum observed 10 messages");
    assert_eq!(block.0.count, 10);
    assert_eq!(block.0.ranges.len(), 1);
    assert!(
        block.0.encoded_len() < 600,
        "proposal stays small: {} bytes",
        block.0.encoded_len()
    );
    for a in &apps {
        assert_eq!(a.validate(1, &block), Validity::Valid);
    }
    let mut bad_root = block.clone();
    bad_root.0.root[0] ^= 1;
    assert!(matches!(
        apps[1].validate(1, &bad_root),
        Validity::Invalid(_)
    ));
    let mut unseen = block.clone();
    unseen.0.ranges[0].to_nonce = 12;
    unseen.0.count = 12;
    assert_eq!(
        apps[1].validate(1, &unseen),
        Validity::Pending,
        "unobserved messages: wait"
    );
    let mut wrong_height = block.clone();
    wrong_height.0.height = 2;
    assert!(matches!(
        apps[1].validate(1, &wrong_height),
        Validity::Invalid(_)
    ));
}

/// The pool hashes each observation once (leaf and id cached): the block's root is still
/// the tree over the messages' own leaves, a decision forgets exactly the decided range of
/// its chain, and an observation below the decided floor is not taken back in.
#[test]
fn a_decision_forgets_exactly_its_range_from_the_pool() {
    let mut apps = committee(4);
    let other = |nonce: u64| {
        let mut o = obs(nonce);
        o.message.source_chain_id = CHAIN + 1;
        o
    };
    apps[0].observe((10..15).map(obs).chain((0..3).map(other)), None);
    assert_eq!(apps[0].pending_observations(), 10 + 5 + 3);
    let block = apps[0].build_block(1, 0).unwrap();
    let leaves: Vec<B256> = (0..10).map(|n| obs(n).message.leaf()).collect();
    assert_eq!(
        block.0.root,
        BatchTree::new(&leaves).unwrap().root().to_vec(),
        "cached leaves give the root of the messages' own leaves"
    );
    let _ = apps[0].on_decided(1, &block, None, 0);
    assert_eq!(apps[0].pending_observations(), 5 + 3);
    apps[0].observe([obs(4)], None);
    assert_eq!(apps[0].pending_observations(), 5 + 3, "below the floor");
}

#[test]
fn proposals_stay_small_at_ten_thousand_messages() {
    let mut apps = committee(4);
    let cursor = pb::Cursor {
        chain_id: CHAIN,
        block_number: 99,
        block_hash: vec![1; 32],
        next_nonce: 10_000,
    };
    for a in apps.iter_mut() {
        a.observe((10..10_000).map(obs), Some(cursor.clone()));
        for m in 1..=4 {
            a.on_cursors(
                m,
                &pb::Cursors {
                    cursors: vec![cursor.clone()],
                },
            );
        }
    }
    let block = apps[0].build_block(1, 0).unwrap();
    assert_eq!(block.0.count, 10_000);
    assert!(
        block.0.encoded_len() < 600,
        "{} bytes",
        block.0.encoded_len()
    );
    assert_eq!(apps[2].validate(1, &block), Validity::Valid);
}

#[test]
fn invalid_shares_are_identified_and_a_retry_still_signs() {
    let mut apps = committee(4);
    let block = apps[0].build_block(1, 0).unwrap();
    let signers: Vec<Member> = block.0.signers.iter().map(|c| c.member as Member).collect();
    // A Byzantine member of the signing set corrupts its share.
    let byz = *signers.iter().find(|m| **m != 1).unwrap();
    let mut log = Vec::new();
    for i in 0..4 {
        let e = apps[i].on_decided(1, &block, None, 0);
        route(&mut apps, i as Member + 1, e, Some(byz), 0, &mut log);
    }
    assert!(
        log.iter()
            .any(|(_, e)| matches!(e, Effect::Culprit { member, .. } if *member == byz)),
        "culprit named"
    );
    assert!(
        !log.iter()
            .any(|(src, e)| *src != byz && matches!(e, Effect::Attested(_))),
        "honest members get no signature from a bad share"
    );
    // Past the share timeout every member moves to attempt 1; its coordinator excludes the culprit.
    for i in 0..4 {
        let e = apps[i].tick(1_500);
        route(&mut apps, i as Member + 1, e, Some(byz), 1_500, &mut log);
    }
    let atts: Vec<&pb::Attestation> = log
        .iter()
        .filter_map(|(src, e)| match e {
            Effect::Attested(a) if *src != byz => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(atts.len(), 3, "every honest member attests after the retry");
    let gk = *apps[0].group_key().unwrap();
    for a in atts {
        assert_eq!(a.root, block.0.root, "covers the decided block");
        assert_eq!(a.message_ids.len(), 10);
        let sig = OnchainSignature::from_bytes(&a.signature)
            .unwrap()
            .to_frost()
            .unwrap();
        let digest = sigil_crypto::batch_digest(1, 1, B256::from_slice(&a.root));
        sigil_crypto::signing::verify(&gk, digest, &sig).unwrap();
    }
    assert!(apps.iter().all(|a| a.stats.culprits <= 2));
    // Nonces used in the decided block are never offered again.
    let next = apps[0].build_block(2, 0);
    assert!(next.is_none(), "nothing new observed");
}

/// Shares are verified together when the last one arrives; a bad share held in an attempt
/// that times out without all its shares is still caught then, so its sender is named a
/// culprit (avoided by coordinators), never counted as a member that answered.
#[test]
fn a_bad_share_in_an_incomplete_attempt_is_blamed_at_the_timeout() {
    let mut apps = committee(4);
    let block = apps[0].build_block(1, 0).unwrap();
    let signers: Vec<Member> = block.0.signers.iter().map(|c| c.member as Member).collect();
    let byz = signers[0];
    let silent = signers[1];
    let witness = signers[2];
    let mut log = Vec::new();
    for i in 0..4 {
        let me = i as Member + 1;
        let e = apps[i].on_decided(1, &block, None, 0);
        if me != silent {
            route(&mut apps, me, e, Some(byz), 0, &mut log);
        }
    }
    assert!(
        !log.iter()
            .any(|(src, e)| *src != silent && matches!(e, Effect::Culprit { .. })),
        "with a share missing nothing is aggregated, so nothing is checked yet"
    );
    let w = (witness - 1) as usize;
    let before = apps[w].stats.culprits;
    let effects = apps[w].tick(1_500);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Culprit { member, .. } if *member == byz)),
        "the bad share's sender is named at the timeout: {effects:?}"
    );
    assert_eq!(apps[w].stats.culprits, before + 1);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Culprit { member, .. } if *member != byz)),
        "no honest member is blamed"
    );
    let retry = effects.iter().find_map(|e| match e {
        Effect::Retry { excluded, .. } => Some(excluded.clone()),
        _ => None,
    });
    let excluded = retry.expect("the attempt moved on");
    assert!(excluded.contains(&byz) && excluded.contains(&silent));
}

/// `spread_pick` gives sets of one attempt for heights fewer than `len` apart different
/// commitments, whatever the length of a member's unused list (with a factor on the height
/// sharing a divisor with `len`, heights 2 apart collided at length 10).
#[test]
fn spread_pick_separates_nearby_heights_at_any_list_length() {
    let held = Held {
        sc: {
            let apps = committee(4);
            apps[0].commitments[&2].values().next().unwrap().sc
        },
        bytes: vec![],
    };
    for len in 1..=20u64 {
        let ids: Vec<u64> = (100..100 + len).collect();
        let fresh: Vec<(&u64, &Held)> = ids.iter().map(|id| (id, &held)).collect();
        for attempt in 0..3u32 {
            let picked: BTreeSet<u64> = (7..7 + len)
                .map(|h| *signing::spread_pick(&fresh, h, attempt).unwrap().0)
                .collect();
            assert_eq!(picked.len() as u64, len, "len {len} attempt {attempt}");
        }
    }
    assert!(signing::spread_pick(&[], 1, 0).is_none());
}

/// Signing sets picked at the same moment for different heights (retries of heights
/// decided together, or a block built meanwhile) name different commitments of each
/// member, from one view of the lists: a member can sign in both. Always taking the lowest
/// unused id named the same nonce twice, and the member had to refuse one set.
#[test]
fn concurrent_signing_sets_name_different_commitments() {
    let apps = committee(4);
    let none = (BTreeSet::new(), BTreeMap::new());
    let sets: Vec<Vec<pb::Commitment>> = [(7, 1), (8, 1), (9, 1), (7, 2)]
        .into_iter()
        .map(|(h, a)| apps[1].pick_signers(h, a, &none.0, &none.1).unwrap())
        .collect();
    for m in 1..=4u32 {
        let ids: Vec<u64> = sets
            .iter()
            .filter_map(|s| s.iter().find(|c| c.member == m).map(|c| c.nonce_id))
            .collect();
        let distinct: BTreeSet<u64> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), ids.len(), "member {m} named twice: {ids:?}");
    }
}

#[test]
fn later_signing_attempts_wait_longer() {
    // share_timeout_ms = 1000 in these tests: attempt 0 waits 1 s, attempt 1 1.5 s, … 4 s.
    let mut apps = committee(4);
    assert_eq!(
        (0..9).map(|a| apps[0].share_timeout(a)).collect::<Vec<_>>(),
        [1000, 1500, 2000, 2500, 3000, 3500, 4000, 4000, 4000]
    );
    let block = apps[0].build_block(1, 0).unwrap();
    // Nobody else answers: member 1 alone moves through its attempts on its own clock.
    let _ = apps[0].on_decided(1, &block, None, 0);
    let retries = |e: &[Effect]| {
        e.iter()
            .filter(|e| matches!(e, Effect::Retry { .. }))
            .count()
    };
    assert_eq!(retries(&apps[0].tick(999)), 0);
    assert_eq!(retries(&apps[0].tick(1_000)), 1, "attempt 0 ends at 1 s");
    assert_eq!(retries(&apps[0].tick(2_499)), 0, "attempt 1 waits 1.5 s");
    assert_eq!(retries(&apps[0].tick(2_500)), 1);
    assert_eq!(apps[0].attempt(1), Some(2));
}

#[test]
fn a_signer_never_signs_twice_with_one_nonce() {
    let mut apps = committee(4);
    let block = apps[0].build_block(1, 0).unwrap();
    let e1 = apps[0].on_decided(1, &block, None, 0);
    let shares1 = e1
        .iter()
        .filter(|e| matches!(e, Effect::Broadcast(pb::body::Kind::Share(_))))
        .count();
    assert_eq!(shares1, 1);
    // The same decision again (e.g. a replay) must not produce a second share.
    let e2 = apps[0].on_decided(1, &block, None, 0);
    assert!(
        !e2.iter()
            .any(|e| matches!(e, Effect::Broadcast(pb::body::Kind::Share(_))))
    );
    assert!(e2.is_empty(), "a replayed decision is a no-op: {e2:?}");
}

/// Finding 1: a block with no ranges, or ranges whose messages do not rebuild its root, is
/// never valid, whatever else it carries.
#[test]
fn forged_blocks_are_invalid() {
    let apps = committee(4);
    let good = apps[0].build_block(1, 0).unwrap();
    let mut empty = good.clone();
    empty.0.ranges.clear();
    empty.0.count = 0;
    empty.0.root = vec![0xab; 32];
    assert!(matches!(apps[1].validate(1, &empty), Validity::Invalid(_)));
    let mut made_up = good.clone();
    made_up.0.root = vec![0xcd; 32];
    assert!(matches!(
        apps[1].validate(1, &made_up),
        Validity::Invalid(_)
    ));
    let mut short_root = good.clone();
    short_root.0.root = vec![1; 5];
    assert!(matches!(
        apps[1].validate(1, &short_root),
        Validity::Invalid(_)
    ));
    let mut miscount = good;
    miscount.0.count += 1;
    assert!(matches!(
        apps[1].validate(1, &miscount),
        Validity::Invalid(_)
    ));
}

fn fake_request(apps: &[App], height: u64, attempt: u32) -> pb::SignRequest {
    // Real, unused commitments of members 2..=4 (what a Byzantine coordinator could name).
    let signers = apps[1..]
        .iter()
        .map(|a| {
            let me = a.params().me.unwrap();
            let c = a.commitments.get(&me).unwrap().iter().next().unwrap();
            pb::Commitment {
                member: u32::from(me),
                nonce_id: *c.0,
                commitments: c.1.bytes.clone(),
            }
        })
        .collect();
    pb::SignRequest {
        height,
        attempt,
        signers,
    }
}

/// Finding 2: a coordinator of a far attempt cannot bump the session, clear shares or make
/// anyone sign; `u32::MAX` cannot overflow the timer arithmetic; the next attempt waits for
/// the local share timeout and is applied once.
#[test]
fn signing_attempts_cannot_be_bumped() {
    let mut apps = committee(4);
    let block = apps[0].build_block(1, 0).unwrap();
    for a in apps.iter_mut() {
        let _ = a.on_decided(1, &block, None, 0);
    }
    let victim = 0usize;
    let before = apps[victim].attempt(1);
    assert_eq!(before, Some(0));
    for attempt in [5u32, 1_000, u32::MAX - 1, u32::MAX] {
        let coord = apps[victim].coordinator(1, attempt);
        let req = fake_request(&apps, 1, attempt);
        let out = apps[victim].on_sign_request(coord, &req, 10);
        assert!(
            !out.iter()
                .any(|e| matches!(e, Effect::Broadcast(pb::body::Kind::Share(_)))),
            "attempt {attempt}: no share"
        );
        assert_eq!(
            apps[victim].attempt(1),
            Some(0),
            "attempt {attempt} refused"
        );
    }
    // Timers keep working after a u32::MAX request (no overflow, no panic).
    let _ = apps[victim].tick(500);
    assert_eq!(
        apps[victim].attempt(1),
        Some(0),
        "no retry before the share timeout"
    );
    // The next attempt's request from its coordinator, early: held, not applied.
    let coord1 = apps[victim].coordinator(1, 1);
    let req1 = fake_request(&apps, 1, 1);
    let out = apps[victim].on_sign_request(coord1, &req1, 600);
    assert!(out.is_empty());
    assert_eq!(apps[victim].attempt(1), Some(0));
    // A second early request for the same attempt is refused (one held per session).
    let refused = apps[victim].stats.requests_refused;
    let _ = apps[victim].on_sign_request(coord1, &req1, 700);
    assert_eq!(apps[victim].stats.requests_refused, refused + 1);
    // After the local timeout the session moves by exactly one attempt.
    let _ = apps[victim].tick(1_500);
    assert_eq!(apps[victim].attempt(1), Some(1));
    let _ = apps[victim].tick(1_600);
    assert_eq!(apps[victim].attempt(1), Some(1), "one attempt per timeout");
}

/// Finding 5: forged requests do not grow the used-nonce set without bound.
#[test]
fn used_nonces_stay_bounded() {
    let mut apps = committee(4);
    for id in 0..5_000u64 {
        apps[0].mark_used(2, id);
    }
    assert!(apps[0].used.len() <= super::USED_PER_MEMBER);
}

/// Liveness after a late decision (catch-up, or a restart between decision and
/// attestation): members advance one attempt per local timeout from when each decided, so
/// the late member trails. Members 1 and 2 decided at 0 and reached attempt 5 alone (member
/// 4 is silent, t = 3); member 3 decides at 5 s. When member 3 coordinates its attempt 1,
/// members 1 and 2 — long past attempt 1 — answer it once each, and member 3 aggregates.
#[test]
fn members_ahead_answer_a_trailing_coordinator_once() {
    let mut apps = committee(4);
    let block = apps[0].build_block(1, 0).unwrap();
    let mut log = Vec::new();
    for i in 0..2 {
        let e = apps[i].on_decided(1, &block, None, 0);
        route(&mut apps[..2], i as Member + 1, e, None, 0, &mut log);
    }
    // Members 1 and 2 alone move on to attempt 5 (their timeouts grow per attempt).
    let mut ahead_at = 0;
    for now in (500..=30_000).step_by(500) {
        for i in 0..2 {
            let e = apps[i].tick(now);
            route(&mut apps[..2], i as Member + 1, e, None, now, &mut log);
        }
        if apps[0].attempt(1) == Some(5) {
            ahead_at = now;
            break;
        }
    }
    assert_eq!(apps[0].attempt(1), Some(5));
    assert!(
        apps[0].unattested().contains(&1),
        "t = 3 needs a third member"
    );
    let e = apps[2].on_decided(1, &block, None, ahead_at);
    route(&mut apps[..3], 3, e, None, ahead_at, &mut log);
    assert_eq!(apps[2].coordinator(1, 1), 3);
    // Member 3 coordinates attempts 1, 5 and 9 of its own sequence.
    let three_turns: u64 = (0..9).map(|a| apps[2].share_timeout(a)).sum();
    let mut attested_at = None;
    for now in (ahead_at + 1_000..=ahead_at + three_turns + 12_000).step_by(1_000) {
        // The driver re-publishes each member's unused commitments every gossip period.
        let lists: Vec<_> = (0..3)
            .map(|i| apps[i].refresh_commitments().unwrap().unwrap())
            .collect();
        for (i, l) in lists.iter().enumerate() {
            for (j, a) in apps[..3].iter_mut().enumerate() {
                if i != j {
                    a.on_commitments(i as Member + 1, l);
                }
            }
        }
        for i in 0..3 {
            let e = apps[i].tick(now);
            route(&mut apps[..3], i as Member + 1, e, None, now, &mut log);
        }
        if log
            .iter()
            .any(|(src, e)| *src == 3 && matches!(e, Effect::Attested(_)))
        {
            attested_at = Some(now);
            break;
        }
    }
    let at = attested_at.expect("the trailing coordinator aggregates shares from members ahead");
    // Each attempt's end is seen at the next 1 s tick: up to 1 s late per attempt.
    assert!(
        at <= ahead_at + three_turns + 9 * 1_000,
        "within three of its coordination turns: {at}"
    );
    let a = log
        .iter()
        .find_map(|(src, e)| match e {
            Effect::Attested(a) if *src == 3 => Some(a.clone()),
            _ => None,
        })
        .unwrap();
    let sig = OnchainSignature::from_bytes(&a.signature)
        .unwrap()
        .to_frost()
        .unwrap();
    let digest = sigil_crypto::batch_digest(1, 1, B256::from_slice(&a.root));
    sigil_crypto::signing::verify(apps[0].group_key().unwrap(), digest, &sig).unwrap();

    // A passed attempt is answered once: the same request again, or another one for that
    // attempt from its coordinator, draws no second share.
    let mut apps = committee(4);
    for a in apps.iter_mut() {
        let _ = a.on_decided(1, &block, None, 0);
    }
    // Attempt 0 ends at 1 s, attempt 1 (1.5 s) at 2.5 s.
    for now in [1_000, 2_500] {
        let _ = apps[0].tick(now);
    }
    let passed = 1u32;
    let coord = apps[0].coordinator(1, passed);
    let shares = |out: &[Effect]| {
        out.iter()
            .filter(|e| matches!(e, Effect::Broadcast(pb::body::Kind::Share(_))))
            .count()
    };
    let mut req = fake_request(&apps, 1, passed);
    req.signers[0] = {
        let c = apps[0].commitments.get(&1).unwrap().iter().next().unwrap();
        pb::Commitment {
            member: 1,
            nonce_id: *c.0,
            commitments: c.1.bytes.clone(),
        }
    };
    req.signers.sort_by_key(|c| c.member);
    let wrong = apps[0].coordinator(1, passed + 1);
    assert_eq!(shares(&apps[0].on_sign_request(wrong, &req, 2_600)), 0);
    assert_eq!(
        shares(&apps[0].on_sign_request(coord, &req, 2_600)),
        1,
        "answered"
    );
    assert_eq!(
        apps[0].attempt(1),
        Some(2),
        "the attempt in progress is kept"
    );
    let refused = apps[0].stats.requests_refused;
    assert_eq!(shares(&apps[0].on_sign_request(coord, &req, 2_700)), 0);
    assert_eq!(
        apps[0].stats.requests_refused,
        refused + 1,
        "replay refused"
    );
}

/// Consume, record, then release: a signer's own share is recorded ([`Effect::Shares`],
/// written by the driver before anything after it leaves) ahead of its broadcast, under the
/// nonce id and commitment the decided block named; and a member whose group signature
/// verifies records the other signers' shares as seen, matching what they sent.
#[test]
fn every_share_is_recorded_before_it_leaves() {
    let mut apps = committee(4);
    let block = apps[0].build_block(1, 0).unwrap();
    let mut log = Vec::new();
    for i in 0..4 {
        let me = i as Member + 1;
        let e = apps[i].on_decided(1, &block, None, 0);
        let share_at = e
            .iter()
            .position(|e| matches!(e, Effect::Broadcast(pb::body::Kind::Share(_))));
        let record_at = e
            .iter()
            .position(|e| matches!(e, Effect::Shares(r) if r.iter().any(|r| r.own)));
        let named = block.0.signers.iter().find(|c| c.member == u32::from(me));
        match (share_at, named) {
            (Some(s), Some(c)) => {
                let r = record_at.expect("own share recorded");
                assert!(r < s, "recorded before the broadcast: {e:?}");
                let Effect::Shares(recs) = &e[r] else {
                    unreachable!()
                };
                let Effect::Broadcast(pb::body::Kind::Share(sent)) = &e[s] else {
                    unreachable!()
                };
                assert_eq!(recs.len(), 1);
                let rec = &recs[0];
                assert!(rec.own);
                assert_eq!((rec.member, rec.nonce_id), (me, c.nonce_id));
                assert_eq!(rec.share.as_slice(), sent.share.as_slice());
                assert_eq!(
                    rec.commitment,
                    B256::from_slice(&sha2::Sha256::digest(&c.commitments)),
                    "the commitment as published"
                );
                assert_eq!(
                    rec.digest,
                    sigil_crypto::batch_digest(1, 1, B256::from_slice(&block.0.root))
                );
            }
            (None, None) => assert!(record_at.is_none(), "no share, no own record"),
            other => panic!("member {me}: share/signer mismatch {other:?}"),
        }
        route(&mut apps, me, e, None, 0, &mut log);
    }
    let sent: BTreeMap<Member, Vec<u8>> = log
        .iter()
        .filter_map(|(src, e)| match e {
            Effect::Broadcast(pb::body::Kind::Share(s)) => Some((*src, s.share.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), block.0.signers.len());
    let mut seen = 0;
    for (src, e) in &log {
        if let Effect::Shares(recs) = e {
            for r in recs.iter().filter(|r| !r.own) {
                assert_ne!(r.member, *src, "own shares are not recorded as seen");
                assert_eq!(Some(&r.share.to_vec()), sent.get(&r.member));
                seen += 1;
            }
        }
    }
    assert!(
        seen >= sent.len() - 1,
        "the aggregator recorded the others' shares"
    );
}

/// The operator's emergency stop for one source chain: a member whose operator paused it
/// proposes none of its messages, prevotes nil on a block carrying them, and releases no
/// share for such a block even once the others decided it (it still adopts their group
/// signature); resuming undoes all three.
#[test]
fn a_paused_chain_is_not_proposed_prevoted_or_signed() {
    let mut apps = committee(4);
    let block = apps[0].build_block(1, 0).expect("10 messages of CHAIN");
    // The paused member is one of the block's signers (not its proposer, member 1).
    let m = block
        .0
        .signers
        .iter()
        .map(|c| c.member as usize)
        .find(|m| *m != 1)
        .expect("t = 3 signers");
    let p = m - 1;
    apps[p].set_paused(CHAIN, true);
    assert_eq!(
        apps[p].paused().iter().copied().collect::<Vec<_>>(),
        vec![CHAIN]
    );
    assert!(
        apps[p].build_block(1, 0).is_none(),
        "nothing else to propose"
    );
    assert!(
        matches!(apps[p].validate(1, &block), Validity::Invalid(r) if r.contains("paused")),
        "a paused member prevotes nil"
    );
    assert_eq!(
        apps[0].validate(1, &block),
        Validity::Valid,
        "others are not"
    );
    // Resuming undoes it.
    apps[p].set_paused(CHAIN, false);
    assert!(apps[p].paused().is_empty());
    assert_eq!(apps[p].validate(1, &block), Validity::Valid);
    assert!(apps[p].build_block(1, 0).is_some(), "proposes it again");
    // Paused again when the others decide it: no share.
    apps[p].set_paused(CHAIN, true);
    let e = apps[p].on_decided(1, &block, None, 0);
    assert!(
        !e.iter()
            .any(|e| matches!(e, Effect::Broadcast(pb::body::Kind::Share(_)))),
        "no share for a paused chain: {e:?}"
    );
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::SignRefused { reason, .. } if reason.contains("paused"))),
        "a named signer says why it does not sign: {e:?}"
    );
}

/// A member whose operator paused a chain does not name itself when it coordinates a
/// signing retry of a height carrying that chain: it would refuse its own request, and the
/// attempt would be lost to the share timeout.
#[test]
fn a_paused_coordinator_leaves_itself_out_of_its_retry() {
    let mut apps = committee(4);
    let block = apps[0].build_block(1, 0).expect("10 messages of CHAIN");
    for (p, app) in apps.iter_mut().enumerate() {
        let m = p as Member + 1;
        app.set_paused(CHAIN, true);
        let _ = app.on_decided(1, &block, None, 0);
        // Advance attempts on this member alone (nobody answers) until it coordinates one.
        let mut now = 0;
        let mut request = None;
        for attempt in 1..=8 {
            now += app.share_timeout(attempt - 1) + 1;
            let e = app.tick(now);
            if app.coordinator(1, attempt) == m {
                request = e.into_iter().find_map(|e| match e {
                    Effect::Broadcast(pb::body::Kind::SignRequest(r)) => Some(r),
                    _ => None,
                });
                break;
            }
        }
        let req = request.unwrap_or_else(|| panic!("member {m} coordinated no retry"));
        assert_eq!(req.signers.len(), 3);
        assert!(
            req.signers.iter().all(|c| c.member != u32::from(m)),
            "member {m} named itself although it will not sign: {:?}",
            req.signers.iter().map(|c| c.member).collect::<Vec<_>>()
        );
    }
}

/// With f + 1 members announcing a chain paused, an unpaused proposer leaves it out (its
/// blocks could not gather a prevote quorum); f announcements, a faulty member's included,
/// change nothing, an unknown chain or a member's own index is ignored, and a later
/// heartbeat without the chain undoes it.
#[test]
fn a_proposer_leaves_out_a_chain_f_plus_one_members_paused() {
    let mut apps = committee(4);
    let block = apps[0].build_block(1, 0).expect("10 messages of CHAIN");
    let app = &mut apps[2]; // member 3, not paused
    assert!(app.build_block(1, 0).is_some());
    app.on_paused_announced(1, &[CHAIN, 999]);
    app.on_paused_announced(3, &[CHAIN]); // itself: ignored
    app.on_paused_announced(9, &[CHAIN]); // not a member
    assert!(
        app.build_block(1, 0).is_some(),
        "one announcement (f = 1) is not enough"
    );
    app.on_paused_announced(2, &[CHAIN]);
    assert!(
        app.build_block(1, 0).is_none(),
        "f + 1 paused: CHAIN left out"
    );
    assert_eq!(
        app.validate(1, &block),
        Validity::Valid,
        "its own validity does not change: it prevotes another proposer's block"
    );
    app.on_paused_announced(2, &[]);
    assert!(app.build_block(1, 0).is_some(), "member 2 resumed");
}
