//! A JSON-RPC fault proxy in front of an anvil endpoint, on a loopback port: it forwards
//! every request and, by its [`Mode`] (switchable while it runs), answers HTTP 500, hangs
//! for 30 s, or lies (every block hash altered, every log payload altered, heads 1,000
//! blocks ahead). Used by the watcher tests and `sigil devnet --lying-rpc`.

use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// What the proxy does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Forward and return the upstream answer unchanged.
    Honest = 0,
    /// Answer HTTP 500 without forwarding.
    Error = 1,
    /// Hang 30 s, then forward.
    Hang = 2,
    /// Forward, then alter the answer ([`lie`]).
    Lie = 3,
}

/// A running proxy: its URL, its mode switch and its hook.
#[derive(Clone)]
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    mode: Arc<AtomicU8>,
    on_logs: Arc<tokio::sync::Mutex<Vec<serde_json::Value>>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (an HTTP JSON-RPC URL) in `mode`, served until the
    /// runtime stops. Errors: no loopback port to bind.
    pub async fn start(upstream: String, mode: Mode) -> Result<Self> {
        Self::start_on(([127, 0, 0, 1], 0).into(), upstream, mode).await
    }

    /// [`FaultProxy::start`] listening on `at` (an address this machine holds; port 0: any).
    /// Errors: `at` cannot be bound.
    pub async fn start_on(at: std::net::SocketAddr, upstream: String, mode: Mode) -> Result<Self> {
        use axum::routing::post;
        let proxy = Self {
            url: String::new(),
            mode: Arc::new(AtomicU8::new(mode as u8)),
            on_logs: Default::default(),
        };
        let client = reqwest::Client::new();
        let (mode, on_logs) = (proxy.mode.clone(), proxy.on_logs.clone());
        let app = axum::Router::new().route(
            "/",
            post(move |body: String| {
                let (client, upstream) = (client.clone(), upstream.clone());
                let (mode, on_logs) = (mode.clone(), on_logs.clone());
                async move { forward(&client, &upstream, body, &mode, &on_logs).await }
            }),
        );
        let l = tokio::net::TcpListener::bind(at).await?;
        let url = format!("http://{}", l.local_addr()?);
        tokio::spawn(async move { axum::serve(l, app).await });
        Ok(Self { url, ..proxy })
    }

    /// Switches the mode for the next requests.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Queues JSON-RPC requests to send upstream (once, in order) right after the proxy
    /// next fetches an `eth_getLogs` answer holding a log, before it returns that answer:
    /// a reorg that lands between a watcher's log read and its next call.
    pub async fn on_next_logs(&self, requests: Vec<serde_json::Value>) {
        *self.on_logs.lock().await = requests;
    }
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    body: String,
    mode: &AtomicU8,
    on_logs: &tokio::sync::Mutex<Vec<serde_json::Value>>,
) -> (axum::http::StatusCode, String) {
    let m = mode.load(Ordering::SeqCst);
    if m == Mode::Error as u8 {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "fault proxy: error".into(),
        );
    }
    if m == Mode::Hang as u8 {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let sent = client
        .post(upstream)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => {
            return (
                axum::http::StatusCode::BAD_GATEWAY,
                format!("fault proxy: upstream: {e}"),
            );
        }
    };
    if body.contains("eth_getLogs") && resp.contains("blockHash") {
        for req in std::mem::take(&mut *on_logs.lock().await) {
            let _ = client.post(upstream).json(&req).send().await;
        }
    }
    if mode.load(Ordering::SeqCst) == Mode::Lie as u8
        && let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&resp)
    {
        lie(&mut v);
        return (axum::http::StatusCode::OK, v.to_string());
    }
    (axum::http::StatusCode::OK, resp)
}

/// Alters a JSON-RPC answer in place: every `hash`/`blockHash` becomes `0xabab…`, every log
/// `data` gets its last byte flipped, and a bare quantity result (a head number) moves
/// 1,000 ahead.
pub fn lie(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match (k.as_str(), &*x) {
                    ("hash" | "blockHash", _) => {
                        *x = Value::String(format!("0x{}", "ab".repeat(32)));
                    }
                    ("data", Value::String(d)) if d.len() > 2 => {
                        let mut d = d.clone();
                        let last = if d.ends_with('0') { '1' } else { '0' };
                        d.pop();
                        d.push(last);
                        *x = Value::String(d);
                    }
                    ("result", Value::String(q)) if q.starts_with("0x") && q.len() <= 18 => {
                        if let Ok(n) = u64::from_str_radix(&q[2..], 16) {
                            *x = Value::String(format!("0x{:x}", n.saturating_add(1000)));
                        }
                    }
                    _ => lie(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(lie),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lie_changes_hashes_log_data_and_heads() {
        let mut logs = serde_json::json!({"result": [{"blockHash": "0x01", "data": "0x00aa", "logIndex": "0x0"}]});
        lie(&mut logs);
        assert_eq!(
            logs["result"][0]["blockHash"],
            format!("0x{}", "ab".repeat(32))
        );
        assert_eq!(logs["result"][0]["data"], "0x00a0");
        let mut head = serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": "0x10"});
        lie(&mut head);
        assert_eq!(head["result"], "0x3f8");
        // A 32-byte result (a hash) is not a quantity: left as it is.
        let h = format!("0x{}", "11".repeat(32));
        let mut tx = serde_json::json!({"result": h});
        lie(&mut tx);
        assert_eq!(tx["result"], h);
    }
}
