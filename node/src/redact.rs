//! Keeping RPC credentials out of logs. Providers put secrets in the URL (`https://user:
//! password@host/`, `https://host/v3/<api key>`), and HTTP client errors quote the URL they
//! failed on. Every RPC URL a command uses is registered once ([`register_url`]); the log
//! writer ([`writer`]) replaces each registered URL (as configured and as normalised by the
//! URL parser) and its password with `scheme://host[:port]/<redacted>` before a line is
//! written, whatever the call site logged.

use std::borrow::Cow;
use std::io::Write;
use std::sync::RwLock;

/// (secret text, what replaces it), longest first.
static SECRETS: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());

/// The form of `url` that is safe to log: scheme, host and port; `<redacted>` in place of
/// a non-trivial path, query or user info. A string that is not a URL is returned whole
/// only when it holds no `@` or `?`, else as `<redacted URL>`.
pub fn safe_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let secret = !u.username().is_empty()
                || u.password().is_some()
                || u.query().is_some()
                || !matches!(u.path(), "" | "/");
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{host}{port}/{}",
                u.scheme(),
                if secret { "<redacted>" } else { "" }
            )
        }
        Err(_) if url.contains(['@', '?']) => "<redacted URL>".into(),
        Err(_) => url.to_owned(),
    }
}

/// Registers `url` (an RPC endpoint of this process) for redaction from every log line.
/// A URL with nothing secret in it (no user info, path or query) is left as it is.
pub fn register_url(url: &str) {
    let safe = safe_url(url);
    if !safe.contains("<redacted") {
        return;
    }
    let mut forms = vec![url.to_owned()];
    if let Ok(u) = reqwest::Url::parse(url) {
        forms.push(u.to_string());
        forms.push(u.as_str().trim_end_matches('/').to_owned());
        if let Some(p) = u.password() {
            forms.push(p.to_owned());
        }
        let rest = u.path().trim_matches('/');
        if rest.len() >= 8 {
            forms.push(rest.to_owned());
        }
        // An API key is usually one path segment of its own.
        forms.extend(
            rest.split('/')
                .filter(|seg| seg.len() >= 16)
                .map(str::to_owned),
        );
        if let Some(q) = u.query().filter(|q| q.len() >= 8) {
            forms.push(q.to_owned());
        }
    }
    let Ok(mut s) = SECRETS.write() else { return };
    for f in forms {
        if f.is_empty() || f == safe || s.iter().any(|(x, _)| *x == f) {
            continue;
        }
        s.push((f, safe.clone()));
    }
    s.sort_by_key(|(x, _)| std::cmp::Reverse(x.len()));
}

/// `text` with every registered secret replaced.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(s) = SECRETS.read() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for (secret, safe) in s.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), safe));
        }
    }
    out
}

/// A writer that redacts each write (the log formatter writes one whole event per call).
pub struct Redacting<W>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => {
                self.0.write_all(redact(text).as_bytes())?;
                Ok(buf.len())
            }
            Err(_) => self.0.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Standard error through [`Redacting`], for `tracing_subscriber::fmt().with_writer`.
pub fn writer() -> Redacting<std::io::Stderr> {
    Redacting(std::io::stderr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_rpc_urls_never_reach_a_log_line() {
        let with_key = "https://mainnet.example.io/v3/0123456789abcdef0123";
        let with_user = "http://alice:hunter2hunter2@10.1.2.3:8545";
        let plain = "http://127.0.0.1:8545";
        for u in [with_key, with_user, plain] {
            register_url(u);
        }
        assert_eq!(safe_url(with_key), "https://mainnet.example.io/<redacted>");
        assert_eq!(safe_url(with_user), "http://10.1.2.3:8545/<redacted>");
        assert_eq!(safe_url(plain), "http://127.0.0.1:8545/");

        // What an HTTP client error looks like, logged through the writer.
        let mut buf = Vec::new();
        let line = format!(
            "WARN rpc error; retrying error=error sending request for url ({with_key}) and ({}) password hunter2hunter2 key 0123456789abcdef0123 at {plain}\n",
            reqwest::Url::parse(with_user).unwrap()
        );
        Redacting(&mut buf).write_all(line.as_bytes()).unwrap();
        let out = String::from_utf8(buf).unwrap();
        for secret in ["0123456789abcdef0123", "hunter2", "alice"] {
            assert!(!out.contains(secret), "{secret} leaked: {out}");
        }
        assert!(
            out.contains("https://mainnet.example.io/<redacted>"),
            "{out}"
        );
        assert!(out.contains("http://10.1.2.3:8545/<redacted>"), "{out}");
        assert!(
            out.contains(plain),
            "a URL without secrets stays readable: {out}"
        );
    }
}
