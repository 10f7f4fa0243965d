//! linux.resources → cgroup v1 file writes (pure).

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::plan::{default_device_rules, device_rule, CgroupWrite};
use super::{CgroupError, CgroupMode};

/// Host facts the v1 plan depends on, probed in the container's directories before planning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V1Probe {
    /// memory.memsw.limit_in_bytes exists (the kernel accounts swap).
    pub memsw: bool,
    /// blkio.bfq.weight exists: BFQ replaced CFQ, whose blkio.weight is gone since Linux 5.0.
    pub blkio_bfq: bool,
    /// The current memory.limit_in_bytes, which decides whether memsw or memory is written first.
    pub memory_limit: Option<u64>,
}

/// Build the v1 writes for `res`, in order. `mode` is the host's mode, only for the error
/// refusing `unified`.
pub fn build_v1_plan(res: &LinuxResources, probe: &V1Probe, mode: CgroupMode) -> Result<Vec<CgroupWrite>, CgroupError> {
    // Refused like runc: these are v2 file names and silently dropping limits is worse.
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::UnifiedOnV1 { mode });
    }
    let mut plan = Vec::new();
    if let Some(mem) = res.memory() {
        plan_memory(mem, probe, &mut plan)?;
    }
    if let Some(cpu) = res.cpu() {
        plan_cpu(cpu, &mut plan);
    }
    if let Some(pids) = res.pids() {
        if pids.limit() != 0 {
            let value = if pids.limit() > 0 {
                pids.limit().to_string()
            } else {
                "max".to_string()
            };
            plan.push(CgroupWrite::new("pids", "pids.max", value));
        }
    }
    if let Some(blkio) = res.block_io() {
        plan_blkio(blkio, probe, &mut plan);
    }
    plan_devices(res, &mut plan)?;
    // hugepageLimits, network (net_cls/net_prio) and rdma are not applied yet.
    Ok(plan)
}

fn plan_memory(mem: &LinuxMemory, probe: &V1Probe, plan: &mut Vec<CgroupWrite>) -> Result<(), CgroupError> {
    let limit = mem.limit().unwrap_or(0);
    let mut swap = mem.swap().unwrap_or(0);
    // "Unlimited memory" must lift the memsw limit too, or an old memsw below the new memory
    // limit makes the kernel refuse it (runc does the same).
    if limit == -1 && swap == 0 && probe.memsw {
        swap = -1;
    }
    if limit > 0 && swap > 0 && swap < limit {
        return Err(CgroupError::MemorySwap {
            limit,
            swap,
            reason: "memory+swap must be >= memory",
        });
    }
    let memory = (limit != 0).then(|| CgroupWrite::new("memory", "memory.limit_in_bytes", limit));
    let memsw = (swap != 0).then(|| CgroupWrite::new("memory", "memory.memsw.limit_in_bytes", swap));
    // The kernel keeps memory <= memsw at every step: when memsw grows past the current memory
    // limit (or becomes unlimited) it has to be raised first; otherwise memory goes first.
    let memsw_first =
        limit != 0 && swap != 0 && (swap == -1 || probe.memory_limit.is_some_and(|cur| cur < swap as u64));
    if memsw_first {
        plan.extend(memsw.into_iter().chain(memory));
    } else {
        plan.extend(memory.into_iter().chain(memsw));
    }
    if let Some(r) = mem.reservation().filter(|r| *r != 0) {
        plan.push(CgroupWrite::new("memory", "memory.soft_limit_in_bytes", r));
    }
    // u64::MAX is how "-1" (kernel default) arrives through the unsigned OCI field.
    match mem.swappiness() {
        Some(v) if v <= 100 => plan.push(CgroupWrite::new("memory", "memory.swappiness", v)),
        Some(u64::MAX) | None => {}
        Some(value) => return Err(CgroupError::Swappiness { value }),
    }
    if mem.disable_oom_killer() == Some(true) {
        plan.push(CgroupWrite::new("memory", "memory.oom_control", 1));
    }
    // kernel and kernelTCP limits are ignored: kmem limits were removed from Linux 5.16 onwards
    // and runc ignores them too.
    Ok(())
}

