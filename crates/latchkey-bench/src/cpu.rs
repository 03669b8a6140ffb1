//! CPU time from /proc (Linux): of this process, and of whole process
//! groups (a server and every process it forked, e.g. Node cluster workers).

use anyhow::{bail, Context as _, Result};

/// USER_HZ, the unit of /proc's CPU times: 100 on every Linux configuration
/// in practice.
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of one /proc/<pid>/stat that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    pgrp: u32,
    /// utime + stime, in ticks.
    ticks: u64,
    /// cutime + cstime: of its children that ended and were waited for.
    children_ticks: u64,
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // The command (field 2) may hold spaces and parentheses: the fields
    // are counted after its last ')'. State is field 3, so field n is at
    // index n - 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let cutime: u64 = fields.get(13)?.parse().ok()?;
    let cstime: u64 = fields.get(14)?.parse().ok()?;
    Some(Stat {
        pgrp,
        ticks: utime + stime,
        children_ticks: cutime + cstime,
    })
}

/// utime + stime of this process in seconds.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(parse_stat(&stat)?.ticks as f64 / TICKS_PER_SECOND)
}

/// utime + stime, in seconds, summed over every live process whose process
/// group is one of `pgids`. An error if no process is in any of them (a
/// wrong id, or the server is gone), or if one of them is empty.
pub fn group_cpu_seconds(pgids: &[u32]) -> Result<f64> {
    let mut ticks = 0u64;
    let mut seen = vec![false; pgids.len()];
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A process may end between the listing and the read: skipped.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(stat) = parse_stat(&stat) else {
            continue;
        };
        if let Some(i) = pgids.iter().position(|g| *g == stat.pgrp) {
            seen[i] = true;
            ticks += stat.ticks;
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        bail!("no process in process group {}", pgids[i]);
    }
    Ok(ticks as f64 / TICKS_PER_SECOND)
}

/// utime + stime, in seconds, summed over every live process whose command
/// name is `comm` (e.g. `postgres`: the database's backends, whatever
/// process group its service manager gave them), with the CPU of their
/// children that ended (a backend of a client that disconnected is counted
/// in the postmaster's). An error if there is none.
pub fn comm_cpu_seconds(comm: &str) -> Result<f64> {
    let mut ticks = 0u64;
    let mut seen = false;
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(name) = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map(|(name, _)| name)
        else {
            continue;
        };
        if name != comm {
            continue;
        }
        if let Some(stat) = parse_stat(&stat) {
            seen = true;
            ticks += stat.ticks + stat.children_ticks;
        }
    }
    if !seen {
        bail!("no process named {comm}");
    }
    Ok(ticks as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_last_parenthesis() {
        let stat = "4242 (node (worker) 2) S 1 4200 4200 0 -1 4194560 1 0 0 0 \
                    250 75 7 3 20 0 11 0 1234 5678 90 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                pgrp: 4200,
                ticks: 325,
                children_ticks: 10,
            })
        );
        assert_eq!(parse_stat("4242 (short) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn processes_are_found_by_name() {
        let own = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert!(comm_cpu_seconds(own.trim()).is_ok());
        assert!(comm_cpu_seconds("no-such-process-name").is_err());
    }

    #[test]
    fn own_group_is_found_and_missing_groups_are_errors() {
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        let own = parse_stat(&own).unwrap();
        let cpu = group_cpu_seconds(&[own.pgrp]).unwrap();
        assert!(cpu >= own.ticks as f64 / TICKS_PER_SECOND, "{cpu}");
        // Process group ids are at most 2^22 on Linux.
        let err = group_cpu_seconds(&[own.pgrp, u32::MAX]).unwrap_err();
        assert!(err.to_string().contains("4294967295"), "{err}");
        assert!(process_cpu_seconds().is_some());
    }
}
