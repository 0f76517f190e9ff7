//! Unit tests of the RocksDB store.

use super::*;

fn share(nonce_id: u64, byte: u8, own: bool) -> ShareRecord {
    ShareRecord {
        epoch: 2,
        member: 3,
        nonce_id,
        commitment: B256::repeat_byte(nonce_id as u8),
        height: 40,
        attempt: 1,
        digest: B256::repeat_byte(7),
        share: [byte; 32],
        own,
    }
}

/// Share records survive a reopen; the same share again is not a conflict; a second,
/// different share under one (epoch, member, nonce id) is kept beside the first and the
/// first is returned (the caller raises a nonce-reuse alarm).
#[test]
fn share_records_keep_both_sides_of_a_nonce_reuse() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        assert!(s.record_shares(&[share(5, 1, true)]).unwrap().is_empty());
        // Seen again (e.g. in the group signature): same share, no conflict.
        assert!(s.record_shares(&[share(5, 1, false)]).unwrap().is_empty());
        assert!(s.record_shares(&[share(6, 2, true)]).unwrap().is_empty());
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.share_records().unwrap().len(), 2);
    let conflicts = s.record_shares(&[share(5, 8, false)]).unwrap();
    assert_eq!(conflicts, vec![share(5, 1, true)]);
    let all = s.share_records().unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.contains(&share(5, 8, false)));
    // And MemStorage behaves the same (the simulator's disk).
    let mut m = sigil_engine::MemStorage::new();
    use sigil_engine::Storage as _;
    assert!(
        m.record_shares(&[share(5, 1, true), share(5, 1, false)])
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        m.record_shares(&[share(5, 8, false)]).unwrap(),
        vec![share(5, 1, true)]
    );
    assert_eq!(m.share_records().count(), 2);
    // The same share under another nonce id label (a faulty coordinator's request) is
    // not a conflict: only the commitment is bound by the signature.
    let mut relabelled = share(5, 1, false);
    relabelled.nonce_id = 6;
    assert!(s.record_shares(&[relabelled.clone()]).unwrap().is_empty());
    assert!(m.record_shares(&[relabelled]).unwrap().is_empty());
}

#[test]
fn share_records_round_trip_and_refuse_bad_bytes() {
    let r = share(u64::MAX, 0xab, true);
    let bytes = r.encode();
    assert_eq!(bytes.len(), ShareRecord::ENCODED_LEN);
    assert_eq!(ShareRecord::decode(&bytes), Some(r));
    assert_eq!(ShareRecord::decode(&bytes[1..]), None);
    let mut bad = bytes.clone();
    *bad.last_mut().unwrap() = 2;
    assert_eq!(ShareRecord::decode(&bad), None);
}

#[test]
fn ledger_survives_restart_and_refuses_old_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut l = RocksLedger::open(store.clone()).unwrap();
    let ids = l.issue(4).unwrap();
    assert_eq!(ids, 0..4);
    l.consume(NonceId(1)).unwrap();
    assert!(matches!(
        l.consume(NonceId(1)),
        Err(NonceError::AlreadyConsumed { .. })
    ));
    drop(l);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let mut l = RocksLedger::open(store).unwrap();
    assert_eq!(
        l.status(NonceId(2)),
        NonceStatus::Consumed,
        "issued before restart"
    );
    assert_eq!(l.issue(2).unwrap(), 4..6, "ids never repeat");
    assert_eq!(l.status(NonceId(5)), NonceStatus::Issued);
    assert_eq!(l.consumed_ids().unwrap(), vec![1]);
}

#[test]
fn own_votes_refuse_a_second_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.record_own_vote(5, 1, 2, b"a").unwrap(), None);
    assert_eq!(store.record_own_vote(5, 1, 2, b"a").unwrap(), None);
    assert_eq!(
        store.record_own_vote(5, 1, 2, b"b").unwrap(),
        Some(b"a".to_vec())
    );
    assert_eq!(store.own_votes().unwrap().len(), 1);
}

