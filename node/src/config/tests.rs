//! Config parsing and validation: every bad field is named.

use super::*;

const KEY_A: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const KEY_B: &str = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";
const KEY_C: &str = "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9";
const KEY_D: &str = "02e493dbf1c10d80f3581e4904930b1404cc6c13900ee0758474fa94abe8c4cd13";

/// `[committee] members` entries for the first `n` of the four test keys.
fn members(n: usize) -> String {
    [KEY_A, KEY_B, KEY_C, KEY_D]
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, k)| {
            format!(
                "{{ key = \"{k}\", address = \"/ip4/127.0.0.1/tcp/700{}\" }}",
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(",\n            ")
}

fn base() -> String {
    format!(
        r#"[node]
listen = "/ip4/127.0.0.1/tcp/7001"
[committee]
members = [ {} ]
[[chains]]
name = "a"
chain_id = 1001
rpc = ["http://127.0.0.1:8545"]
gateway = "0x00000000000000000000000000000000000000aa"
inbox = "0x00000000000000000000000000000000000000bb"
finality = "confirmations:2"
poll_interval = "250ms"
"#,
        members(4)
    )
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("config.toml"), [])
}

fn field_of(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { field, .. } => field,
        other => panic!("expected a field error, got {other}"),
    }
}

#[test]
fn defaults_fill_in_and_the_template_parses() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.node.api, default_api());
    assert_eq!(c.consensus.propose_timeout, Duration::from_millis(1500));
    assert_eq!(c.finality(0), Finality::Confirmations(2));
    assert_eq!(c.chains[0].poll_interval, Duration::from_millis(250));
    // The template lists only this node; until the others are added it names the field.
    let t = template("n", "/ip4/127.0.0.1/tcp/7001", None, default_api(), KEY_A);
    assert_eq!(field_of(parse(&t).unwrap_err()), "committee.members");
    let own = format!("{{ key = \"{KEY_A}\", address = \"/ip4/127.0.0.1/tcp/7001\" }},");
    assert!(t.contains(&own), "{t}");
    let c = parse(&t.replace(&own, &format!("{},", members(4)))).unwrap();
    assert_eq!(c.committee.members.len(), 4);
    assert!(c.chains.is_empty());
}

/// A node listening on every interface tells others a concrete address: `sigil init
/// --advertise` writes it as the member's address and `[node] advertise`; a wildcard or
/// malformed advertise address names the field.
#[test]
fn the_advertised_address_is_what_others_dial() {
    let t = template(
        "n",
        "/ip4/0.0.0.0/tcp/7001",
        Some("/ip4/10.77.0.2/tcp/7001"),
        default_api(),
        KEY_A,
    );
    let own = format!("{{ key = \"{KEY_A}\", address = \"/ip4/10.77.0.2/tcp/7001\" }},");
    assert!(t.contains(&own), "{t}");
    let c = parse(&t.replace(&own, &format!("{},", members(4)))).unwrap();
    assert_eq!(c.node.listen, "/ip4/0.0.0.0/tcp/7001");
    assert_eq!(c.node.advertise.as_deref(), Some("/ip4/10.77.0.2/tcp/7001"));
    for bad in ["/ip4/0.0.0.0/tcp/7001", "/ip6/::/tcp/7001", "10.0.0.1:7001"] {
        let cfg = base().replace(
            "[committee]",
            &format!("advertise = \"{bad}\"\n\n[committee]"),
        );
        assert_eq!(
            field_of(parse(&cfg).unwrap_err()),
            "node.advertise",
            "{bad}"
        );
    }
}

/// The admin API can pause signing: it listens on loopback only.
#[test]
fn the_admin_api_listens_on_loopback_only() {
    let c = parse(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:8101\"\n",
        base()
    ))
    .unwrap();
    assert_eq!(c.admin.listen, Some("127.0.0.1:8101".parse().unwrap()));
    assert_eq!(parse(&base()).unwrap().admin.listen, None, "off by default");
    let err = parse(&format!("{}\n[admin]\nlisten = \"0.0.0.0:8101\"\n", base())).unwrap_err();
    assert_eq!(field_of(err), "admin.listen");
}

