//! Hostile connectors are stopped with a clear error naming the system and the
//! limit, and the other systems of the same manifest still sync.

use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

#[test]
fn hostile_connectors_are_stopped_and_the_rest_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 300).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let crm = crm_read_in_full();
    let mut text = format!("{}{crm}{}", entity("contacts", "id", &[]), shop_system());
    for behaviour in ["loop", "memory", "http", "sql", "trap"] {
        let evil = System::new(
            &format!("evil-{behaviour}"),
            "hostile",
            &format!("behaviour = \"{behaviour}\""),
        )
        .line(r#"allowed_hosts = ["api.example.org"]"#)
        .line(r#"databases = { granted = "crm.db" }"#)
        .line("limits = { call_timeout_secs = 1, memory_mib = 32 }")
        .entity("contacts", &[r#"direction = "read""#]);
        text.push_str(&evil.to_string());
    }
    let m = write_manifest(d, &text);
    let run = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(run.code, 1, "{run:?}");
    let expected = [
        "system 'evil-loop': connector stopped: exceeded its time limit of 1s per call (limits.call_timeout_secs)",
        "system 'evil-memory': connector stopped: exceeded its memory limit of 32 MiB (limits.memory_mib)",
        "system 'evil-http': permission error: http request to 'example.com' denied: the host is not in allowed_hosts of system 'evil-http'",
        "system 'evil-sql': permission error: database 'not-granted' is not granted to system 'evil-sql'",
        "system 'evil-trap': connector crashed: wasm trap: wasm `unreachable` instruction executed; connector said:",
    ];
    for e in expected {
        assert!(run.stderr.contains(e), "missing {e:?} in {run:?}");
    }
    assert!(
        run.stderr.contains("hostile connector panics on purpose"),
        "{run:?}"
    );
    // The good systems synced completely.
    assert!(run.stdout.contains("300 read, 300 written"), "{run:?}");
    assert_eq!(
        rows(
            &d.join("crm.db"),
            "SELECT first_name, last_name, email, phone FROM contacts"
        ),
        rows(
            &d.join("shop.db"),
            "SELECT fname, lname, mail, phone FROM customers"
        )
    );
}

#[test]
fn a_connector_sees_no_environment_and_no_undeclared_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A live TCP port the connector tries to reach directly (sockets are off).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = System::new(
        "probe",
        "hostile",
        &format!(r#"behaviour = "probe", port = {port}"#),
    )
    .entity("contacts", &[r#"direction = "read""#]);
    let m = write_manifest(
        d,
        &format!(
            "{}{probe}{}",
            entity("contacts", "id", &[]),
            csv_target(d, "contacts", "out", "out"),
        ),
    );
    let run = weir_env(
        WEIR,
        &m,
        &["sync", "--quiet"],
        &[("WEIR_SECRET_THAT_MUST_NOT_LEAK", "s3cret")],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let csv = csv_rows(&d.join("out").join("contacts.csv"));
    let header = &csv[0];
    let value = |name: &str| csv[1][header.iter().position(|h| h == name).unwrap()].clone();
    assert_eq!(
        value("env"),
        "0",
        "no environment variables reach the connector"
    );
    assert_eq!(value("args"), "0", "no arguments reach the connector");
    assert_eq!(value("root"), "false", "the connector cannot list /");
    assert_eq!(
        value("etc"),
        "false",
        "the connector cannot read /etc/passwd"
    );

    // What a component exports is read from the component itself.
    let connectors = weir(WEIR, &m, &["connectors"]);
    assert!(
        connectors.stdout.contains("probe: hostile 0.1.0"),
        "{connectors:?}"
    );
    assert!(
        connectors
            .stdout
            .contains("exports connector, source, webhook ("),
        "{connectors:?}"
    );
    assert!(
        connectors.stdout.contains("files: csv 0.1.0")
            && connectors
                .stdout
                .contains("exports connector, source, destination, keyed-destination ("),
        "{connectors:?}"
    );
}

/// A tiny HTTP server on 127.0.0.1: answers `authorized` when the request
/// carries `Authorization: Bearer s3cret-token`, else `anonymous`.
fn http_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request).to_lowercase();
            let body = if text.contains("authorization: bearer s3cret-token") {
                "authorized"
            } else {
                "anonymous"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn fetch_manifest(
    d: &std::path::Path,
    host: &str,
    port: u16,
    allow_private: bool,
) -> std::path::PathBuf {
    let fetch = System::new(
        "fetch",
        "hostile",
        &format!(r#"behaviour = "fetch", url = "http://{host}:{port}/ping", credential = "api""#),
    )
    .line(&format!(r#"allowed_hosts = ["{host}"]"#))
    .line(&format!("allow_private_network = {allow_private}"))
    .line(r#"credentials = { api = { header = "Authorization", value = "Bearer ${WEIR_TEST_API_TOKEN}" } }"#)
    .entity("answers", &[r#"direction = "read""#]);
    write_manifest(
        d,
        &format!(
            "{}{fetch}{}",
            entity("answers", "id", &[]),
            csv_target(d, "answers", "out", "out"),
        ),
    )
}

fn sync_with_token(m: &std::path::Path) -> Run {
    weir_env(
        WEIR,
        m,
        &["sync", "--quiet"],
        &[
            ("WEIR_TEST_API_TOKEN", "s3cret-token"),
            ("WEIR_LOG", "debug"),
        ],
    )
}

#[test]
fn http_reaches_private_addresses_only_when_allowed_and_the_host_injects_credentials() {
    let port = http_server();

    // A name that resolves to loopback is refused, though the host is allowed.
    let dir = tempfile::tempdir().unwrap();
    let run = sync_with_token(&fetch_manifest(dir.path(), "localhost", port, false));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("system 'fetch': permission error: http request denied"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("'localhost' resolves to non-public address"),
        "{run:?}"
    );

    // So is a literal private address.
    let dir = tempfile::tempdir().unwrap();
    let run = sync_with_token(&fetch_manifest(dir.path(), "127.0.0.1", port, false));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("http request to '127.0.0.1' denied: non-public address"),
        "{run:?}"
    );

    // Allowed: the request goes through and carries the credential, which the
    // connector never saw and which appears in no output and no stored byte.
    let dir = tempfile::tempdir().unwrap();
    let run = sync_with_token(&fetch_manifest(dir.path(), "localhost", port, true));
    assert_eq!(run.code, 0, "{run:?}");
    let csv = csv_rows(&dir.path().join("out").join("answers.csv"));
    let col = |name: &str| csv[0].iter().position(|h| h == name).unwrap();
    assert_eq!(csv[1][col("status")], "200");
    assert_eq!(csv[1][col("body")], "authorized");
    assert!(
        !run.stdout.contains("s3cret") && !run.stderr.contains("s3cret"),
        "{run:?}"
    );
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(6).any(|w| w == b"s3cret"),
                "secret found in {}",
                path.display()
            );
        }
    }
}

/// A component built against the connector API as 0.1.0 shipped it (before
/// `sql.copy-in`) still links and runs: its exports and its imports of the
/// earlier version are served by the host of the later one.
#[test]
fn a_connector_built_against_an_earlier_api_version_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 20).unwrap();
    exec(
        &d.join("copy.db"),
        "CREATE TABLE records (id TEXT PRIMARY KEY, data TEXT);",
    );
    let crm = System::sqlite("crm", "crm", "crm.db")
        .entity("contacts", &[r#"direction = "read""#, IGNORE_UPDATED_AT]);
    let old = System::new("old", "legacy", r#"database = "copy""#)
        .line(r#"databases = { copy = "copy.db" }"#)
        .entity("contacts", &[r#"direction = "write""#]);
    let m = write_manifest(
        d,
        &format!(
            "{}{crm}{old}",
            entity("contacts", "id", &["shared_key = true"])
        ),
    );
    let connectors = weir(WEIR, &m, &["connectors"]);
    assert!(
        connectors.stdout.contains("old: legacy 0.1.0"),
        "{connectors:?}"
    );
    let run = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("20 read, 20 written"), "{run:?}");
    let copied = rows(
        &d.join("copy.db"),
        "SELECT id, json_extract(data, '$.email') FROM records WHERE id = '7'",
    );
    let email = rows(&d.join("crm.db"), "SELECT email FROM contacts WHERE id = 7");
    assert_eq!(copied, [[Some("7".to_string()), email[0][0].clone()]]);
}
