//! Building a member's driver (at start, after a crash, at an epoch switch): the epoch its
//! disk is in, its key material for that epoch, its observations and its operator's approval.

use super::*;

impl Sim {
    /// Builds (or rebuilds after a crash) member `m` from its disk, ledger and observations.
    pub(super) fn start(&mut self, m: Member) {
        let seed = self.rng.next_u64();
        let Some(disk) = self.members.get(&m).and_then(|sm| sm.disk.as_ref()) else {
            return;
        };
        // Which epoch the disk is in: the node's code path (`epochs::resume_epoch`).
        let epoch = match sigil_engine::epochs::resume_epoch(disk, EPOCH) {
            Ok(at) => at.epoch,
            Err(e) => {
                self.violate(format!("node {m}: resume: {e}"));
                return;
            }
        };
        // A member that left runs its last epoch's driver as an archive (decides nothing
        // after the epoch's end, serves its blocks).
        let epoch = if self.index_in(m, epoch).is_none()
            && epoch > EPOCH
            && self.index_in(m, epoch - 1).is_some()
        {
            epoch - 1
        } else {
            epoch
        };
        let Some(index) = self.index_in(m, epoch) else {
            // A joiner without the hand-over yet, or a member that left: no driver.
            let joining = epoch == EPOCH;
            if let Some(sm) = self.members.get_mut(&m) {
                sm.joining = joining;
                sm.epoch = epoch;
            }
            if joining && self.dkg_finished {
                self.push(0, Ev::Join(m));
            }
            return;
        };
        let nodes = self.committee_nodes(epoch);
        let n = nodes.len() as u16;
        let (_, t) = sigil_crypto::keys::thresholds(n);
        let (key_package, public, group_key, committee) = match (&self.incoming, epoch) {
            (Some(inc), e) if e == EPOCH + 1 => {
                let o = &inc.outputs[&index];
                (
                    o.key_package.clone(),
                    o.public_key_package.clone(),
                    o.group_key,
                    inc.committee.clone(),
                )
            }
            _ => (
                self.keys.key_packages[&index].clone(),
                self.keys.public_key_package.clone(),
                self.keys.group_key,
                self.committee.clone(),
            ),
        };
        let approval = match self.sc.adversary {
            Some((b, Adversary::RogueRotation)) if b == m => Some(rogue_rotation(self.sc.n, m)),
            _ => self.approved(),
        }
        .filter(|_| epoch == EPOCH);
        let Some(sm) = self.members.get_mut(&m) else {
            return;
        };
        let Some(disk) = sm.disk.take() else { return };
        sm.epoch = epoch;
        sm.joining = false;
        let params = AppParams {
            me: Some(index),
            n,
            t,
            epoch,
            chains: vec![(CHAIN, Address::repeat_byte(0x5a))],
            max_messages: 5,
            max_bytes: 1 << 20,
            nonce_pool: 8,
            share_timeout_ms: 1_000,
            rotation_expiry_heights: sigil_engine::app::DEFAULT_ROTATION_EXPIRY_HEIGHTS,
        };
        let signer = Signer {
            key: key_package,
            public,
            pool: NoncePool::new(),
            ledger: Box::new(sm.ledger.clone()),
        };
        let mut next = BTreeMap::new();
        next.insert(CHAIN, disk.next_nonce(CHAIN));
        let mut app = App::new(
            params,
            Some(signer),
            Some(group_key),
            next,
            Box::new(ChaCha20Rng::seed_from_u64(seed)),
        );
        let cursor = Cursor {
            block_number: sm.observed.len() as u64,
            block_hash: B256::repeat_byte(1),
            next_nonce: sm.observed.len() as u64,
        };
        app.observe(sm.observed.clone(), Some(cursor.to_wire(CHAIN)));
        // The operator's approval is configuration: it survives restarts. A decided rotation
        // is read back from the member's own disk by `Driver::new`, as in the node.
        let refused = approval.and_then(|r| app.approve_rotation(Some(r)).err());
        let mut cfg = DriverConfig::new(index);
        cfg.consensus.propose_ms = 600;
        cfg.consensus.prevote_ms = 300;
        cfg.consensus.precommit_ms = 300;
        cfg.consensus.delta_ms = 200;
        cfg.observation_wait_ms = 800;
        cfg.heartbeat_ms = 500;
        cfg.gossip_ms = 300;
        cfg.rebroadcast_ms = 700;
        cfg.sync_timeout_ms = 1_500;
        cfg.stall_ms = 1_000;
        match Driver::new(cfg, committee, sm.key.clone(), app, disk, self.now) {
            Ok((d, effects)) => {
                // The rotation restored from the disk's index is the one its blocks carry.
                let restored = d.app().decided_rotation().map(|(h, r)| (h, r.clone()));
                let stored = if epoch == EPOCH {
                    stored_rotation(d.storage())
                } else {
                    // The genesis epoch's rotation is behind this epoch's start.
                    None
                };
                sm.driver = Some(d);
                self.effects(m, effects);
                if restored != stored {
                    self.violate(format!(
                        "member {m} restarted with rotation {restored:?}, its blocks decided {stored:?}"
                    ));
                }
            }
            Err(e) => self.violate(format!("member {m} failed to start: {e}")),
        }
        if let Some(e) = refused {
            self.violate(format!("member {m}: approval refused: {e}"));
        }
    }
}
