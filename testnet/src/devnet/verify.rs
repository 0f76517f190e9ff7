//! What an integrator does with an attestation, run by the devnet on one delivered message:
//! fetch it from a node's API, then `sigil verify` it against the key the destination inbox
//! holds (`--rpc --inbox`, the key read from chain, never the file's own), and check that
//! the same file with a forged payload is refused. Both are the real binary, as a user runs
//! it.

use super::*;

/// `report.json` → `verify`.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// The message checked.
    pub message_id: B256,
    /// `sigil verify --rpc --inbox` accepted the genuine file.
    pub genuine_ok: bool,
    /// `sigil verify --rpc --inbox` refused the file with a forged payload.
    pub forged_refused: bool,
    /// What `sigil verify` printed for the genuine file (its first line).
    pub output: String,
}

impl VerifyReport {
    /// Whether both held.
    pub fn passed(&self) -> bool {
        self.genuine_ok && self.forged_refused
    }
}

/// An integrator's check of one delivered A → B message with the real `sigil verify`: the
/// last one sent (so after a rotation it is under the key the inbox holds now; an older
/// epoch's key expires with its grace period), fetched from `api` (a running node).
/// `None`: no such message or no node running. Errors: as [`run`].
pub(super) async fn last_delivered(
    sigil: &Path,
    api: Option<&str>,
    sent: &BTreeMap<B256, Sent>,
    delivered: &HashMap<B256, u64>,
    dest: &Chain,
    run_dir: &Path,
) -> Result<Option<VerifyReport>> {
    let id = sent
        .iter()
        .filter(|(id, s)| s.forward && !s.poison && delivered.contains_key(*id))
        .max_by_key(|(_, s)| s.at_ms)
        .map(|(id, _)| *id);
    match (id, api) {
        (Some(id), Some(api)) => Ok(Some(run(sigil, api, id, dest, run_dir).await?)),
        _ => Ok(None),
    }
}

/// Runs `sigil verify` on message `id` (delivered on `dest`) fetched from `api`, writing the
/// files into `run_dir`. Errors: the API or the binary cannot be reached or run.
pub(super) async fn run(
    sigil: &Path,
    api: &str,
    id: B256,
    dest: &Chain,
    run_dir: &Path,
) -> Result<VerifyReport> {
    let url = format!("{api}/v1/attestations/{id}");
    let mut att: serde_json::Value = reqwest::get(&url)
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()?
        .json()
        .await?;
    let genuine = run_dir.join("attestation.json");
    std::fs::write(&genuine, serde_json::to_vec_pretty(&att)?)?;
    let verify = |file: PathBuf| {
        let mut c = Command::new(sigil);
        c.arg("verify")
            .arg(file)
            .args(["--rpc", &dest.anvil.endpoint()])
            .args(["--inbox", &dest.inbox.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let out = verify(genuine).output().await.context("run sigil verify")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let genuine_ok = out.status.success() && text.starts_with("OK:");
    // The same file, one payload byte changed: every check after the id must refuse it.
    att["message"]["payload"] = serde_json::Value::String("0x666f72676564".into());
    let forged = run_dir.join("attestation-forged.json");
    std::fs::write(&forged, serde_json::to_vec_pretty(&att)?)?;
    let out = verify(forged).output().await.context("run sigil verify")?;
    let forged_refused = out.status.code() == Some(1)
        && String::from_utf8_lossy(&out.stdout).starts_with("INVALID:");
    Ok(VerifyReport {
        message_id: id,
        genuine_ok,
        forged_refused,
        output: text.lines().next().unwrap_or_default().to_owned(),
    })
}

/// Prints the result.
pub(super) fn print(v: &VerifyReport) {
    println!(
        "sigil verify --rpc --inbox (key from the inbox): genuine {}, forged payload {}",
        if v.genuine_ok { "OK" } else { "NOT OK" },
        if v.forged_refused {
            "refused"
        } else {
            "NOT REFUSED"
        },
    );
    if !v.genuine_ok {
        println!("  {}", v.output);
    }
}
