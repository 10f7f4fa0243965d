//! `checkpoint` and the container side of `restore`, on the native engine in src/checkpoint/.
//! runc's contract: the image goes to `--image-path`, `dump.log` / `restore.log` to
//! `--work-path`; without `--leave-running` the container is gone after a successful dump; a
//! restored container is running (engines never call `start` after a restore).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::state::{StateDir, Status};
use super::{Error, Global, StatusError};
use crate::cgroups::Manager;
use crate::checkpoint::dump::{dump_cgroup, DumpOptions};

#[derive(Debug, Clone)]
pub struct CheckpointOpts {
    pub id: String,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub leave_running: bool,
}

/// The file podman stats to decide that a checkpoint is complete.
const PODMAN_MARKER: &str = "inventory.img";

pub fn checkpoint(g: &Global, opts: &CheckpointOpts) -> Result<(), Error> {
    let dir = StateDir::open(&g.root, &opts.id)?;
    let st = dir.load()?;
    let status = st.status(&dir.path);
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(Error::Status(StatusError::CannotCheckpoint(status)));
    }
    crate::checkpoint::require_capabilities("checkpoint")?;
    // A refused or failed dump leaves no directory behind that it made (the engine removes
    // what it wrote inside).
    let made = crate::checkpoint::image::create_dirs(&opts.image_path)
        .map_err(|e| Error::io("creating the image directory", &opts.image_path, e))?;
    let cg = Manager::from_state(&st.cgroup);
    let started = std::time::Instant::now();
    let summary = dump_cgroup(
        &cg,
        &opts.image_path,
        &DumpOptions {
            leave_running: opts.leave_running,
        },
    );
    let line = match &summary {
        Ok(s) => format!(
            "dumped {} task(s) of {} (container pid -> host pid: {:?}), {} page(s), in {:.3}s; \
             frozen {:.3}s (collect {:.3}s, pages {:.3}s)",
            s.tasks.len(),
            opts.id,
            s.tasks,
            s.pages,
            started.elapsed().as_secs_f64(),
            s.frozen.as_secs_f64(),
            s.collect.as_secs_f64(),
            s.write_pages.as_secs_f64(),
        ),
        Err(e) => format!("dump of {} failed: {e}", opts.id),
    };
    work_log(opts.work_path.as_deref(), "dump.log", &line);
    if summary.is_err() {
        crate::checkpoint::image::remove_made_dirs(&made);
    }
    summary?;
    // podman (libpod `restore`) only restores when `<image>/inventory.img`, CRIU's first image,
    // exists; amber's reader ignores the file.
    std::fs::write(
        opts.image_path.join(PODMAN_MARKER),
        "amber native image, see manifest\n",
    )
    .map_err(|e| Error::io("writing the podman marker", &opts.image_path.join(PODMAN_MARKER), e))?;
    if !opts.leave_running {
        // The tasks were killed by the dump: remove the container, as runc does.
        super::ops::kill_and_wait(&st)?;
        super::ops::destroy(dir, &st)?;
    }
    Ok(())
}

/// Append one line to `<work>/<name>` (runc's dump.log / restore.log); best effort, like CRIU's
/// log: a missing work path never fails the operation.
pub fn work_log(work: Option<&Path>, name: &str, line: &str) {
    let Some(work) = work else {
        return;
    };
    let _ = std::fs::create_dir_all(work);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(work.join(name))
    {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let _ = writeln!(f, "{time} {line}");
    }
}

/// Flags runc, podman or containerd may pass that amber's engine does not implement yet: they
/// are accepted by the parser and refused here with a clear message, never ignored.
pub fn refuse_unsupported(command: &str, given: &[(&str, bool)]) -> Result<(), Error> {
    match given.iter().find(|(_, set)| *set) {
        Some((flag, _)) => Err(Error::Unsupported(format!(
            "{command} {flag} is not supported by amber's checkpoint engine yet"
        ))),
        None => Ok(()),
    }
}