fn plan_cpu(cpu: &LinuxCpu, plan: &mut Vec<CgroupWrite>) {
    if let Some(s) = cpu.shares().filter(|s| *s != 0) {
        plan.push(CgroupWrite::new("cpu", "cpu.shares", s));
    }
    // Period before quota, as runc: a fresh cgroup has quota -1, so any period is accepted.
    if let Some(p) = cpu.period().filter(|p| *p != 0) {
        plan.push(CgroupWrite::new("cpu", "cpu.cfs_period_us", p));
    }
    if let Some(q) = cpu.quota().filter(|q| *q != 0) {
        plan.push(CgroupWrite::new("cpu", "cpu.cfs_quota_us", q));
    }
    // Burst must not exceed the quota, so it comes after it.
    if let Some(b) = cpu.burst() {
        plan.push(CgroupWrite::new("cpu", "cpu.cfs_burst_us", b));
    }
    if let Some(p) = cpu.realtime_period().filter(|p| *p != 0) {
        plan.push(CgroupWrite::new("cpu", "cpu.rt_period_us", p));
    }
    if let Some(r) = cpu.realtime_runtime().filter(|r| *r != 0) {
        plan.push(CgroupWrite::new("cpu", "cpu.rt_runtime_us", r));
    }
    if let Some(i) = cpu.idle() {
        plan.push(CgroupWrite::new("cpu", "cpu.idle", i));
    }
    if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        plan.push(CgroupWrite::new("cpuset", "cpuset.cpus", c));
    }
    if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        plan.push(CgroupWrite::new("cpuset", "cpuset.mems", m));
    }
}

fn plan_blkio(blkio: &LinuxBlockIo, probe: &V1Probe, plan: &mut Vec<CgroupWrite>) {
    let (weight_file, weight_device_file) = if probe.blkio_bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if let Some(w) = blkio.weight().filter(|w| *w != 0) {
        plan.push(CgroupWrite::new("blkio", weight_file, w));
    }
    if let Some(w) = blkio.leaf_weight().filter(|w| *w != 0) {
        plan.push(CgroupWrite::new("blkio", "blkio.leaf_weight", w));
    }
    for dev in blkio.weight_device().iter().flatten() {
        if let Some(w) = dev.weight() {
            let value = format!("{}:{} {w}", dev.major(), dev.minor());
            plan.push(CgroupWrite::new("blkio", weight_device_file, value));
        }
    }
    let throttles = [
        ("blkio.throttle.read_bps_device", blkio.throttle_read_bps_device()),
        ("blkio.throttle.write_bps_device", blkio.throttle_write_bps_device()),
        ("blkio.throttle.read_iops_device", blkio.throttle_read_iops_device()),
        ("blkio.throttle.write_iops_device", blkio.throttle_write_iops_device()),
    ];
    for (file, devs) in throttles {
        for dev in devs.iter().flatten() {
            let value = format!("{}:{} {}", dev.major(), dev.minor(), dev.rate());
            plan.push(CgroupWrite::new("blkio", file, value));
        }
    }
}

