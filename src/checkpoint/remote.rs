//! A seized task and system calls injected into it (CHECKPOINT.md §4.2): registers are pointed
//! at a `syscall` instruction with `orig_rax = -1`, and the call is driven by two PTRACE_SYSCALL
//! stops (entry, exit), never by int3, so no forced SIGTRAP ever touches the task's signal state.

use std::fs::File;
use std::os::unix::fs::FileExt;

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{ptrace_err, CheckpointError, Result};

pub const PTRACE_EVENT_STOP: i32 = 128;

/// How a waited-for task stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// PTRACE_EVENT_STOP: after PTRACE_INTERRUPT (SIGTRAP) or a group stop (the stop signal).
    Event(Signal),
    /// A signal is about to be delivered.
    Signal(Signal),
    Syscall,
}

pub struct Remote {
    pub pid: i32,
    /// Address of a `syscall` instruction mapped in the task.
    pub stub: u64,
    mem: File,
}

pub fn seize(pid: i32) -> Result<()> {
    let opts = ptrace::Options::PTRACE_O_TRACESYSGOOD | ptrace::Options::PTRACE_O_EXITKILL;
    ptrace::seize(Pid::from_raw(pid), opts).map_err(ptrace_err(pid, "SEIZE"))
}

pub fn interrupt(pid: i32) -> Result<()> {
    ptrace::interrupt(Pid::from_raw(pid)).map_err(ptrace_err(pid, "INTERRUPT"))
}

pub fn wait_stop(pid: i32) -> Result<Stop> {
    loop {
        let status = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::__WALL)).map_err(ptrace_err(pid, "waitpid"))?;
        if let Some(stop) = classify(pid, status)? {
            return Ok(stop);
        }
    }
}

fn classify(pid: i32, status: WaitStatus) -> Result<Option<Stop>> {
    Ok(Some(match status {
        WaitStatus::PtraceEvent(_, sig, PTRACE_EVENT_STOP) => Stop::Event(sig),
        WaitStatus::PtraceSyscall(_) => Stop::Syscall,
        WaitStatus::Stopped(_, sig) => Stop::Signal(sig),
        WaitStatus::StillAlive | WaitStatus::Continued(_) => return Ok(None),
        WaitStatus::Exited(_, code) => {
            return Err(CheckpointError::UnexpectedStop {
                pid,
                what: format!("exited with {code}"),
            })
        }
        WaitStatus::Signaled(_, sig, _) => {
            return Err(CheckpointError::UnexpectedStop {
                pid,
                what: format!("killed by {sig}"),
            })
        }
        other => {
            return Err(CheckpointError::UnexpectedStop {
                pid,
                what: format!("{other:?}"),
            })
        }
    }))
}

/// Wait for the PTRACE_EVENT_STOP a PTRACE_INTERRUPT asked for. Signals that arrive first are
/// delivered (their handler frame is then what gets dumped); the interrupt stays pending.
pub fn wait_interrupted(pid: i32) -> Result<Signal> {
    for _ in 0..64 {
        match wait_stop(pid)? {
            Stop::Event(sig) => return Ok(sig),
            Stop::Signal(sig) => ptrace::cont(Pid::from_raw(pid), sig).map_err(ptrace_err(pid, "CONT"))?,
            Stop::Syscall => ptrace::cont(Pid::from_raw(pid), None).map_err(ptrace_err(pid, "CONT"))?,
        }
    }
    Err(CheckpointError::UnexpectedStop {
        pid,
        what: "signals kept arriving instead of the interrupt stop".into(),
    })
}

pub fn getregs(pid: i32) -> Result<libc::user_regs_struct> {
    ptrace::getregs(Pid::from_raw(pid)).map_err(ptrace_err(pid, "GETREGS"))
}

pub fn setregs(pid: i32, regs: libc::user_regs_struct) -> Result<()> {
    ptrace::setregs(Pid::from_raw(pid), regs).map_err(ptrace_err(pid, "SETREGS"))
}

impl Remote {
    pub fn new(pid: i32, stub: u64) -> Result<Remote> {
        let path = format!("/proc/{pid}/mem");
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(super::proc_err(&path))?;
        Ok(Remote { pid, stub, mem })
    }

    /// Run one system call in the task; `base` supplies every register not used by the call.
    /// Returns the raw result (negative errno on failure). The task is left in the call's
    /// syscall-exit-stop.
    pub fn syscall(&self, base: &libc::user_regs_struct, nr: i64, args: &[u64]) -> Result<i64> {
        let mut r = *base;
        r.rip = self.stub;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) = (a(0), a(1), a(2), a(3), a(4), a(5));
        setregs(self.pid, r)?;
        self.step_to_syscall_stop()?; // entry
        self.step_to_syscall_stop()?; // exit
        Ok(getregs(self.pid)?.rax as i64)
    }

    /// Like `syscall`, but a negative result is an error naming the call.
    pub fn call(&self, base: &libc::user_regs_struct, name: &'static str, nr: i64, args: &[u64]) -> Result<i64> {
        let ret = self.syscall(base, nr, args)?;
        if (-4095..0).contains(&ret) {
            return Err(CheckpointError::Injected {
                pid: self.pid,
                syscall: name,
                errno: -ret,
            });
        }
        Ok(ret)
    }

    fn step_to_syscall_stop(&self) -> Result<()> {
        let pid = Pid::from_raw(self.pid);
        ptrace::syscall(pid, None).map_err(ptrace_err(self.pid, "SYSCALL"))?;
        loop {
            match wait_stop(self.pid)? {
                Stop::Syscall => return Ok(()),
                // All signals are blocked while we inject; a group stop or a late interrupt
                // is simply resumed.
                Stop::Event(_) => ptrace::syscall(pid, None).map_err(ptrace_err(self.pid, "SYSCALL"))?,
                Stop::Signal(sig) => {
                    return Err(CheckpointError::UnexpectedStop {
                        pid: self.pid,
                        what: format!("signal {sig} during an injected system call"),
                    })
                }
            }
        }
    }

    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.mem
            .read_exact_at(&mut buf, addr)
            .map_err(|e| CheckpointError::Proc {
                path: format!("/proc/{}/mem at {addr:#x}", self.pid),
                source: e,
            })?;
        Ok(buf)
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        self.mem.write_all_at(data, addr).map_err(|e| CheckpointError::Proc {
            path: format!("/proc/{}/mem at {addr:#x}", self.pid),
            source: e,
        })
    }
}

pub fn words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
        .collect()
}

pub fn from_words(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_ne_bytes()).collect()
}
