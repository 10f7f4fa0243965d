//! Statistics for `amber events`: the container's cgroup files read into runc's `events --stats`
//! data object (runc `types/events.go`), field for field and with Go's omitempty rules, so that
//! whatever parses runc's output (containerd's shim, podman, monitoring scripts) parses ours.
//!
//! The parsers are pure functions over file text (stats/parse.rs, unit-tested in
//! stats/tests.rs); [`Manager::stats`] only decides which files to read. A missing file or controller gives zero or
//! an omitted field, as in runc (a cgroup without the pids controller is not an error);
//! malformed content is [`CgroupError::Parse`].

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{CgroupError, Manager};
use parse::*;
pub(super) use parse::{parse_flat_keyed, Malformed};

mod parse;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_root;

// ---------------------------------------------------------------------------------------------
// runc's types.Stats. Go's omitempty drops a zero number, an empty slice or map and a nil
// pointer, but never a struct: `usage`, `throttling`, `swap`... are always there.

/// runc's `types.Stats`, the `data` of a `stats` event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// Page size as the kernel names it ("2MB", "1GB") → usage. runc always makes this map, so
    /// it is `{}` (not null) without the hugetlb controller.
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: IntelRdt,
    /// runc fills this only for network interfaces it created itself (never, with a CNI or a
    /// host network), so it is `null`.
    pub network_interfaces: Option<Vec<NetworkInterface>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

/// CPU time in nanoseconds since the cgroup was created.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

/// CFS bandwidth throttling. runc spells two of these in camelCase (unlike its own
/// libcontainer stats, which say throttled_periods).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// Pressure stall information (cgroup v2 `*.pressure`). Current runc (opencontainers/cgroups)
/// tags `some` and `full` omitzero: a line that is all zero is left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PsiStats {
    #[serde(skip_serializing_if = "PsiData::is_zero")]
    pub some: PsiData,
    #[serde(skip_serializing_if = "PsiData::is_zero")]
    pub full: PsiData,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PsiData {
    #[serde(serialize_with = "go_float")]
    pub avg10: f64,
    #[serde(serialize_with = "go_float")]
    pub avg60: f64,
    #[serde(serialize_with = "go_float")]
    pub avg300: f64,
    /// Microseconds of stall.
    pub total: u64,
}

