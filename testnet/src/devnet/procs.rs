//! The relayer process the devnet starts, and CPU time and peak memory of the processes it
//! started, read from Linux's `/proc`.

use super::{Chain, NodeProc, sigil};
use anyhow::Result;
use std::path::Path;
use std::process::Stdio;
use tokio::process::Child;

/// Starts `sigil relay` in `home` (created) for `nodes`' APIs and both chains' inboxes, with
/// its transaction key in the environment (never on the command line) and `extra`
/// arguments (`--metrics`, `--admin`, ...), logging to `<home>/relayer.log`.
pub(super) fn start_relayer(
    bin: &Path,
    home: &Path,
    nodes: &[NodeProc],
    chains: [&Chain; 2],
    extra: &[&str],
) -> Result<Child> {
    std::fs::create_dir_all(home)?;
    // The second funded account of chain A's anvil (the same on B: one mnemonic).
    let key = hex::encode(chains[0].anvil.keys()[1].to_bytes());
    let mut relay = sigil(bin, home);
    relay.arg("relay").args(extra);
    for n in nodes {
        relay.args(["--api", &n.api]);
    }
    for c in chains {
        relay.args([
            "--chain",
            &format!("{}={}@{}", c.id, c.anvil.endpoint(), c.inbox),
        ]);
    }
    let log = std::fs::File::create(home.join("relayer.log"))?;
    Ok(relay
        .env("SIGIL_RELAYER_KEY", &key)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

pub(super) fn start_node(bin: &Path, home: &Path) -> Result<Child> {
    start_node_with(bin, home, &[])
}

/// `sigil start` with extra arguments (`--join`), logging to `<home>/node.log`.
pub(super) fn start_node_with(bin: &Path, home: &Path, extra: &[&str]) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join("node.log"))?;
    Ok(sigil(bin, home)
        .arg("start")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

/// Gas used by the relayer's mined transactions, summed from its ledger (`path`, JSON lines).
pub(super) fn relayer_gas(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<sigil_node::relayer::TxRecord>(l).ok())
        .map(|r| r.gas_used)
        .sum()
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`USER_HZ`, fixed at 100 by the
/// Linux ABI on x86-64 and arm64).
const USER_HZ: f64 = 100.0;

/// What one process has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcFigures {
    /// User + system CPU time (s).
    pub cpu_seconds: f64,
    /// Peak resident set size (`VmHWM`, MiB).
    pub peak_rss_mib: f64,
}

/// Reads `pid`'s figures; `None` when the process is gone or `/proc` is unreadable.
pub fn read(pid: u32) -> Option<ProcFigures> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse(&stat, &status)
}

/// Current resident set size of `pid` (`VmRSS`, MiB); `None` when unreadable.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(status_kb(&status, "VmRSS:")? / 1024.0)
}

/// A `kB` field of `/proc/<pid>/status` (`field` with its colon).
fn status_kb(status: &str, field: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Parses `/proc/<pid>/stat` (utime and stime: fields 14 and 15, counted after the
/// parenthesised command name, which may hold spaces) and `/proc/<pid>/status` (`VmHWM`
/// in kB).
fn parse(stat: &str, status: &str) -> Option<ProcFigures> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at field 3 (state); utime is field 14.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let hwm_kb = status_kb(status, "VmHWM:")?;
    Some(ProcFigures {
        cpu_seconds: (utime + stime) / USER_HZ,
        peak_rss_mib: hwm_kb / 1024.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "4242 (sigil (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 2000000 5000";
        let status =
            "Name:\tsigil\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 100000 kB\n";
        let f = parse(stat, status).expect("parsed");
        assert!((f.cpu_seconds - 3.0).abs() < 1e-9, "{f:?}");
        assert!((f.peak_rss_mib - 200.0).abs() < 1e-9, "{f:?}");
        assert_eq!(parse("garbage", status), None);
        assert_eq!(parse(stat, "Name: x\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let f = read(std::process::id()).expect("this process is readable");
        assert!(f.peak_rss_mib > 0.0);
    }
}
