//! Who runs a job: runner names (`host/pidns.boot:pid:tag`), and taking back the work of this
//! host's runners that are gone (killed, crashed), at a runner's start and at each heartbeat.

use super::Result;
use crate::state::Db;

/// Hands back the tasks and listing lease of processes on this host that are gone (killed,
/// crashed), so the job continues at once instead of waiting for their leases, and forgets
/// them as the job's runners. Run as a runner starts and at each of its heartbeats.
pub async fn reclaim_dead(db: &Db, job: i64) -> Result<()> {
    let host = runner_host();
    let gone = |owner: &str| {
        let mut it = owner.rsplitn(3, ':');
        let (_, pid, h) = (it.next(), it.next(), it.next());
        h == Some(host.as_str())
            && pid
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| pid != std::process::id() && !running(pid))
    };
    for owner in db.job_owners(job).await? {
        if gone(&owner) {
            let n = db.reclaim_owner(job, &owner).await?;
            tracing::info!(job, %owner, tasks = n, "took back the work of a process that is gone");
        }
    }
    for runner in db.job_runners(job).await? {
        if gone(&runner.owner) {
            db.runner_gone(job, &runner.owner).await?;
        }
    }
    Ok(())
}

/// Whether process `pid` of this host runs: it exists and is not a zombie (a process killed
/// a moment ago can stay one until its parent reaps it).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S …`: the state follows the last `)` (comm may hold one).
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

/// The host part of a runner's name: the host name and this process's PID namespace, so
/// containers that share a host name (host networking) never take each other's processes
/// for their own when they look for dead ones.
pub(crate) fn hostname() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("pid:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .unwrap_or_default();
    format!("{host}/{ns}")
}

/// The host part of a runner's name: [`hostname`] and this boot's id. Two machines of the
/// same host name (cloned VMs, `localhost`) share the initial PID namespace's inode too,
/// and each took the other's live runners for its own dead ones (a probe saw every
/// heartbeat hand back a running worker's tasks, 48 parts uploaded for 30): a boot id is
/// random per machine and boot. Containers of one host share it; their PID namespaces
/// tell them apart.
pub(crate) fn runner_host() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|b| {
            b.trim()
                .replace('-', "")
                .chars()
                .take(12)
                .collect::<String>()
        })
        .unwrap_or_default();
    format!("{}.{boot}", hostname())
}

#[cfg(test)]
mod tests {
    use super::running;

    /// A runner's host names this boot: a runner of another machine with the same host
    /// name is not this host's.
    #[test]
    fn a_runner_host_names_the_boot() {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
        let host = super::runner_host();
        assert!(host.starts_with(&super::hostname()), "{host}");
        assert!(
            host.ends_with(&boot.trim().replace('-', "")[..12]),
            "{host}"
        );
        assert!(!host.contains(':'), "a runner name is split at ':': {host}");
    }

    /// A killed process its parent has not reaped yet is a zombie: gone, for its tasks.
    #[test]
    fn a_zombie_is_not_running() {
        assert!(running(std::process::id()));
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        assert!(running(sleeper.id()));
        let _ = sleeper.kill();
        // Not reaped yet: a zombie once the kill lands.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while running(sleeper.id()) {
            assert!(std::time::Instant::now() < deadline, "never a zombie");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = sleeper.wait();
        assert!(!running(sleeper.id()));
    }
}
