//! Freezing and thawing: the v1 freezer controller and the v2 core freezer.

use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use super::fs::{read_file, write_file};
use super::CgroupError;

/// v1: how often FROZEN is written before giving up. The numbers follow runc, which chose them
/// empirically: the v1 freezer can stay in FREEZING while tasks fork or join the cgroup, and the
/// old kernel documentation says userspace must then retry (or thaw).
const V1_ATTEMPTS: u32 = 1000;
/// Every this many attempts, thaw and pause briefly so a forking workload can settle.
const V1_THAW_EVERY: u32 = 50;
/// Every this many attempts, pause a moment before reading the state back (slow machines).
const V1_PAUSE_EVERY: u32 = 25;

/// v2: poll cgroup.events this often, this many times (10 s), like runc.
const V2_POLL: Duration = Duration::from_millis(10);
const V2_POLLS: u32 = 1000;

pub fn freeze_v1(dir: &Path) -> Result<(), CgroupError> {
    let state = dir.join("freezer.state");
    let result = freeze_v1_loop(dir, &state);
    if result.is_err() {
        // A cgroup left FREEZING or FROZEN after a failed pause is a hung container nobody asked
        // for: put it back the way it was. The error that matters is the freeze error.
        let _ = write_file(&state, "THAWED");
    }
    result
}

fn freeze_v1_loop(dir: &Path, state: &Path) -> Result<(), CgroupError> {
    let mut last = String::new();
    for i in 0..V1_ATTEMPTS {
        if i % V1_THAW_EVERY == V1_THAW_EVERY - 1 {
            let _ = write_file(state, "THAWED");
            sleep(Duration::from_millis(10));
        }
        write_file(state, "FROZEN")?;
        if i % V1_PAUSE_EVERY == V1_PAUSE_EVERY - 1 {
            sleep(Duration::from_micros(10));
        }
        last = read_file(state)?.trim().to_string();
        match last.as_str() {
            "FROZEN" => return Ok(()),
            // Writing FROZEN again is what makes the kernel retry the tasks it could not stop.
            "FREEZING" => continue,
            _ => {
                return Err(CgroupError::FreezerState {
                    path: state.to_path_buf(),
                    state: last,
                })
            }
        }
    }
    Err(CgroupError::FreezeTimeout {
        path: dir.to_path_buf(),
        state: last,
        attempts: V1_ATTEMPTS,
    })
}

pub fn thaw_v1(dir: &Path) -> Result<(), CgroupError> {
    write_file(&dir.join("freezer.state"), "THAWED")
}

/// Frozen by its own freezer.state. FROZEN only because an ancestor is frozen counts as not
/// frozen (freezer.self_freezing 0), as in runc: thawing this cgroup could not resume it anyway.
pub fn is_frozen_v1(dir: &Path) -> Result<bool, CgroupError> {
    let path = dir.join("freezer.state");
    let mut state = String::new();
    for _ in 0..V1_ATTEMPTS {
        state = read_file(&path)?.trim().to_string();
        match state.as_str() {
            "THAWED" => return Ok(false),
            "FROZEN" => {
                let self_path = dir.join("freezer.self_freezing");
                return match std::fs::read_to_string(&self_path) {
                    Ok(s) => Ok(s.trim() == "1"),
                    // Kernels before 3.12 lack the file: FROZEN is then the whole story.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
                    Err(source) => Err(CgroupError::Read {
                        path: self_path,
                        source,
                    }),
                };
            }
            // A freeze in progress; wait for a stable answer.
            "FREEZING" => sleep(Duration::from_millis(1)),
            _ => break,
        }
    }
    Err(CgroupError::FreezerState { path, state })
}

pub fn freeze_v2(dir: &Path) -> Result<(), CgroupError> {
    write_file(&dir.join("cgroup.freeze"), "1")?;
    // cgroup.freeze only records the request; the cgroup is frozen once cgroup.events says so.
    let result = wait_v2(dir, true);
    if result.is_err() {
        let _ = write_file(&dir.join("cgroup.freeze"), "0");
    }
    result
}

pub fn thaw_v2(dir: &Path) -> Result<(), CgroupError> {
    write_file(&dir.join("cgroup.freeze"), "0")?;
    wait_v2(dir, false)
}

pub fn is_frozen_v2(dir: &Path) -> Result<bool, CgroupError> {
    let path = dir.join("cgroup.freeze");
    match read_file(&path)?.trim() {
        "0" => Ok(false),
        "1" => wait_v2(dir, true).map(|()| true),
        other => Err(CgroupError::FreezerState {
            path,
            state: other.to_string(),
        }),
    }
}

fn wait_v2(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let events = dir.join("cgroup.events");
    let want = if frozen { "1" } else { "0" };
    let mut seen = String::new();
    for i in 0..V2_POLLS {
        if i > 0 {
            sleep(V2_POLL);
        }
        let text = read_file(&events)?;
        seen = text
            .lines()
            .find_map(|l| l.strip_prefix("frozen "))
            .unwrap_or("")
            .trim()
            .to_string();
        if seen == want {
            return Ok(());
        }
    }
    Err(CgroupError::FreezeTimeout {
        path: dir.to_path_buf(),
        state: format!("frozen {seen}"),
        attempts: V2_POLLS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn v1_on_plain_files_settles_immediately() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("freezer.state"), "THAWED\n").unwrap();
        assert!(!is_frozen_v1(tmp.path()).unwrap());
        freeze_v1(tmp.path()).unwrap();
        assert!(
            is_frozen_v1(tmp.path()).unwrap(),
            "no self_freezing file: FROZEN is enough"
        );
        fs::write(tmp.path().join("freezer.self_freezing"), "0\n").unwrap();
        assert!(!is_frozen_v1(tmp.path()).unwrap(), "frozen by an ancestor only");
        thaw_v1(tmp.path()).unwrap();
        assert!(!is_frozen_v1(tmp.path()).unwrap());
    }

    #[test]
    fn v1_missing_freezer_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let err = freeze_v1(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("freezer.state"), "{err}");
    }

    #[test]
    fn v1_unknown_state_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("freezer.state"), "BOGUS\n").unwrap();
        assert!(matches!(
            is_frozen_v1(tmp.path()),
            Err(CgroupError::FreezerState { .. })
        ));
    }

    #[test]
    fn v2_reads_events() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("cgroup.freeze"), "0\n").unwrap();
        fs::write(tmp.path().join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        assert!(!is_frozen_v2(tmp.path()).unwrap());
        freeze_v2(tmp.path()).unwrap();
        assert!(is_frozen_v2(tmp.path()).unwrap());
        fs::write(tmp.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        thaw_v2(tmp.path()).unwrap();
        assert!(!is_frozen_v2(tmp.path()).unwrap());
    }
}