impl PsiData {
    fn is_zero(&self) -> bool {
        *self == PsiData::default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    /// Memory plus swap, as v1's memsw reports it (v2's swap-only figures are added to memory's).
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as it is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

/// Bytes. A limit of u64::MAX (v2 "max") means none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 when unlimited ("max").
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Blkio {
    #[serde(rename = "ioServiceBytesRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServiceTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioWaitTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioMergedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "sectorsRecursive", skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// "Read", "Write", "Sync", "Async", "Discard", "Total"; empty for time and sectors.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// Intel RDT (resctrl) is not supported: every field of runc's struct is omitempty, so this is
/// always `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntelRdt {}

/// runc's `types.NetworkInterface` (no JSON tags: Go field names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInterface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Go's encoding/json writes a float without a fraction as an integer ("0", not "0.0"); PSI
/// averages are mostly 0.00.
fn go_float<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    const EXACT: f64 = (1u64 << 53) as f64;
    if v.fract() == 0.0 && v.abs() < EXACT {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

// ---------------------------------------------------------------------------------------------
// runc's types.Event: one JSON object per line on stdout.

/// One line of `amber events` output: `{"type":"stats","id":..,"data":{..}}` or
/// `{"type":"oom","id":..}` (runc's `data` is omitempty, so an OOM event has none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub typ: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Event {
    pub fn stats(id: &str, stats: &Stats) -> Event {
        Event {
            typ: "stats".to_string(),
            id: id.to_string(),
            // Cannot fail: string map keys only, and go_float serialises any f64.
            data: serde_json::to_value(stats).expect("Stats serialises to JSON"),
        }
    }

    pub fn oom(id: &str) -> Event {
        Event {
            typ: "oom".to_string(),
            id: id.to_string(),
            data: serde_json::Value::Null,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading: which files, in which hierarchy.

impl Manager {
    /// The container's resource usage, read from cgroupfs (`amber events --stats`). On hybrid
    /// hosts the v1 controllers are read, like runc does; hugetlb comes from the unified
    /// hierarchy when no v1 hierarchy carries it.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        let mut st = Stats::default();
        if self.is_v2() {
            if let Some(dir) = self.v2_dir() {
                stat_v2(dir, &mut st)?;
            }
            return Ok(st);
        }
        if let Some(dir) = self.v1_dir("cpuacct") {
            st.cpu.usage = stat_cpuacct_v1(dir)?;
        }
        if let Some(dir) = self.v1_dir("cpu") {
            st.cpu.throttling = stat_throttling(dir, "throttled_time", 1)?;
        }
        if let Some(dir) = self.v1_dir("cpuset") {
            st.cpuset = stat_cpuset_v1(dir)?;
        }
        if let Some(dir) = self.v1_dir("memory") {
            st.memory = stat_memory_v1(dir)?;
        }
        if let Some(dir) = self.v1_dir("pids") {
            st.pids = stat_pids(dir)?;
        }
        if let Some(dir) = self.v1_dir("blkio") {
            st.blkio = stat_blkio_v1(dir)?;
        }
        match (self.v1_dir("hugetlb"), self.v2_dir()) {
            (Some(dir), _) => st.hugetlb = stat_hugetlb(dir, HugetlbFiles::V1)?,
            (None, Some(dir)) => st.hugetlb = stat_hugetlb(dir, HugetlbFiles::V2)?,
            (None, None) => {}
        }
        Ok(st)
    }
}

/// Every controller of a cgroup2 directory. The PSI files exist without any controller.
fn stat_v2(dir: &Path, st: &mut Stats) -> Result<(), CgroupError> {
    st.cpu.usage = stat_cpu_usage_v2(dir)?;
    st.cpu.throttling = stat_throttling(dir, "throttled_usec", 1000)?;
    st.cpu.psi = read_parsed(&dir.join("cpu.pressure"), parse_psi)?;
    st.memory = stat_memory_v2(dir)?;
    st.memory.psi = read_parsed(&dir.join("memory.pressure"), parse_psi)?;
    st.pids = stat_pids(dir)?;
    if !dir.join("pids.current").exists() {
        // pids controller not enabled: count the processes as runc does.
        st.pids.current = count_procs(dir)?;
    }
    st.blkio = read_parsed(&dir.join("io.stat"), parse_io_stat)?.unwrap_or_default();
    st.blkio.psi = read_parsed(&dir.join("io.pressure"), parse_psi)?;
    st.hugetlb = stat_hugetlb(dir, HugetlbFiles::V2)?;
    Ok(())
}

fn stat_cpuacct_v1(dir: &Path) -> Result<CpuUsage, CgroupError> {
    let mut usage = CpuUsage {
        total: read_u64(&dir.join("cpuacct.usage"))?,
        percpu: read_parsed(&dir.join("cpuacct.usage_percpu"), parse_u64_list)?.unwrap_or_default(),
        ..CpuUsage::default()
    };
    if let Some((kernel, user)) = read_parsed(&dir.join("cpuacct.usage_all"), parse_usage_all)? {
        usage.percpu_kernel = kernel;
        usage.percpu_user = user;
    }
    if let Some((user, kernel)) = read_parsed(&dir.join("cpuacct.stat"), parse_cpuacct_stat)? {
        usage.user = user;
        usage.kernel = kernel;
    }
    Ok(usage)
}

fn stat_cpu_usage_v2(dir: &Path) -> Result<CpuUsage, CgroupError> {
    let stat = read_keyed(&dir.join("cpu.stat"))?;
    let usec = |key: &str| stat.get(key).copied().unwrap_or(0).saturating_mul(1000);
    Ok(CpuUsage {
        total: usec("usage_usec"),
        user: usec("user_usec"),
        kernel: usec("system_usec"),
        ..CpuUsage::default()
    })
}

/// cpu.stat's bandwidth counters; the throttled time is in ns on v1 and µs on v2.
fn stat_throttling(dir: &Path, time_key: &str, to_ns: u64) -> Result<Throttling, CgroupError> {
    let stat = read_keyed(&dir.join("cpu.stat"))?;
    let get = |key: &str| stat.get(key).copied().unwrap_or(0);
    Ok(Throttling {
        periods: get("nr_periods"),
        throttled_periods: get("nr_throttled"),
        throttled_time: get(time_key).saturating_mul(to_ns),
    })
}

fn stat_cpuset_v1(dir: &Path) -> Result<CpuSet, CgroupError> {
    // Only a v1 cpuset hierarchy may be mounted "noprefix" (Android does): files without the
    // "cpuset." prefix.
    let prefix = if dir.join("cpuset.cpus").exists() || !dir.join("cpus").exists() {
        "cpuset."
    } else {
        ""
    };
    let path = |name: &str| dir.join(format!("{prefix}{name}"));
    let flag = |name: &str| read_u64(&path(name));
    Ok(CpuSet {
        cpus: read_parsed(&path("cpus"), parse_cpu_list)?.unwrap_or_default(),
        cpu_exclusive: flag("cpu_exclusive")?,
        mems: read_parsed(&path("mems"), parse_cpu_list)?.unwrap_or_default(),
        mem_hardwall: flag("mem_hardwall")?,
        mem_exclusive: flag("mem_exclusive")?,
        memory_migrate: flag("memory_migrate")?,
        memory_spread_page: flag("memory_spread_page")?,
        memory_spread_slab: flag("memory_spread_slab")?,
        memory_pressure: flag("memory_pressure")?,
        sched_load_balance: flag("sched_load_balance")?,
        sched_relax_domain_level: read_parsed(&path("sched_relax_domain_level"), parse_i64)?.unwrap_or(0),
    })
}

fn stat_memory_v1(dir: &Path) -> Result<Memory, CgroupError> {
    // runc reports nothing at all when memory.stat is missing.
    let Some(raw) = read_parsed(&dir.join("memory.stat"), parse_flat_keyed)? else {
        return Ok(Memory::default());
    };
    let entry = |prefix: &str| -> Result<MemoryEntry, CgroupError> {
        Ok(MemoryEntry {
            limit: read_u64(&dir.join(format!("{prefix}.limit_in_bytes")))?,
            usage: read_u64(&dir.join(format!("{prefix}.usage_in_bytes")))?,
            max: read_u64(&dir.join(format!("{prefix}.max_usage_in_bytes")))?,
            failcnt: read_u64(&dir.join(format!("{prefix}.failcnt")))?,
        })
    };
    Ok(Memory {
        cache: raw.get("cache").copied().unwrap_or(0),
        usage: entry("memory")?,
        // memsw and kmem are absent without swap accounting, and kmem on kernels ≥ 6.x: zero.
        swap: entry("memory.memsw")?,
        kernel: entry("memory.kmem")?,
        kernel_tcp: entry("memory.kmem.tcp")?,
        raw,
        psi: None,
    })
}

fn stat_memory_v2(dir: &Path) -> Result<Memory, CgroupError> {
    let Some(raw) = read_parsed(&dir.join("memory.stat"), parse_flat_keyed)? else {
        return Ok(Memory::default());
    };
    let entry = |prefix: &str| -> Result<MemoryEntry, CgroupError> {
        Ok(MemoryEntry {
            limit: read_u64(&dir.join(format!("{prefix}.max")))?,
            usage: read_u64(&dir.join(format!("{prefix}.current")))?,
            // memory.peak since Linux 5.19, memory.swap.peak since 6.5.
            max: read_u64(&dir.join(format!("{prefix}.peak")))?,
            failcnt: 0,
        })
    };
    let usage = entry("memory")?;
    let swap = combine_swap_v2(&usage, &entry("memory.swap")?);
    Ok(Memory {
        cache: raw.get("file").copied().unwrap_or(0),
        usage,
        swap,
        kernel: MemoryEntry::default(),
        kernel_tcp: MemoryEntry::default(),
        raw,
        psi: None,
    })
}

/// v1 reports swap as memory+swap (memsw); v2 counts swap alone. runc adds memory to it so
/// that consumers see v1's meaning; a combined peak cannot be known, so max is 0.
fn combine_swap_v2(memory: &MemoryEntry, swap_only: &MemoryEntry) -> MemoryEntry {
    MemoryEntry {
        limit: if swap_only.limit == u64::MAX {
            u64::MAX
        } else {
            swap_only.limit.saturating_add(memory.limit)
        },
        usage: swap_only.usage.saturating_add(memory.usage),
        max: 0,
        failcnt: swap_only.failcnt,
    }
}

/// pids.current and pids.max ("max" is reported as 0, no limit); same files on v1 and v2.
fn stat_pids(dir: &Path) -> Result<Pids, CgroupError> {
    let limit = read_parsed(&dir.join("pids.max"), |t| match t.trim() {
        "max" => Ok(0),
        v => parse_u64(v),
    })?;
    Ok(Pids {
        current: read_u64(&dir.join("pids.current"))?,
        limit: limit.unwrap_or(0),
    })
}

fn count_procs(dir: &Path) -> Result<u64, CgroupError> {
    let procs = dir.join("cgroup.procs");
    let text = match std::fs::read_to_string(&procs) {
        // A threaded cgroup refuses cgroup.procs; its threads are what it has.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => read_optional(&dir.join("cgroup.threads"))?,
        other => optional(&procs, other)?,
    };
    Ok(text.map_or(0, |t| t.lines().count() as u64))
}

/// runc's order: BFQ's debug files, BFQ, CFQ, then the throttling layer's recursive and plain
/// counters. The first set whose first file has content is used.
const BLKIO_SETS: [&[(&str, BlkioField)]; 5] = {
    use BlkioField::*;
    [
        &[
            ("blkio.bfq.sectors_recursive", Sectors),
            ("blkio.bfq.io_service_time_recursive", ServiceTime),
            ("blkio.bfq.io_wait_time_recursive", WaitTime),
            ("blkio.bfq.io_merged_recursive", Merged),
            ("blkio.bfq.io_queued_recursive", Queued),
            ("blkio.bfq.time_recursive", Time),
            ("blkio.bfq.io_serviced_recursive", Serviced),
            ("blkio.bfq.io_service_bytes_recursive", ServiceBytes),
        ],
        &[
            ("blkio.bfq.io_serviced_recursive", Serviced),
            ("blkio.bfq.io_service_bytes_recursive", ServiceBytes),
        ],
        &[
            ("blkio.sectors_recursive", Sectors),
            ("blkio.io_service_time_recursive", ServiceTime),
            ("blkio.io_wait_time_recursive", WaitTime),
            ("blkio.io_merged_recursive", Merged),
            ("blkio.io_queued_recursive", Queued),
            ("blkio.time_recursive", Time),
            ("blkio.io_serviced_recursive", Serviced),
            ("blkio.io_service_bytes_recursive", ServiceBytes),
        ],
        &[
            ("blkio.throttle.io_serviced_recursive", Serviced),
            ("blkio.throttle.io_service_bytes_recursive", ServiceBytes),
        ],
        &[
            ("blkio.throttle.io_serviced", Serviced),
            ("blkio.throttle.io_service_bytes", ServiceBytes),
        ],
    ]
};

#[derive(Clone, Copy)]
enum BlkioField {
    ServiceBytes,
    Serviced,
    Queued,
    ServiceTime,
    WaitTime,
    Merged,
    Time,
    Sectors,
}

impl Blkio {
    fn field(&mut self, f: BlkioField) -> &mut Vec<BlkioEntry> {
        match f {
            BlkioField::ServiceBytes => &mut self.io_service_bytes_recursive,
            BlkioField::Serviced => &mut self.io_serviced_recursive,
            BlkioField::Queued => &mut self.io_queued_recursive,
            BlkioField::ServiceTime => &mut self.io_service_time_recursive,
            BlkioField::WaitTime => &mut self.io_wait_time_recursive,
            BlkioField::Merged => &mut self.io_merged_recursive,
            BlkioField::Time => &mut self.io_time_recursive,
            BlkioField::Sectors => &mut self.sectors_recursive,
        }
    }
}

fn stat_blkio_v1(dir: &Path) -> Result<Blkio, CgroupError> {
    let mut blkio = Blkio::default();
    for set in BLKIO_SETS {
        let (first, field) = set[0];
        let entries = read_parsed(&dir.join(first), parse_blkio)?.unwrap_or_default();
        if entries.is_empty() {
            continue;
        }
        *blkio.field(field) = entries;
        for &(file, field) in &set[1..] {
            *blkio.field(field) = read_parsed(&dir.join(file), parse_blkio)?.unwrap_or_default();
        }
        break;
    }
    Ok(blkio)
}

#[derive(Clone, Copy)]
enum HugetlbFiles {
    V1,
    V2,
}

/// One entry per page size the cgroup has files for (hugetlb.2MB.usage_in_bytes on v1,
/// hugetlb.2MB.current on v2): the kernel names the sizes the way runc reports them.
fn stat_hugetlb(dir: &Path, files: HugetlbFiles) -> Result<BTreeMap<String, Hugetlb>, CgroupError> {
    let usage_suffix = match files {
        HugetlbFiles::V1 => ".usage_in_bytes",
        HugetlbFiles::V2 => ".current",
    };
    let names = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(CgroupError::ReadDir {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = BTreeMap::new();
    for size in hugetlb_sizes(&names, usage_suffix) {
        let file = |name: &str| dir.join(format!("hugetlb.{size}.{name}"));
        let entry = match files {
            HugetlbFiles::V1 => Hugetlb {
                usage: read_u64(&file("usage_in_bytes"))?,
                max: read_u64(&file("max_usage_in_bytes"))?,
                failcnt: read_u64(&file("failcnt"))?,
            },
            HugetlbFiles::V2 => Hugetlb {
                usage: read_u64(&file("current"))?,
                max: 0,
                // v2 has no failcnt; runc reports the "max" event count (allocations refused).
                failcnt: read_keyed(&file("events"))?.get("max").copied().unwrap_or(0),
            },
        };
        out.insert(size, entry);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// File access: missing means zero.

/// The text of a cgroup file, or None when the file (or the whole controller) is not there.
/// ENODEV: the cgroup was removed while we read; EOPNOTSUPP: PSI disabled (psi=0).
pub(super) fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    optional(path, std::fs::read_to_string(path))
}

fn optional(path: &Path, res: io::Result<String>) -> Result<Option<String>, CgroupError> {
    match res {
        Ok(text) => Ok(Some(text)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub(super) fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || matches!(e.raw_os_error(), Some(libc::ENODEV | libc::EOPNOTSUPP))
}

fn read_parsed<T>(path: &Path, parse: impl FnOnce(&str) -> Result<T, Malformed>) -> Result<Option<T>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    parse(&text).map(Some).map_err(|Malformed(content)| CgroupError::Parse {
        path: path.to_path_buf(),
        content,
    })
}

fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    Ok(read_parsed(path, parse_u64)?.unwrap_or(0))
}

fn read_keyed(path: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
    Ok(read_parsed(path, parse_flat_keyed)?.unwrap_or_default())
}
