//! Signed envelopes: every peer message is a protobuf `Body` signed by the sending member's
//! node key, `ECDSA-secp256k1(SHA-256(ENVELOPE_DOMAIN || body))` (RFC 6979, 64 bytes r || s).
//! [`Committee::open`] is the only way a peer's bytes become a [`pb::Body`]: size, decoding,
//! member index and signature are checked before anything else looks at them.

use crate::types::Member;
use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use prost::Message as _;
use sigil_proto as pb;

/// Domain tag prefixed to every signed envelope body.
pub const ENVELOPE_DOMAIN: &[u8] = b"sigil/v1/envelope";

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// More than [`sigil_proto::MAX_ENVELOPE_BYTES`] bytes.
    #[error("envelope over the size limit")]
    Oversized,
    /// Not a protobuf `Envelope`, or its body is not a `Body`.
    #[error("undecodable envelope")]
    Decode,
    /// The member index is outside 1..=n.
    #[error("member {0} is not in the committee")]
    UnknownMember(u32),
    /// The signature does not verify under the member's key.
    #[error("bad envelope signature from member {0}")]
    BadSignature(u32),
    /// The body carries no message.
    #[error("empty body")]
    EmptyBody,
}

impl EnvelopeError {
    /// A short static reason for rejection counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Decode => "decode",
            Self::UnknownMember(_) => "unknown member",
            Self::BadSignature(_) => "signature",
            Self::EmptyBody => "empty body",
        }
    }
}

/// The committee's node keys, member i (1-based) at position i − 1.
#[derive(Debug, Clone)]
pub struct Committee {
    keys: Vec<VerifyingKey>,
}

impl Committee {
    /// From the ordered key list (at most `u16::MAX` members; longer lists are truncated).
    pub fn new(mut keys: Vec<VerifyingKey>) -> Self {
        keys.truncate(usize::from(u16::MAX));
        Self { keys }
    }

    /// Number of members n.
    pub fn len(&self) -> u16 {
        u16::try_from(self.keys.len()).unwrap_or(u16::MAX)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Index (1-based) of a key, if a member.
    pub fn index_of(&self, k: &VerifyingKey) -> Option<Member> {
        self.keys
            .iter()
            .position(|x| x == k)
            .and_then(|i| Member::try_from(i + 1).ok())
    }

    /// The key of member `m` (1-based).
    pub fn key(&self, m: Member) -> Option<&VerifyingKey> {
        self.keys.get(usize::from(m).checked_sub(1)?)
    }

    /// Checks an envelope's member index and signature and decodes its body.
    /// Errors: [`EnvelopeError::UnknownMember`], [`EnvelopeError::BadSignature`],
    /// [`EnvelopeError::Decode`] (body), [`EnvelopeError::EmptyBody`].
    pub fn open(&self, env: &pb::Envelope) -> Result<(Member, pb::Body), EnvelopeError> {
        let member = Member::try_from(env.member)
            .ok()
            .filter(|m| self.key(*m).is_some())
            .ok_or(EnvelopeError::UnknownMember(env.member))?;
        let key = self
            .key(member)
            .ok_or(EnvelopeError::UnknownMember(env.member))?;
        let sig = Signature::from_slice(&env.signature)
            .map_err(|_| EnvelopeError::BadSignature(env.member))?;
        key.verify(&signed_bytes(&env.body), &sig)
            .map_err(|_| EnvelopeError::BadSignature(env.member))?;
        let body = pb::Body::decode(env.body.as_slice()).map_err(|_| EnvelopeError::Decode)?;
        if body.kind.is_none() {
            return Err(EnvelopeError::EmptyBody);
        }
        Ok((member, body))
    }

    /// Size-checks and decodes peer bytes, then [`Committee::open`]s them.
    /// Errors: [`EnvelopeError::Oversized`], [`EnvelopeError::Decode`] and those of `open`.
    pub fn open_bytes(
        &self,
        data: &[u8],
    ) -> Result<(pb::Envelope, Member, pb::Body), EnvelopeError> {
        if data.len() > sigil_proto::MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::Oversized);
        }
        let env = pb::Envelope::decode(data).map_err(|_| EnvelopeError::Decode)?;
        let (m, body) = self.open(&env)?;
        Ok((env, m, body))
    }
}

/// Signs `body` as member `member` with its node key.
pub fn seal(key: &SigningKey, member: Member, body: &pb::Body) -> pb::Envelope {
    let body = body.encode_to_vec();
    let sig: Signature = key.sign(&signed_bytes(&body));
    pb::Envelope {
        member: u32::from(member),
        body,
        signature: sig.to_bytes().to_vec(),
    }
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ENVELOPE_DOMAIN.len() + body.len());
    m.extend_from_slice(ENVELOPE_DOMAIN);
    m.extend_from_slice(body);
    m
}
