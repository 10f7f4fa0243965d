//! linux.resources → cgroup v2 file writes (pure).

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::plan::{blkio_weight_to_io_weight, cpu_shares_to_weight, limit_str, memory_swap_to_v2, CgroupWrite};
use super::CgroupError;

/// Host facts the v2 plan depends on, probed in the container's directory before planning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V2Probe {
    /// io.bfq.weight exists (BFQ scheduler): it takes the v1 weight range as is.
    pub io_bfq: bool,
}

/// Build the v2 writes for `res`, in order; the `unified` map comes last so it overrides.
pub fn build_v2_plan(res: &LinuxResources, probe: &V2Probe) -> Result<Vec<CgroupWrite>, CgroupError> {
    let mut plan = Vec::new();
    if let Some(mem) = res.memory() {
        plan_memory(mem, &mut plan)?;
    }
    if let Some(cpu) = res.cpu() {
        plan_cpu(cpu, &mut plan)?;
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
        plan_io(blkio, probe, &mut plan);
    }
    // Devices: v2 has no devices files; Manager::apply_resources attaches an eBPF filter built by
    // devices_v2.rs instead.
    // hugepageLimits, network and rdma are not applied yet.
    plan_unified(res, &mut plan)?;
    Ok(plan)
}

fn plan_memory(mem: &LinuxMemory, plan: &mut Vec<CgroupWrite>) -> Result<(), CgroupError> {
    let limit = mem.limit().unwrap_or(0);
    let swap = mem.swap().unwrap_or(0);
    let reservation = mem.reservation().unwrap_or(0);
    if limit == 0 && swap == 0 && reservation == 0 {
        return Ok(());
    }
    let swap_v2 = memory_swap_to_v2(swap, limit)?;
    // memory == memory+swap means "no swap": 0 must then be written, not skipped.
    let swap_value = match limit_str(swap_v2) {
        None if swap > 0 => Some("0".to_string()),
        v => v,
    };
    if let Some(v) = swap_value {
        // Without swap accounting the file is missing; "max" and "0" then ask for what the
        // kernel already does, so runc ignores the missing file for exactly those two values.
        let w = CgroupWrite::new("memory", "memory.swap.max", &v);
        plan.push(if v == "max" || v == "0" { w.optional() } else { w });
    }
    if let Some(v) = limit_str(limit) {
        plan.push(CgroupWrite::new("memory", "memory.max", v));
    }
    if let Some(v) = limit_str(reservation) {
        plan.push(CgroupWrite::new("memory", "memory.low", v));
    }
    // swappiness and disableOOMKiller have no v2 files (runc ignores them too); kernel memory
    // limits are gone from the kernel.
    Ok(())
}

fn plan_cpu(cpu: &LinuxCpu, plan: &mut Vec<CgroupWrite>) -> Result<(), CgroupError> {
    let rt_period = cpu.realtime_period().unwrap_or(0);
    let rt_runtime = cpu.realtime_runtime().unwrap_or(0);
    if rt_period != 0 || rt_runtime != 0 {
        // Refused rather than dropped: a real-time budget the kernel cannot enforce on v2.
        return Err(CgroupError::RealtimeOnV2 {
            period: rt_period,
            runtime: rt_runtime,
        });
    }
    let weight = cpu_shares_to_weight(cpu.shares().unwrap_or(0));
    if weight != 0 {
        plan.push(CgroupWrite::new("cpu", "cpu.weight", weight));
    }
    if let Some(i) = cpu.idle() {
        plan.push(CgroupWrite::new("cpu", "cpu.idle", i));
    }
    let quota = cpu.quota().unwrap_or(0);
    let period = cpu.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        // As runc: a period without a quota writes "max <period>", i.e. unlimited.
        let mut value = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        if period != 0 {
            value.push_str(&format!(" {period}"));
        }
        plan.push(CgroupWrite::new("cpu", "cpu.max", value));
    }
    // The burst may not exceed the quota, so it follows cpu.max.
    if let Some(b) = cpu.burst() {
        plan.push(CgroupWrite::new("cpu", "cpu.max.burst", b));
    }
    if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        plan.push(CgroupWrite::new("cpuset", "cpuset.cpus", c));
    }
    if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        plan.push(CgroupWrite::new("cpuset", "cpuset.mems", m));
    }
    Ok(())
}

