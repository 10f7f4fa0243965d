//! runc's log formats. With `--log-format json`, one object per line
//! `{"level":"error","msg":"...","time":"RFC3339"}` into `--log`: podman reads the whole file as
//! one object, containerd reads the last `error` line, so a failed call writes exactly one error
//! line. Text format is logrus's `time="..." level=error msg="..."`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

struct Logger {
    file: Option<File>,
    format: Format,
    debug: bool,
}

static LOGGER: OnceLock<Mutex<Logger>> = OnceLock::new();

/// Open the log file (append, create 0644, O_SYNC as runc does). Failing to open it is reported
/// but not fatal: the error still reaches stderr.
pub fn init(path: Option<&Path>, format: Format, debug: bool) -> Result<(), std::io::Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match path {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .custom_flags(libc::O_SYNC | libc::O_CLOEXEC)
                .open(p)?,
        ),
        None => None,
    };
    let _ = LOGGER.set(Mutex::new(Logger { file, format, debug }));
    Ok(())
}

fn write(level: &str, msg: &str) -> bool {
    let Some(m) = LOGGER.get() else {
        return false;
    };
    let Ok(mut l) = m.lock() else {
        return false;
    };
    let format = l.format;
    let Some(f) = l.file.as_mut() else {
        return false;
    };
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let line = format_line(format, level, msg, &time);
    f.write_all(line.as_bytes()).is_ok()
}

pub fn format_line(format: Format, level: &str, msg: &str, time: &str) -> String {
    match format {
        Format::Json => {
            let obj = serde_json::json!({"level": level, "msg": msg, "time": time});
            format!("{obj}\n")
        }
        Format::Text => format!(
            "time={} level={level} msg={}\n",
            serde_json::Value::from(time),
            serde_json::Value::from(msg)
        ),
    }
}

/// The one error line of a failed call: to the log file, and always to stderr (conmon's fallback
/// and every shell user read it there).
pub fn error(msg: &str) {
    write("error", msg);
    eprintln!("{msg}");
}

pub fn warn(msg: &str) {
    if !write("warning", msg) {
        eprintln!("warning: {msg}");
    }
}

pub fn debug(msg: &str) {
    let on = LOGGER
        .get()
        .and_then(|m| m.lock().ok().map(|l| l.debug))
        .unwrap_or(false);
    if on {
        write("debug", msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_is_one_object_with_runc_keys() {
        let line = format_line(Format::Json, "error", "boom \"x\"", "2026-01-01T00:00:00Z");
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom \"x\"");
        assert_eq!(v["time"], "2026-01-01T00:00:00Z");
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["level", "msg", "time"]);
    }

    #[test]
    fn text_line_quotes_values() {
        let line = format_line(Format::Text, "error", "a b", "t");
        assert_eq!(line, "time=\"t\" level=error msg=\"a b\"\n");
    }
}
