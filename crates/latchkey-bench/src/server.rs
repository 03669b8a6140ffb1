//! The server process under test, seen from /proc (Linux): its resident
//! memory, and `kill -9`. Only a process named `latchkey` is ever touched.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tokio::time::Instant;

/// A running latchkey server, by process id.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    pub pid: u32,
}

impl Server {
    /// Checks that `pid` is a live process named `latchkey`.
    pub fn new(pid: u32) -> Result<Self> {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .with_context(|| format!("no process {pid}"))?;
        if comm.trim() != "latchkey" {
            bail!(
                "process {pid} is {:?}, not latchkey: refusing to watch or kill it",
                comm.trim()
            );
        }
        Ok(Self { pid })
    }

    /// Resident memory (VmRSS) in KiB.
    pub fn rss_kib(self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .with_context(|| format!("reading /proc/{}/status", self.pid))?;
        parse_vm_rss(&status).with_context(|| format!("no VmRSS for process {}", self.pid))
    }

    /// Sends SIGKILL (with the `kill` command: this crate has no unsafe code).
    pub fn kill9(self) -> Result<()> {
        // Checked again right before: the pid must still be latchkey's.
        Self::new(self.pid)?;
        let status = std::process::Command::new("kill")
            .arg("-KILL")
            .arg(self.pid.to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -KILL {} failed: {status}", self.pid);
        }
        Ok(())
    }

    /// Whether the process is gone (or a zombie waiting for its parent).
    pub fn is_dead(self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
        }
    }

    /// Waits until the process is dead, up to `limit`.
    pub async fn wait_dead(self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while !self.is_dead() {
            if Instant::now() >= deadline {
                bail!("process {} still alive {limit:?} after SIGKILL", self.pid);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// One reading of the server's resident memory.
#[derive(Clone, Copy, Debug)]
pub struct RssSample {
    /// Seconds since the start of the sampling.
    pub at: f64,
    pub kib: u64,
}

impl Server {
    /// Reads VmRSS at `start`, `start + every`, ... up to `end` (inclusive).
    /// Stops early if the process is gone.
    pub async fn sample_rss(self, start: Instant, every: Duration, end: Instant) -> Vec<RssSample> {
        let mut samples = Vec::new();
        let mut k = 0u32;
        loop {
            let due = start + every * k;
            if due > end {
                break;
            }
            tokio::time::sleep_until(due).await;
            match self.rss_kib() {
                Ok(kib) => samples.push(RssSample {
                    at: (due - start).as_secs_f64(),
                    kib,
                }),
                Err(_) => break,
            }
            k += 1;
        }
        samples
    }
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// KiB as MiB with one decimal.
pub fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss() {
        let status = "Name:\tlatchkey\nVmPeak:\t  123 kB\nVmRSS:\t   24576 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(24576));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(fmt_mib(24576), "24.0 MiB");
    }

    #[test]
    fn refuses_other_processes() {
        // This test binary is not latchkey.
        assert!(Server::new(std::process::id()).is_err());
    }
}