fn plan_io(blkio: &LinuxBlockIo, probe: &V2Probe, plan: &mut Vec<CgroupWrite>) {
    let weight = |w: u16| {
        if probe.io_bfq {
            u64::from(w)
        } else {
            blkio_weight_to_io_weight(w)
        }
    };
    let file = if probe.io_bfq { "io.bfq.weight" } else { "io.weight" };
    if let Some(w) = blkio.weight().filter(|w| *w != 0) {
        plan.push(CgroupWrite::new("io", file, weight(w)));
    }
    for dev in blkio.weight_device().iter().flatten() {
        if let Some(w) = dev.weight() {
            let value = format!("{}:{} {}", dev.major(), dev.minor(), weight(w));
            plan.push(CgroupWrite::new("io", file, value));
        }
    }
    let throttles = [
        ("rbps", blkio.throttle_read_bps_device()),
        ("wbps", blkio.throttle_write_bps_device()),
        ("riops", blkio.throttle_read_iops_device()),
        ("wiops", blkio.throttle_write_iops_device()),
    ];
    for (key, devs) in throttles {
        for dev in devs.iter().flatten() {
            // io.max takes one key per write and keeps the others of that device.
            let value = format!("{}:{} {key}={}", dev.major(), dev.minor(), dev.rate());
            plan.push(CgroupWrite::new("io", "io.max", value));
        }
    }
}

