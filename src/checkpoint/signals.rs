//! Restore of the signal and timer state a seed cannot set up for itself, injected by the
//! restorer (`transplant::prepare`) while every signal is blocked: helpers reaped, the seed's own
//! pending signals (SIGCHLD from dying zombies and helpers) discarded, SIGCHLD's disposition
//! (last, CRIU's order), the dumped queues refilled from inside the task, subreaper, pdeathsig,
//! interval timers; and the stop signal of a task dumped in a group stop (`finish`).

use nix::sys::signal::Signal;

use super::image::{from_hex, SigAction, TaskImage};
use super::remote::{self, Remote};
use super::{CheckpointError, Result};

const PR_SET_PDEATHSIG: u64 = 1;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const SIG_IGN: u64 = 1;
/// A kernel `struct sigaction` in the scratch page, past what other steps use there.
const SIGACTION_OFF: u64 = 3584;
const SIGINFO_OFF: u64 = 0;
const ITIMERVAL_OFF: u64 = 3840;

/// Reap the helpers this task cloned (dead by now: the seed waited for them), before anything
/// that could make them matter to the task.
pub fn reap_helpers(r: &Remote, base: &libc::user_regs_struct, pid: i32, helpers: &[i32]) -> Result<()> {
    for &h in helpers {
        let flags = (libc::WNOHANG | libc::__WALL) as u64;
        let got = r.call(base, "wait4", libc::SYS_wait4, &[h as u64, 0, flags, 0])?;
        if got != h as i64 {
            return Err(CheckpointError::Restore(format!(
                "pid {pid}: helper {h} had not exited (wait4 returned {got})"
            )));
        }
    }
    Ok(())
}

fn set_action(r: &Remote, base: &libc::user_regs_struct, scratch: u64, signo: i32, a: &SigAction) -> Result<()> {
    r.write(
        scratch + SIGACTION_OFF,
        &remote::from_words(&[a.handler, a.flags, a.restorer, a.mask]),
    )?;
    let args = [signo as u64, scratch + SIGACTION_OFF, 0, 8];
    r.call(base, "rt_sigaction", libc::SYS_rt_sigaction, &args)?;
    Ok(())
}

fn dumped_action(task: &TaskImage, signo: i32) -> SigAction {
    task.sigactions
        .iter()
        .find(|a| a.signo == signo)
        .cloned()
        .unwrap_or(SigAction {
            signo,
            ..Default::default()
        })
}

