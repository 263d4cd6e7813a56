//! Opening a job's two sides as stores, and the checks made before any work: each side
//! answers, the source bucket exists, the destination bucket exists (or is created), and
//! the two sides are not the same place.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

mod dir;

use self::dir::{dir_place, resolved};

use super::spec::Endpoint;
use super::{Error, Result};
use crate::registry::Registry;
use crate::store::fs::FsStore;
use crate::store::s3::{ChecksumMode, S3Config, S3Store};
use crate::store::{self, BucketName, Store};

/// Which side of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Src,
    Dst,
}

impl Role {
    pub fn word(self) -> &'static str {
        match self {
            Role::Src => "source",
            Role::Dst => "destination",
        }
    }

    fn env(self) -> &'static str {
        match self {
            Role::Src => "SRC",
            Role::Dst => "DST",
        }
    }
}

/// An opened side.
#[derive(Clone)]
pub struct Side {
    pub store: Arc<dyn Store>,
    pub bucket: BucketName,
    pub prefix: String,
    /// Two sides with the same identity are one store (copies are server-side).
    pub identity: String,
    /// Two sides in the same place hold the same data, whoever reads it: the endpoint without
    /// the credentials (normalised), the registered store, or the directory's parent.
    pub place: String,
    pub display: String,
    /// A directory's files and folders the job cannot copy, with why: names that are not
    /// UTF-8, what cannot be read (see [`crate::store::fs::FsStore::not_indexed`]). The job
    /// reports them as dead letters.
    pub not_indexed: Vec<(String, String)>,
    /// For a dry run's destination directory that does not exist: the empty stand-in its
    /// store is opened on, so the dry run creates nothing (removed with the last clone).
    pub stand_in: Option<Arc<tempfile::TempDir>>,
    /// A local directory (not a registered store): it holds files and folders only.
    pub dir: Option<Dir>,
}

/// A local directory side: where it is, and its fs store, which makes an empty folder
/// marker's folder there ([`FsStore::make_marker_folder`]).
#[derive(Clone)]
pub struct Dir {
    pub path: PathBuf,
    pub store: Arc<FsStore>,
}

impl Side {
    /// Whether `key` of `size` bytes can be copied to this side. A directory has no place
    /// for the bytes of a folder marker with content (`reports/` holding 9 bytes, which S3
    /// allows): an fs store keeps them in its index, out of sight of every other program
    /// and lost to a copy of the directory, so it is a key the job cannot copy (rclone
    /// refuses it too, "same as directory").
    pub fn takes(&self, key: &str, size: i64) -> Result<(), crate::store::NameError> {
        if self.dir.is_some() && key.ends_with('/') && size > 0 {
            return Err(crate::store::NameError::Key {
                key: format!("{}{key}", self.prefix),
                why: "a folder marker with content: a directory has no place for a folder's \
                      bytes (copy it to a bucket, or rename it at the source)",
            });
        }
        Ok(())
    }

