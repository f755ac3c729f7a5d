//! Leases held by a dead process on this machine. A worker's id is `{host}-{pid}-{uuid8}`:
//! after a kill -9 and a restart, the new process finds the jobs its predecessor held (same
//! host, that pid no longer running) and takes them back at once, instead of waiting for the
//! lease (`worker.lease`) to run out.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

/// The workers of this process (tests run several in one), by id.
static LIVE_HERE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// A worker id of this process, `{host}-{pid}-{uuid8}`, known as alive while this lives.
#[derive(Debug)]
pub struct WorkerId(String);

impl WorkerId {
    pub fn new(host: &str) -> Self {
        let id = format!("{host}-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        LIVE_HERE.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone());
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for WorkerId {
    fn drop(&mut self) {
        LIVE_HERE.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
    }
}

/// Which of `owners` (lease owners starting with `{host}-`) belong to a process of this
/// machine that is gone. A predecessor with this process's pid (a container restarted as
/// pid 1 again) is gone unless it is a worker of this very process.
pub fn dead_on_this_host(host: &str, owners: &[String]) -> Vec<String> {
    // Without /proc (not Linux) nothing can be told: leases run out as before.
    if !Path::new("/proc/self").exists() {
        return vec![];
    }
    owners
        .iter()
        .filter(|owner| match pid_of(host, owner) {
            None => false,
            Some(pid) if pid == std::process::id() => {
                !LIVE_HERE.lock().unwrap_or_else(|p| p.into_inner()).contains(owner.as_str())
            }
            Some(pid) => !running(pid),
        })
        .cloned()
        .collect()
}

/// The pid in `{host}-{pid}-{uuid8}`, if `owner` is a worker id of `host`.
fn pid_of(host: &str, owner: &str) -> Option<u32> {
    let rest = owner.strip_prefix(host)?.strip_prefix('-')?;
    let (pid, tag) = rest.split_once('-')?;
    (tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
    pid.parse().ok()
}

/// Whether `pid` is a live process (a zombie, killed but not yet reaped, is not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| !matches!(state, "Z" | "X")),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_dead_workers_of_this_host_from_live_ones() {
        let registered = WorkerId::new("box-1");
        let me = registered.as_str().to_string();
        let alive = format!("box-1-1-{}", "abcdef01"); // pid 1 always runs
        let gone = format!("box-1-{}-{}", u32::MAX - 7, "abcdef01");
        let predecessor = format!("box-1-{}-{}", std::process::id(), "00000000");
        let other_host = format!("box-2-{}-{}", u32::MAX - 7, "abcdef01");
        let owners = [me.clone(), alive, gone.clone(), predecessor.clone(), other_host, "box-1-x".into()];
        assert_eq!(dead_on_this_host("box-1", &owners), vec![gone, predecessor]);
    }
}
