//! Running commands with a time bound and captured output.
//!
//! Output goes to anonymous files, never pipes: a runtime that leaves a process behind holding
//! a pipe would block the reader forever.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest any single runtime invocation may take.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmd: String,
    /// Exit code; `None` when killed by a signal (or timed out).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// `Ok` when the command exited 0, else an error describing the run.
    pub fn check(&self) -> Result<&Self, String> {
        if self.ok() {
            Ok(self)
        } else {
            Err(format!("expected success: {self}"))
        }
    }

    /// `Ok` when the command exited non-zero (not by a signal or a timeout).
    pub fn check_fails(&self) -> Result<&Self, String> {
        match self.code {
            Some(c) if c != 0 => Ok(self),
            _ => Err(format!("expected an error exit: {self}")),
        }
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 1500;
    let s = s.trim_end();
    if s.len() <= MAX {
        s.to_string()
    } else {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}... ({} bytes)", &s[..cut], s.len())
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ", self.cmd)?;
        if self.timed_out {
            write!(f, "timed out")?;
        } else if let Some(c) = self.code {
            write!(f, "exited {c}")?;
        } else {
            write!(f, "killed by signal {:?}", self.signal)?;
        }
        let err = clip(&self.stderr);
        if !err.is_empty() {
            write!(f, "; stderr: {err}")?;
        }
        let out = clip(&self.stdout);
        if !out.is_empty() && out.len() < 400 {
            write!(f, "; stdout: {out}")?;
        }
        Ok(())
    }
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Wait for `child` at most `timeout`; on timeout kill it. Returns None on timeout.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

pub fn read_file(f: &mut File) -> String {
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(0)).is_ok() {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Run `cmd` (stdin /dev/null) with stdout and stderr captured, at most `timeout`.
pub fn run(mut cmd: Command, timeout: Duration) -> Output {
    let what = describe(&cmd);
    let (mut out, mut err) = match (tempfile::tempfile(), tempfile::tempfile()) {
        (Ok(o), Ok(e)) => (o, e),
        _ => return failed(what, "cannot create capture files".into()),
    };
    let (o2, e2) = match (out.try_clone(), err.try_clone()) {
        (Ok(o), Ok(e)) => (o, e),
        _ => return failed(what, "cannot dup capture files".into()),
    };
    cmd.stdin(Stdio::null()).stdout(o2).stderr(e2);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(what, format!("cannot spawn: {e}")),
    };
    drop(cmd);
    let st = wait_bounded(&mut child, timeout);
    Output {
        cmd: what,
        code: st.and_then(|s| s.code()),
        signal: st.and_then(|s| s.signal()),
        timed_out: st.is_none(),
        stdout: read_file(&mut out),
        stderr: read_file(&mut err),
    }
}

fn failed(cmd: String, why: String) -> Output {
    Output {
        cmd,
        code: None,
        signal: None,
        timed_out: false,
        stdout: String::new(),
        stderr: why,
    }
}

/// Poll `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(2);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    }
}
