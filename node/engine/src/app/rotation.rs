//! Authorising the next committee (committee epochs, step one).
//!
//! The current committee decides a hand-over to epoch e + 1 through consensus, as a
//! [`pb::Rotation`] carried by a block. No single member can impose a committee: an honest
//! member proposes a rotation only if its own operator approved it, and prevotes a block
//! carrying one only if its operator approved *exactly* that value (epoch, member keys in
//! order, threshold). A decided rotation was therefore approved by at least t − f ≥ f + 1
//! honest operators. At most one rotation is decided per epoch; the decided one is what the
//! next steps (the new committee's DKG, the `KeyRotation` signature, the switch) act on.
//!
//! A block carrying a rotation may hold no messages: it is then an empty batch with a root
//! of 32 zero bytes, signed like any other so every height keeps an attestation (no leaf
//! hash is zero, so no Merkle proof reaches that root).

use super::*;

/// Most members a rotation may name: the next committee's key commit (one signed DKG
/// confirmation of ~34 n' + 180 bytes per member) must fit one envelope
/// ([`sigil_proto::MAX_ENVELOPE_BYTES`], 256 KiB); 64 members make ~150 KB.
pub const MAX_ROTATION_MEMBERS: usize = 64;
/// Fewest members a rotation may name: n = 3f + 1 with f >= 1.
pub const MIN_ROTATION_MEMBERS: usize = 4;
/// Most destination inboxes a rotation may name (one key-rotation height each).
pub const MAX_ROTATION_INBOXES: usize = 64;
/// Bytes of a compressed secp256k1 node key (SEC 1 §2.3.3).
const NODE_KEY_BYTES: usize = 33;

