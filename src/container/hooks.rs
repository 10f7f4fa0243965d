//! OCI hooks: each gets the container state as JSON on stdin, its own args and env, and an
//! optional timeout after which it is killed. Output is captured (never mixed into the
//! container's stdio, which is the runtime's own under conmon and containerd) and quoted in errors.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Spec};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct HookState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook {path}: starting: {source}")]
    Start {
        kind: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{kind} hook {path}: killed after exceeding its timeout of {secs}s")]
    Timeout {
        kind: &'static str,
        path: PathBuf,
        secs: i64,
    },
    #[error("{kind} hook {path}: {status}{output}")]
    Failed {
        kind: &'static str,
        path: PathBuf,
        status: std::process::ExitStatus,
        output: String,
    },
}

pub fn has_pre_create_hooks(spec: &Spec) -> bool {
    spec.hooks().as_ref().is_some_and(|h| {
        #[allow(deprecated)]
        let prestart = h.prestart().as_ref().is_some_and(|v| !v.is_empty());
        prestart || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
    })
}

pub fn run_all(kind: &'static str, hooks: &[Hook], state: &HookState) -> Result<(), HookError> {
    let json = serde_json::to_vec(state).unwrap_or_default();
    for h in hooks {
        run_one(kind, h, &json)?;
    }
    Ok(())
}

fn run_one(kind: &'static str, hook: &Hook, stdin_json: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let start_err = |source| HookError::Start {
        kind,
        path: path.clone(),
        source,
    };
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(&path);
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    cmd.args(args.iter().skip(1)).env_clear();
    for kv in hook.env().clone().unwrap_or_default() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut out = capture_file().map_err(start_err)?;
    cmd.stdin(Stdio::piped())
        .stdout(out.try_clone().map_err(start_err)?)
        .stderr(out.try_clone().map_err(start_err)?);
    let mut child = cmd.spawn().map_err(start_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin must not make us fail: ignore EPIPE.
        let _ = stdin.write_all(stdin_json);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| (t, Instant::now() + Duration::from_secs(t as u64)));
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Err(start_err(e)),
        }
        if let Some((secs, when)) = deadline {
            if Instant::now() >= when {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout { kind, path, secs });
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let _ = out.rewind();
    let _ = out.take(4096).read_to_string(&mut text);
    let output = if text.trim().is_empty() {
        String::new()
    } else {
        format!(", output: {}", text.trim())
    };
    Err(HookError::Failed {
        kind,
        path,
        status,
        output,
    })
}

/// An anonymous file for a hook's output (a pipe could fill up and block the hook).
fn capture_file() -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(c"amber-hook-output", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(std::io::Error::from)?;
    Ok(std::fs::File::from(fd))
}
