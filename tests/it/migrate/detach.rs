//! A job handed to the server (`--detach`) and controlled through the admin API and `ferry job`.

use super::*;

#[test]
fn detached_job_runs_in_the_server_and_the_admin_api_controls_it() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    ok(&a.aws(&["s3", "mb", "s3://det"]));
    let tmp = tempfile::tempdir().expect("tmp");
    make_tree(&tmp.path().join("det"), 30, &[]);
    ok(&a.aws(&[
        "s3",
        "cp",
        "--recursive",
        "--quiet",
        tmp.path().join("det").to_str().unwrap_or_default(),
        "s3://det/",
    ]));
    // The CLI hands the job to the server, which holds `local`.
    let out = ok(&a.cli(&["migrate", "local:det", "dr:copy", "--detach", "--json"]));
    let v: Value = serde_json::from_str(&out).expect("json");
    let id = v["job"]["id"].as_i64().expect("id");
    let token = crate::support::ADMIN_TOKEN;
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (code, v) = admin(&a, "GET", &format!("/api/v1/jobs/{id}"), token);
        assert_eq!(code, 200, "{v}");
        if v["job"]["state"] == "done" {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}\n{}", a.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["job"]["done"], 30, "{done}");
    assert_eq!(done["tasks"]["pending"], 0, "{done}");
    let ls = ok(&b.aws(&["s3", "ls", "--recursive", "s3://copy/"]));
    assert_eq!(ls.lines().count(), 30, "{ls}");
    // `ferry job` with --server follows it from anywhere (no state database here): it
    // printed "no job state in ferry-data" before.
    let elsewhere = tempfile::tempdir().expect("tmp");
    let job_cli = |args: &[&str]| {
        Command::new(ferry_bin())
            .arg("--server")
            .arg(&a.admin)
            .args(args)
            .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
            .current_dir(elsewhere.path())
            .output()
            .expect("run ferry")
    };
    let listed = ok(&job_cli(&["job", "list"]));
    assert!(
        listed.contains("local:det -> dr:copy") && listed.contains("30/30"),
        "{listed}"
    );
    let shown = ok(&job_cli(&["job", "show", &id.to_string()]));
    assert!(shown.contains(&format!("job {id}: done")), "{shown}");
    let out = job_cli(&["job", "resume", "9999"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!elsewhere.path().join("ferry-data").exists());
    // The same command again finds nothing to do: a new job, everything unchanged.
    let out = ok(&a.cli(&["migrate", "local:det", "dr:copy", "--detach", "--json"]));
    let again: Value = serde_json::from_str(&out).expect("json");
    assert_ne!(again["job"]["id"], id);

    let (code, list) = admin(&a, "GET", "/api/v1/jobs", token);
    assert_eq!(code, 200);
    assert!(list.as_array().is_some_and(|l| l.len() >= 2), "{list}");
    let (code, v) = admin(&a, "POST", &format!("/api/v1/jobs/{id}/pause"), token);
    assert_eq!(code, 409, "a finished job cannot be paused: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("only a running job"),
        "{v}"
    );
    let (code, _) = admin(&a, "POST", "/api/v1/jobs/9999/resume", token);
    assert_eq!(code, 404);
    let (code, dead) = admin(&a, "GET", &format!("/api/v1/jobs/{id}/dead"), token);
    assert_eq!((code, dead), (200, serde_json::json!([])));
    let (code, _) = admin(&a, "GET", "/api/v1/jobs", "wrong-token");
    assert_eq!(code, 401);
    let (_, doc) = admin(&a, "GET", "/api/v1/openapi.json", token);
    for p in [
        "/api/v1/jobs",
        "/api/v1/jobs/{id}/pause",
        "/api/v1/jobs/{id}/retry-dead",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} is documented");
    }
    // What only the process running the job could honour is refused with --detach, not
    // dropped: a detached --dry-run copied (and with --delete deleted) for real, and
    // --bandwidth-limit, --workers and --verify were ignored.
    for extra in [
        &["--dry-run", "--delete"][..],
        &["--verify"][..],
        &["--workers", "2"][..],
        &["--bandwidth-limit", "10K"][..],
    ] {
        let mut args = vec!["migrate", "local:det", "dr:dry", "--detach"];
        args.extend_from_slice(extra);
        let out = a.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(extra[0]), "{}", stderr(&out));
    }
    let listed = ok(&a.aws(&["s3", "ls", "s3://"]));
    assert!(
        !listed.contains(" dry"),
        "a refused detach made a bucket: {listed}"
    );
    // An inline s3:// side takes its credentials from the server's environment, never the
    // client's: the refusal says so, rather than "set FERRY_SRC_ACCESS_KEY" to a client that
    // has (the server here was started without any).
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        let out = a.cli_env(
            &[
                "migrate",
                "s3://det",
                "dr:inline",
                "--src-endpoint",
                &a.s3,
                "--detach",
            ],
            &[
                ("FERRY_SRC_ACCESS_KEY", ACCESS_KEY),
                ("FERRY_SRC_SECRET_KEY", SECRET_KEY),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("the server has no credentials for the source"),
            "{}",
            stderr(&out)
        );
    }
    // A bad side is refused by the server before a job exists.
    let out = a.cli(&["migrate", "nosuch:det", "dr:copy", "--detach"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no store named \"nosuch\""),
        "{}",
        stderr(&out)
    );
}

