//! The parsers of stats.rs: cgroup file text in, values out, nothing else. Each failure is a
//! [`Malformed`] holding the text it could not read; the caller adds the path.

use std::collections::BTreeMap;

use super::{Blkio, BlkioEntry, PsiStats};

/// A parser's complaint: the piece of text it could not read.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::cgroups) struct Malformed(pub String);

fn malformed(text: &str) -> Malformed {
    Malformed(text.to_string())
}

/// A single number: "max" (v2, no limit) is u64::MAX, and a negative number (v1 writes -1 for
/// "unset" in some files) is 0, as in runc.
pub(super) fn parse_u64(text: &str) -> Result<u64, Malformed> {
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    match t.parse::<u64>() {
        Ok(v) => Ok(v),
        Err(_) if is_negative_integer(t) => Ok(0),
        Err(_) => Err(malformed(t)),
    }
}

fn is_negative_integer(t: &str) -> bool {
    t.strip_prefix('-')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

pub(super) fn parse_i64(text: &str) -> Result<i64, Malformed> {
    let t = text.trim();
    t.parse().map_err(|_| malformed(t))
}

/// "key value" per line: memory.stat, cpu.stat, memory.events, hugetlb.*.events.
pub(in crate::cgroups) fn parse_flat_keyed(text: &str) -> Result<BTreeMap<String, u64>, Malformed> {
    let mut map = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let (Some(key), Some(value), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(malformed(line));
        };
        let value = value.parse().map_err(|_| malformed(line))?;
        map.insert(key.to_string(), value);
    }
    Ok(map)
}

/// Whitespace-separated numbers (cpuacct.usage_percpu).
pub(super) fn parse_u64_list(text: &str) -> Result<Vec<u64>, Malformed> {
    text.split_whitespace()
        .map(|v| v.parse().map_err(|_| malformed(v)))
        .collect()
}

/// v1 cpuacct.stat counts USER_HZ ticks; runc converts with the fixed Linux value of 100.
const USER_HZ: u64 = 100;
const NS_PER_SEC: u64 = 1_000_000_000;

/// cpuacct.stat ("user N\nsystem M") → (user ns, kernel ns).
pub(super) fn parse_cpuacct_stat(text: &str) -> Result<(u64, u64), Malformed> {
    let map = parse_flat_keyed(text)?;
    let (Some(user), Some(system)) = (map.get("user"), map.get("system")) else {
        return Err(malformed(text.trim()));
    };
    let ns = |ticks: u64| ticks.saturating_mul(NS_PER_SEC / USER_HZ);
    Ok((ns(*user), ns(*system)))
}

/// cpuacct.usage_all: a "cpu user system" header, then one line per CPU in ns →
/// (kernel per CPU, user per CPU).
pub(super) fn parse_usage_all(text: &str) -> Result<(Vec<u64>, Vec<u64>), Malformed> {
    let (mut kernel, mut user) = (Vec::new(), Vec::new());
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_cpu, u, k] = fields[..] else {
            continue;
        };
        user.push(u.parse().map_err(|_| malformed(line))?);
        kernel.push(k.parse().map_err(|_| malformed(line))?);
    }
    Ok((kernel, user))
}

/// A cpuset list, "0-3,8,10-11" → [0, 1, 2, 3, 8, 10, 11]. Empty text is an empty set.
pub(super) fn parse_cpu_list(text: &str) -> Result<Vec<u16>, Malformed> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let num = |s: &str| s.parse::<u16>().map_err(|_| malformed(part));
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (num(from)?, num(to)?);
                if from > to {
                    return Err(malformed(part));
                }
                out.extend(from..=to);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(out)
}

/// A v1 blkio file: "8:0 Read 1282048" lines (or "8:0 6792" for time and sectors), and a
/// closing "Total N" line that runc skips.
pub(super) fn parse_blkio(text: &str) -> Result<Vec<BlkioEntry>, Malformed> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split([' ', ':']).filter(|f| !f.is_empty()).collect();
        let num = |s: &str| s.parse::<u64>().map_err(|_| malformed(line));
        let entry = match fields[..] {
            ["Total", _] => continue,
            [major, minor, value] => BlkioEntry {
                major: num(major)?,
                minor: num(minor)?,
                op: String::new(),
                value: num(value)?,
            },
            [major, minor, op, value] => BlkioEntry {
                major: num(major)?,
                minor: num(minor)?,
                op: op.to_string(),
                value: num(value)?,
            },
            _ => return Err(malformed(line)),
        };
        out.push(entry);
    }
    Ok(out)
}

/// v2 io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0") mapped to v1's tables as
/// runc does: bytes → ioServiceBytesRecursive, ios → ioServicedRecursive, Read/Write; the
/// discard counters have no v1 equivalent and are skipped.
pub(super) fn parse_io_stat(text: &str) -> Result<Blkio, Malformed> {
    let mut blkio = Blkio::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let num = |s: &str| s.parse::<u64>().map_err(|_| malformed(line));
        let (major, minor) = (num(major)?, num(minor)?);
        for item in fields {
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            let (table, op) = match key {
                "rbytes" => (&mut blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut blkio.io_service_bytes_recursive, "Write"),
                "rios" => (&mut blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut blkio.io_serviced_recursive, "Write"),
                _ => continue,
            };
            table.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value: num(value)?,
            });
        }
    }
    Ok(blkio)
}

/// A *.pressure file: "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" and a "full" line.
pub(super) fn parse_psi(text: &str) -> Result<PsiStats, Malformed> {
    let mut psi = PsiStats::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let target = match fields.next() {
            Some("some") => &mut psi.some,
            Some("full") => &mut psi.full,
            _ => continue,
        };
        for item in fields {
            let Some((key, value)) = item.split_once('=') else {
                return Err(malformed(line));
            };
            let float = || value.parse::<f64>().map_err(|_| malformed(line));
            match key {
                "avg10" => target.avg10 = float()?,
                "avg60" => target.avg60 = float()?,
                "avg300" => target.avg300 = float()?,
                "total" => target.total = value.parse().map_err(|_| malformed(line))?,
                _ => {}
            }
        }
    }
    Ok(psi)
}

/// Page sizes from a cgroup's file names: "hugetlb.2MB.current" with suffix ".current" → "2MB".
/// The reservation files ("hugetlb.2MB.rsvd.current") are not sizes.
pub(super) fn hugetlb_sizes(names: &[String], usage_suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_prefix("hugetlb.")?.strip_suffix(usage_suffix))
        .filter(|size| !size.is_empty() && !size.contains('.'))
        .map(str::to_string)
        .collect();
    sizes.sort();
    sizes
}
