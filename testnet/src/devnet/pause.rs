//! `--pause-check`: the operators' emergency stop, end to end with the real `sigil admin`
//! CLI against the running members, once the load is delivered. f + 1 members pause chain A
//! (`sigil admin pause`); `sigil admin pending` must show it. Then one A → B and one B → A
//! message are sent: the B → A one must still be attested and delivered, the A → B one must
//! not be attested while the pause holds (10 s after the other was delivered). After
//! `sigil admin resume` on the same members the A → B message is attested and delivered.
//!
//! Then the repairs, with the same CLI: `sigil admin reobserve` on each of those members
//! re-reads chain A from block 0 at finality and by the held message's transaction, and
//! must find every log already stored (nothing restored, nothing conflicting); and an
//! A → B message to a `FixableReceiver` ends Failed, the receiver is fixed, and `sigil
//! admin retry` against the relayer's admin API (whose own backoff is set to 10 minutes
//! for this check) delivers it.

use super::deep::{send_one, wait_until};
use super::*;
use crate::chain::FixableReceiver;

/// Anvil's dev key for the pause check's messages (no other step uses it).
const KEY: usize = 5;

/// `report.json` → `pauseCheck`.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseReport {
    /// Members whose operator paused chain A (f + 1).
    pub paused_members: Vec<u16>,
    /// Every `sigil admin` call exited 0 and `pending` listed the pause.
    pub cli_ok: bool,
    /// The B → A message sent during the pause was delivered.
    pub other_chain_delivered: bool,
    /// ms from its send to its delivery (the paused chain must not slow the others down).
    pub other_chain_ms: u64,
    /// The A → B message sent during the pause was not attested while it held.
    pub held_while_paused: bool,
    /// The A → B message was attested and delivered after `resume`.
    pub delivered_after_resume: bool,
    /// `sigil admin reobserve` (a block range and a transaction) on each pausing member
    /// found every log already stored: nothing restored, nothing conflicting.
    pub reobserve_idempotent: bool,
    /// Logs the block-range re-observe found (per member, the same).
    pub reobserved_logs: u64,
    /// The message to a broken receiver ended Failed, and `sigil admin retry` delivered it
    /// once the receiver was fixed.
    pub retry_delivered: bool,
}

impl PauseReport {
    /// Whether the stop held, the other chain kept going and the resume released it.
    pub fn passed(&self) -> bool {
        self.cli_ok
            && self.other_chain_delivered
            && self.held_while_paused
            && self.delivered_after_resume
            && self.reobserve_idempotent
            && self.reobserved_logs > 0
            && self.retry_delivered
    }
}

/// Prints the result.
pub(super) fn print(p: &PauseReport) {
    println!(
        "admin check (sigil admin pause chain A on members {:?}): A -> B held while paused: {}, B -> A delivered meanwhile: {} (in {} ms), A -> B delivered after resume: {}; reobserve ({} logs) idempotent: {}; Failed message delivered by sigil admin retry: {}: {}",
        p.paused_members,
        p.held_while_paused,
        p.other_chain_delivered,
        p.other_chain_ms,
        p.delivered_after_resume,
        p.reobserved_logs,
        p.reobserve_idempotent,
        p.retry_delivered,
        if p.passed() { "PASSED" } else { "FAILED" }
    );
}

/// `sigil --home <home> admin <args>`: its stdout if it exited 0.
async fn admin(bin: &Path, home: &Path, args: &[&str]) -> Option<String> {
    let out = sigil(bin, home)
        .arg("admin")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The relayer as the check reaches it: its home (the admin token) and admin address.
pub(super) struct RelayerAdmin<'a> {
    pub(super) home: &'a Path,
    pub(super) addr: &'a str,
}

