//! `events`: runc's event stream. `--stats` prints one stats event; otherwise a stats event
//! every `--interval` and an `oom` event whenever the kernel OOM-kills in the container, until
//! the container's cgroup goes away.

use std::io::Write;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::state::{StateDir, Status};
use super::{Error, Global, StatusError};
use crate::cgroups::{Event, Manager};

pub fn events(g: &Global, id: &str, stats_once: bool, interval: Duration) -> Result<(), Error> {
    let dir = StateDir::open(&g.root, id)?;
    let st = dir.load()?;
    if st.status(&dir.path) == Status::Stopped {
        return Err(Error::Status(StatusError::NotRunning));
    }
    let state_dir = dir.path.clone();
    // Do not hold the container's lock while streaming: delete must still be possible.
    drop(dir);
    let cg = Manager::from_state(&st.cgroup);
    let emit = |e: &Event| -> bool {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, e).is_ok() && out.write_all(b"\n").is_ok() && out.flush().is_ok()
    };
    if stats_once {
        emit(&Event::stats(id, &cg.stats()?));
        return Ok(());
    }
    let mut oom = cg.oom_watcher().ok();
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            if !emit(&Event::stats(id, &cg.stats()?)) {
                return Ok(()); // the reader went away
            }
            next = Instant::now() + interval;
        }
        let wait = next.saturating_duration_since(Instant::now());
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        match oom.as_mut() {
            Some(w) => {
                let mut fds = [PollFd::new(w.fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(ms));
                for _ in 0..w.check()? {
                    emit(&Event::oom(id));
                }
                if w.is_finished() {
                    return Ok(());
                }
            }
            None => std::thread::sleep(wait),
        }
        if !state_dir.exists() || st.status(&state_dir) == Status::Stopped {
            return Ok(());
        }
    }
}

/// Go's time.ParseDuration for the forms runc users pass: "5s", "500ms", "1m", "1m30s", "2h".
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    (total > 0.0).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("x"), None);
    }
}