#[test]
fn an_epoch_record_survives_restart_and_is_replaced_with_its_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let rotation = pb::Rotation {
        epoch: 2,
        members: vec![vec![2; 33]; 4],
        threshold: 3,
        inboxes: Vec::new(),
    };
    let first = pb::EpochRecord {
        rotation: Some(rotation.clone()),
        rotation_height: 7,
        ..Default::default()
    };
    let second = pb::EpochRecord {
        key_commit: Some(pb::KeyCommit {
            epoch: 2,
            ..Default::default()
        }),
        key_height: 8,
        ..first.clone()
    };
    let cb = pb::CommittedBlock::default();
    assert_eq!(store.epoch_record(2).unwrap(), None);
    store.put_block(7, &cb, &[], Some((2, &first))).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.epoch_record(2).unwrap(), Some(first));
    store.put_block(8, &cb, &[], Some((2, &second))).unwrap();
    store.put_block(9, &cb, &[], None).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.epoch_record(2).unwrap(), Some(second));
    assert_eq!(store.epoch_record(3).unwrap(), None);
}

fn sample_observation(nonce: u64, payload: &[u8]) -> Observation {
    use alloy_primitives::Address;
    Observation {
        message: sigil_crypto::Message {
            source_chain_id: 1001,
            source_gateway: Address::repeat_byte(1),
            nonce,
            sender: Address::repeat_byte(2),
            dest_chain_id: 1002,
            dest_inbox: Address::repeat_byte(3),
            recipient: Address::repeat_byte(4),
            gas_limit: 200_000,
            payload: payload.to_vec().into(),
        },
        block_number: 77,
        block_hash: B256::repeat_byte(9),
        observed_at_ms: 1_700_000_000_000,
        block_time: 1_700_000_000,
    }
}

#[test]
fn a_version_1_store_with_json_observations_is_read_and_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let old = sample_observation(0, b"json era");
    let store = Store::open(dir.path()).unwrap();
    // What a schema-1 binary wrote: JSON observation records.
    let cf = store.cf("observations").unwrap();
    store
        .db
        .put_cf(cf, obs_key(1001, 0), serde_json::to_vec(&old).unwrap())
        .unwrap();
    store
        .put_sync("meta", b"schema", &1u32.to_be_bytes())
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.get("meta", b"schema").unwrap(),
        Some(1u32.to_be_bytes().to_vec()),
        "opening alone leaves a store an older binary reads as it was"
    );
    let new = sample_observation(1, &[0xab; 300]);
    store
        .put_observations(1001, std::slice::from_ref(&new), &Cursor::default())
        .unwrap();
    assert_eq!(store.observations(1001, 0..2).unwrap(), vec![old, new]);
    assert_eq!(
        store.get("meta", b"schema").unwrap(),
        Some(SCHEMA_VERSION.to_be_bytes().to_vec())
    );
}

#[test]
fn a_stored_observation_is_protobuf_and_a_bad_one_is_named() {
    let o = sample_observation(5, b"");
    let v = encode_observation(&o);
    assert_eq!(v[0], OBSERVATION_PB);
    assert_eq!(decode_observation(&v).unwrap(), o);
    // A record whose sender is 19 bytes is refused with the field named.
    let mut p = pb::StoredObservation::decode(&v[1..]).unwrap();
    p.sender.pop();
    let mut bad = vec![OBSERVATION_PB];
    bad.extend_from_slice(&p.encode_to_vec());
    let e = decode_observation(&bad).unwrap_err().to_string();
    assert!(e.contains("sender: 19 bytes"), "{e}");
    assert!(decode_observation(&[OBSERVATION_PB, 0xff]).is_err());
    assert!(decode_observation(b"").is_err());
}

#[test]
fn schema_version_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .put_sync("meta", b"schema", &99u32.to_be_bytes())
        .unwrap();
    drop(store);
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::Schema { found: 99, .. })
    ));
}