/// Runs the check on a committee of `n` members. Errors: RPC failures sending the
/// messages or fixing the receiver.
pub(super) async fn run(
    bin: &Path,
    [a, b]: [&Chain; 2],
    nodes: &[NodeProc],
    tracker: &mut Tracker,
    n: u16,
    relayer: RelayerAdmin<'_>,
) -> Result<PauseReport> {
    // f of the committee (n members), paused among the members still running.
    let running: Vec<&NodeProc> = nodes.iter().filter(|n| n.child.is_some()).collect();
    let f = usize::from(n.saturating_sub(1) / 3);
    let pausers = &running[..(f + 1).min(running.len())];
    let chain = a.id.to_string();
    let mut rep = PauseReport {
        paused_members: pausers.iter().map(|n| n.member).collect(),
        cli_ok: true,
        ..Default::default()
    };
    for n in pausers {
        rep.cli_ok &= admin(bin, &n.home, &["pause", &chain]).await.is_some();
        let listed = admin(bin, &n.home, &["pending"])
            .await
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .is_some_and(|v| {
                v["paused"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|c| c == a.id))
            });
        rep.cli_ok &= listed;
    }
    // The nodes apply it on their next 50-ms tick.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (held, held_tx) = send_one(a, b, b.receiver, KEY, b"sent-while-a-is-paused").await?;
    let sent = Instant::now();
    let (other, _) = send_one(b, a, a.receiver, KEY, b"b-to-a-during-the-pause").await?;
    rep.other_chain_delivered = wait_until(90, async || {
        tracker.poll(nodes).await;
        tracker.delivered.contains_key(&other)
    })
    .await;
    rep.other_chain_ms = sent.elapsed().as_millis() as u64;
    // Give the committee time to (wrongly) attest the paused chain's message.
    wait_until(10, async || {
        tracker.poll(nodes).await;
        false
    })
    .await;
    rep.held_while_paused = !tracker.attested.contains_key(&held);
    for n in pausers {
        rep.cli_ok &= admin(bin, &n.home, &["resume", &chain]).await.is_some();
    }
    rep.delivered_after_resume = wait_until(90, async || {
        tracker.poll(nodes).await;
        tracker.delivered.contains_key(&held)
    })
    .await;
    reobserve(bin, a, pausers, held_tx, &mut rep).await?;
    rep.retry_delivered = retry(bin, a, b, relayer).await?;
    Ok(rep)
}

/// `sigil admin reobserve` of chain A on each member in `members`, from block 0 to the
/// final block and by `tx`: every log must be `known`.
async fn reobserve(
    bin: &Path,
    a: &Chain,
    members: &[&NodeProc],
    tx: B256,
    rep: &mut PauseReport,
) -> Result<()> {
    let p = provider_for(&a.anvil, KEY)?.erased();
    // Block 0 up to the head: the node clamps it to the final block.
    let head = p.get_block_number().await?;
    let chain = a.id.to_string();
    let (to, tx) = (head.to_string(), tx.to_string());
    rep.reobserve_idempotent = true;
    for m in members {
        for (args, one) in [
            (
                vec!["reobserve", &chain, "--from-block", "0", "--to-block", &to],
                false,
            ),
            (vec!["reobserve", &chain, "--tx", &tx], true),
        ] {
            // One request per chain per second on each node.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let out = admin(bin, &m.home, &args)
                .await
                .and_then(|s| serde_json::from_str::<sigil_node::admin::ReobserveReport>(&s).ok());
            let ok = out.as_ref().is_some_and(|r| {
                r.restored == 0
                    && r.conflicting.is_empty()
                    && r.known + r.ahead == r.logs
                    && (!one || r.known == 1)
            });
            if !ok {
                eprintln!("admin check: member {} {args:?} answered {out:?}", m.member);
            }
            rep.reobserve_idempotent &= ok;
            if !one {
                rep.reobserved_logs = out.map_or(0, |r| r.known);
            }
        }
    }
    Ok(())
}

/// An A → B message to `b`'s `FixableReceiver` ends Failed; the receiver is fixed; `sigil
/// admin retries` lists it and `sigil admin retry` delivers it within 30 s (the relayer's
/// own retries wait 10 minutes in this check).
async fn retry(bin: &Path, a: &Chain, b: &Chain, relayer: RelayerAdmin<'_>) -> Result<bool> {
    let (id, _) = send_one(a, b, b.fixable, KEY, b"to-a-broken-receiver").await?;
    let pb = provider_for(&b.anvil, KEY)?.erased();
    let inbox = SigilInbox::new(b.inbox, pb.clone());
    // Failed: the inbox holds the message's leaf for `retry`.
    let status = async || {
        inbox
            .failedLeafOf(id)
            .call()
            .await
            .is_ok_and(|l| l != B256::ZERO)
    };
    if !wait_until(90, status).await {
        eprintln!("admin check: the message to the broken receiver never ended Failed");
        return Ok(false);
    }
    FixableReceiver::new(b.fixable, pb.clone())
        .fix()
        .send()
        .await?
        .get_receipt()
        .await?;
    let url = format!("http://{}", relayer.addr);
    let listed = admin(bin, relayer.home, &["--admin", &url, "retries"])
        .await
        .is_some_and(|s| s.contains(&id.to_string()));
    let asked = admin(
        bin,
        relayer.home,
        &["--admin", &url, "retry", &id.to_string()],
    )
    .await
    .is_some();
    let fixable = FixableReceiver::new(b.fixable, pb);
    let delivered = wait_until(30, async || {
        fixable
            .count()
            .call()
            .await
            .is_ok_and(|c| c == U256::from(1))
    })
    .await;
    if !(listed && asked && delivered) {
        eprintln!("admin check: retry listed {listed}, asked {asked}, delivered {delivered}");
    }
    Ok(listed && asked && delivered)
}