/// Discard what the seed has pending (ignoring a signal discards it), set SIGCHLD's dumped
/// disposition, then queue the dumped signals again, in their order, from inside the task: the
/// kernel lets a task queue any siginfo (si_code, si_pid, si_value ...) to itself only.
pub fn restore_pending(r: &Remote, base: &libc::user_regs_struct, task: &TaskImage, scratch: u64) -> Result<()> {
    let path = format!("/proc/{}/status", r.pid);
    let status = super::procfs::parse_status(&std::fs::read_to_string(&path).map_err(super::proc_err(&path))?);
    let seed_pending = status.sig_pnd | status.shd_pnd;
    for signo in (1..=64).filter(|&s| seed_pending & (1u64 << (s - 1)) != 0) {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        let ign = SigAction {
            signo,
            handler: SIG_IGN,
            ..Default::default()
        };
        set_action(r, base, scratch, signo, &ign)?;
        if signo != libc::SIGCHLD {
            set_action(r, base, scratch, signo, &dumped_action(task, signo))?;
        }
    }
    set_action(r, base, scratch, libc::SIGCHLD, &dumped_action(task, libc::SIGCHLD))?;

    let tgid = r.call(base, "getpid", libc::SYS_getpid, &[])? as u64;
    let tid = r.call(base, "gettid", libc::SYS_gettid, &[])? as u64;
    for p in task.pending.iter().filter(|p| p.signo != libc::SIGSTOP) {
        let info = from_hex(&p.siginfo)
            .filter(|i| i.len() == crate::sys::ptrace::SIGINFO_SIZE)
            .ok_or_else(|| CheckpointError::Corrupt(format!("pid {}: siginfo of signal {}", task.pid, p.signo)))?;
        r.write(scratch + SIGINFO_OFF, &info)?;
        let sig = p.signo as u64;
        if p.shared {
            let args = [tgid, sig, scratch + SIGINFO_OFF];
            r.call(base, "rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo, &args)?;
        } else {
            let args = [tgid, tid, sig, scratch + SIGINFO_OFF];
            r.call(base, "rt_tgsigqueueinfo", libc::SYS_rt_tgsigqueueinfo, &args)?;
        }
    }
    Ok(())
}

pub fn restore_subreaper(r: &Remote, base: &libc::user_regs_struct, task: &TaskImage) -> Result<()> {
    if task.child_subreaper {
        let args = [PR_SET_CHILD_SUBREAPER, 1];
        r.call(base, "prctl(PR_SET_CHILD_SUBREAPER)", libc::SYS_prctl, &args)?;
    }
    Ok(())
}

/// After the credentials (a change of ids clears it) and with the real parent in place.
pub fn restore_pdeathsig(r: &Remote, base: &libc::user_regs_struct, task: &TaskImage) -> Result<()> {
    let args = [PR_SET_PDEATHSIG, task.pdeathsig as u64];
    r.call(base, "prctl(PR_SET_PDEATHSIG)", libc::SYS_prctl, &args)?;
    Ok(())
}

/// Re-arm each dumped interval timer with the time it had left (downtime does not count).
/// The kernel adds a tick to a CPU timer's value (ITIMER_VIRTUAL, ITIMER_PROF) so that it
/// fires after at least one: read it back and take that away again, or every checkpoint would
/// make the timer a tick later.
pub fn restore_itimers(r: &Remote, base: &libc::user_regs_struct, task: &TaskImage, scratch: u64) -> Result<()> {
    let set = |which: i32, interval_us: u64, value_us: u64| -> Result<()> {
        let tv = |us: u64| [us / 1_000_000, us % 1_000_000];
        let mut words = tv(interval_us).to_vec();
        words.extend(tv(value_us));
        r.write(scratch + ITIMERVAL_OFF, &remote::from_words(&words))?;
        let args = [which as u64, scratch + ITIMERVAL_OFF, 0];
        r.call(base, "setitimer", libc::SYS_setitimer, &args)?;
        Ok(())
    };
    for t in &task.itimers {
        set(t.which, t.interval_us, t.value_us)?;
        if t.which == libc::ITIMER_REAL {
            continue;
        }
        r.call(
            base,
            "getitimer",
            libc::SYS_getitimer,
            &[t.which as u64, scratch + ITIMERVAL_OFF],
        )?;
        let w = remote::words(&r.read(scratch + ITIMERVAL_OFF, 32)?);
        let got = w[2] * 1_000_000 + w[3];
        let excess = got.saturating_sub(t.value_us);
        if excess > 0 && t.value_us > excess {
            set(t.which, t.interval_us, t.value_us - excess)?;
        }
    }
    Ok(())
}

/// The signal that stops the task again after the restore: the one of its group stop (or a
/// SIGSTOP that was queued but not yet taken). A stop signal the task now blocks or handles
/// would not stop it: SIGSTOP then, which always does.
pub fn stop_signal(task: &TaskImage) -> Option<Signal> {
    let queued_stop = task.pending.iter().any(|p| p.signo == libc::SIGSTOP);
    let sig = task.stop_signal.or(queued_stop.then_some(libc::SIGSTOP))?;
    let blocked = task.sigmask & (1u64 << (sig - 1)) != 0;
    let handled = dumped_action(task, sig).handler != 0;
    let sig = if blocked || handled { libc::SIGSTOP } else { sig };
    Signal::try_from(sig).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(stop: Option<i32>, sigmask: u64, handler_for: Option<i32>) -> TaskImage {
        let mut t: TaskImage = serde_json::from_value(serde_json::json!({
            "pid": 1, "host_nspid": [5, 1], "comm": "sh", "exe": "/bin/sh", "cwd": "/", "root": "/",
            "umask": 18, "personality": 0, "creds": super::super::image::Creds::default(), "rlimits": [],
            "sigmask": 0, "sigactions": [], "altstack": {"sp": 0, "flags": 2, "size": 0},
            "regs": super::super::image::Regs::default(), "xstate": "", "rseq": null, "robust_list": [0, 0],
            "tid_address": 0, "mm": super::super::image::MmFields::default(), "auxv": [], "vmas": [], "fds": []
        }))
        .unwrap();
        t.stop_signal = stop;
        t.sigmask = sigmask;
        if let Some(signo) = handler_for {
            t.sigactions.push(SigAction {
                signo,
                handler: 0x401000,
                ..Default::default()
            });
        }
        t
    }

    #[test]
    fn the_stop_signal_that_stops_again() {
        assert_eq!(stop_signal(&task(None, 0, None)), None);
        assert_eq!(stop_signal(&task(Some(20), 0, None)), Some(Signal::SIGTSTP));
        // Blocked or handled now: SIGSTOP, which always stops.
        assert_eq!(stop_signal(&task(Some(20), 1 << 19, None)), Some(Signal::SIGSTOP));
        assert_eq!(stop_signal(&task(Some(20), 0, Some(20))), Some(Signal::SIGSTOP));
        // A SIGSTOP that was queued but not yet taken.
        let mut t = task(None, 0, None);
        t.pending.push(super::super::image::PendingSignal {
            shared: true,
            signo: libc::SIGSTOP,
            siginfo: String::new(),
        });
        assert_eq!(stop_signal(&t), Some(Signal::SIGSTOP));
    }
}
