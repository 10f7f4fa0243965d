//! The address-space transplant (CHECKPOINT.md §4.4, steps 1-8, 11, 15-16 and 19): everything a
//! seed cannot do to itself, injected through its stub page while it sits in ptrace stops;
//! credentials (`creds`) come last, after every call that needs the restorer's privileges.
//!
//! `prepare` leaves the task at the syscall-exit-stop of `munmap(stub)`, with nothing of the
//! restorer left in it; `load_state` then loads the dumped registers (with `orig_rax = -1`),
//! xstate and signal mask, `queue_stop` its stop signal, and `release` detaches, so the task
//! resumes exactly where it was dumped. The restorer does each step for every task before the
//! next, so that nothing runs restored code while a later task's state may still fail to load.

use nix::sys::ptrace;
use nix::unistd::Pid;

use super::creds::CredStep;
use super::image::{from_hex, TaskImage, VmaKind};
use super::plan::{seed_unmaps, PAGE};
use super::procfs::parse_smaps;
use super::remote::{self, Remote};
use super::seed::TaskPlan;
use super::{proc_err, ptrace_err, CheckpointError, Result};
use crate::sys::ptrace as sp;

const SYS_RSEQ: i64 = 334;
const SYS_CLOSE_RANGE: i64 = 436;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
const ARCH_MAP_VDSO_64: u64 = 0x2003;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const SS_DISABLE: i32 = 2;
const PR_SET_DUMPABLE: u64 = 4;
const PR_CAPBSET_DROP: u64 = 24;
const PR_SET_SECUREBITS: u64 = 28;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const PR_CAP_AMBIENT: u64 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_CAP_AMBIENT_CLEAR_ALL: u64 = 4;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Scratch page layout: auxv at +0, prctl_mm_map at +2048, stack_t at +3072.
const MM_MAP_OFF: u64 = 2048;
const STACK_T_OFF: u64 = 3072;

fn ptrace_io(pid: i32, op: &'static str) -> impl FnOnce(std::io::Error) -> CheckpointError {
    move |source| CheckpointError::Ptrace { pid, op, source }
}

/// Seize a ready seed and rebuild the dumped address space and per-task kernel state in it.
pub fn prepare(host: i32, task: &TaskImage, plan: &TaskPlan, exe_fd: i32) -> Result<()> {
    remote::seize(host)?;
    remote::interrupt(host)?;
    remote::wait_interrupted(host)?;
    let xstate = from_hex(&task.xstate).ok_or_else(|| CheckpointError::Corrupt(format!("pid {}: xstate", task.pid)))?;
    let own = sp::get_xstate(host).map_err(ptrace_io(host, "GETREGSET NT_X86_XSTATE"))?;
    if own.len() != xstate.len() {
        return Err(CheckpointError::Incompatible(format!(
            "pid {}: xstate area of {} bytes, this kernel uses {}",
            task.pid,
            xstate.len(),
            own.len()
        )));
    }
    sp::set_sigmask(host, !0).map_err(ptrace_io(host, "SETSIGMASK"))?;
    let base = remote::getregs(host)?;
    let r = Remote::new(host, plan.layout.stub)?;

    // The seed's glibc registered rseq in memory that is about to disappear; the kernel would
    // write to it on the next return to user space.
    if let Ok(c) = sp::get_rseq_configuration(host) {
        if c.rseq_abi_pointer != 0 {
            let args = [
                c.rseq_abi_pointer,
                c.rseq_abi_size as u64,
                RSEQ_FLAG_UNREGISTER,
                c.signature as u64,
            ];
            r.call(&base, "rseq(UNREGISTER)", SYS_RSEQ, &args)?;
        }
    }
    let maps_path = format!("/proc/{host}/maps");
    let maps = parse_smaps(&std::fs::read_to_string(&maps_path).map_err(proc_err(&maps_path))?);
    for (start, end) in seed_unmaps(&maps, &plan.layout) {
        r.call(&base, "munmap", libc::SYS_munmap, &[start, end - start])?;
    }
    if let Some(vvar) = task.vmas.iter().find(|v| v.kind == VmaKind::Vvar) {
        // Same kernel (checked by the host record): the vdso is recreated at the dumped address.
        r.call(
            &base,
            "arch_prctl(ARCH_MAP_VDSO_64)",
            libc::SYS_arch_prctl,
            &[ARCH_MAP_VDSO_64, vvar.start],
        )?;
    }
    for &(i, addr) in &plan.layout.premaps {
        let v = &task.vmas[i];
        let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        let got = r.call(
            &base,
            "mremap",
            libc::SYS_mremap,
            &[addr, v.len(), v.len(), flags, v.start],
        )?;
        if got as u64 != v.start {
            return Err(CheckpointError::Restore(format!(
                "pid {}: mremap to {:#x} landed at {got:#x}",
                task.pid, v.start
            )));
        }
    }
    for &(i, _) in &plan.layout.premaps {
        let v = &task.vmas[i];
        if v.prot() != libc::PROT_READ | libc::PROT_WRITE {
            r.call(
                &base,
                "mprotect",
                libc::SYS_mprotect,
                &[v.start, v.len(), v.prot() as u64],
            )?;
        }
    }
    set_mm_map(&r, &base, task, plan.layout.stub + PAGE, exe_fd)?;
    restore_thread_state(&r, &base, task, plan.layout.stub + PAGE)?;
    let scratch = plan.layout.stub + PAGE;
    super::signals::reap_helpers(&r, &base, task.pid, &plan.reap)?;
    super::signals::restore_pending(&r, &base, task, scratch)?;
    super::signals::restore_subreaper(&r, &base, task)?;
    r.call(
        &base,
        "close_range",
        SYS_CLOSE_RANGE,
        &[plan.helper_base as u64, u32::MAX as u64, 0],
    )?;
    // Credentials last (step 15-16): everything above may need the restorer's privileges.
    restore_creds(&r, &base, task.pid, &plan.creds, scratch)?;
    // A credential change clears the parent-death signal: set it after.
    super::signals::restore_pdeathsig(&r, &base, task)?;
    // Armed as late as possible, so they lose little time while the others are transplanted.
    super::signals::restore_itimers(&r, &base, task, scratch)?;
    // The last call removes the stub itself; the task stays in this call's syscall-exit-stop.
    r.call(&base, "munmap(stub)", libc::SYS_munmap, &[plan.layout.stub, 2 * PAGE])?;
    Ok(())
}

