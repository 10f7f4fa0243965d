//! config-linux.md "Control groups": cgroupsPath, the cgroup namespace and mount, and the
//! resources (read from inside the container through its /sys/fs/cgroup).
//!
//! This host is cgroup v1 hybrid (v1 controllers under /sys/fs/cgroup/<controller>, a v2 mount
//! with no controller but hugetlb at /sys/fs/cgroup/unified); the tests read v1 files and skip
//! themselves on a pure v2 host.

use serde_json::{json, Value};
use std::path::Path;

use super::{eq, Test};
use crate::case::Env;
use crate::ensure;
use crate::report::Report;

fn v1(env: &Env) -> Option<String> {
    let _ = env;
    (!Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists())
        .then(|| "not a cgroup v1 (or hybrid) host".to_string())
}

fn file(r: &Report, p: &str) -> Result<String, String> {
    r.read(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {p}: errno {e}"))
}

fn resource_test(name: &str, resources: Value, files: &'static [(&'static str, &'static str)]) -> Test {
    let mut args = Vec::new();
    for (f, _) in files {
        args.push("--read");
        args.push(*f);
    }
    Test::probe(
        name,
        "config-linux.md#control-groups",
        move |c| {
            for (k, v) in resources.as_object().cloned().unwrap_or_default() {
                c.set(&format!("/linux/resources/{k}"), v);
            }
            Ok(())
        },
        move |r, _| {
            for (f, want) in files {
                eq(f, file(r, f)?, want.to_string())?;
            }
            Ok(())
        },
    )
    .args(&args)
    .requires(v1)
}

pub fn tests() -> Vec<Test> {
    vec![
        Test::probe(
            "linux.cgroupsPath: the process is in /<path> in every v1 hierarchy",
            "config-linux.md#cgroups-path",
            |c| {
                c.remove_namespace("cgroup");
                Ok(())
            },
            |r, c| {
                let want = format!("/{}", c.id);
                let lines = r.strings("/cgroup");
                for ctl in ["memory", "pids", "cpu", "cpuset", "devices", "freezer", "blkio"] {
                    let line = lines
                        .iter()
                        .find(|l| l.split(':').nth(1).is_some_and(|cs| cs.split(',').any(|x| x == ctl)))
                        .ok_or(format!("no {ctl} line in /proc/self/cgroup: {lines:?}"))?;
                    let path = line.splitn(3, ':').nth(2).unwrap_or("");
                    eq(&format!("{ctl} cgroup"), path, want.as_str())?;
                }
                Ok(())
            },
        )
        .requires(v1),
        Test::probe(
            "linux.cgroupsPath: a relative path is honoured (below the runtime's cgroup or the root)",
            "config-linux.md#cgroups-path",
            |c| {
                c.remove_namespace("cgroup");
                // one component: a runtime leaves intermediate directories it created behind
                let rel = c.id.clone();
                c.set("/linux/cgroupsPath", json!(rel));
                Ok(())
            },
            |r, c| {
                let rel = c.id.clone();
                let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
                let lines = r.strings("/cgroup");
                for ctl in ["memory", "pids"] {
                    let find = |text: &[String]| {
                        text.iter()
                            .find(|l| l.split(':').nth(1).is_some_and(|cs| cs.split(',').any(|x| x == ctl)))
                            .and_then(|l| l.splitn(3, ':').nth(2).map(str::to_string))
                    };
                    let got = find(&lines).ok_or(format!("no {ctl} line: {lines:?}"))?;
                    let mine = find(&own.lines().map(str::to_string).collect::<Vec<_>>()).unwrap_or_default();
                    let below_own = format!("{}/{rel}", mine.trim_end_matches('/'));
                    ensure!(
                        got == format!("/{rel}") || got == below_own,
                        "{ctl} cgroup {got:?} is neither /{rel} nor {below_own}"
                    );
                }
                Ok(())
            },
        )
        .requires(v1),
        Test::probe(
            "linux.namespaces cgroup: the process sees its cgroup as /",
            "config-linux.md#namespaces (cgroup)",
            |_| Ok(()),
            |r, _| {
                let lines = r.strings("/cgroup");
                let bad: Vec<&String> = lines
                    .iter()
                    .filter(|l| {
                        let cs = l.split(':').nth(1).unwrap_or("");
                        !cs.is_empty() && !cs.starts_with("name=") && !l.ends_with(":/")
                    })
                    .collect();
                ensure!(bad.is_empty(), "cgroups not rooted at /: {bad:?}");
                Ok(())
            },
        )
        .requires(v1),
        resource_test(
            "linux.resources.memory: limit, reservation, swap, swappiness",
            json!({"memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                              "swappiness": 10}}),
            &[
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "67108864"),
                ("/sys/fs/cgroup/memory/memory.soft_limit_in_bytes", "33554432"),
                ("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "134217728"),
                ("/sys/fs/cgroup/memory/memory.swappiness", "10"),
            ],
        ),
        Test::probe(
            "linux.resources.memory.disableOOMKiller",
            "config-linux.md#memory",
            |c| {
                c.set(
                    "/linux/resources/memory",
                    json!({"limit": 67108864, "disableOOMKiller": true}),
                );
                Ok(())
            },
            |r, _| {
                let t = file(r, "/sys/fs/cgroup/memory/memory.oom_control")?;
                ensure!(t.contains("oom_kill_disable 1"), "memory.oom_control: {t:?}");
                Ok(())
            },
        )
        .args(&["--read", "/sys/fs/cgroup/memory/memory.oom_control"])
        .requires(v1),
        resource_test(
            "linux.resources.pids.limit",
            json!({"pids": {"limit": 42}}),
            &[("/sys/fs/cgroup/pids/pids.max", "42")],
        ),
        resource_test(
            "linux.resources.cpu: shares, quota, period",
            json!({"cpu": {"shares": 512, "quota": 25000, "period": 50000}}),
            &[
                ("/sys/fs/cgroup/cpu/cpu.shares", "512"),
                ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "25000"),
                ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "50000"),
            ],
        ),
        resource_test(
            "linux.resources.cpu: cpus and mems (cpuset)",
            json!({"cpu": {"cpus": "0", "mems": "0"}}),
            &[
                ("/sys/fs/cgroup/cpuset/cpuset.cpus", "0"),
                ("/sys/fs/cgroup/cpuset/cpuset.mems", "0"),
            ],
        ),
        Test::probe(
            "linux.resources.blockIO: throttleReadBpsDevice, throttleWriteIOPSDevice",
            "config-linux.md#block-io",
            |c| {
                let (maj, min) = block_device().ok_or("no block device")?;
                c.set(
                    "/linux/resources/blockIO",
                    json!({
                        "throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}],
                        "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 300}]
                    }),
                );
                Ok(())
            },
            |r, _| {
                let (maj, min) = block_device().ok_or("no block device")?;
                eq(
                    "blkio.throttle.read_bps_device",
                    file(r, "/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device")?,
                    format!("{maj}:{min} 1048576"),
                )?;
                eq(
                    "blkio.throttle.write_iops_device",
                    file(r, "/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device")?,
                    format!("{maj}:{min} 300"),
                )
            },
        )
        .args(&[
            "--read",
            "/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device",
            "--read",
            "/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device",
        ])
        .requires(|env| v1(env).or_else(|| block_device().is_none().then(|| "no block device".into()))),
        Test::probe(
            "linux.resources.blockIO.weight",
            "config-linux.md#block-io",
            |c| {
                c.set("/linux/resources/blockIO", json!({"weight": 300}));
                Ok(())
            },
            |r, _| {
                eq(
                    "blkio.weight",
                    file(r, "/sys/fs/cgroup/blkio/blkio.weight")?,
                    "300".into(),
                )
            },
        )
        .args(&["--read", "/sys/fs/cgroup/blkio/blkio.weight"])
        .requires(|_| {
            (!Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists())
                .then(|| "the blkio controller has no weight file (no CFQ/BFQ weight on this kernel)".into())
        }),
        Test::probe(
            "linux.resources.hugepageLimits",
            "config-linux.md#huge-page-limits",
            |c| {
                c.set(
                    "/linux/resources/hugepageLimits",
                    json!([{"pageSize": "2MB", "limit": 4194304}]),
                );
                Ok(())
            },
            |r, _| {
                eq(
                    "hugetlb.2MB.limit_in_bytes",
                    file(r, "/sys/fs/cgroup/hugetlb/hugetlb.2MB.limit_in_bytes")?,
                    "4194304".into(),
                )
            },
        )
        .args(&["--read", "/sys/fs/cgroup/hugetlb/hugetlb.2MB.limit_in_bytes"])
        .requires(|_| {
            (!Path::new("/sys/fs/cgroup/hugetlb").exists())
                .then(|| "no v1 hugetlb controller (this hybrid host has hugetlb only on the v2 mount)".into())
        }),
        Test::probe(
            "linux.resources.network: classID and priorities",
            "config-linux.md#network",
            |c| {
                c.set("/linux/resources/network", json!({"classID": 1048577}));
                Ok(())
            },
            |r, _| {
                eq(
                    "net_cls.classid",
                    file(r, "/sys/fs/cgroup/net_cls/net_cls.classid")?,
                    "1048577".into(),
                )
            },
        )
        .args(&["--read", "/sys/fs/cgroup/net_cls/net_cls.classid"])
        .requires(|_| {
            (!Path::new("/sys/fs/cgroup/net_cls").exists()).then(|| "no net_cls controller mounted on this host".into())
        }),
        Test::probe(
            "linux.resources.unified: written to the v2 cgroup",
            "config-linux.md#unified",
            |c| {
                c.set("/linux/resources/unified", json!({"pids.max": "17"}));
                Ok(())
            },
            |r, _| eq("pids.max", file(r, "/sys/fs/cgroup/pids.max")?, "17".into()),
        )
        .args(&["--read", "/sys/fs/cgroup/pids.max"])
        .requires(|_| {
            (!Path::new("/sys/fs/cgroup/cgroup.controllers").exists())
                .then(|| "not a pure cgroup v2 host (unified applies to v2 only)".into())
        }),
    ]
}

/// major:minor of the first non-loop, non-ram block device.
fn block_device() -> Option<(u64, u64)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram"))
        .collect();
    names.sort();
    let dev = std::fs::read_to_string(format!("/sys/block/{}/dev", names.first()?)).ok()?;
    let (a, b) = dev.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}
