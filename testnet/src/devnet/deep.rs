//! `--deep-reorg`: a reorg deeper than the finality depth on chain A, once the load is
//! delivered. A message is sent and mined, made final (`confirmations + 1` blocks on top),
//! and attested by the committee; then every block from it to the head is rewritten with
//! `anvil_reorg`, a *replacement* (same gateway nonce, so the same message id, another
//! payload) in its place. The committee must halt chain A on every member within a poll
//! (`halted` in `/v1/status` and `sigil_chain_halted` = 1), never attest the replacement (a
//! conflicting attestation for one id), and keep serving chain B: a B → A message sent
//! after the reorg is still attested and delivered.

use super::reorg::{replace, send_orphan};
use super::*;

/// Anvil's dev key for the deep reorg's messages (the same as `--reorgs`').
const KEY: usize = 3;

/// What the deep reorg did and how the committee answered.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeepReorgReport {
    /// Blocks rewritten (more than the confirmations).
    pub depth: u64,
    /// The original message was attested before the reorg (required for the test to mean
    /// anything).
    pub original_attested: bool,
    /// Per member: ms from the reorg until `/v1/status` showed chain A halted (`None`: not
    /// within 30 s).
    pub halted_after_ms: Vec<(u16, Option<u64>)>,
    /// Members whose `sigil_chain_halted` for chain A was 1.
    pub alarmed: usize,
    /// Attestations of the replacement seen (must be 0).
    pub replacement_attested: usize,
    /// A B → A message sent after the reorg was attested and delivered.
    pub other_chain_delivered: bool,
}

impl DeepReorgReport {
    /// Every member halted and alarmed, nothing conflicting attested, chain B still served.
    pub fn passed(&self) -> bool {
        self.original_attested
            && !self.halted_after_ms.is_empty()
            && self.halted_after_ms.iter().all(|(_, t)| t.is_some())
            && self.alarmed == self.halted_after_ms.len()
            && self.replacement_attested == 0
            && self.other_chain_delivered
    }
}

/// Prints the deep-reorg figures under the report.
pub fn print(d: &DeepReorgReport) {
    let worst = d.halted_after_ms.iter().filter_map(|(_, t)| *t).max();
    println!(
        "deep reorg: {} blocks on chain A; original attested: {}; halted on {}/{} members (last after {} ms), alarm on {}; replacement attested {} times; chain B after it: {}: {}",
        d.depth,
        d.original_attested,
        d.halted_after_ms
            .iter()
            .filter(|(_, t)| t.is_some())
            .count(),
        d.halted_after_ms.len(),
        worst.map_or("-".into(), |w| w.to_string()),
        d.alarmed,
        d.replacement_attested,
        if d.other_chain_delivered {
            "delivered"
        } else {
            "NOT delivered"
        },
        if d.passed() { "PASSED" } else { "FAILED" }
    );
}

/// Polls `f` every 50 ms until it holds (true) or `secs` pass (false).
pub(super) async fn wait_until(secs: u64, mut f: impl AsyncFnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Sends one message from `from`'s gateway to `recipient` on `to` with anvil's dev key
/// `key`, waiting for its receipt; (message id, transaction hash). Errors: RPC failures, or
/// no `MessageSent` in the receipt.
pub(super) async fn send_one(
    from: &Chain,
    to: &Chain,
    recipient: Address,
    key: usize,
    payload: &'static [u8],
) -> Result<(B256, B256)> {
    let p = provider_for(&from.anvil, key)?.erased();
    let r = SigilGateway::new(from.gateway, p)
        .sendMessage_0(to.id, recipient, Bytes::from_static(payload))
        .gas(200_000)
        .send()
        .await?
        .get_receipt()
        .await?;
    let id = r
        .inner
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<SigilGateway::MessageSent>().ok())
        .map(|e| e.inner.data.messageId)
        .ok_or_else(|| anyhow!("no MessageSent in the transaction"))?;
    Ok((id, r.transaction_hash))
}

