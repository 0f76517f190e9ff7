//! `--pause-check`: the operators' emergency stop, end to end with the real `sigil admin`
//! CLI against the running members, once the load is delivered. f + 1 members pause chain A
//! (`sigil admin pause`); `sigil admin pending` must show it. Then one A → B and one B → A
//! message are sent: the B → A one must still be attested and delivered, the A → B one must
//! not be attested while the pause holds (10 s after the other was delivered). After
//! `sigil admin resume` on the same members the A → B message is attested and delivered.

use super::deep::wait_until;
use super::*;

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
    /// The A → B message sent during the pause was not attested while it held.
    pub held_while_paused: bool,
    /// The A → B message was attested and delivered after `resume`.
    pub delivered_after_resume: bool,
}

impl PauseReport {
    /// Whether the stop held, the other chain kept going and the resume released it.
    pub fn passed(&self) -> bool {
        self.cli_ok
            && self.other_chain_delivered
            && self.held_while_paused
            && self.delivered_after_resume
    }
}

/// Prints the result.
pub(super) fn print(p: &PauseReport) {
    println!(
        "pause check (sigil admin pause chain A on members {:?}): A -> B held while paused: {}, B -> A delivered meanwhile: {}, A -> B delivered after resume: {}: {}",
        p.paused_members,
        p.held_while_paused,
        p.other_chain_delivered,
        p.delivered_after_resume,
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

/// Sends one message from `from` to `to`'s receiver with `payload`; its message id.
async fn send(from: &Chain, to: &Chain, payload: &'static [u8]) -> Result<B256> {
    let p = provider_for(&from.anvil, KEY)?.erased();
    let r = SigilGateway::new(from.gateway, p)
        .sendMessage_0(to.id, to.receiver, Bytes::from_static(payload))
        .gas(200_000)
        .send()
        .await?
        .get_receipt()
        .await?;
    r.inner
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<SigilGateway::MessageSent>().ok())
        .map(|e| e.inner.data.messageId)
        .ok_or_else(|| anyhow!("no MessageSent in the transaction"))
}

/// Runs the check on a committee of `n` members. Errors: RPC failures sending the two
/// messages.
pub(super) async fn run(
    bin: &Path,
    a: &Chain,
    b: &Chain,
    nodes: &[NodeProc],
    tracker: &mut Tracker,
    n: u16,
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
    let held = send(a, b, b"sent-while-a-is-paused").await?;
    let other = send(b, a, b"b-to-a-during-the-pause").await?;
    rep.other_chain_delivered = wait_until(90, async || {
        tracker.poll(nodes).await;
        tracker.delivered.contains_key(&other)
    })
    .await;
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
    Ok(rep)
}
