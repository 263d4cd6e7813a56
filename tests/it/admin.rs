//! The admin API over HTTP: the token, JSON errors and refusals, health, metrics and the
//! OpenAPI document, and admin commands pointed at something that is not the API.

use std::process::Command;

use crate::cli::bad_usage;
use crate::support::{Ferry, ferry_bin, ok};

/// A plain HTTP GET on the admin listener; returns (status, body).
fn admin_get(f: &Ferry, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = admin_request(f, "GET", path, token, 0);
    (status, body)
}

/// An admin request with `body_len` bytes of body; returns (status, content type, body).
fn admin_request(
    f: &Ferry,
    method: &str,
    path: &str,
    token: Option<&str>,
    body_len: usize,
) -> (u16, String, String) {
    let (status, head, body) = admin_send(f, method, path, token, &vec![b' '; body_len]);
    (status, header_of(&head, "content-type"), body)
}

/// An admin request with `body` (as JSON); returns (status, the answer's head, its body).
fn admin_send(
    f: &Ferry,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let addr = f.admin.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect admin");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("send");
    // The server may answer (and close) before reading a large body.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or_default();
    (status, head.to_owned(), body.to_owned())
}

/// The value of header `name` (lowercase) in an answer's head, or "".
fn header_of(head: &str, name: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default()
}

