//! The `ferry` binary: parse, run, print the error chain once, decide the exit code.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{Cli, Incomplete, Interrupted, NotCompared, StdoutClosed, UsageError};

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    ferry::telemetry::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ferry::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing to say to anyone. Any other
        // broken pipe (a peer's socket) is a failure like the rest, and said.
        Err(e) if StdoutClosed::is_cause_of(&e) => ExitCode::from(141),
        Err(e) => {
            let said = ferry::telemetry::one_line(e.as_ref());
            // Not `eprintln!`, which panics (exit 101) when stderr is a closed pipe
            // (`ferry migrate … 2>&1 | head -3`): the exit code still tells.
            let _ = writeln!(std::io::stderr(), "ferry: {}", ferry::cli::flat(&said));
            if e.is::<UsageError>() {
                ExitCode::from(2)
            } else if e.is::<Incomplete>() {
                ExitCode::from(23)
            } else if e.is::<NotCompared>() {
                ExitCode::from(3)
            } else if let Some(i) = e.downcast_ref::<Interrupted>() {
                ExitCode::from(i.status)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `ferry bucket status | head -1`: once the reader has gone, `println!` panics on the broken
/// pipe. Like any other command-line tool, exit quietly then (status 141, as if killed by
/// SIGPIPE) instead of printing a panic. SIGPIPE itself stays ignored, so a server writing to
/// a closed socket gets an error, not death.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