/// Deny everything, then the config's rules in order, then runc's default rules. Always emitted,
/// even without linux.resources.devices: a container must never inherit access to every host
/// device just because its config is silent. Note for a future `update`: rewriting "a" on a
/// running container briefly denies all devices; runc diffs the old and new rule sets instead.
fn plan_devices(res: &LinuxResources, plan: &mut Vec<CgroupWrite>) -> Result<(), CgroupError> {
    plan.push(CgroupWrite::new("devices", "devices.deny", "a"));
    for rule in res.devices().iter().flatten() {
        let file = if rule.allow() { "devices.allow" } else { "devices.deny" };
        plan.push(CgroupWrite::new("devices", file, device_rule(rule)?));
    }
    for rule in default_device_rules() {
        plan.push(CgroupWrite::new("devices", "devices.allow", rule));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
        LinuxPidsBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };
    use std::collections::HashMap;

    const FRESH: V1Probe = V1Probe {
        memsw: true,
        blkio_bfq: false,
        // What a new v1 memory cgroup reports: PAGE_COUNTER_MAX pages, in bytes.
        memory_limit: Some(9_223_372_036_854_771_712),
    };

    fn plan(res: LinuxResources, probe: &V1Probe) -> Vec<(String, String, String)> {
        build_v1_plan(&res, probe, CgroupMode::Hybrid)
            .unwrap()
            .into_iter()
            .filter(|w| w.controller != "devices")
            .map(|w| (w.controller, w.file, w.value))
            .collect()
    }

    fn t(c: &str, f: &str, v: &str) -> (String, String, String) {
        (c.into(), f.into(), v.into())
    }

    fn mem(b: LinuxMemoryBuilder) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(b.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn empty_resources_only_devices() {
        let all = build_v1_plan(&LinuxResources::default(), &FRESH, CgroupMode::V1).unwrap();
        assert!(all.iter().all(|w| w.controller == "devices"));
        assert_eq!(all[0].file, "devices.deny");
        assert_eq!(all[0].value, "a");
    }

    #[test]
    fn memory_on_fresh_cgroup_memory_first() {
        let res = mem(LinuxMemoryBuilder::default()
            .limit(64 << 20)
            .swap(128 << 20)
            .reservation(32 << 20)
            .swappiness(10u64)
            .disable_oom_killer(true));
        assert_eq!(
            plan(res, &FRESH),
            [
                t("memory", "memory.limit_in_bytes", "67108864"),
                t("memory", "memory.memsw.limit_in_bytes", "134217728"),
                t("memory", "memory.soft_limit_in_bytes", "33554432"),
                t("memory", "memory.swappiness", "10"),
                t("memory", "memory.oom_control", "1"),
            ]
        );
    }

    #[test]
    fn memory_raise_writes_memsw_first() {
        let probe = V1Probe {
            memory_limit: Some(64 << 20),
            ..FRESH
        };
        let res = mem(LinuxMemoryBuilder::default().limit(256 << 20).swap(512 << 20));
        assert_eq!(
            plan(res, &probe),
            [
                t("memory", "memory.memsw.limit_in_bytes", "536870912"),
                t("memory", "memory.limit_in_bytes", "268435456"),
            ]
        );
    }

    #[test]
    fn memory_unlimited_lifts_memsw_when_accounted() {
        let res = || mem(LinuxMemoryBuilder::default().limit(-1));
        assert_eq!(
            plan(res(), &FRESH),
            [
                t("memory", "memory.memsw.limit_in_bytes", "-1"),
                t("memory", "memory.limit_in_bytes", "-1"),
            ]
        );
        let no_memsw = V1Probe { memsw: false, ..FRESH };
        assert_eq!(plan(res(), &no_memsw), [t("memory", "memory.limit_in_bytes", "-1")]);
    }

    #[test]
    fn memory_errors() {
        let res = mem(LinuxMemoryBuilder::default().limit(100).swap(50));
        let err = build_v1_plan(&res, &FRESH, CgroupMode::V1).unwrap_err();
        assert!(matches!(err, CgroupError::MemorySwap { .. }), "{err}");
        let res = mem(LinuxMemoryBuilder::default().swappiness(101u64));
        let err = build_v1_plan(&res, &FRESH, CgroupMode::V1).unwrap_err();
        assert!(err.to_string().contains("101"), "{err}");
        let res = mem(LinuxMemoryBuilder::default().swappiness(u64::MAX));
        assert!(plan(res, &FRESH).is_empty(), "-1 swappiness means unset");
    }

    #[test]
    fn cpu_and_cpuset() {
        let cpu = LinuxCpuBuilder::default()
            .shares(512u64)
            .quota(50_000i64)
            .period(100_000u64)
            .burst(10_000u64)
            .realtime_period(1_000_000u64)
            .realtime_runtime(950_000i64)
            .idle(0i64)
            .cpus("0-1")
            .mems("0")
            .build()
            .unwrap();
        let res = LinuxResourcesBuilder::default().cpu(cpu).build().unwrap();
        assert_eq!(
            plan(res, &FRESH),
            [
                t("cpu", "cpu.shares", "512"),
                t("cpu", "cpu.cfs_period_us", "100000"),
                t("cpu", "cpu.cfs_quota_us", "50000"),
                t("cpu", "cpu.cfs_burst_us", "10000"),
                t("cpu", "cpu.rt_period_us", "1000000"),
                t("cpu", "cpu.rt_runtime_us", "950000"),
                t("cpu", "cpu.idle", "0"),
                t("cpuset", "cpuset.cpus", "0-1"),
                t("cpuset", "cpuset.mems", "0"),
            ]
        );
    }

    #[test]
    fn cpu_zero_values_are_unset_and_quota_minus_one_is_kept() {
        let cpu = LinuxCpuBuilder::default()
            .shares(0u64)
            .quota(-1i64)
            .cpus("")
            .build()
            .unwrap();
        let res = LinuxResourcesBuilder::default().cpu(cpu).build().unwrap();
        assert_eq!(plan(res, &FRESH), [t("cpu", "cpu.cfs_quota_us", "-1")]);
    }

    #[test]
    fn pids() {
        let res = |l| {
            LinuxResourcesBuilder::default()
                .pids(LinuxPidsBuilder::default().limit(l).build().unwrap())
                .build()
                .unwrap()
        };
        assert_eq!(plan(res(42), &FRESH), [t("pids", "pids.max", "42")]);
        assert_eq!(plan(res(-1), &FRESH), [t("pids", "pids.max", "max")]);
        assert!(plan(res(0), &FRESH).is_empty(), "0 means unset, as in runc");
    }

    #[test]
    fn blkio_weight_picks_bfq_when_present() {
        let blkio = || {
            let dev = LinuxWeightDeviceBuilder::default()
                .major(8)
                .minor(0)
                .weight(300u16)
                .build()
                .unwrap();
            let thr = LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(16)
                .rate(1_048_576u64)
                .build()
                .unwrap();
            let b = LinuxBlockIoBuilder::default()
                .weight(500u16)
                .weight_device(vec![dev])
                .throttle_read_bps_device(vec![thr])
                .throttle_write_iops_device(vec![thr])
                .build()
                .unwrap();
            LinuxResourcesBuilder::default().block_io(b).build().unwrap()
        };
        assert_eq!(
            plan(blkio(), &FRESH),
            [
                t("blkio", "blkio.weight", "500"),
                t("blkio", "blkio.weight_device", "8:0 300"),
                t("blkio", "blkio.throttle.read_bps_device", "8:16 1048576"),
                t("blkio", "blkio.throttle.write_iops_device", "8:16 1048576"),
            ]
        );
        let bfq = V1Probe {
            blkio_bfq: true,
            ..FRESH
        };
        let p = plan(blkio(), &bfq);
        assert_eq!(p[0], t("blkio", "blkio.bfq.weight", "500"));
        assert_eq!(p[1], t("blkio", "blkio.bfq.weight_device", "8:0 300"));
    }

    #[test]
    fn devices_deny_all_then_rules_then_defaults() {
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        let fuse = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .access("rw")
            .build()
            .unwrap();
        let res = LinuxResourcesBuilder::default()
            .devices(vec![deny_all, fuse])
            .build()
            .unwrap();
        let p: Vec<_> = build_v1_plan(&res, &FRESH, CgroupMode::V1)
            .unwrap()
            .into_iter()
            .map(|w| (w.file, w.value))
            .collect();
        assert_eq!(p[0], ("devices.deny".into(), "a".into()));
        assert_eq!(p[1], ("devices.deny".into(), "a *:* rwm".into()));
        assert_eq!(p[2], ("devices.allow".into(), "c 10:229 rw".into()));
        assert_eq!(p[3], ("devices.allow".into(), "c *:* m".into()));
        assert!(p.contains(&("devices.allow".into(), "c 1:3 rwm".into())));
        assert_eq!(p.len(), 3 + default_device_rules().len());
    }

    #[test]
    fn unified_is_refused_on_v1() {
        let res = LinuxResourcesBuilder::default()
            .unified(HashMap::from([("memory.high".into(), "1G".into())]))
            .build()
            .unwrap();
        let err = build_v1_plan(&res, &FRESH, CgroupMode::Hybrid).unwrap_err();
        assert!(matches!(err, CgroupError::UnifiedOnV1 { .. }));
        assert!(err.to_string().contains("unified"), "{err}");
        let empty = LinuxResourcesBuilder::default()
            .unified(HashMap::new())
            .build()
            .unwrap();
        assert!(build_v1_plan(&empty, &FRESH, CgroupMode::V1).is_ok());
    }
}