fn plan_unified(res: &LinuxResources, plan: &mut Vec<CgroupWrite>) -> Result<(), CgroupError> {
    let Some(unified) = res.unified() else {
        return Ok(());
    };
    // HashMap order is random; sort so the plan (and any failure) is reproducible.
    let mut entries: Vec<_> = unified.iter().collect();
    entries.sort();
    for (key, value) in entries {
        let invalid = |reason| CgroupError::UnifiedKey {
            key: key.clone(),
            reason,
        };
        // The key is joined onto the container's directory: it must name a file right there.
        if key.contains('/') || key.starts_with('.') || key.contains('\0') {
            return Err(invalid("must be a plain file name in the container's cgroup"));
        }
        let Some((controller, rest)) = key.split_once('.') else {
            return Err(invalid("expected <controller>.<file>, like memory.high"));
        };
        if controller.is_empty() || rest.is_empty() {
            return Err(invalid("expected <controller>.<file>, like memory.high"));
        }
        plan.push(CgroupWrite::new(controller, key, value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };
    use std::collections::HashMap;

    fn plan(res: LinuxResources, probe: &V2Probe) -> Vec<(String, String, bool)> {
        build_v2_plan(&res, probe)
            .unwrap()
            .into_iter()
            .map(|w| (w.file, w.value, w.optional))
            .collect()
    }

    fn t(f: &str, v: &str) -> (String, String, bool) {
        (f.into(), v.into(), false)
    }

    fn opt(f: &str, v: &str) -> (String, String, bool) {
        (f.into(), v.into(), true)
    }

    fn mem(b: LinuxMemoryBuilder) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(b.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn empty_resources_empty_plan_and_devices_skipped() {
        assert!(plan(LinuxResources::default(), &V2Probe::default()).is_empty());
        let dev = LinuxDeviceCgroupBuilder::default().allow(false).build().unwrap();
        let res = LinuxResourcesBuilder::default().devices(vec![dev]).build().unwrap();
        assert!(plan(res, &V2Probe::default()).is_empty());
    }

    #[test]
    fn memory_swap_is_total_minus_memory() {
        let res = mem(LinuxMemoryBuilder::default()
            .limit(64 << 20)
            .swap(96 << 20)
            .reservation(16 << 20)
            .swappiness(10u64)
            .disable_oom_killer(true));
        assert_eq!(
            plan(res, &V2Probe::default()),
            [
                t("memory.swap.max", "33554432"),
                t("memory.max", "67108864"),
                t("memory.low", "16777216"),
            ]
        );
    }

    #[test]
    fn memory_equal_swap_disables_swap() {
        let res = mem(LinuxMemoryBuilder::default().limit(100).swap(100));
        assert_eq!(
            plan(res, &V2Probe::default()),
            [opt("memory.swap.max", "0"), t("memory.max", "100")]
        );
    }

    #[test]
    fn memory_unlimited() {
        let res = mem(LinuxMemoryBuilder::default().limit(-1));
        assert_eq!(
            plan(res, &V2Probe::default()),
            [opt("memory.swap.max", "max"), t("memory.max", "max")]
        );
        let res = mem(LinuxMemoryBuilder::default().limit(100).swap(-1));
        assert_eq!(
            plan(res, &V2Probe::default()),
            [opt("memory.swap.max", "max"), t("memory.max", "100")]
        );
        let res = mem(LinuxMemoryBuilder::default().limit(100));
        assert_eq!(plan(res, &V2Probe::default()), [t("memory.max", "100")]);
    }

    #[test]
    fn memory_errors() {
        for (limit, swap) in [(100, 50), (0, 50), (-1, 50)] {
            let mut b = LinuxMemoryBuilder::default().swap(swap);
            if limit != 0 {
                b = b.limit(limit);
            }
            let err = build_v2_plan(&mem(b), &V2Probe::default()).unwrap_err();
            assert!(matches!(err, CgroupError::MemorySwap { .. }), "{err}");
        }
    }

    #[test]
    fn cpu() {
        let cpu = LinuxCpuBuilder::default()
            .shares(1024u64)
            .quota(50_000i64)
            .period(100_000u64)
            .burst(1000u64)
            .idle(1i64)
            .cpus("0")
            .mems("0")
            .build()
            .unwrap();
        let res = LinuxResourcesBuilder::default().cpu(cpu).build().unwrap();
        assert_eq!(
            plan(res, &V2Probe::default()),
            [
                t("cpu.weight", "100"),
                t("cpu.idle", "1"),
                t("cpu.max", "50000 100000"),
                t("cpu.max.burst", "1000"),
                t("cpuset.cpus", "0"),
                t("cpuset.mems", "0"),
            ]
        );
    }

    #[test]
    fn cpu_max_forms() {
        let res = |q: Option<i64>, p: Option<u64>| {
            let mut b = LinuxCpuBuilder::default();
            if let Some(q) = q {
                b = b.quota(q);
            }
            if let Some(p) = p {
                b = b.period(p);
            }
            LinuxResourcesBuilder::default()
                .cpu(b.build().unwrap())
                .build()
                .unwrap()
        };
        let p = V2Probe::default();
        assert_eq!(plan(res(Some(20_000), None), &p), [t("cpu.max", "20000")]);
        assert_eq!(plan(res(Some(-1), None), &p), [t("cpu.max", "max")]);
        assert_eq!(plan(res(None, Some(50_000)), &p), [t("cpu.max", "max 50000")]);
        assert!(plan(res(None, None), &p).is_empty());
    }

    #[test]
    fn realtime_refused() {
        let cpu = LinuxCpuBuilder::default().realtime_runtime(1000i64).build().unwrap();
        let res = LinuxResourcesBuilder::default().cpu(cpu).build().unwrap();
        let err = build_v2_plan(&res, &V2Probe::default()).unwrap_err();
        assert!(matches!(err, CgroupError::RealtimeOnV2 { .. }), "{err}");
    }

    #[test]
    fn pids() {
        let res = |l| {
            LinuxResourcesBuilder::default()
                .pids(LinuxPidsBuilder::default().limit(l).build().unwrap())
                .build()
                .unwrap()
        };
        let p = V2Probe::default();
        assert_eq!(plan(res(10), &p), [t("pids.max", "10")]);
        assert_eq!(plan(res(-1), &p), [t("pids.max", "max")]);
        assert!(plan(res(0), &p).is_empty());
    }

    #[test]
    fn io_weight_and_max() {
        let res = || {
            let dev = LinuxWeightDeviceBuilder::default()
                .major(8)
                .minor(0)
                .weight(1000u16)
                .build()
                .unwrap();
            let thr = LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(0)
                .rate(100u64)
                .build()
                .unwrap();
            let b = LinuxBlockIoBuilder::default()
                .weight(500u16)
                .weight_device(vec![dev])
                .throttle_read_bps_device(vec![thr])
                .throttle_write_bps_device(vec![thr])
                .throttle_read_iops_device(vec![thr])
                .throttle_write_iops_device(vec![thr])
                .build()
                .unwrap();
            LinuxResourcesBuilder::default().block_io(b).build().unwrap()
        };
        assert_eq!(
            plan(res(), &V2Probe::default()),
            [
                t("io.weight", "4950"),
                t("io.weight", "8:0 10000"),
                t("io.max", "8:0 rbps=100"),
                t("io.max", "8:0 wbps=100"),
                t("io.max", "8:0 riops=100"),
                t("io.max", "8:0 wiops=100"),
            ]
        );
        let p = plan(res(), &V2Probe { io_bfq: true });
        assert_eq!(p[0], t("io.bfq.weight", "500"));
        assert_eq!(p[1], t("io.bfq.weight", "8:0 1000"));
    }

    #[test]
    fn unified_last_and_sorted() {
        let res = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
            .unified(HashMap::from([
                ("pids.max".to_string(), "7".to_string()),
                ("memory.high".to_string(), "1G".to_string()),
            ]))
            .build()
            .unwrap();
        let w = build_v2_plan(&res, &V2Probe::default()).unwrap();
        let files: Vec<_> = w.iter().map(|w| (w.controller.as_str(), w.file.as_str())).collect();
        assert_eq!(
            files,
            [("pids", "pids.max"), ("memory", "memory.high"), ("pids", "pids.max")]
        );
        assert_eq!(w[2].value, "7", "unified overrides the typed field");
    }

    #[test]
    fn unified_bad_keys() {
        for key in ["../memory.max", "a/memory.max", ".hidden", "nodot", ".max", "memory."] {
            let res = LinuxResourcesBuilder::default()
                .unified(HashMap::from([(key.to_string(), "1".to_string())]))
                .build()
                .unwrap();
            let err = build_v2_plan(&res, &V2Probe::default()).unwrap_err();
            assert!(matches!(err, CgroupError::UnifiedKey { .. }), "{key}: {err}");
        }
    }
}
