//! A source that holds a valid secret but sends hostile paths: `..`, absolute paths, paths
//! through a symlink it planted, hardlinks and clones naming files outside the tree. The
//! destination must refuse the iteration, write nothing outside its directory, and publish
//! nothing.

use std::sync::Arc;

use ferry::volume::tls::{Secret, client_config};
use ferry::volume::tree::Meta;
use ferry::volume::wire::{self, Msg, Payload, VERSION};

use super::harness::{Destination, snapshot_ids};

fn meta() -> Meta {
    Meta {
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_600_000_000,
        mtime_ns: 0,
        xattrs: Vec::new(),
    }
}

fn small(path: &[u8], data: &[u8]) -> Msg {
    Msg::Small {
        path: path.to_vec(),
        meta: meta(),
        data: Payload {
            zstd: false,
            raw_len: data.len() as u32,
            bytes: data.to_vec(),
        },
        hash: *blake3::hash(data).as_bytes(),
    }
}

/// Runs one iteration made of `msgs` and returns the destination's answer.
async fn attack(secret: &Secret, msgs: Vec<Msg>) -> Msg {
    let config = Arc::new(client_config(secret).expect("client config"));
    let tcp = tokio::net::TcpStream::connect(&secret.address)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("ferry-volume").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS with a valid secret");
    wire::send(
        &mut tls,
        &Msg::Hello {
            version: VERSION,
            base: None,
        },
    )
    .await
    .expect("hello");
    let ready = wire::expect(&mut tls).await.expect("ready");
    assert!(matches!(ready, Msg::Ready { .. }), "{ready:?}");
    for m in msgs.into_iter().chain([Msg::Commit { consistent: true }]) {
        if wire::send(&mut tls, &m).await.is_err() {
            break;
        }
    }
    loop {
        match wire::recv(&mut tls).await {
            Ok(Some(Msg::Index(_) | Msg::IndexEnd)) => continue,
            Ok(Some(m)) => return m,
            Ok(None) | Err(_) => {
                return Msg::Failed {
                    error: "connection closed".into(),
                };
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).expect("outside dir");
    let dst = Destination::start(tmp.path(), "dst");
    let secret = Secret::load(&dst.secret).expect("secret");
    let out = outside.to_string_lossy().as_bytes().to_vec();
    let cases: Vec<(&str, Vec<Msg>)> = vec![
        ("dot-dot", vec![small(b"../outside/pwned", b"x")]),
        (
            "deeper dot-dot",
            vec![small(b"a/../../outside/pwned", b"x")],
        ),
        (
            "absolute",
            vec![small(&[&out[..], b"/pwned"].concat(), b"x")],
        ),
        (
            "through a planted symlink",
            vec![
                Msg::Symlink {
                    path: b"evil".to_vec(),
                    target: out.clone(),
                    meta: meta(),
                },
                small(b"evil/pwned", b"x"),
            ],
        ),
        (
            "a directory through a planted symlink",
            vec![
                Msg::Symlink {
                    path: b"evil".to_vec(),
                    target: out.clone(),
                    meta: meta(),
                },
                Msg::Dir {
                    path: b"evil/sub".to_vec(),
                    meta: meta(),
                },
            ],
        ),
        (
            "a hardlink to a file outside",
            vec![Msg::Link {
                path: b"stolen".to_vec(),
                to: b"../../../etc/passwd".to_vec(),
            }],
        ),
        (
            "a clone of a file outside",
            vec![Msg::Clone {
                path: b"stolen".to_vec(),
                from: b"/etc/passwd".to_vec(),
                meta: meta(),
            }],
        ),
        (
            "ferry's own state",
            vec![small(b".ferry/keys/client.crt", b"x")],
        ),
        (
            "a corrupted body",
            vec![Msg::Small {
                path: b"ok".to_vec(),
                meta: meta(),
                data: Payload {
                    zstd: false,
                    raw_len: 1,
                    bytes: b"y".to_vec(),
                },
                hash: *blake3::hash(b"x").as_bytes(),
            }],
        ),
    ];
    for (what, msgs) in cases {
        let answer = attack(&secret, msgs).await;
        assert!(
            matches!(answer, Msg::Failed { .. }),
            "{what}: the destination accepted it: {answer:?}"
        );
        assert_eq!(
            std::fs::read_dir(&outside).expect("outside").count(),
            0,
            "{what}: something was written outside the tree"
        );
        assert!(snapshot_ids(&dst.dir).is_empty(), "{what}: published");
    }
    assert!(
        std::fs::read(dst.dir.join(".ferry/keys/client.crt"))
            .expect("keys")
            .starts_with(b"-----BEGIN"),
        "the destination's keys were overwritten"
    );
    // The same connection path with sane content is accepted.
    let answer = attack(&secret, vec![small(b"fine", b"ok")]).await;
    assert!(matches!(answer, Msg::Published { .. }), "{answer:?}");
    assert_eq!(snapshot_ids(&dst.dir).len(), 1);
    let ids = snapshot_ids(&dst.dir);
    let snap = dst.dir.join(".ferry/snapshots").join(&ids[0]);
    assert_eq!(std::fs::read(snap.join("fine")).expect("fine"), b"ok");
}
