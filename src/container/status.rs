//! What a container is doing now, from its recorded state checked against the living processes:
//! Created, Running, Exited, or Dead (recorded as running but its monitor is gone).

use crate::store::containers::{ContainerRecord, RunState};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Never started.
    Created,
    Running,
    /// Its process ended; the monitor recorded the code.
    Exited {
        code: i32,
        finished_at: i64,
    },
    /// Recorded as running, but its monitor was killed: `start` or `rm` cleans it up.
    Dead,
}

impl Status {
    /// Docker's `State.Status` word.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited { .. } => "exited",
            Status::Dead => "dead",
        }
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// When a process started, in clock ticks since boot (field 22 of /proc/PID/stat): with the pid,
/// it names one process even once the pid is reused.
pub fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3, starttime field 22.
    if fields.first().is_some_and(|s| *s == "Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the monitor a state names is still there.
pub fn monitor_alive(s: &RunState) -> bool {
    s.monitor_pid > 0
        && process_start(s.monitor_pid).is_some_and(|t| s.monitor_start == 0 || t == s.monitor_start)
}

pub fn status(c: &ContainerRecord) -> Status {
    match &c.state {
        None => Status::Created,
        Some(s) if s.status == "running" || s.status == "starting" => {
            if monitor_alive(s) {
                Status::Running
            } else {
                Status::Dead
            }
        }
        Some(s) if s.status == "exited" => Status::Exited { code: s.exit_code, finished_at: s.finished_at },
        Some(_) => Status::Created,
    }
}

/// A container's state as `read` gives it, settled: the monitor writes the final state before it
/// exits, so a state still running whose monitor is gone is read once more, now that it is gone,
/// before it counts as Dead (the monitor may have written it and exited between the first read
/// and the look at the monitor: `wait` then said 137 for a process that exited 0).
pub fn settled_state(read: impl Fn() -> Option<RunState>) -> Option<RunState> {
    let first = read();
    match &first {
        Some(s) if (s.status == "running" || s.status == "starting") && !monitor_alive(s) => read(),
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The second read, made once the monitor is seen gone, is the one that counts.
    #[test]
    fn a_state_written_as_its_monitor_exits_is_read_again() {
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let pid = gone.id() as i32;
        gone.wait().unwrap();
        let reads = std::cell::Cell::new(0);
        let read = || {
            reads.set(reads.get() + 1);
            let status = if reads.get() == 1 { "running" } else { "exited" };
            Some(RunState { status: status.into(), monitor_pid: pid, ..RunState::default() })
        };
        let st = settled_state(read).unwrap();
        assert_eq!((st.status.as_str(), reads.get()), ("exited", 2));
        // A live monitor's state is taken as read.
        reads.set(0);
        let alive = || {
            reads.set(reads.get() + 1);
            Some(RunState {
                status: "running".into(),
                monitor_pid: std::process::id() as i32,
                ..RunState::default()
            })
        };
        assert_eq!(settled_state(alive).unwrap().status, "running");
        assert_eq!(reads.get(), 1);
    }
}
