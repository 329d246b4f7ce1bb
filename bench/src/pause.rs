//! Injected pauses: the server is stopped (`SIGSTOP`) for a fixed time at
//! a fixed period through the measured window, and continued (`SIGCONT`).
//!
//! On a shared VM a run's tail comes from stalls of the machine that
//! strike when they will: which run of which server they hit decides its
//! p99 more than the server does. Stopping every server the same way, at
//! the same moments of the window, makes the stall part of the scenario,
//! so what is compared is how each server recovers: how late the backlog
//! gets and how fast it drains at the server's spare capacity.

use std::thread::JoinHandle;

use crate::clock::{now_ns, sleep_until};

/// How the window's pauses are laid out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pauses {
    /// Each pause, ns.
    pub pause_ns: u64,
    /// From the start of one pause to the next, ns.
    pub every_ns: u64,
}

impl Pauses {
    /// Pauses of `pause_ms` every `every_ms`, if both are set and a pause
    /// is shorter than its period.
    pub fn new(pause_ms: f64, every_ms: f64) -> Option<Self> {
        let (pause_ns, every_ns) = ((pause_ms * 1e6) as u64, (every_ms * 1e6) as u64);
        (pause_ns > 0 && every_ns > pause_ns).then_some(Self { pause_ns, every_ns })
    }

    /// When each pause of the window `[from_ns, until_ns)` starts: the
    /// first half a period in, and the last ends inside the window.
    pub fn starts(&self, from_ns: u64, until_ns: u64) -> Vec<u64> {
        let mut at = from_ns + self.every_ns / 2;
        let mut v = Vec::new();
        while at + self.pause_ns <= until_ns {
            v.push(at);
            at += self.every_ns;
        }
        v
    }
}

/// Stops `pids` while it lives; continues them when dropped, whatever
/// happens in between.
struct Stopped<'a>(&'a [u32]);

impl<'a> Stopped<'a> {
    fn new(pids: &'a [u32]) -> Self {
        signal(pids, libc::SIGSTOP);
        Self(pids)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

fn signal(pids: &[u32], sig: libc::c_int) {
    for &pid in pids {
        // SAFETY: a plain system call; a pid that is gone gets ESRCH.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

/// Makes the calling thread real-time (`SCHED_FIFO`) where allowed, so
/// that its wake-ups, which end each pause, are not held behind the
/// generator's threads on the same core: a pause then lasts what it
/// says for every target. Without the privilege the pauses run long by
/// the core's scheduling delay (the record has the time they took).
fn realtime() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: a plain system call on the calling thread (pid 0).
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
}

/// Pauses `pids` as `plan` says through `[from_ns, until_ns)` on a thread
/// of its own; joining it gives how many pauses were made and how long
/// the servers were stopped in all, ns.
pub fn spawn(pids: Vec<u32>, plan: Pauses, from_ns: u64, until_ns: u64) -> JoinHandle<(u64, u64)> {
    std::thread::Builder::new()
        .name("pauses".into())
        .spawn(move || {
            realtime();
            let (mut n, mut stopped) = (0, 0);
            for at in plan.starts(from_ns, until_ns) {
                sleep_until(at);
                let t0 = now_ns();
                {
                    let _stopped = Stopped::new(&pids);
                    sleep_until(t0 + plan.pause_ns);
                }
                n += 1;
                stopped += now_ns() - t0;
            }
            (n, stopped)
        })
        .expect("spawn the pause thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A child process to pause, killed when the test ends however it ends.
    struct Sleeper(std::process::Child);

    impl Sleeper {
        fn new() -> Self {
            Self(
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .expect("spawn sleep"),
            )
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }

    #[test]
    fn pauses_are_set_only_when_they_fit_their_period() {
        assert!(Pauses::new(0.0, 500.0).is_none());
        assert!(Pauses::new(15.0, 0.0).is_none());
        assert!(Pauses::new(500.0, 500.0).is_none());
        assert_eq!(
            Pauses::new(15.0, 500.0),
            Some(Pauses {
                pause_ns: 15 * MS,
                every_ns: 500 * MS
            })
        );
    }

    #[test]
    fn starts_lie_inside_the_window() {
        let p = Pauses::new(15.0, 500.0).unwrap();
        let s = p.starts(1000 * MS, 11_000 * MS);
        assert_eq!(s.len(), 20);
        assert_eq!(s[0], 1250 * MS);
        assert_eq!(s[19], 10_750 * MS);
        assert!(s.windows(2).all(|w| w[1] - w[0] == 500 * MS));
        // A window shorter than half a period and a pause has none.
        assert!(p.starts(0, 260 * MS).is_empty());
    }

    #[test]
    fn a_paused_process_is_stopped_and_continued() {
        let child = Sleeper::new();
        let pid = child.0.id();
        let state = || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            s[s.rfind(')').unwrap() + 2..].chars().next().unwrap()
        };
        let pids = [pid];
        {
            let _s = Stopped::new(&pids);
            // The stop is delivered asynchronously: wait for it, bounded.
            let deadline = now_ns() + 2_000 * MS;
            while state() != 'T' && now_ns() < deadline {
                std::thread::yield_now();
            }
            assert_eq!(state(), 'T', "SIGSTOP stops the process");
        }
        let deadline = now_ns() + 2_000 * MS;
        while state() == 'T' && now_ns() < deadline {
            std::thread::yield_now();
        }
        assert_ne!(state(), 'T', "dropping the guard continues it");
    }

    #[test]
    fn the_thread_makes_every_pause_of_a_short_window() {
        let child = Sleeper::new();
        let p = Pauses::new(2.0, 20.0).unwrap();
        let from = now_ns();
        let (n, stopped) = spawn(vec![child.0.id()], p, from, from + 100 * MS)
            .join()
            .unwrap();
        assert_eq!(n, 5);
        assert!(stopped >= 5 * 2 * MS);
    }
}
