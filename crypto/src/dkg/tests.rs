//! DKG and share-refresh state machine tests.
use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[test]
fn local_dkg_agrees_on_group_key() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let out = run_local(3, 4, &mut rng).unwrap();
    assert_eq!(out.len(), 4);
    let gk = out[&1].group_key;
    for o in out.values() {
        assert_eq!(o.group_key, gk);
        assert_eq!(o.public_key_package, out[&1].public_key_package);
    }
}

#[test]
fn rejects_unknown_and_self_and_conflicts() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let (mut a, _) = Dkg::start(1, 2, 3, &mut rng).unwrap();
    let (_, Outgoing::Broadcast(p2)) = Dkg::start(2, 2, 3, &mut rng).unwrap() else {
        panic!()
    };
    let (_, Outgoing::Broadcast(p2b)) = Dkg::start(2, 2, 3, &mut rng).unwrap() else {
        panic!()
    };
    assert_eq!(
        a.receive_round1(1, p2.clone()).unwrap_err(),
        DkgError::UnknownParticipant { from: 1 }
    );
    assert_eq!(
        a.receive_round1(4, p2.clone()).unwrap_err(),
        DkgError::UnknownParticipant { from: 4 }
    );
    assert!(a.receive_round1(2, p2.clone()).unwrap().is_empty());
    assert!(
        a.receive_round1(2, p2).unwrap().is_empty(),
        "identical repeat is ignored"
    );
    assert_eq!(
        a.receive_round1(2, p2b).unwrap_err(),
        DkgError::ConflictingPackage { from: 2, round: 1 }
    );
    assert_eq!(a.missing_round1(), vec![3]);
}

#[test]
fn invalid_proof_of_knowledge_names_the_sender() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let (mut a, _) = Dkg::start(1, 2, 3, &mut rng).unwrap();
    let (_, Outgoing::Broadcast(p2)) = Dkg::start(2, 2, 3, &mut rng).unwrap() else {
        panic!()
    };
    // Member 3 replays member 2's package as its own: its proof of knowledge is bound
    // to identifier 2, so it fails for identifier 3.
    a.receive_round1(2, p2.clone()).unwrap();
    assert_eq!(
        a.receive_round1(3, p2).unwrap_err(),
        DkgError::InvalidProofOfKnowledge { culprit: 3 }
    );
    assert_eq!(a.missing_round1(), vec![3]);
}

fn confirmation(o: &DkgOutput) -> Confirmation {
    Confirmation {
        group_key: o.group_key.compressed().to_vec(),
        transcript: o.transcript.clone(),
    }
}

#[test]
fn honest_transcripts_agree() {
    let mut rng = ChaCha20Rng::seed_from_u64(20);
    let out = run_local(3, 4, &mut rng).unwrap();
    let confirms: BTreeMap<_, _> = out.iter().map(|(i, o)| (*i, confirmation(o))).collect();
    for o in out.values() {
        assert_eq!(o.transcript, out[&1].transcript);
        assert_eq!(o.transcript.round1.len(), 4);
    }
    for r in 1..=4 {
        check_confirmations(4, r, &confirms).unwrap();
    }
    // A partial set (confirmations still arriving) is fine too.
    let partial: BTreeMap<_, _> = confirms.clone().into_iter().take(2).collect();
    check_confirmations(4, 1, &partial).unwrap();
}

/// Yields `shared`'s stream for the first `left` bytes, then `own`'s. frost's `part1`
/// draws the secret a_0 first (one 32-byte scalar), so two `Dkg::start`s fed forks of
/// one `shared` seed get the same a_0 and independent other coefficients.
struct ForkRng {
    shared: ChaCha20Rng,
    own: ChaCha20Rng,
    left: usize,
}

impl RngCore for ForkRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let take = self.left.min(dest.len());
        let (a, b) = dest.split_at_mut(take);
        if !a.is_empty() {
            self.shared.fill_bytes(a);
        }
        if !b.is_empty() {
            self.own.fill_bytes(b);
        }
        self.left -= take;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for ForkRng {}