/// Every admin API error is the API's JSON, the token is checked before anything else.
#[test]
fn admin_errors_are_json_and_need_the_token_first() {
    let f = Ferry::start();
    let t = Some(crate::support::ADMIN_TOKEN);
    for (method, path, token, len, want) in [
        ("GET", "/api/v1/jobs/abc", None, 0, 401),
        ("GET", "/api/v1/jobs/abc", t, 0, 400),
        ("GET", "/api/v1/jobs/9223372036854775808", t, 0, 400),
        ("GET", "/api/v1/nothing-here", t, 0, 404),
        ("DELETE", "/api/v1/jobs", t, 0, 405),
        ("POST", "/api/v1/jobs", t, 3 << 20, 413),
        // A parameter the route does not know (a typo of drop_owed, of wait) is refused,
        // not ignored.
        ("DELETE", "/api/v1/buckets/nsq?dorp_owed=true", t, 0, 400),
        ("POST", "/api/v1/buckets/nsq/failback?wiat=true", t, 0, 400),
        ("GET", "/api/v1/jobs/1/dead?limt=5", t, 0, 400),
        ("POST", "/api/v1/stores/local/rescan?adpot=true", t, 0, 400),
        // A route that takes none refuses any (it ignored them).
        ("GET", "/api/v1/stores?dorp_owed=true", t, 0, 400),
        (
            "PUT",
            "/api/v1/buckets/nsq/policy?drop_owed=true",
            t,
            0,
            400,
        ),
        ("GET", "/api/v1/jobs?limit=5", t, 0, 400),
    ] {
        let (status, ctype, body) = admin_request(&f, method, path, token, len);
        assert_eq!(status, want, "{method} {path}: {body}");
        assert!(
            ctype.starts_with("application/json"),
            "{method} {path}: {ctype}: {body}"
        );
        let v: serde_json::Value = serde_json::from_str(body.trim())
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"));
        assert!(
            v["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {body}"
        );
    }
    // A 401 names the scheme it wants; a job id that is no number is said as such.
    let (_, head, _) = admin_send(&f, "GET", "/api/v1/jobs", None, b"");
    assert_eq!(
        header_of(&head, "www-authenticate"),
        "Bearer realm=\"ferry admin\""
    );
    let (_, _, body) = admin_request(&f, "GET", "/api/v1/jobs/abc", t, 0);
    assert!(body.contains("\\\"abc\\\" is not a job id"), "{body}");
    // A field of the other kind of store is refused, as the CLI refuses its flag.
    let (status, _, body) = admin_send(
        &f,
        "POST",
        "/api/v1/stores",
        t,
        br#"{"name":"x","kind":"fs","path":"/tmp/x","endpoint":"http://x"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("endpoint does not apply to an fs store"),
        "{body}"
    );
}

#[test]
fn admin_endpoints_health_metrics_openapi_and_token() {
    let f = Ferry::start();
    ok(&f.aws(&["s3", "mb", "s3://metrics"]));
    ok(&f.aws(&["s3api", "put-object", "--bucket", "metrics", "--key", "k"]));
    assert_eq!(admin_get(&f, "/health", None).0, 200);
    assert_eq!(admin_get(&f, "/ready", None).0, 200);
    let (status, metrics) = admin_get(&f, "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("ferry_s3_requests_total{op=\"PutObject\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_s3_request_seconds_bucket{"),
        "{metrics}"
    );
    let (status, doc) = admin_get(&f, "/api/v1/openapi.json", None);
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("openapi json");
    assert_eq!(doc["openapi"], "3.1.0");
    // A cache-busting query on the static document is not refused.
    assert_eq!(admin_get(&f, "/api/v1/openapi.json?v=2", None).0, 200);
    assert!(doc["paths"]["/api/v1/stores"].is_object());
    for p in [
        "/api/v1/buckets",
        "/api/v1/buckets/{name}",
        "/api/v1/buckets/{name}/policy",
        "/api/v1/buckets/{name}/failover",
        "/api/v1/buckets/{name}/failback",
        "/api/v1/verify",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    assert_eq!(admin_get(&f, "/api/v1/buckets", None).0, 401);
    // The API itself needs the token.
    assert_eq!(admin_get(&f, "/api/v1/stores", None).0, 401);
    assert_eq!(admin_get(&f, "/api/v1/stores", Some("wrong")).0, 401);
    assert_eq!(
        admin_get(&f, "/api/v1/stores", Some(crate::support::ADMIN_TOKEN)).0,
        200
    );
    // Secrets never reach the log.
    assert!(!f.log().contains(crate::support::SECRET_KEY));
    assert!(!f.log().contains(crate::support::ADMIN_TOKEN));
}

/// Admin commands pointed at something that is not Ferry's admin API printed its page escaped
/// on one line (or `null`), and bad input the server refused (400) exited 1 instead of 2.
#[test]
fn admin_commands_say_what_answered_and_refused_input_is_usage() {
    let f = Ferry::start();
    let out = Command::new(ferry_bin())
        .args(["--server", &f.s3, "store", "list"])
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("a Ferry admin API") && err.contains("HTTP 4") && !err.contains("<?xml"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = f.cli(&["bucket", "create", "Bad_Name", "--write-to", "local:x"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With --data, the CLI finds the server running there on a port of its own: it looked
    // at the default port.
    let out = Command::new(ferry_bin())
        .args(["store", "list", "--data"])
        .arg(f.data())
        .env_remove("FERRY_SERVER")
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .output()
        .expect("run");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("local"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bad_usage(&["--server", "http://[::1", "store", "list"], "--server");
}

/// The token's scheme is case-insensitive (`bearer`, as RFC 9110 allows); a JSON body with a
/// field the API does not know (a typo such as `pathstyle`) is refused naming it, not dropped.
#[test]
fn any_case_of_bearer_and_unknown_fields_refused() {
    let f = Ferry::start();
    let token = crate::support::ADMIN_TOKEN;
    let curl = |args: &[&str]| -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    };
    let stores = format!("{}/api/v1/stores", f.admin);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let (code, body) = curl(&["-H", &format!("Authorization: {scheme} {token}"), &stores]);
        assert_eq!(code, 200, "{scheme}: {body}");
    }
    let auth = format!("Authorization: Bearer {token}");
    let post = |path: &str, doc: serde_json::Value| {
        curl(&[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            &doc.to_string(),
            &format!("{}{path}", f.admin),
        ])
    };
    let path = f.dir.path().join("typo-store");
    let (code, body) = post(
        "/api/v1/stores",
        serde_json::json!({ "name": "typo", "kind": "fs", "path": path, "pathstyle": true }),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("pathstyle"), "{body}");
    assert!(!ok(&f.cli(&["store", "list"])).contains("typo"));
    let (code, body) = post(
        "/api/v1/buckets",
        serde_json::json!({ "name": "b", "write_to": ["local:b"], "readfrom": ["local:b"] }),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("readfrom"), "{body}");
}