/// One PR_SET_MM_MAP: code/data/brk/stack/arg/env fields, auxv, and /proc/<pid>/exe.
fn set_mm_map(r: &Remote, base: &libc::user_regs_struct, task: &TaskImage, scratch: u64, exe_fd: i32) -> Result<()> {
    let auxv = remote::from_words(&task.auxv);
    if auxv.len() as u64 > MM_MAP_OFF {
        return Err(CheckpointError::Corrupt(format!(
            "pid {}: auxv of {} bytes",
            task.pid,
            auxv.len()
        )));
    }
    r.write(scratch, &auxv)?;
    let m = &task.mm;
    let mut map = remote::from_words(&[
        m.start_code,
        m.end_code,
        m.start_data,
        m.end_data,
        m.start_brk,
        m.brk,
        m.start_stack,
        m.arg_start,
        m.arg_end,
        m.env_start,
        m.env_end,
        scratch,
    ]);
    map.extend_from_slice(&(auxv.len() as u32).to_ne_bytes());
    map.extend_from_slice(&(exe_fd as u32).to_ne_bytes());
    r.write(scratch + MM_MAP_OFF, &map)?;
    let args = [PR_SET_MM, PR_SET_MM_MAP, scratch + MM_MAP_OFF, map.len() as u64, 0];
    r.call(base, "prctl(PR_SET_MM_MAP)", libc::SYS_prctl, &args)?;
    Ok(())
}

/// rseq, robust list, clear_child_tid, sigaltstack: per-thread state that only the thread
/// itself can set.
fn restore_thread_state(r: &Remote, base: &libc::user_regs_struct, task: &TaskImage, scratch: u64) -> Result<()> {
    if let Some(rs) = &task.rseq {
        r.call(base, "rseq", SYS_RSEQ, &[rs.ptr, rs.len as u64, 0, rs.sig as u64])?;
    }
    let (head, len) = task.robust_list;
    if head != 0 {
        r.call(base, "set_robust_list", libc::SYS_set_robust_list, &[head, len])?;
    }
    r.call(base, "set_tid_address", libc::SYS_set_tid_address, &[task.tid_address])?;
    let a = &task.altstack;
    let (sp_, flags, size) = if a.flags & SS_DISABLE != 0 {
        (0, SS_DISABLE, 0)
    } else {
        (a.sp, a.flags & !1, a.size) // SS_ONSTACK is a state, not a setting
    };
    let mut ss = remote::from_words(&[sp_]);
    ss.extend_from_slice(&(flags as i64).to_ne_bytes());
    ss.extend_from_slice(&size.to_ne_bytes());
    r.write(scratch + STACK_T_OFF, &ss)?;
    r.call(base, "sigaltstack", libc::SYS_sigaltstack, &[scratch + STACK_T_OFF, 0])?;
    Ok(())
}