    /// Aborts the multipart upload `upload` of the job's `key` (relative to the prefix); an
    /// upload the store no longer knows counts as aborted.
    pub async fn abort_upload(&self, key: &str, upload: &str) -> store::Result<()> {
        let dk = store::ObjectKey::parse(&format!("{}{key}", self.prefix))?;
        match self.store.abort_multipart(&self.bucket, &dk, upload).await {
            Ok(()) | Err(store::Error::NoSuchUpload { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Opens sides, sharing one fs store between directories with the same parent.
pub struct Opener {
    dirs: HashMap<PathBuf, Arc<FsStore>>,
    hash_dirs: bool,
    /// Set for a job that deletes (see [`Opener::deleting`]): its filter.
    deleting: Option<super::filter::Filter>,
    dry: bool,
    /// Both sides are directories of one parent: the destination's store (which writes
    /// there anyway) reads the source too, and copies between them stay on the disk.
    share_parent: bool,
}

impl Opener {
    /// `hash_dirs`: index a directory's files with their MD5 before the job starts. Only a
    /// job that compares content (`--checksum`, `--verify`) needs that; otherwise a file is
    /// hashed as it is copied (its upload is checked against that hash), and the copy does
    /// not read the whole tree once before it starts.
    pub fn new(hash_dirs: bool) -> Self {
        Self {
            dirs: HashMap::new(),
            hash_dirs,
            deleting: None,
            share_parent: false,
            dry: false,
        }
    }

    /// For a dry run: a destination directory that does not exist is not made (nor its
    /// parent's index); an empty stand-in is listed instead.
    pub fn dry(mut self, yes: bool) -> Self {
        self.dry = yes;
        self
    }

    /// For a job that deletes (`--delete`), with its filter: a source directory with a
    /// folder or file it cannot read is refused, since the copies of what it holds would
    /// look gone from the source and be deleted at the destination (rclone skips deletions
    /// after such an error). What the filter leaves out of the job does not count.
    fn deleting(mut self, filter: Option<super::filter::Filter>) -> Self {
        self.deleting = filter;
        self
    }

    pub async fn open(&mut self, ep: &Endpoint, role: Role, registry: &Registry) -> Result<Side> {
        let display = ep.display();
        let bad = |source: store::Error| Error::Side {
            side: role.word(),
            what: display.clone(),
            source,
        };
        let bucket_of = |b: &str| {
            BucketName::parse(b)
                .map_err(|e| Error::Usage(format!("{} {display}: {e}", role.word())))
        };
        match ep {
            Endpoint::Store {
                store,
                bucket,
                prefix,
            } => {
                let opened = registry.get(store).await.map_err(|e| match e {
                    crate::registry::Error::State(crate::state::Error::NoSuchStore(_)) => {
                        Error::Usage(format!(
                            "{} {display}: no store named {store:?} is registered (see `ferry store list`)",
                            role.word()
                        ))
                    }
                    crate::registry::Error::Store { source, .. } => bad(source),
                    e => Error::Registry(e),
                })?;
                // An s3 store may hold a bucket named by S3's old rules (see
                // `BucketName::legacy`); an fs store's buckets are folders.
                let bucket = match &opened {
                    crate::registry::Opened::S3(_) => BucketName::legacy(bucket)
                        .map_err(|e| Error::Usage(format!("{} {display}: {e}", role.word())))?,
                    crate::registry::Opened::Fs(_) => bucket_of(bucket)?,
                };
                // A registered fs store is read as its files are now (a directory side is
                // indexed as it is opened, below).
                opened.refresh(&bucket).await.map_err(bad)?;
                // Where its data is, however it was named: the directory of an fs store (a
                // directory side names its parent the same way), the endpoint of an s3 one.
                let place = match &opened {
                    crate::registry::Opened::Fs(fs) => dir_place(fs.root()),
                    crate::registry::Opened::S3(_) => {
                        let rec = registry
                            .db()
                            .store(store)
                            .await
                            .map_err(|e| Error::Registry(crate::registry::Error::State(e)))?;
                        endpoint_place(rec.config.get("endpoint").and_then(|v| v.as_str()))
                    }
                };
                Ok(Side {
                    store: match &opened {
                        crate::registry::Opened::S3(_) => watched(opened.store()),
                        crate::registry::Opened::Fs(_) => opened.store(),
                    },
                    bucket,
                    prefix: prefix.clone(),
                    identity: format!("store:{store}"),
                    place,
                    display,
                    not_indexed: Vec::new(),
                    stand_in: None,
                    dir: None,
                })
            }
            Endpoint::S3 {
                endpoint,
                region,
                bucket,
                prefix,
            } => {
                if let Some(e) = endpoint.as_deref() {
                    let url = e.parse::<http::Uri>().ok();
                    if !url.is_some_and(|u| {
                        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                    }) {
                        let flag = match role {
                            Role::Src => "--src-endpoint",
                            Role::Dst => "--dst-endpoint",
                        };
                        return Err(Error::Usage(format!(
                            "{flag} {e:?} is not an http:// or https:// URL"
                        )));
                    }
                }
                let (access_key, secret_key) = credentials(role)?;
                let cfg = S3Config {
                    endpoint: endpoint.clone(),
                    region: region.clone(),
                    access_key: access_key.clone(),
                    secret_key,
                    path_style: endpoint.is_some(),
                    checksum_mode: inline_checksum_mode(endpoint.as_deref()),
                };
                let s = S3Store::new(endpoint.as_deref().unwrap_or("aws"), cfg).map_err(bad)?;
                Ok(Side {
                    store: watched(Arc::new(s)),
                    bucket: BucketName::legacy(bucket)
                        .map_err(|e| Error::Usage(format!("{} {display}: {e}", role.word())))?,
                    prefix: prefix.clone(),
                    identity: format!("s3:{}:{access_key}", endpoint.as_deref().unwrap_or("aws")),
                    place: endpoint_place(endpoint.as_deref()),
                    display,
                    not_indexed: Vec::new(),
                    stand_in: None,
                    dir: None,
                })
            }
            Endpoint::Dir { path, machine } => {
                // Another machine's directory (a `ferry worker` elsewhere on a shared
                // database): opening this one's directory of that name would split the
                // copy across machines, each "done" (found by a probe).
                if let Some(m) = machine
                    && *m != super::spec::this_machine()
                {
                    return Err(Error::Usage(format!(
                        "{} {display} is a directory of the machine {m}, which made the job; \
                         only a process there can run it (this is {})",
                        role.word(),
                        super::spec::this_machine()
                    )));
                }
                self.open_dir(path, role, registry, display).await
            }
        }
    }
}

/// An S3 side, watched: an endpoint that stops answering (a frozen server, a black-holed
/// path) fails its calls in seconds, said as such, not after the SDK's three attempts of a
/// minute each (a probe waited three silent minutes; see [`store::watched`]).
fn watched(s: Arc<dyn Store>) -> Arc<dyn Store> {
    Arc::new(store::watched::Watched::new(s))
}

/// An S3 endpoint's place: scheme, host and port, with the default port written out and
/// this machine's loopback names (`localhost`, `127.0.0.1`, `::1`, `0.0.0.0`) written as one,
/// so `http://localhost:9000` and `http://127.0.0.1:9000/` are the same place. Other names
/// stay as written (a local proxy may route by name); two names for one server beyond that
/// are found by [`same_place_by_canary`]. No endpoint is AWS.
fn endpoint_place(endpoint: Option<&str>) -> String {
    let Some(e) = endpoint else {
        return "s3:aws".into();
    };
    let Ok(uri) = e.parse::<http::Uri>() else {
        return format!("s3:{}", e.trim_end_matches('/').to_ascii_lowercase());
    };
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let host = uri
        .host()
        .unwrap_or("")
        .trim_matches(|c| c == '[' || c == ']')
        .to_ascii_lowercase();
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    let host = if local { "this-machine" } else { host.as_str() };
    format!("s3:{scheme}://{host}:{port}")
}

/// How an inline `s3://` side sends checksums: AWS itself (no endpoint) with the SDK's
/// default checksums, so objects keep theirs and copies are checked by them; any other
/// endpoint without, since many S3-compatible servers refuse the SDK's checksum trailers
/// (register the store with `--checksum-mode when-supported` for one that takes them).
fn inline_checksum_mode(endpoint: Option<&str>) -> ChecksumMode {
    match endpoint {
        None => ChecksumMode::WhenSupported,
        Some(_) => ChecksumMode::WhenRequired,
    }
}

/// The access and secret key for an inline `s3://` side.
fn credentials(role: Role) -> Result<(String, String)> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let (ak, sk) = (
        format!("FERRY_{}_ACCESS_KEY", role.env()),
        format!("FERRY_{}_SECRET_KEY", role.env()),
    );
    match (var(&ak), var(&sk)) {
        (Some(a), Some(s)) => Ok((a, s)),
        _ => match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(a), Some(s)) => Ok((a, s)),
            _ => Err(Error::Usage(format!(
                "no credentials for the {}: set {ak} and {sk} (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                role.word()
            ))),
        },
    }
}

/// For a job handed to a server: the first inline `s3://` side whose credentials this
/// process (the server) lacks, said from the client's point of view. Credentials are never
/// sent with a job, so the client's own `FERRY_SRC_ACCESS_KEY` does not help, and "set
/// FERRY_SRC_ACCESS_KEY" alone would send its user after what is set already.
pub fn missing_server_credentials(spec: &super::spec::MigrateSpec) -> Option<String> {
    [(&spec.src, Role::Src), (&spec.dst, Role::Dst)]
        .into_iter()
        .find(|(ep, role)| matches!(ep, Endpoint::S3 { .. }) && credentials(*role).is_err())
        .map(|(ep, role)| {
            format!(
                "the server has no credentials for the {} {}: a job handed to a server takes an \
                 s3:// side's credentials from the server's environment (FERRY_{}_ACCESS_KEY and \
                 FERRY_{}_SECRET_KEY, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY of `ferry \
                 serve`), never from the client; or register the endpoint with `ferry store add` \
                 and name it STORE:bucket",
                role.word(),
                ep.display(),
                role.env(),
                role.env()
            )
        })
}

/// Opens the two sides a job names: nested directories refused before either is touched, and
/// a deleting job's unreadable source refused (see [`Opener::deleting`]). `hash_dirs` as for
/// [`Opener::new`].
pub async fn open_sides(
    spec: &super::spec::MigrateSpec,
    hash_dirs: bool,
    registry: &Registry,
) -> Result<(Side, Side)> {
    open_sides_with(spec, Opener::new(hash_dirs), registry).await
}

/// [`open_sides`] for a dry run: nothing is made for a destination directory that does not
/// exist (see [`Opener::dry`]).
pub async fn open_sides_dry(
    spec: &super::spec::MigrateSpec,
    hash_dirs: bool,
    registry: &Registry,
) -> Result<(Side, Side)> {
    open_sides_with(spec, Opener::new(hash_dirs).dry(true), registry).await
}

async fn open_sides_with(
    spec: &super::spec::MigrateSpec,
    opener: Opener,
    registry: &Registry,
) -> Result<(Side, Side)> {
    refuse_nested(&spec.src, &spec.dst)?;
    let filter = match spec.options.delete {
        true => Some(super::filter::Filter::new(&spec.options)?),
        false => None,
    };
    let mut opener = opener.deleting(filter);
    if let (Endpoint::Dir { path: a, .. }, Endpoint::Dir { path: b, .. }) = (&spec.src, &spec.dst) {
        opener.share_parent = resolved(a).parent() == resolved(b).parent();
    }
    let src = opener.open(&spec.src, Role::Src, registry).await?;
    // The source answers before anything is made for the destination (a directory and its
    // parent's index): a run that fails on its source leaves no trace at the destination.
    probe(&src).await.map_err(side_err(&src, Role::Src))?;
    let dst = opener.open(&spec.dst, Role::Dst, registry).await?;
    Ok((src, dst))
}

/// `side`'s failure as the job's error.
fn side_err(side: &Side, role: Role) -> impl FnOnce(store::Error) -> Error {
    let what = side.display.clone();
    move |source| Error::Side {
        side: role.word(),
        what,
        source,
    }
}

/// A one-key listing rather than HEAD: it needs the permission the job needs, and its
/// error answers carry a code (a HEAD's 403 says nothing about why).
async fn probe(side: &Side) -> store::Result<()> {
    side.store
        .list_objects(
            &side.bucket,
            &store::ListQuery {
                max_keys: 1,
                ..Default::default()
            },
        )
        .await
        .map(|_| ())
}

/// Refuses a deleting job whose source holds nothing while its destination holds something:
/// a mistyped prefix, or one naming an object (`s3://b/photo.jpg` names the folder
/// `photo.jpg/`), would delete every object under the destination (a probe saw one wiped,
/// exit 0). rclone stops a local source that is not there ("directory not found"); an S3
/// prefix cannot be told missing from empty, so an empty one is refused too.
pub async fn refuse_emptying(src: &Side, dst: &Side) -> Result<()> {
    // Folder markers (`photos/`, `photos/2024/`: empty keys ending in `/`, made in a
    // console) hold nothing: a tree of them alone would have the destination emptied all the
    // same (a probe). One page tells; a longer listing is taken as holding something.
    async fn first(side: &Side) -> store::Result<bool> {
        let page = side
            .store
            .list_objects(
                &side.bucket,
                &store::ListQuery {
                    prefix: side.prefix.clone(),
                    max_keys: 1000,
                    ..Default::default()
                },
            )
            .await?;
        let marker = |o: &store::ObjectMeta| o.key.as_str().ends_with('/') && o.size == 0;
        Ok(page.next_marker.is_some()
            || !page.unnamed.is_empty()
            || page.objects.iter().any(|o| !marker(o)))
    }
    if first(src).await.map_err(side_err(src, Role::Src))? {
        return Ok(());
    }
    match first(dst).await {
        Ok(true) => {}
        Ok(false) | Err(store::Error::NoSuchBucket { .. }) => return Ok(()),
        Err(e) => return Err(side_err(dst, Role::Dst)(e)),
    }
    let object = match src.prefix.strip_suffix('/') {
        Some(k) if !k.is_empty() => match store::ObjectKey::parse(k) {
            Ok(key) => src.store.head_object(&src.bucket, &key, None).await.is_ok(),
            Err(_) => false,
        },
        _ => false,
    };
    let why = if object {
        format!(
            "{} is an object, and a source names a folder, the keys under {}",
            src.prefix.trim_end_matches('/'),
            src.prefix
        )
    } else {
        "a prefix names a folder (s3://b/p means the keys under p/)".to_owned()
    };
    Err(Error::Usage(format!(
        "source {} holds nothing: {why}; --delete would delete every object under the \
         destination {}, so the job is refused (empty the destination another way if that is \
         meant)",
        src.display, dst.display
    )))
}

/// Refuses two directory sides nested in each other (symlinks resolved), before either is
/// opened (opening makes a destination's folder and index): a `--delete` from a folder inside
/// the destination would remove the source's own files, and a copy into a folder inside the
/// source would land in the tree it is read from.
fn refuse_nested(src: &Endpoint, dst: &Endpoint) -> Result<()> {
    if let (Endpoint::Dir { path: a, .. }, Endpoint::Dir { path: b, .. }) = (src, dst) {
        let (ra, rb) = (resolved(a), resolved(b));
        if ra.starts_with(&rb) || rb.starts_with(&ra) {
            return Err(Error::Usage(format!(
                "source {} and destination {} are the same place (or one is inside the other)",
                src.display(),
                dst.display()
            )));
        }
    }
    Ok(())
}

/// Checks both sides before any work; creates the destination bucket if it is missing
/// (unless `create` is false: then returns whether it exists).
pub async fn preflight(src: &Side, dst: &Side, create: bool) -> Result<bool> {
    if src.place == dst.place
        && src.bucket == dst.bucket
        && (src.prefix.starts_with(&dst.prefix) || dst.prefix.starts_with(&src.prefix))
    {
        return Err(Error::Usage(format!(
            "source {} and destination {} are the same place (or one is inside the other)",
            src.display, dst.display
        )));
    }
    // Named apart but perhaps one server (a proxy, a DNS alias, another address of this
    // machine): what would be lost is the source, so it is asked, by a key written to the
    // destination and looked for at the source. A dry run writes nothing and asks nothing.
    if create
        && src.place != dst.place
        && src.bucket == dst.bucket
        && (src.prefix.starts_with(&dst.prefix) || dst.prefix.starts_with(&src.prefix))
        && let Some(key) = same_place_by_canary(src, dst).await
    {
        return Err(Error::Usage(format!(
            "source {} and destination {} are the same place (or one is inside the other): \
             {key:?}, written to the destination to find out, could be read at the source, so \
             they are one server under two names",
            src.display, dst.display
        )));
    }
    // The source answered as it was opened (`open_sides`).
    match probe(dst).await {
        Ok(()) => {}
        Err(store::Error::NoSuchBucket { .. }) if !create => return Ok(false),
        Err(store::Error::NoSuchBucket { .. }) => {
            match dst.store.create_bucket(&dst.bucket).await {
                Ok(()) | Err(store::Error::BucketAlreadyExists { .. }) => {
                    eprintln!("ferry: created bucket {} on the destination", dst.bucket);
                }
                Err(e) => return Err(side_err(dst, Role::Dst)(e)),
            }
        }
        Err(e) => return Err(side_err(dst, Role::Dst)(e)),
    }
    Ok(true)
}

/// For two S3 sides with the same bucket name and nested prefixes, named differently (a
/// host and its address, a proxy in front of it): the key of an empty object written to the
/// destination (under its prefix) when the source can read it there, which makes them one
/// place. The object is removed again (by its version id where the bucket keeps versions, so
/// no delete marker stays). `None` when they are apart, or when it cannot be told (the
/// write is refused: the job would fail on the destination anyway).
async fn same_place_by_canary(src: &Side, dst: &Side) -> Option<String> {
    if src.store.caps().path_semantics || dst.store.caps().path_semantics {
        return None; // directories have their real paths compared
    }
    let name = format!(
        "{}.ferry-same-place-check-{}",
        dst.prefix,
        uuid::Uuid::new_v4().simple()
    );
    let key = store::ObjectKey::parse(&name).ok()?;
    let body: store::ByteStream = Box::pin(futures::stream::empty());
    let opts = store::PutOptions {
        size_hint: Some(0),
        ..Default::default()
    };
    let put = dst
        .store
        .put_object(&dst.bucket, &key, body, opts)
        .await
        .ok()?;
    let seen = src.store.head_object(&src.bucket, &key, None).await.is_ok();
    // By version id, `null` included: in a bucket whose versioning is suspended a plain
    // DELETE would leave a delete marker.
    if let Err(e) = dst
        .store
        .delete_object(&dst.bucket, &key, Some(put.version_id.as_str()))
        .await
    {
        tracing::warn!(key = %name, error = %e, "could not remove the key written to tell the sides apart");
    }
    seen.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_itself_gets_sdk_checksums_other_endpoints_do_not() {
        assert_eq!(inline_checksum_mode(None), ChecksumMode::WhenSupported);
        assert_eq!(
            inline_checksum_mode(Some("http://127.0.0.1:9000")),
            ChecksumMode::WhenRequired
        );
    }
}
