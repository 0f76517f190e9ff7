//! `sigil dkg` over real libp2p on loopback: four members agree on one group key (checked by
//! signed confirmations) and each key share signs with the others; with a member missing,
//! the error names it after the timeout.

use sigil_node::config::Config;
use sigil_node::identity::{NodeKey, public_key_hex};
use std::collections::BTreeMap;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn configs(keys: &[NodeKey]) -> Vec<Config> {
    let ports: Vec<u16> = keys.iter().map(|_| free_port()).collect();
    let mut members = String::new();
    for (k, p) in keys.iter().zip(&ports) {
        members.push_str(&format!(
            "  {{ key = \"{}\", address = \"/ip4/127.0.0.1/tcp/{p}\" }},\n",
            public_key_hex(&k.public())
        ));
    }
    ports
        .iter()
        .map(|p| {
            let text = format!("[node]\nlisten = \"/ip4/127.0.0.1/tcp/{p}\"\n[committee]\nmembers = [\n{members}]\n");
            Config::parse(&text, "dkg.toml".as_ref(), []).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_members_agree_on_a_group_key() {
    let keys: Vec<NodeKey> = (0..4).map(|_| NodeKey::generate()).collect();
    let cfgs = configs(&keys);
    let mut tasks = Vec::new();
    for (cfg, key) in cfgs.into_iter().zip(keys) {
        tasks.push(tokio::spawn(async move {
            sigil_node::dkg::run(&cfg, &key, Duration::from_secs(60)).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().expect("dkg succeeds"));
    }
    let gk = results[0].group_key;
    assert!(results.iter().all(|r| r.group_key == gk), "one group key");
    assert_eq!(
        results.iter().map(|r| r.share.member).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(results.iter().all(|r| r.share.t == 3 && r.share.n == 4));
    // Any 3 shares sign for the group key.
    let keys: BTreeMap<u16, _> = results
        .iter()
        .skip(1)
        .map(|r| (r.share.member, r.share.key_package.clone()))
        .collect();
    let digest = sigil_crypto::batch_digest(1, 1, alloy_primitives::B256::repeat_byte(5));
    let sig = sigil_crypto::signing::sign_local(
        &keys,
        &results[0].share.public_key_package,
        digest,
        &mut rand_core::OsRng,
    )
    .unwrap();
    sigil_crypto::signing::verify(&gk, digest, &sig).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_member_is_named_after_the_timeout() {
    let keys: Vec<NodeKey> = (0..4).map(|_| NodeKey::generate()).collect();
    let cfgs = configs(&keys);
    let mut tasks = Vec::new();
    // Member 3 never starts.
    for (i, (cfg, key)) in cfgs.into_iter().zip(keys).enumerate() {
        if i == 2 {
            continue;
        }
        tasks.push(tokio::spawn(async move {
            sigil_node::dkg::run(&cfg, &key, Duration::from_secs(4)).await
        }));
    }
    for t in tasks {
        let err = match t.await.unwrap() {
            Ok(_) => panic!("a DKG without member 3 cannot finish"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("timed out") && err.contains("member 3"),
            "{err}"
        );
        assert!(
            !err.contains("member 1 ") && !err.contains("member 4 "),
            "only the missing member: {err}"
        );
    }
}

/// `sigil dkg --refresh` over libp2p: after a DKG, the four members refresh their shares;
/// the group key is unchanged, every share is new, any three refreshed shares sign for the
/// key, and a pre-refresh share mixed with refreshed ones does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_members_refresh_their_shares_and_keep_the_key() {
    let keys: Vec<NodeKey> = (0..4).map(|_| NodeKey::generate()).collect();
    let cfgs = configs(&keys);
    let mut tasks = Vec::new();
    for (cfg, key) in cfgs.iter().cloned().zip(keys.clone()) {
        tasks.push(tokio::spawn(async move {
            sigil_node::dkg::run(&cfg, &key, Duration::from_secs(60)).await
        }));
    }
    let mut old = Vec::new();
    for t in tasks {
        old.push(t.await.unwrap().expect("dkg succeeds"));
    }
    let gk = old[0].group_key;
    // Fresh ports: the first DKG's listeners are gone, but keep the runs independent.
    let cfgs = configs(&keys);
    let mut tasks = Vec::new();
    for ((cfg, key), o) in cfgs.into_iter().zip(keys).zip(&old) {
        let share = sigil_node::keyfiles::KeyShare {
            epoch: o.share.epoch,
            member: o.share.member,
            n: o.share.n,
            t: o.share.t,
            key_package: o.share.key_package.clone(),
            public_key_package: o.share.public_key_package.clone(),
        };
        tasks.push(tokio::spawn(async move {
            sigil_node::dkg::refresh(&cfg, &key, &share, Duration::from_secs(60)).await
        }));
    }
    let mut new = Vec::new();
    for t in tasks {
        new.push(t.await.unwrap().expect("refresh succeeds"));
    }
    for (o, n) in old.iter().zip(&new) {
        assert_eq!(n.group_key, gk, "member {}: same group key", n.share.member);
        assert_eq!(n.share.member, o.share.member);
        assert_ne!(
            n.share.key_package.signing_share(),
            o.share.key_package.signing_share(),
            "member {}: a new share",
            n.share.member
        );
    }
    let digest = sigil_crypto::batch_digest(1, 2, alloy_primitives::B256::repeat_byte(6));
    let sign = |parts: &[&sigil_node::keyfiles::KeyShare]| {
        let keys: BTreeMap<u16, _> = parts
            .iter()
            .map(|s| (s.member, s.key_package.clone()))
            .collect();
        sigil_crypto::signing::sign_local(
            &keys,
            &new[0].share.public_key_package,
            digest,
            &mut rand_core::OsRng,
        )
        .is_ok_and(|sig| sigil_crypto::signing::verify(&gk, digest, &sig).is_ok())
    };
    assert!(sign(&[&new[0].share, &new[2].share, &new[3].share]));
    assert!(!sign(&[&new[0].share, &new[2].share, &old[3].share]));
}