/// Security review finding: round 1 went point-to-point with no echo. Member 4 sends
/// member 1 a different commitment vector (same constant term) than members 2 and 3,
/// with shares consistent with each. Every member's DKG completes with the same group
/// key (the old group-key-only confirmation accepted it) but honest signing fails; the
/// transcript check rejects it and names member 4.
#[test]
fn round1_equivocation_is_detected_and_names_the_sender() {
    let (t, n) = (3, 4);
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let mut honest = BTreeMap::new();
    let mut r1 = BTreeMap::new();
    for i in 1..=3 {
        let (m, Outgoing::Broadcast(p)) = Dkg::start(i, t, n, &mut rng).unwrap() else {
            panic!()
        };
        honest.insert(i, m);
        r1.insert(i, p);
    }
    let fork = |seed| ForkRng {
        shared: ChaCha20Rng::seed_from_u64(40),
        own: ChaCha20Rng::seed_from_u64(seed),
        left: 32,
    };
    // Member 4 runs two machines: `to_rest` for members 2 and 3, `to_one` for member 1.
    let (mut to_rest, Outgoing::Broadcast(p4)) = Dkg::start(4, t, n, &mut fork(41)).unwrap() else {
        panic!()
    };
    let (mut to_one, Outgoing::Broadcast(p4_for_1)) = Dkg::start(4, t, n, &mut fork(42)).unwrap()
    else {
        panic!()
    };
    assert_ne!(p4, p4_for_1);
    assert_eq!(
        p4.commitment().serialize().unwrap()[0],
        p4_for_1.commitment().serialize().unwrap()[0],
        "same constant term, so the same group key"
    );

    // Round 1.
    let mut direct = Vec::new(); // (from, to, package)
    for (&to, m) in honest.iter_mut() {
        for (&from, p) in &r1 {
            if from != to {
                for o in m.receive_round1(from, p.clone()).unwrap() {
                    if let Outgoing::Direct { to: d, package } = o {
                        direct.push((to, d, package));
                    }
                }
            }
        }
        let p = if to == 1 { &p4_for_1 } else { &p4 };
        for o in m.receive_round1(4, p.clone()).unwrap() {
            if let Outgoing::Direct { to: d, package } = o {
                direct.push((to, d, package));
            }
        }
    }
    for (evil, recipients) in [(&mut to_rest, &[2u16, 3][..]), (&mut to_one, &[1][..])] {
        let mut out = Vec::new();
        for (&from, p) in &r1 {
            out.extend(evil.receive_round1(from, p.clone()).unwrap());
        }
        for o in out {
            if let Outgoing::Direct { to, package } = o
                && recipients.contains(&to)
            {
                direct.push((4, to, package));
            }
        }
    }

    // Round 2.
    let mut outs = BTreeMap::new();
    for (from, to, package) in direct {
        let m = if to == 4 {
            &mut to_rest
        } else {
            honest.get_mut(&to).unwrap()
        };
        if let Some(o) = m.receive_round2(from, package).unwrap() {
            outs.insert(to, o);
        }
    }
    assert_eq!(outs.len(), 4, "every member's DKG completes");

    // What the old confirmation compared: all agree.
    assert!(outs.values().all(|o| o.group_key == outs[&1].group_key));
    assert_ne!(
        outs[&1].public_key_package, outs[&2].public_key_package,
        "but member 1's verifying shares differ from member 2's"
    );
    // And the honest members 1, 2, 3 cannot sign.
    let honest_keys: BTreeMap<_, _> = (1..=3).map(|i| (i, outs[&i].key_package.clone())).collect();
    let digest = alloy_primitives::B256::repeat_byte(9);
    for i in 1..=3 {
        assert!(
            crate::signing::sign_local(
                &honest_keys,
                &outs[&i].public_key_package,
                digest,
                &mut rng
            )
            .is_err(),
            "honest signing with member {i}'s public key package"
        );
    }

    // The transcript check fails at every honest member and names member 4.
    let confirms: BTreeMap<_, _> = outs.iter().map(|(i, o)| (*i, confirmation(o))).collect();
    for reference in 1..=3 {
        let err = check_confirmations(n, reference, &confirms).unwrap_err();
        assert_eq!(
            err,
            ConfirmationError::Round1Equivocation {
                sender: 4,
                first: 1,
                second: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "member 4 sent different round-1 packages to members 1 and 2 (equivocation)"
        );
    }
    // Member 1 alone with one other member already sees it.
    let two: BTreeMap<_, _> = [(1, confirms[&1].clone()), (3, confirms[&3].clone())].into();
    assert!(matches!(
        check_confirmations(n, 1, &two),
        Err(ConfirmationError::Round1Equivocation {
            sender: 4,
            first: 1,
            second: 3
        })
    ));
}

#[test]
fn malformed_or_mismatched_confirmations_name_the_member() {
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    let out = run_local(3, 4, &mut rng).unwrap();
    let good: BTreeMap<_, _> = out.iter().map(|(i, o)| (*i, confirmation(o))).collect();
    let with = |m: u16, f: &dyn Fn(&mut Confirmation)| {
        let mut c = good.clone();
        f(c.get_mut(&m).unwrap());
        c
    };
    let short = with(2, &|c| {
        c.transcript.round1.pop();
    });
    assert!(matches!(
        check_confirmations(4, 1, &short),
        Err(ConfirmationError::Malformed { member: 2, .. })
    ));
    // A hash list that does not match its own digest.
    let inconsistent = with(3, &|c| c.transcript.round1[0] = [7; 32]);
    assert!(matches!(
        check_confirmations(4, 1, &inconsistent),
        Err(ConfirmationError::Malformed { member: 3, .. })
    ));
    // A consistent but different hash for member 2's package, reported by member 3.
    let lied = with(3, &|c| {
        c.transcript.round1[1] = [7; 32];
        c.transcript.round1_digest = round1_digest(&c.transcript.round1);
    });
    assert_eq!(
        check_confirmations(4, 1, &lied),
        Err(ConfirmationError::Round1Equivocation {
            sender: 2,
            first: 1,
            second: 3
        })
    );
    let key = with(4, &|c| c.group_key = vec![2; 33]);
    assert!(matches!(
        check_confirmations(4, 1, &key),
        Err(ConfirmationError::GroupKeyMismatch {
            member: 4,
            reference: 1,
            ..
        })
    ));
    let shares = with(2, &|c| c.transcript.verifying_shares_digest = [1; 32]);
    assert_eq!(
        check_confirmations(4, 3, &shares),
        Err(ConfirmationError::VerifyingSharesMismatch {
            member: 2,
            reference: 3
        })
    );
    let mut stranger = good.clone();
    stranger.insert(5, good[&1].clone());
    assert_eq!(
        check_confirmations(4, 1, &stranger),
        Err(ConfirmationError::UnknownMember { member: 5 })
    );
}

#[test]
fn invalid_secret_share_names_the_sender() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let n = 3;
    let mut ms = BTreeMap::new();
    let mut r1 = Vec::new();
    for i in 1..=n {
        let (m, Outgoing::Broadcast(p)) = Dkg::start(i, 2, n, &mut rng).unwrap() else {
            panic!()
        };
        ms.insert(i, m);
        r1.push((i, p));
    }
    let mut direct = Vec::new();
    for (from, p) in &r1 {
        for (to, m) in ms.iter_mut() {
            if to != from {
                for o in m.receive_round1(*from, p.clone()).unwrap() {
                    if let Outgoing::Direct { to: d, package } = o {
                        direct.push((*to, d, package));
                    }
                }
            }
        }
    }
    // Member 1 receives member 3's share intended for member 2, labelled as from 3.
    let wrong = direct
        .iter()
        .find(|(f, t, _)| *f == 3 && *t == 2)
        .unwrap()
        .2
        .clone();
    let m1 = ms.get_mut(&1).unwrap();
    let good2 = direct
        .iter()
        .find(|(f, t, _)| *f == 2 && *t == 1)
        .unwrap()
        .2
        .clone();
    assert!(m1.receive_round2(2, good2).unwrap().is_none());
    assert_eq!(
        m1.receive_round2(3, wrong).unwrap_err(),
        DkgError::InvalidSecretShare { culprit: Some(3) }
    );
}

