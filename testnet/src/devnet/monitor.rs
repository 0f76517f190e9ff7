//! `--monitor`: a real Prometheus (the Debian `prometheus` binary, on PATH) scrapes every
//! node's API and the relayer's `--metrics` listener each second and evaluates Sigil's alert
//! rules (`monitoring/alerts.yml`, compiled in). At the end of the load every query of the
//! Grafana dashboard (`monitoring/dashboard.json`) is run against it: each must be valid
//! PromQL and return data (a labelled family that only exists once something goes wrong is
//! allowed to be empty), and the alerts firing are listed. With `--keep-running` Prometheus
//! stays up at the printed URL.

use super::*;

const ALERTS: &str = include_str!("../../../monitoring/alerts.yml");
const DASHBOARD: &str = include_str!("../../../monitoring/dashboard.json");

/// Families whose series appear only on an event (a dropped peer message carries its
/// reason as a label): their panels may be empty on a healthy devnet.
const EVENT_FAMILIES: &[&str] = &["sigil_p2p_rejected_total"];

/// A running Prometheus.
pub(super) struct Monitor {
    /// Killed when the monitor is dropped (`kill_on_drop`): at the end of the run, or
    /// after Ctrl-C with `--keep-running`.
    _child: Child,
    /// Its base URL (`http://127.0.0.1:<port>`).
    pub url: String,
    http: reqwest::Client,
}

/// `report.json` → `monitor`.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorReport {
    /// Prometheus' URL.
    pub url: String,
    /// Dashboard queries run.
    pub queries: usize,
    /// Queries that failed or returned no data ("panel: expr: why").
    pub bad: Vec<String>,
    /// Alerts firing at the end (alert name and labels).
    pub firing: Vec<String>,
    /// An alert the run's faults must have raised and did not (e.g. `SigilChainHalted`
    /// after `--deep-reorg`).
    pub missing_alerts: Vec<String>,
}

impl MonitorReport {
    /// Whether every query returned data and every expected alert fired.
    pub fn passed(&self) -> bool {
        self.bad.is_empty() && self.missing_alerts.is_empty()
    }
}

/// `--monitor`: starts Prometheus scraping every node's API and the relayer's metrics
/// listener (`relayer`, `host:port`) and prints its URL. Errors: as [`start`].
pub(super) async fn start_for(
    run_dir: &Path,
    nodes: &[NodeProc],
    relayer: &str,
) -> Result<Monitor> {
    let mut targets: Vec<String> = nodes
        .iter()
        .map(|n| n.api.trim_start_matches("http://").to_owned())
        .collect();
    targets.push(relayer.to_owned());
    let m = start(run_dir, &targets).await.context("--monitor")?;
    println!("monitor: Prometheus at {} (alert rules loaded)", m.url);
    Ok(m)
}

/// Starts Prometheus in `run_dir/prometheus` scraping `targets` (`host:port`), 1-s scrape
/// and rule evaluation. Errors: no `prometheus` on PATH, it does not start or get ready in
/// 30 s.
pub(super) async fn start(run_dir: &Path, targets: &[String]) -> Result<Monitor> {
    let dir = run_dir.join("prometheus");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("alerts.yml"), ALERTS)?;
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [alerts.yml]\n\
             scrape_configs:\n  - job_name: sigil\n    static_configs:\n      - targets: [{list}]\n"
        ),
    )?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("start `prometheus` (the Debian package; scripts/setup.sh installs it)")?;
    let m = Monitor {
        _child: child,
        url: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = m.http.get(format!("{}/-/ready", m.url)).send().await
            && r.status().is_success()
        {
            return Ok(m);
        }
        if Instant::now() > deadline {
            bail!(
                "prometheus not ready in 30 s; see {}",
                dir.join("prometheus.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Monitor {
    /// Runs `expr` as an instant query: its result vector. Errors: HTTP, or a PromQL error.
    async fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            [("query", expr)],
        )?;
        let v: serde_json::Value = self.http.get(url).send().await?.json().await?;
        if v["status"] != "success" {
            bail!("{}", v["error"].as_str().unwrap_or("query failed"));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Runs every dashboard query and lists the firing alerts; `expect` names alerts the
    /// run's faults must have raised. Errors: the dashboard JSON is malformed.
    pub(super) async fn check(&self, expect: &[&str]) -> Result<MonitorReport> {
        let dash: serde_json::Value = serde_json::from_str(DASHBOARD)?;
        let mut r = MonitorReport {
            url: self.url.clone(),
            ..Default::default()
        };
        for panel in dash["panels"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for t in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = t["expr"].as_str() else {
                    continue;
                };
                r.queries += 1;
                match self.query(expr).await {
                    Ok(v) if !v.is_empty() => {}
                    Ok(_) if EVENT_FAMILIES.iter().any(|f| expr.contains(f)) => {}
                    Ok(_) => r.bad.push(format!("{title}: {expr}: no data")),
                    Err(e) => r.bad.push(format!("{title}: {expr}: {e}")),
                }
            }
        }
        for a in self.query("ALERTS{alertstate=\"firing\"}").await? {
            let l = &a["metric"];
            let name = l["alertname"].as_str().unwrap_or("?");
            let at = l["instance"].as_str().unwrap_or("");
            let chain = l["chain"]
                .as_str()
                .map(|c| format!(" chain {c}"))
                .unwrap_or_default();
            r.firing.push(format!("{name} ({at}{chain})"));
        }
        r.missing_alerts = expect
            .iter()
            .filter(|e| !r.firing.iter().any(|f| f.starts_with(&format!("{e} "))))
            .map(|e| e.to_string())
            .collect();
        Ok(r)
    }
}

/// Prints the result.
pub(super) fn print(m: &MonitorReport) {
    println!(
        "monitor ({}): {} dashboard queries, {} without data; {} alerts firing{}",
        m.url,
        m.queries,
        m.bad.len(),
        m.firing.len(),
        if m.firing.is_empty() {
            String::new()
        } else {
            format!(": {}", m.firing.join(", "))
        }
    );
    for b in &m.bad {
        println!("  MONITOR {b}");
    }
    for a in &m.missing_alerts {
        println!("  MONITOR expected alert {a} did not fire");
    }
}