/// Inject the credential steps planned by `creds::plan`, in order, as raw per-thread calls.
fn restore_creds(r: &Remote, base: &libc::user_regs_struct, pid: i32, steps: &[CredStep], scratch: u64) -> Result<()> {
    for step in steps {
        match step {
            CredStep::SetGroups(groups) => {
                let data: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
                r.write(scratch, &data)?;
                let args = [groups.len() as u64, scratch];
                r.call(base, "setgroups", libc::SYS_setgroups, &args)?;
            }
            CredStep::SetSecurebits(bits) => {
                let args = [PR_SET_SECUREBITS, *bits as u64];
                r.call(base, "prctl(PR_SET_SECUREBITS)", libc::SYS_prctl, &args)?;
            }
            CredStep::SetResGid(g) => {
                let args = [g[0] as u64, g[1] as u64, g[2] as u64];
                r.call(base, "setresgid", libc::SYS_setresgid, &args)?;
            }
            CredStep::SetResUid(u) => {
                let args = [u[0] as u64, u[1] as u64, u[2] as u64];
                r.call(base, "setresuid", libc::SYS_setresuid, &args)?;
            }
            // setfs[ug]id returns the previous id and never fails: ask again (with the invalid
            // id -1, which changes nothing) to see whether it took.
            CredStep::SetFsGid(g) => {
                r.syscall(base, libc::SYS_setfsgid, &[*g as u64])?;
                if r.syscall(base, libc::SYS_setfsgid, &[u32::MAX as u64])? as u32 != *g {
                    return Err(CheckpointError::Restore(format!(
                        "pid {pid}: setfsgid({g}) did not take"
                    )));
                }
            }
            CredStep::SetFsUid(u) => {
                r.syscall(base, libc::SYS_setfsuid, &[*u as u64])?;
                if r.syscall(base, libc::SYS_setfsuid, &[u32::MAX as u64])? as u32 != *u {
                    return Err(CheckpointError::Restore(format!(
                        "pid {pid}: setfsuid({u}) did not take"
                    )));
                }
            }
            CredStep::Capset { eff, prm, inh } => {
                // struct __user_cap_header_struct { u32 version; int pid; } then two
                // struct __user_cap_data_struct { u32 effective, permitted, inheritable; }.
                let mut data = Vec::with_capacity(32);
                data.extend_from_slice(&LINUX_CAPABILITY_VERSION_3.to_ne_bytes());
                data.extend_from_slice(&0i32.to_ne_bytes());
                for half in [0, 32] {
                    for set in [eff, prm, inh] {
                        data.extend_from_slice(&((set >> half) as u32).to_ne_bytes());
                    }
                }
                r.write(scratch, &data)?;
                r.call(base, "capset", libc::SYS_capset, &[scratch, scratch + 8])?;
            }
            CredStep::AmbientClearAll => {
                let args = [PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0];
                r.call(base, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", libc::SYS_prctl, &args)?;
            }
            CredStep::AmbientRaise(cap) => {
                let args = [PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, *cap as u64, 0, 0];
                r.call(base, "prctl(PR_CAP_AMBIENT_RAISE)", libc::SYS_prctl, &args)?;
            }
            CredStep::BoundingDrop(cap) => {
                r.call(
                    base,
                    "prctl(PR_CAPBSET_DROP)",
                    libc::SYS_prctl,
                    &[PR_CAPBSET_DROP, *cap as u64],
                )?;
            }
            CredStep::NoNewPrivs => {
                let args = [PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0];
                r.call(base, "prctl(PR_SET_NO_NEW_PRIVS)", libc::SYS_prctl, &args)?;
            }
            CredStep::Dumpable(d) => {
                let args = [PR_SET_DUMPABLE, *d as u64];
                r.call(base, "prctl(PR_SET_DUMPABLE)", libc::SYS_prctl, &args)?;
            }
        }
    }
    Ok(())
}

/// Load the dumped CPU state at the stub's last syscall-exit-stop (the task stays stopped).
pub fn load_state(host: i32, task: &TaskImage) -> Result<()> {
    let mut regs: libc::user_regs_struct = (&task.regs).into();
    // No syscall restart on the way out: the dump already applied it (plan::fixup_restart).
    regs.orig_rax = u64::MAX;
    remote::setregs(host, regs)?;
    let xstate = from_hex(&task.xstate).unwrap_or_default();
    sp::set_xstate(host, &xstate).map_err(ptrace_io(host, "SETREGSET NT_X86_XSTATE"))?;
    sp::set_sigmask(host, task.sigmask).map_err(ptrace_io(host, "SETSIGMASK"))
}

/// A task dumped in a group stop gets its stop signal queued (while still stopped): right after
/// the detach it takes it and stops again (its parent sees it stop, as after the original stop).
pub fn queue_stop(host: i32, task: &TaskImage) -> Result<()> {
    if let Some(sig) = super::signals::stop_signal(task) {
        nix::sys::signal::kill(Pid::from_raw(host), sig)
            .map_err(|e| CheckpointError::Sys("kill (stop signal)", e.into()))?;
    }
    Ok(())
}

/// Let the task go: it resumes exactly where it was dumped.
pub fn release(host: i32) -> Result<()> {
    ptrace::detach(Pid::from_raw(host), None).map_err(ptrace_err(host, "DETACH"))
}