/// Runs the deep reorg on `a` (messages to `b`) and watches the committee. Returns the
/// report and the B → A message sent afterwards (`Sent`, for the report's bookkeeping).
/// Errors: RPC failures, or anvil not doing what was asked.
pub(super) async fn run(
    a: &Chain,
    b: &Chain,
    nodes: &[NodeProc],
    tracker: &mut Tracker,
    confirmations: u64,
    block_time: u64,
) -> Result<DeepReorgReport> {
    let p = provider_for(&a.anvil, KEY)?.erased();
    let signer = PrivateKeySigner::from(
        a.anvil
            .nth_key(KEY)
            .ok_or_else(|| anyhow!("anvil key {KEY}"))?
            .clone(),
    );
    let mut rep = DeepReorgReport::default();
    // The tracker's orphan watch is borrowed for the original and the replacement; the
    // `--reorgs` figures are put back at the end.
    let saved = (
        std::mem::take(&mut tracker.orphans),
        tracker.orphans_attested,
    );
    let _: serde_json::Value = p
        .raw_request("evm_setIntervalMining".into(), (0u64,))
        .await
        .context("pause mining")?;
    let out = async {
        let nonce = p.get_transaction_count(signer.address()).await?;
        let original = Bytes::from_static(b"deep-original");
        let (tx, block) = send_orphan(a, b, &p, nonce, &original).await?;
        for _ in 0..=confirmations {
            let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await?;
        }
        // Final now: wait for the committee to attest it.
        tracker.orphans.clear();
        tracker.orphans.insert(original);
        tracker.orphans_attested = 0;
        rep.original_attested = wait_until(30, async || {
            tracker.poll(nodes).await;
            tracker.orphans_attested > 0
        })
        .await;
        tracker.orphans.clear();
        tracker.orphans_attested = 0;
        let replacement = Bytes::from_static(b"deep-replacement");
        tracker.orphans.insert(replacement.clone());
        rep.depth = p.get_block_number().await? + 1 - block;
        replace(a, b, &p, &signer, nonce, tx, block, &replacement).await?;
        anyhow::Ok(())
    }
    .await;
    let _: serde_json::Value = p
        .raw_request("evm_setIntervalMining".into(), (block_time,))
        .await
        .context("resume mining")?;
    out?;
    let t0 = Instant::now();
    let running: Vec<&NodeProc> = nodes.iter().filter(|n| n.child.is_some()).collect();
    let mut halted: BTreeMap<u16, u64> = BTreeMap::new();
    wait_until(30, async || {
        for n in &running {
            if halted.contains_key(&n.member) {
                continue;
            }
            let Some(s) = tracker.node_status(&n.api).await else {
                continue;
            };
            let a_halted = s["chains"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["chainId"] == a.id && c["halted"] == true)
            });
            if a_halted {
                halted.insert(n.member, t0.elapsed().as_millis() as u64);
            }
        }
        halted.len() == running.len()
    })
    .await;
    rep.halted_after_ms = running
        .iter()
        .map(|n| (n.member, halted.get(&n.member).copied()))
        .collect();
    let metric = format!("sigil_chain_halted{{chain=\"{}\"}}", a.id);
    for n in &running {
        if tracker.metric(&n.api, &metric).await == 1 {
            rep.alarmed += 1;
        }
    }
    // Chain B keeps being served: one B → A message, attested and delivered.
    let (id, _) = send_one(b, a, a.receiver, KEY, b"after-deep-reorg")
        .await
        .context("send B -> A after the deep reorg")?;
    rep.other_chain_delivered = wait_until(60, async || {
        tracker.poll(nodes).await;
        tracker.delivered.contains_key(&id)
    })
    .await;
    // Give the committee time to (wrongly) attest the replacement.
    wait_until(3, async || {
        tracker.poll(nodes).await;
        false
    })
    .await;
    rep.replacement_attested = tracker.orphans_attested;
    (tracker.orphans, tracker.orphans_attested) = saved;
    Ok(rep)
}