fn shares_of(
    out: &BTreeMap<MemberIndex, DkgOutput>,
) -> BTreeMap<MemberIndex, (KeyPackage, PublicKeyPackage)> {
    out.iter()
        .map(|(i, o)| (*i, (o.key_package.clone(), o.public_key_package.clone())))
        .collect()
}

/// Signs `digest` with the given members' key packages; true when the result verifies.
fn signs(
    keys: &[(MemberIndex, &KeyPackage)],
    public: &PublicKeyPackage,
    gk: &GroupKey,
    rng: &mut ChaCha20Rng,
) -> bool {
    let digest = alloy_primitives::B256::repeat_byte(9);
    let keys: BTreeMap<u16, KeyPackage> = keys.iter().map(|(i, k)| (*i, (*k).clone())).collect();
    crate::signing::sign_local(&keys, public, digest, rng)
        .is_ok_and(|sig| crate::signing::verify(gk, digest, &sig).is_ok())
}

#[test]
fn a_refresh_keeps_the_group_key_and_old_shares_stop_mixing() {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let old = run_local(3, 4, &mut rng).unwrap();
    let gk = old[&1].group_key;
    let new = refresh_local(&shares_of(&old), &mut rng).unwrap();
    assert_eq!(new.len(), 4);
    let digest = new[&1].transcript.round1_digest;
    for (i, o) in &new {
        assert_eq!(
            o.group_key, gk,
            "member {i}: same group key after the refresh"
        );
        assert_ne!(
            o.key_package.signing_share(),
            old[i].key_package.signing_share(),
            "member {i}: a new share"
        );
        assert_eq!(o.transcript.round1_digest, digest, "one transcript");
    }
    let public = &new[&1].public_key_package;
    assert!(
        signs(
            &[
                (1, &new[&1].key_package),
                (3, &new[&3].key_package),
                (4, &new[&4].key_package)
            ],
            public,
            &gk,
            &mut rng
        ),
        "any t refreshed shares sign for the unchanged key"
    );
    assert!(
        !signs(
            &[
                (1, &new[&1].key_package),
                (3, &new[&3].key_package),
                (4, &old[&4].key_package)
            ],
            public,
            &gk,
            &mut rng
        ),
        "a leaked pre-refresh share does not combine with refreshed ones"
    );
}

#[test]
fn a_refresh_names_a_member_sending_a_new_key_package() {
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    let old = run_local(3, 4, &mut rng).unwrap();
    let (mut m1, _) = Dkg::start_refresh(
        1,
        old[&1].key_package.clone(),
        old[&1].public_key_package.clone(),
        &mut rng,
    )
    .unwrap();
    assert!(m1.is_refresh());
    // Member 2 sends a fresh-DKG package (t commitments, a constant term of its choosing).
    let (_, Outgoing::Broadcast(p2)) = Dkg::start(2, 3, 4, &mut rng).unwrap() else {
        panic!("round 1 broadcasts")
    };
    assert_eq!(
        m1.receive_round1(2, p2).unwrap_err(),
        DkgError::MalformedRefreshPackage {
            from: 2,
            got: 3,
            want: 2
        }
    );
    // Starting from another member's key package is refused.
    assert!(matches!(
        Dkg::start_refresh(
            2,
            old[&1].key_package.clone(),
            old[&1].public_key_package.clone(),
            &mut rng
        ),
        Err(DkgError::Key(_))
    ));
}