/// Security review finding: committees of 2-3 members never attest (FROST threshold and
/// consensus quorum disagree when f = 0), so validation rejects them.
#[test]
fn committees_that_cannot_tolerate_a_fault_are_rejected() {
    for n in 0..4 {
        let text = base().replace(&members(4), &members(n));
        assert_eq!(text.matches("key = ").count(), n);
        let err = parse(&text).unwrap_err();
        let msg = err.to_string();
        assert_eq!(field_of(err), "committee.members", "{n} members");
        assert!(msg.contains("at least 4 members"), "{msg}");
    }
    let three = base().replace(&members(4), &members(3));
    let msg = parse(&three).unwrap_err().to_string();
    assert!(
        msg.starts_with(
            "config field `committee.members`: 3 member(s) cannot tolerate one faulty member"
        ),
        "{msg}"
    );
    assert_eq!(parse(&base()).unwrap().committee.members.len(), 4);
}

#[test]
fn each_invalid_field_is_named() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "listen = \"/ip4/127.0.0.1/tcp/7001\"",
            "listen = \"localhost:7001\"",
            "node.listen",
        ),
        (
            "[node]\n",
            "[node]\nlog_format = \"xml\"\n",
            "node.log_format",
        ),
        (
            "{ key = \"02c6",
            "{ key = \"04c6",
            "committee.members[1].key",
        ),
        (
            "address = \"/ip4/127.0.0.1/tcp/7002\"",
            "address = \"nowhere\"",
            "committee.members[1].address",
        ),
        ("chain_id = 1001", "chain_id = 0", "chains[0].chain_id"),
        (
            "rpc = [\"http://127.0.0.1:8545\"]",
            "rpc = []",
            "chains[0].rpc",
        ),
        (
            "rpc = [\"http://127.0.0.1:8545\"]",
            "rpc = [\"ws://x\"]",
            "chains[0].rpc[0]",
        ),
        (
            "finality = \"confirmations:2\"",
            "finality = \"soon\"",
            "chains[0].finality",
        ),
        (
            "gateway = \"0x00000000000000000000000000000000000000aa\"",
            "gateway = \"0x0000000000000000000000000000000000000000\"",
            "chains[0].gateway",
        ),
        (
            "poll_interval = \"250ms\"",
            "poll_interval = \"1ms\"",
            "chains[0].poll_interval",
        ),
        (
            "[[chains]]",
            "[batch]\nmax_messages = 0\nmax_bytes = 100000\n[[chains]]",
            "batch.max_messages",
        ),
        (
            "[[chains]]",
            "[signing]\nnonce_pool = 1\nshare_timeout = \"1s\"\n[[chains]]",
            "signing.nonce_pool",
        ),
        ("[[chains]]", "[committee]\n", "committee"),
    ];
    for (from, to, field) in cases {
        let text = base().replacen(from, to, 1);
        assert_ne!(text, base(), "case {field} did not change the text");
        match parse(&text) {
            Ok(_) => panic!("{field}: accepted"),
            Err(ConfigError::Parse { message, .. }) if *field == "committee" => {
                assert!(message.contains("committee"), "{message}");
            }
            Err(e) => assert_eq!(field_of(e), *field),
        }
    }
    // A duplicate key.
    let dup = base().replace(KEY_B, KEY_A);
    assert_eq!(
        field_of(parse(&dup).unwrap_err()),
        "committee.members[1].key"
    );
    // An unknown key is a parse error naming it.
    let unknown = base().replace("[node]\n", "[node]\nlisten_addr = 1\n");
    let msg = parse(&unknown).unwrap_err().to_string();
    assert!(msg.contains("listen_addr"), "{msg}");
}

#[test]
fn environment_overrides_fields_by_section() {
    let env = [
        ("SIGIL_NODE__API".to_string(), "127.0.0.1:9100".to_string()),
        (
            "SIGIL_CONSENSUS__PROPOSE_TIMEOUT".to_string(),
            "3s".to_string(),
        ),
        ("SIGIL_PASSPHRASE".to_string(), "not a field".to_string()),
        ("SIGIL_INSECURE_FAST_KDF".to_string(), "1".to_string()),
    ];
    let c = Config::parse(&base(), Path::new("config.toml"), env).unwrap();
    assert_eq!(c.node.api, "127.0.0.1:9100".parse().unwrap());
    assert_eq!(c.consensus.propose_timeout, Duration::from_secs(3));
    let bad = [("SIGIL_NODE__LISTEN".to_string(), "nope".to_string())];
    assert_eq!(
        field_of(Config::parse(&base(), Path::new("c"), bad).unwrap_err()),
        "node.listen"
    );
}
