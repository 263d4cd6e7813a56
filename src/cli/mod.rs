//! The command line: clap definitions, one file per subcommand, and the error type that
//! decides exit codes (0 ok, 1 failed, 2 bad usage, 23 done but incomplete).

mod bucket;
mod client;
mod job;
mod migrate;
mod serve;
mod store;
mod verify;
mod volume;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// An error in what the user asked for (exit code 2), as opposed to a failure doing it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Opens the `--db` state database after checking its URL's form: a malformed one is bad
/// usage (exit 2), named without its password.
pub async fn connect_db(url: &str) -> anyhow::Result<crate::state::Db> {
    crate::state::check_url(url).map_err(UsageError)?;
    Ok(crate::state::Db::connect(url).await?)
}

/// Standard output went away under a command that prints a lot (`ferry migrate --dry-run |
/// head`). Kept apart from every other broken pipe, a peer's socket above all, so that only
/// this one ends the program quietly.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

impl StdoutClosed {
    /// Whether `e` comes from writing to a standard output nobody reads any more.
    pub fn is_cause_of(e: &anyhow::Error) -> bool {
        e.chain().any(|c| {
            c.is::<StdoutClosed>()
                || c.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .is_some_and(|inner| inner.is::<StdoutClosed>())
        })
    }
}

/// Buffered standard output whose broken pipe is a [`StdoutClosed`].
pub(crate) struct Stdout(std::io::BufWriter<std::io::StdoutLock<'static>>);

impl Stdout {
    pub(crate) fn lock() -> Self {
        Self(std::io::BufWriter::new(std::io::stdout().lock()))
    }
}

fn closed(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(closed)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

/// `ferry verify` could not compare the two sides (a store unknown or not answering, a
/// bucket missing): exit code 3, so that a script can tell it from "they differ" (1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotCompared(pub String);

/// The work was done except for what could not be read, which was left as it was (exit code
/// 23, rsync's "partial transfer due to error").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Incomplete(pub String);

/// Stopped by a signal (Ctrl-C, SIGTERM) after putting the work in order: the exit status a
/// shell gives a process the signal ended (130, 143), so a script tells it from a failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Interrupted {
    pub status: u8,
    pub message: String,
}

#[derive(Parser, Debug)]
#[command(name = "ferry", version, about = "Keeps object data safe across sites", long_about = None)]
pub struct Cli {
    /// Data directory: state database, credentials, the built-in `local` store.
    #[arg(long, global = true, env = "FERRY_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Admin API of a running server (for admin commands).
    #[arg(long, global = true, env = "FERRY_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the S3 endpoint and the admin API.
    #[command(after_help = "Example:\n  ferry serve --data ./ferry-data --listen 127.0.0.1:9000")]
    Serve(serve::ServeArgs),
    /// Register, list, remove and rescan stores on a running server.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Namespace buckets: multi-write policy, status, failover and failback.
    #[command(subcommand)]
    Bucket(bucket::BucketCommand),
    /// Compare two store:bucket[/prefix] listings (size and ETag or checksum); exit 1 if
    /// they differ.
    #[command(after_help = "Example:\n  ferry verify local:photos dr:photos")]
    Verify {
        /// store:bucket[/prefix]
        a: String,
        /// store:bucket[/prefix]
        b: String,
        /// Read both sides' bytes of every object of the same size and compare them, as
        /// rclone's `check --download`: catches what ETags cannot tell (multipart ETags of
        /// other part sizes) and bytes changed behind their recorded ETag.
        #[arg(long)]
        download: bool,
    },
    /// Copy a bucket, prefix or directory to another store, as a job that resumes.
    #[command(
        after_help = "Examples:\n  ferry migrate s3://photos dr:photos --src-endpoint https://s3.example.com\n  ferry migrate ./exports aws:archive/2026 --include '*.csv' --verify"
    )]
    Migrate(Box<migrate::MigrateArgs>),
    /// Migration jobs: list, show, pause, resume, cancel, retry dead letters.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Run the jobs of a shared (PostgreSQL) state database alongside other processes.
    Worker(job::WorkerArgs),
    /// Point-in-time replication of a directory tree to another host, with snapshots.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args, cli.data).await,
        Command::Store(cmd) => {
            let client = client::AdminClient::new(cli.server, cli.data.as_deref())?;
            store::run(cmd, &client, cli.json).await
        }
        Command::Bucket(cmd) => {
            let client = client::AdminClient::new(cli.server, cli.data.as_deref())?;
            bucket::run(cmd, &client, cli.json).await
        }
        Command::Verify { a, b, download } => {
            let client = client::AdminClient::new(cli.server, cli.data.as_deref())?;
            verify::run(&a, &b, download, &client, cli.json).await
        }
        Command::Migrate(args) => migrate::run(*args, cli.data, cli.server, cli.json).await,
        Command::Job(cmd) => job::run(cmd, cli.data, cli.server, cli.json).await,
        Command::Worker(args) => job::worker(args, cli.data).await,
        Command::Volume(cmd) => volume::run(cmd, cli.json).await,
    }
}

/// "object" or "objects", for a count.
pub(crate) fn objects(n: u64) -> &'static str {
    if n == 1 { "object" } else { "objects" }
}

/// A key as printed on one line: as it is, or quoted with escapes when it holds a control
/// character (a newline would split the record a line-oriented reader sees), or when it is
/// empty or begins or ends with white space (`could not copy  after…` hid the key " ").
pub(crate) fn shown(key: &str) -> std::borrow::Cow<'_, str> {
    if key.is_empty() || key.trim() != key || key.chars().any(char::is_control) {
        format!("{key:?}").into()
    } else {
        key.into()
    }
}

/// A message (an error that may quote a key) as printed on one line: its control characters
/// escaped (`\n`), so a key with a newline does not split the line it is said on.
pub fn flat(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| match c.is_control() {
                true => c.escape_default().to_string(),
                false => c.to_string(),
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// Makes the data directory (mode 0700) if it is not there; a path that is something else
/// (a file) is bad usage, said as such rather than as "File exists".
pub fn make_data_dir(data: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Ok(m) = std::fs::metadata(data)
        && !m.is_dir()
    {
        return Err(UsageError(format!(
            "the data directory {} is not a directory (--data, FERRY_DATA or data)",
            data.display()
        ))
        .into());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .map_err(|e| anyhow::anyhow!("creating the data directory {}: {e}", data.display()))
}

#[cfg(test)]
mod tests {
    use super::flat;

    #[test]
    fn flat_escapes_control_characters_only() {
        assert_eq!(
            flat("key nl\nx.txt does not exist"),
            "key nl\\nx.txt does not exist"
        );
        assert_eq!(flat("tab\there\r"), "tab\\there\\r");
        assert_eq!(flat("café / ok"), "café / ok");
    }
}
