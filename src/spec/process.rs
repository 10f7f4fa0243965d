//! Rules for a process: the config's `process` and the file given to `exec --process`.
//!
//! Capability and rlimit names need no rule here: oci-spec decodes them into enums, so an
//! unknown name is already a decode error naming the field.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{LinuxSchedulerPolicy, Process, Scheduler};

use super::error::{SpecError, Violation};
use super::invalid;

/// The kernel's OOM_SCORE_ADJ_MIN..=OOM_SCORE_ADJ_MAX.
const OOM_SCORE_ADJ: (i64, i64) = (-1000, 1000);
/// ioprio levels within a class (IOPRIO_NR_LEVELS).
const IOPRIO_LEVEL: (i64, i64) = (0, 7);
/// sched_setattr(2) nice range.
const NICE: (i64, i64) = (-20, 19);

/// Checks `process`, naming fields as `<prefix><field>` (`process.` inside a config, empty for
/// a standalone process file).
pub(crate) fn validate_process(process: &Process, file: &Path, prefix: &str) -> Result<(), SpecError> {
    let at = |field: &str| format!("{prefix}{field}");
    check_args(process.args().as_deref(), file, &at("args"))?;
    check_cwd(process.cwd(), file, &at("cwd"))?;
    if let Some(env) = process.env() {
        check_env(env, file, &at("env"))?;
    }
    check_rlimits(process, file, &at("rlimits"))?;
    if let Some(adj) = process.oom_score_adj() {
        check_range(i64::from(adj), OOM_SCORE_ADJ, file, &at("oomScoreAdj"))?;
    }
    if let Some(io) = process.io_priority() {
        check_range(io.priority(), IOPRIO_LEVEL, file, &at("ioPriority.priority"))?;
    }
    if let Some(sched) = process.scheduler() {
        check_scheduler(sched, file, &at("scheduler"))?;
    }
    // apparmorProfile and selinuxLabel are accepted and ignored; see super::warnings.
    Ok(())
}

fn check_args(args: Option<&[String]>, file: &Path, field: &str) -> Result<(), SpecError> {
    let args = match args {
        Some(args) if !args.is_empty() => args,
        _ => return Err(invalid(file, field, Violation::Empty)),
    };
    // execve(2) looks the program up by args[0]; an empty one only fails later, in the container.
    if args[0].is_empty() {
        return Err(invalid(file, format!("{field}[0]"), Violation::Empty));
    }
    for (i, arg) in args.iter().enumerate() {
        check_no_nul(arg, file, &format!("{field}[{i}]"))?;
    }
    Ok(())
}

fn check_cwd(cwd: &Path, file: &Path, field: &str) -> Result<(), SpecError> {
    if cwd.as_os_str().is_empty() {
        return Err(invalid(file, field, Violation::Empty));
    }
    if !cwd.is_absolute() {
        return Err(invalid(
            file,
            field,
            Violation::NotAbsolute {
                path: cwd.to_path_buf(),
            },
        ));
    }
    check_no_nul(&cwd.to_string_lossy(), file, field)
}

/// Environment entries must be `KEY=VALUE` with a non-empty key, as runc requires; they become
/// C strings for execve(2), so no NUL either. Also used for hook environments.
pub(crate) fn check_env(env: &[String], file: &Path, field: &str) -> Result<(), SpecError> {
    for (i, entry) in env.iter().enumerate() {
        let at = format!("{field}[{i}]");
        match entry.split_once('=') {
            None => return Err(invalid(file, at, Violation::EnvWithoutEquals { entry: entry.clone() })),
            Some(("", _)) => return Err(invalid(file, at, Violation::EnvEmptyName { entry: entry.clone() })),
            Some(_) => check_no_nul(entry, file, &at)?,
        }
    }
    Ok(())
}

fn check_no_nul(value: &str, file: &Path, field: &str) -> Result<(), SpecError> {
    if value.contains('\0') {
        return Err(invalid(
            file,
            field,
            Violation::NulByte {
                value: value.to_string(),
            },
        ));
    }
    Ok(())
}

fn check_rlimits(process: &Process, file: &Path, field: &str) -> Result<(), SpecError> {
    let Some(rlimits) = process.rlimits() else {
        return Ok(());
    };
    // PosixRlimitType has no Hash; its discriminant identifies it.
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for (i, rl) in rlimits.iter().enumerate() {
        if let Some(&first) = seen.get(&(rl.typ() as usize)) {
            return Err(invalid(
                file,
                format!("{field}[{i}].type"),
                Violation::DuplicateRlimit {
                    rlimit: rl.typ().to_string(),
                    first,
                },
            ));
        }
        seen.insert(rl.typ() as usize, i);
        // setrlimit(2) answers EINVAL for soft > hard; say so before any side effect.
        if rl.soft() > rl.hard() {
            return Err(invalid(
                file,
                format!("{field}[{i}].soft"),
                Violation::RlimitSoftAboveHard {
                    soft: rl.soft(),
                    hard: rl.hard(),
                },
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_range(value: i64, (min, max): (i64, i64), file: &Path, field: &str) -> Result<(), SpecError> {
    if value < min || value > max {
        return Err(invalid(file, field, Violation::OutOfRange { value, min, max }));
    }
    Ok(())
}

/// runc's scheduler rules, after sched_setattr(2).
fn check_scheduler(sched: &Scheduler, file: &Path, field: &str) -> Result<(), SpecError> {
    let policy = *sched.policy();
    if let Some(nice) = sched.nice() {
        check_range(i64::from(*nice), NICE, file, &format!("{field}.nice"))?;
    }
    let realtime = matches!(policy, LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr);
    if sched.priority().is_some_and(|p| p != 0) && !realtime {
        return Err(invalid(
            file,
            format!("{field}.priority"),
            Violation::SchedulerPolicy {
                allowed: "SCHED_FIFO or SCHED_RR",
            },
        ));
    }
    if policy != LinuxSchedulerPolicy::SchedDeadline {
        let deadline_fields = [
            ("runtime", sched.runtime()),
            ("deadline", sched.deadline()),
            ("period", sched.period()),
        ];
        for (name, value) in deadline_fields {
            if value.is_some_and(|v| v != 0) {
                return Err(invalid(
                    file,
                    format!("{field}.{name}"),
                    Violation::SchedulerPolicy {
                        allowed: "SCHED_DEADLINE",
                    },
                ));
            }
        }
    }
    Ok(())
}