/// `POST /api/v1/jobs` takes a spec as JSON, not as the CLI parses it: it must refuse what
/// the CLI refuses (a probe had it record parts of 1 byte, no attempts, `../` and `a//b`
/// prefixes, and a relative directory), with 400 for a document of the wrong shape too, and
/// a directory of another machine than the server's.
#[test]
fn the_jobs_api_refuses_what_the_cli_refuses() {
    let a = Ferry::start();
    ok(&a.aws(&["s3", "mb", "s3://apisrc"]));
    let post = |body: &str| -> (u16, Value) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-X", "POST", "-H"])
            .arg(format!(
                "Authorization: Bearer {}",
                crate::support::ADMIN_TOKEN
            ))
            .args(["-H", "Content-Type: application/json", "--data", body])
            .arg(format!("{}/api/v1/jobs", a.admin))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    };
    let spec = |src: Value, dst: Value, options: Value| {
        serde_json::json!({ "spec": { "src": src, "dst": dst, "options": options } }).to_string()
    };
    let store = |bucket: &str, prefix: &str| serde_json::json!({ "kind": "store", "store": "local", "bucket": bucket, "prefix": prefix });
    let options = |part: u64, threshold: u64, attempts: u32| serde_json::json!({ "part_size": part, "multipart_threshold": threshold, "max_attempts": attempts });
    let good = options(16 << 20, 64 << 20, 3);
    let cases = [
        (
            spec(
                store("apisrc", ""),
                store("apidst", ""),
                options(1, 64 << 20, 3),
            ),
            "parts must be 5 MiB to 5 GiB",
        ),
        (
            spec(
                store("apisrc", ""),
                store("apidst", ""),
                options(16 << 20, 6 << 30, 3),
            ),
            "one PUT takes at most 5 GiB",
        ),
        (
            spec(
                store("apisrc", ""),
                store("apidst", ""),
                options(16 << 20, 64 << 20, 0),
            ),
            "at least one attempt",
        ),
        (
            spec(store("apisrc", "../"), store("apidst", ""), good.clone()),
            "prefix",
        ),
        (
            spec(store("apisrc", "a//b/"), store("apidst", ""), good.clone()),
            "prefix",
        ),
        (
            spec(store("apisrc", "sub"), store("apidst", ""), good.clone()),
            "write it as \"sub/\"",
        ),
        (
            spec(
                serde_json::json!({ "kind": "dir", "path": "relative/dir" }),
                store("apidst", ""),
                good.clone(),
            ),
            "an absolute path",
        ),
        (
            spec(
                serde_json::json!({ "kind": "dir", "path": "/tmp/../etc" }),
                store("apidst", ""),
                good.clone(),
            ),
            "an absolute path",
        ),
        (
            spec(
                serde_json::json!({ "kind": "s3", "endpoint": "not a url", "region": "us-east-1", "bucket": "b", "prefix": "" }),
                store("apidst", ""),
                good.clone(),
            ),
            "--src-endpoint \"not a url\" is not an http:// or https:// URL",
        ),
        (
            spec(
                store("apisrc", ""),
                store("apidst", ""),
                serde_json::json!({ "part_size": 16 << 20, "multipart_threshold": 64 << 20, "max_attempts": 3, "newer_than_ms": 5000, "older_than_ms": 1000 }),
            ),
            "no time is both",
        ),
        // Another machine's directory: a worker there would split the copy across machines.
        (
            spec(
                serde_json::json!({ "kind": "dir", "path": "/tmp", "machine": "elsewhere/0123456789ab" }),
                store("apidst", ""),
                good.clone(),
            ),
            "only a process there can run it",
        ),
        (r#"{"fingerprint": "x"}"#.to_owned(), "spec"),
        (r#"{"spec": {"src": 1}}"#.to_owned(), "spec"),
    ];
    for (body, want) in cases {
        let (code, v) = post(&body);
        assert_eq!(code, 400, "{body}: {v}");
        let e = v["error"].as_str().unwrap_or_default();
        assert!(e.contains(want), "{body}: {e}");
    }
    let (code, list) = admin(&a, "GET", "/api/v1/jobs", crate::support::ADMIN_TOKEN);
    assert_eq!(
        (code, list),
        (200, serde_json::json!([])),
        "a refused job was recorded"
    );
    // The same spec, well formed, is taken.
    let (code, v) = post(&spec(store("apisrc", ""), store("apidst", ""), good));
    assert_eq!(code, 201, "{v}");
}

/// Every dead letter, however many: `ferry job dead` pages through the whole list, from the
/// database and from a server, and the admin API hands it out page by page.
#[test]
fn the_dead_letter_list_pages_through_every_dead_letter() {
    use ferry::state::{Db, NewTask, now_ms};
    let f = Ferry::start();
    let n = 2_345;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let id = rt.block_on(async {
        let db = Db::open_embedded(&f.data()).await.expect("db");
        let id = db
            .create_job("migrate", &serde_json::json!({}), "dead-pages", now_ms())
            .await
            .expect("job");
        let now = now_ms();
        assert!(
            db.take_lister(id, "L", now, now + 60_000)
                .await
                .expect("lister")
        );
        let tasks: Vec<NewTask> = (0..n)
            .map(|i| NewTask {
                key: format!("k{i:05}"),
                action: "copy",
                size: 1,
                etag: "e".into(),
            })
            .collect();
        assert!(
            db.add_listing_page(id, "L", &tasks, Some("k99999"), 0, true)
                .await
                .expect("page")
        );
        let claimed = db
            .claim_tasks(id, "w", now, now + 60_000, n as i64)
            .await
            .expect("claim");
        for t in &claimed {
            db.fail_task(id, "w", t.id, &format!("refused {}", t.key), None)
                .await
                .expect("dead");
        }
        db.set_job_state(id, &["running"], "cancelled", now_ms())
            .await
            .expect("cancel");
        id
    });
    let want: Vec<String> = (0..n).map(|i| format!("k{i:05}")).collect();
    // From the database.
    let out = Command::new(ferry_bin())
        .arg("--data")
        .arg(f.data())
        .args(["job", "dead", &id.to_string()])
        .output()
        .expect("run");
    let text = ok(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), n, "{}", &text[..text.len().min(300)]);
    assert_eq!(lines[0], "k00000: after 1 attempts: refused k00000");
    // From the server, as JSON lines.
    let text = ok(&f.cli(&["job", "dead", &id.to_string(), "--json"]));
    let keys: Vec<String> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("one document a line");
            v["key"].as_str().expect("key").to_owned()
        })
        .collect();
    assert_eq!(keys, want);
    // The API's pages.
    let token = crate::support::ADMIN_TOKEN;
    let base = format!("/api/v1/jobs/{id}/dead");
    let (code, page) = admin(&f, "GET", &base, token);
    assert_eq!(code, 200);
    let page = page.as_array().expect("array").clone();
    assert_eq!(page.len(), 1000, "the default page");
    let last = page[999]["id"].as_i64().expect("id");
    let (code, rest) = admin(
        &f,
        "GET",
        &format!("{base}?after={last}&limit=10000"),
        token,
    );
    assert_eq!(code, 200);
    assert_eq!(rest.as_array().map(Vec::len), Some(n - 1000));
    assert_eq!(rest[0]["key"], "k01000");
    for bad in ["?limit=0", "?limit=10001", "?limit=x", "?after=y"] {
        let (code, v) = admin(&f, "GET", &format!("{base}{bad}"), token);
        assert_eq!(code, 400, "{bad}: {v}");
        assert!(v["error"].is_string(), "{bad}: {v}");
    }
    let (code, _) = admin(&f, "GET", "/api/v1/jobs/99999/dead", token);
    assert_eq!(code, 404);
    let none = Command::new(ferry_bin())
        .arg("--data")
        .arg(f.data())
        .args(["job", "dead", "99999"])
        .output()
        .expect("run");
    assert!(!none.status.success());
    assert!(stderr(&none).contains("99999"), "{}", stderr(&none));
}