/// Checks a rotation's shape against the epoch this committee signs under: epoch + 1,
/// 4..=64 distinct valid 33-byte compressed secp256k1 keys, 1..=64 distinct inboxes
/// (non-zero chain id, 20-byte address), threshold exactly 2f + 1 for that size ([`sigil_crypto::keys::thresholds`]).
///
/// Errors: a message naming the first field that is wrong.
pub fn check_rotation(r: &pb::Rotation, current_epoch: u64) -> Result<(), String> {
    if Some(r.epoch) != current_epoch.checked_add(1) {
        return Err(format!(
            "rotation to epoch {} but the current epoch is {current_epoch}",
            r.epoch
        ));
    }
    let n = r.members.len();
    if !(MIN_ROTATION_MEMBERS..=MAX_ROTATION_MEMBERS).contains(&n) {
        return Err(format!(
            "rotation names {n} members, need {MIN_ROTATION_MEMBERS}..={MAX_ROTATION_MEMBERS}"
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, k) in r.members.iter().enumerate() {
        if k.len() != NODE_KEY_BYTES || k256::PublicKey::from_sec1_bytes(k).is_err() {
            return Err(format!(
                "rotation member {} is not a compressed secp256k1 key",
                i + 1
            ));
        }
        if !seen.insert(k.as_slice()) {
            return Err(format!("rotation member {} named twice", i + 1));
        }
    }
    if !(1..=MAX_ROTATION_INBOXES).contains(&r.inboxes.len()) {
        return Err(format!(
            "rotation names {} inboxes, need 1..={MAX_ROTATION_INBOXES}",
            r.inboxes.len()
        ));
    }
    let mut inboxes = BTreeSet::new();
    for (i, ib) in r.inboxes.iter().enumerate() {
        if ib.address.len() != 20 || ib.chain_id == 0 {
            return Err(format!(
                "rotation inbox {} needs a chain id and a 20-byte address",
                i + 1
            ));
        }
        if !inboxes.insert((ib.chain_id, ib.address.as_slice())) {
            return Err(format!("rotation inbox {} named twice", i + 1));
        }
    }
    let (_, t) = sigil_crypto::keys::thresholds(n as u16);
    if r.threshold != u32::from(t) {
        return Err(format!(
            "rotation threshold {} but {n} members need {t}",
            r.threshold
        ));
    }
    Ok(())
}

impl App {
    /// Records what this member's operator approved as the next committee (`None`
    /// withdraws the approval). Only an approved rotation is proposed or prevoted.
    ///
    /// Errors: the shape check of [`check_rotation`].
    pub fn approve_rotation(&mut self, r: Option<pb::Rotation>) -> Result<(), String> {
        if let Some(r) = &r {
            check_rotation(r, self.p.epoch)?;
        }
        self.approved = r;
        Ok(())
    }

    /// The rotation this member's operator approved, if any.
    pub fn approved_rotation(&self) -> Option<&pb::Rotation> {
        self.approved.as_ref()
    }

    /// The rotation decided in this epoch and the height that decided it, if any.
    pub fn decided_rotation(&self) -> Option<(Height, &pb::Rotation)> {
        self.decided_rotation.as_ref().map(|(h, r)| (*h, r))
    }

    /// Restores the rotation a stored block decided (the host reads it from storage at
    /// start): it is not proposed again and blocks carrying another are refused.
    pub fn restore_rotation(&mut self, height: Height, r: pb::Rotation) {
        self.decided_rotation = Some((height, r));
    }

    /// What this member's decided blocks settled about the next epoch (rotation, key
    /// commit, with their heights), as stored next to the block that changed it.
    pub fn epoch_record(&self) -> pb::EpochRecord {
        let (rotation_height, rotation) = self
            .decided_rotation
            .as_ref()
            .map_or((0, None), |(h, r)| (*h, Some(r.clone())));
        let handover_heights = self.decided_handovers.clone();
        let (key_height, key_commit) = self
            .decided_key
            .as_ref()
            .map_or((0, None), |(h, k)| (*h, Some(k.clone())));
        pb::EpochRecord {
            rotation,
            rotation_height,
            key_commit,
            key_height,
            handover_heights,
            joined: false,
        }
    }

    /// Restores an [`App::epoch_record`] read back from storage at start.
    pub fn restore_epoch_record(&mut self, r: pb::EpochRecord) {
        if let Some(rot) = r.rotation {
            self.decided_rotation = Some((r.rotation_height, rot));
        }
        if let Some(k) = r.key_commit {
            self.decided_key = Some((r.key_height, k));
        }
        self.decided_handovers = r.handover_heights;
    }

    /// The decided rotation, unless it expired by `height`: no key commit was decided
    /// within [`AppParams::rotation_expiry_heights`] heights after it. A decided key commit
    /// pins it for good.
    pub(super) fn live_rotation(&self, height: Height) -> Option<&(Height, pb::Rotation)> {
        self.decided_rotation.as_ref().filter(|(h, _)| {
            self.decided_key.is_some() || height <= h.saturating_add(self.p.rotation_expiry_heights)
        })
    }

    /// Whether a rotation was decided in this epoch and expired by `height` (the next one
    /// may then be decided).
    pub fn rotation_expired(&self, height: Height) -> bool {
        self.decided_rotation.is_some() && self.live_rotation(height).is_none()
    }

    /// The approved rotation when it is still to be decided at `height` (none decided, or
    /// the decided one expired).
    pub(super) fn rotation_to_propose(&self, height: Height) -> Option<&pb::Rotation> {
        self.approved.as_ref().filter(|r| {
            self.live_rotation(height).is_none() && check_rotation(r, self.p.epoch).is_ok()
        })
    }

    /// The rotation part of `valid(v)`: none, or exactly what our operator approved and not
    /// one decided already in this epoch.
    pub(super) fn check_block_rotation(&self, b: &pb::Block) -> Result<(), String> {
        let Some(r) = &b.rotation else {
            return Ok(());
        };
        check_rotation(r, self.p.epoch)?;
        if let Some((h, _)) = self.live_rotation(b.height) {
            return Err(format!("a rotation was already decided at height {h}"));
        }
        if self.approved.as_ref() != Some(r) {
            return Err("rotation not approved by this member's operator".into());
        }
        Ok(())
    }

    /// Records the rotation a decided block carries (the first one per epoch, or the next
    /// one after it expired; a key commit offered for the expired one is dropped).
    pub(super) fn note_decided_rotation(&mut self, height: Height, b: &pb::Block) {
        if let Some(r) = &b.rotation
            && self.live_rotation(height).is_none()
        {
            self.decided_rotation = Some((height, r.clone()));
            self.offered_key = None;
        }
    }
}
