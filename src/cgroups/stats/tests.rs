//! Parsers on fixture text, the JSON shape against runc's, and Manager::stats on a fake cgroup
//! filesystem in a tempdir (no root needed).

use std::fs;
use std::path::Path;

use super::super::mountinfo::fixtures::{HYBRID_THIS_MACHINE, PURE_V2};
use super::*;

fn touch(p: &Path, content: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

#[test]
fn single_values() {
    assert_eq!(parse_u64("123\n"), Ok(123));
    assert_eq!(parse_u64("max\n"), Ok(u64::MAX));
    assert_eq!(parse_u64("-1\n"), Ok(0), "v1's unset is 0, as in runc");
    assert_eq!(parse_u64("12x"), Err(Malformed("12x".into())));
    assert!(parse_u64("-").is_err());
    assert!(parse_u64("").is_err());
    assert_eq!(parse_i64("-1\n"), Ok(-1));
}

const MEMORY_STAT_V1: &str = "\
cache 1048576
rss 3145728
rss_huge 0
mapped_file 524288
total_cache 1048576
total_rss 3145728
";

#[test]
fn flat_keyed() {
    let m = parse_flat_keyed(MEMORY_STAT_V1).unwrap();
    assert_eq!(m.len(), 6);
    assert_eq!(m["cache"], 1048576);
    assert_eq!(m["total_rss"], 3145728);
    assert_eq!(parse_flat_keyed("cache 1\nrss\n"), Err(Malformed("rss".into())));
    assert!(parse_flat_keyed("cache 1 2\n").is_err());
    assert!(parse_flat_keyed("cache -1\n").is_err());
    assert!(parse_flat_keyed("").unwrap().is_empty());
}

#[test]
fn cpuacct() {
    // USER_HZ ticks → ns.
    assert_eq!(
        parse_cpuacct_stat("user 150\nsystem 50\n"),
        Ok((1_500_000_000, 500_000_000))
    );
    assert!(parse_cpuacct_stat("user 150\n").is_err());
    assert_eq!(parse_u64_list("10 20 30 \n"), Ok(vec![10, 20, 30]));
    assert!(parse_u64_list("10 x").is_err());
    let all = "cpu user system\n0 100 200\n1 300 400\n";
    assert_eq!(parse_usage_all(all), Ok((vec![200, 400], vec![100, 300])));
    assert!(parse_usage_all("cpu user system\n0 1 z\n").is_err());
}

#[test]
fn cpu_lists() {
    assert_eq!(parse_cpu_list("0-3,8,10-11\n"), Ok(vec![0, 1, 2, 3, 8, 10, 11]));
    assert_eq!(parse_cpu_list("0\n"), Ok(vec![0]));
    assert_eq!(parse_cpu_list("\n"), Ok(vec![]));
    assert!(parse_cpu_list("3-1").is_err());
    assert!(parse_cpu_list("a").is_err());
}

/// From the comment in runc's libcontainer/cgroups/fs/blkio.go.
const BLKIO_SERVICE_BYTES: &str = "\
8:0 Read 1282048
8:0 Write 2195456
8:0 Sync 2195456
8:0 Async 1282048
8:0 Total 3477504
Total 3477504
";

#[test]
fn blkio_v1() {
    let e = parse_blkio(BLKIO_SERVICE_BYTES).unwrap();
    assert_eq!(e.len(), 5, "Total line skipped");
    assert_eq!(
        e[0],
        BlkioEntry {
            major: 8,
            minor: 0,
            op: "Read".into(),
            value: 1282048
        }
    );
    assert_eq!(e[4].op, "Total");
    let sectors = parse_blkio("8:0 6792\n253:1 10\n").unwrap();
    assert_eq!(sectors[1].major, 253);
    assert_eq!(sectors[1].op, "");
    assert_eq!(sectors[1].value, 10);
    assert!(parse_blkio("8:0\n").is_err());
    assert!(parse_blkio("8:x Read 1\n").is_err());
    assert!(parse_blkio("").unwrap().is_empty());
}

/// From opencontainers/cgroups fs2/io_test.go.
const IO_STAT: &str = "\
254:1 rbytes=6901432320 wbytes=14245535744 rios=263278 wios=248603 dbytes=0 dios=0
254:0 rbytes=2702336 wbytes=0 rios=97 wios=0 dbytes=0 dios=0
259:0 rbytes=6911345664 wbytes=14245536256 rios=264538 wios=244914 dbytes=530485248 dios=2";

#[test]
fn io_stat_v2() {
    let b = parse_io_stat(IO_STAT).unwrap();
    let short = |v: &[BlkioEntry]| {
        v.iter()
            .map(|e| (e.major, e.minor, e.op.clone(), e.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        short(&b.io_service_bytes_recursive),
        [
            (254, 1, "Read".to_string(), 6901432320),
            (254, 1, "Write".to_string(), 14245535744),
            (254, 0, "Read".to_string(), 2702336),
            (254, 0, "Write".to_string(), 0),
            (259, 0, "Read".to_string(), 6911345664),
            (259, 0, "Write".to_string(), 14245536256),
        ]
    );
    assert_eq!(b.io_serviced_recursive.len(), 6);
    assert_eq!(b.io_serviced_recursive[5].value, 244914);
    assert!(b.io_queued_recursive.is_empty());
    assert!(parse_io_stat("8:0 rbytes=x\n").is_err());
    assert!(parse_io_stat("").unwrap() == Blkio::default());
}

#[test]
fn psi() {
    let text = "some avg10=1.50 avg60=0.00 avg300=0.25 total=123\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
    let p = parse_psi(text).unwrap();
    assert_eq!(p.some.avg10, 1.5);
    assert_eq!(p.some.avg300, 0.25);
    assert_eq!(p.some.total, 123);
    assert_eq!(p.full, PsiData::default());
    // Go prints 0 for 0.0 and omits the all-zero "full" (omitzero).
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        r#"{"some":{"avg10":1.5,"avg60":0,"avg300":0.25,"total":123}}"#
    );
    assert!(parse_psi("some avg10=x\n").is_err());
    assert!(parse_psi("some avg10\n").is_err());
}

#[test]
fn hugetlb_size_names() {
    let names: Vec<String> = [
        "hugetlb.2MB.current",
        "hugetlb.2MB.rsvd.current",
        "hugetlb.1GB.current",
        "hugetlb.1GB.max",
        "hugetlb.2MB.usage_in_bytes",
        "memory.current",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(hugetlb_sizes(&names, ".current"), ["1GB", "2MB"]);
    assert_eq!(hugetlb_sizes(&names, ".usage_in_bytes"), ["2MB"]);
}

#[test]
fn v2_swap_is_reported_as_memory_plus_swap() {
    let mem = MemoryEntry {
        limit: 100,
        usage: 40,
        max: 60,
        failcnt: 0,
    };
    let swap = MemoryEntry {
        limit: 50,
        usage: 5,
        max: 7,
        failcnt: 0,
    };
    let s = combine_swap_v2(&mem, &swap);
    assert_eq!((s.limit, s.usage, s.max), (150, 45, 0));
    let unlimited = MemoryEntry {
        limit: u64::MAX,
        ..swap.clone()
    };
    assert_eq!(combine_swap_v2(&mem, &unlimited).limit, u64::MAX);
    let mem_unlimited = MemoryEntry { limit: u64::MAX, ..mem };
    assert_eq!(combine_swap_v2(&mem_unlimited, &swap).limit, u64::MAX);
}

/// What runc prints for a container whose cgroup gave nothing: structs always present, zero
/// numbers and empty lists omitted unless the field has no omitempty.
#[test]
fn empty_stats_json_matches_runc() {
    let want = concat!(
        r#"{"cpu":{"usage":{"kernel":0,"user":0},"throttling":{}},"#,
        r#""cpuset":{"cpu_exclusive":0,"mem_hardwall":0,"mem_exclusive":0,"memory_migrate":0,"#,
        r#""memory_spread_page":0,"memory_spread_slab":0,"memory_pressure":0,"#,
        r#""sched_load_balance":0,"sched_relax_domain_level":0},"#,
        r#""memory":{"usage":{"limit":0,"failcnt":0},"swap":{"limit":0,"failcnt":0},"#,
        r#""kernel":{"limit":0,"failcnt":0},"kernelTCP":{"limit":0,"failcnt":0}},"#,
        r#""pids":{},"blkio":{},"hugetlb":{},"intel_rdt":{},"network_interfaces":null}"#
    );
    assert_eq!(serde_json::to_string(&Stats::default()).unwrap(), want);
}

#[test]
fn full_stats_json_field_names() {
    let mut st = Stats::default();
    st.cpu.usage = CpuUsage {
        total: 5,
        percpu: vec![2, 3],
        percpu_kernel: vec![1, 1],
        percpu_user: vec![1, 2],
        kernel: 2,
        user: 3,
    };
    st.cpu.throttling = Throttling {
        periods: 10,
        throttled_periods: 4,
        throttled_time: 900,
    };
    st.cpuset.cpus = vec![0, 1];
    st.cpuset.mems = vec![0];
    st.cpuset.sched_relax_domain_level = -1;
    st.memory.cache = 7;
    st.memory.usage = MemoryEntry {
        limit: 100,
        usage: 50,
        max: 60,
        failcnt: 1,
    };
    st.memory.raw.insert("rss".into(), 9);
    st.memory.raw.insert("cache".into(), 7);
    st.pids = Pids { current: 3, limit: 10 };
    st.blkio.io_service_bytes_recursive.push(BlkioEntry {
        major: 8,
        minor: 0,
        op: "Read".into(),
        value: 4096,
    });
    st.blkio.sectors_recursive.push(BlkioEntry {
        major: 8,
        minor: 0,
        op: String::new(),
        value: 0,
    });
    st.hugetlb.insert(
        "2MB".into(),
        Hugetlb {
            usage: 0,
            max: 0,
            failcnt: 0,
        },
    );
    let v: serde_json::Value = serde_json::to_value(&st).unwrap();
    assert_eq!(
        v["cpu"]["usage"],
        serde_json::json!({"total":5,"percpu":[2,3],"percpu_kernel":[1,1],"percpu_user":[1,2],"kernel":2,"user":3})
    );
    assert_eq!(
        v["cpu"]["throttling"],
        serde_json::json!({"periods":10,"throttledPeriods":4,"throttledTime":900})
    );
    assert_eq!(v["cpuset"]["cpus"], serde_json::json!([0, 1]));
    assert_eq!(v["cpuset"]["sched_relax_domain_level"], -1);
    assert_eq!(
        v["memory"]["usage"],
        serde_json::json!({"limit":100,"usage":50,"max":60,"failcnt":1})
    );
    assert_eq!(v["memory"]["cache"], 7);
    assert_eq!(v["memory"]["raw"], serde_json::json!({"cache":7,"rss":9}));
    assert_eq!(v["pids"], serde_json::json!({"current":3,"limit":10}));
    assert_eq!(
        v["blkio"],
        serde_json::json!({
            "ioServiceBytesRecursive":[{"major":8,"op":"Read","value":4096}],
            "sectorsRecursive":[{"major":8}]
        })
    );
    assert_eq!(v["hugetlb"], serde_json::json!({"2MB":{"failcnt":0}}));
    // Round trip: what we print, we (and a test harness) can read back.
    let back: Stats = serde_json::from_value(v).unwrap();
    assert_eq!(back, st);
}

#[test]
fn events_match_runc() {
    assert_eq!(
        serde_json::to_string(&Event::oom("ctr1")).unwrap(),
        r#"{"type":"oom","id":"ctr1"}"#
    );
    let line = serde_json::to_string(&Event::stats("ctr1", &Stats::default())).unwrap();
    assert!(
        line.starts_with(r#"{"type":"stats","id":"ctr1","data":{"cpu":{"usage":"#),
        "{line}"
    );
    let back: Event = serde_json::from_str(r#"{"type":"oom","id":"x"}"#).unwrap();
    assert_eq!(back, Event::oom("x"));
}

#[test]
fn v1_stats_from_fake_fs() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, None, "ctr").unwrap();
    let dir = |c: &str| m.v1_dir(c).unwrap().to_path_buf();
    let cpuacct = dir("cpuacct");
    touch(&cpuacct.join("cpuacct.usage"), "3000\n");
    touch(&cpuacct.join("cpuacct.usage_percpu"), "1000 2000 \n");
    touch(
        &cpuacct.join("cpuacct.usage_all"),
        "cpu user system\n0 600 400\n1 1500 500\n",
    );
    touch(&cpuacct.join("cpuacct.stat"), "user 2\nsystem 1\n");
    touch(
        &dir("cpu").join("cpu.stat"),
        "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\n",
    );
    let cpuset = dir("cpuset");
    touch(&cpuset.join("cpuset.cpus"), "0-1\n");
    touch(&cpuset.join("cpuset.mems"), "0\n");
    touch(&cpuset.join("cpuset.sched_load_balance"), "1\n");
    touch(&cpuset.join("cpuset.sched_relax_domain_level"), "-1\n");
    let mem = dir("memory");
    touch(&mem.join("memory.stat"), MEMORY_STAT_V1);
    touch(&mem.join("memory.usage_in_bytes"), "4194304\n");
    touch(&mem.join("memory.limit_in_bytes"), "9223372036854771712\n");
    touch(&mem.join("memory.max_usage_in_bytes"), "5000000\n");
    touch(&mem.join("memory.failcnt"), "3\n");
    touch(&mem.join("memory.memsw.usage_in_bytes"), "4194304\n");
    touch(&mem.join("memory.memsw.limit_in_bytes"), "9223372036854771712\n");
    // No kmem files (kernels that dropped kmem accounting): zero, not an error.
    let pids = dir("pids");
    touch(&pids.join("pids.current"), "2\n");
    touch(&pids.join("pids.max"), "max\n");
    let blkio = dir("blkio");
    // CFQ files empty (no CFQ scheduler): runc falls through to the throttle files.
    touch(&blkio.join("blkio.sectors_recursive"), "");
    touch(
        &blkio.join("blkio.throttle.io_service_bytes_recursive"),
        BLKIO_SERVICE_BYTES,
    );
    touch(
        &blkio.join("blkio.throttle.io_serviced_recursive"),
        "8:0 Read 3\n8:0 Write 4\nTotal 7\n",
    );
    // hugetlb on the unified mount (this machine's layout).
    let v2 = m.v2_dir().unwrap().to_path_buf();
    touch(&v2.join("hugetlb.2MB.current"), "4194304\n");
    touch(&v2.join("hugetlb.2MB.events"), "max 1\n");

    let st = m.stats().unwrap();
    assert_eq!(st.cpu.usage.total, 3000);
    assert_eq!(st.cpu.usage.percpu, [1000, 2000]);
    assert_eq!(st.cpu.usage.percpu_kernel, [400, 500]);
    assert_eq!(st.cpu.usage.percpu_user, [600, 1500]);
    assert_eq!(st.cpu.usage.user, 20_000_000);
    assert_eq!(st.cpu.usage.kernel, 10_000_000);
    assert_eq!(
        st.cpu.throttling,
        Throttling {
            periods: 10,
            throttled_periods: 2,
            throttled_time: 5000
        }
    );
    assert_eq!(st.cpuset.cpus, [0, 1]);
    assert_eq!(st.cpuset.mems, [0]);
    assert_eq!(st.cpuset.sched_load_balance, 1);
    assert_eq!(st.cpuset.sched_relax_domain_level, -1);
    assert_eq!(st.memory.cache, 1048576);
    assert_eq!(st.memory.raw.len(), 6);
    assert_eq!(
        st.memory.usage,
        MemoryEntry {
            limit: 9223372036854771712,
            usage: 4194304,
            max: 5000000,
            failcnt: 3
        }
    );
    assert_eq!(st.memory.swap.usage, 4194304);
    assert_eq!(st.memory.kernel, MemoryEntry::default());
    assert_eq!(st.pids, Pids { current: 2, limit: 0 });
    assert_eq!(st.blkio.io_service_bytes_recursive.len(), 5);
    assert_eq!(st.blkio.io_serviced_recursive.len(), 2);
    assert!(st.blkio.sectors_recursive.is_empty());
    assert_eq!(
        st.hugetlb["2MB"],
        Hugetlb {
            usage: 4194304,
            max: 0,
            failcnt: 1
        }
    );
    assert!(st.memory.psi.is_none() && st.cpu.psi.is_none());
}

#[test]
fn v2_stats_from_fake_fs() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::with_root(tmp.path(), PURE_V2, None, "ctr").unwrap();
    assert!(m.is_v2());
    let d = m.v2_dir().unwrap().to_path_buf();
    touch(
        &d.join("cpu.stat"),
        "usage_usec 300\nuser_usec 200\nsystem_usec 100\nnr_periods 4\nnr_throttled 1\nthrottled_usec 7\nnr_bursts 0\nburst_usec 0\n",
    );
    touch(
        &d.join("cpu.pressure"),
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=42\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    touch(&d.join("memory.stat"), "anon 4096\nfile 8192\n");
    touch(&d.join("memory.current"), "12288\n");
    touch(&d.join("memory.max"), "max\n");
    touch(&d.join("memory.peak"), "20000\n");
    touch(&d.join("memory.swap.current"), "0\n");
    touch(&d.join("memory.swap.max"), "1000\n");
    // No pids controller: counted from cgroup.procs.
    touch(&d.join("cgroup.procs"), "10\n11\n12\n");
    touch(&d.join("io.stat"), IO_STAT);
    touch(&d.join("hugetlb.1GB.current"), "0\n");
    touch(&d.join("hugetlb.1GB.events"), "max 0\n");
    touch(&d.join("hugetlb.2MB.current"), "2097152\n");
    touch(&d.join("hugetlb.2MB.events"), "max 5\n");
    touch(&d.join("hugetlb.2MB.rsvd.current"), "0\n");

    let st = m.stats().unwrap();
    assert_eq!(
        (st.cpu.usage.total, st.cpu.usage.user, st.cpu.usage.kernel),
        (300_000, 200_000, 100_000)
    );
    assert!(st.cpu.usage.percpu.is_empty());
    assert_eq!(st.cpu.throttling.throttled_time, 7000);
    assert_eq!(st.cpu.psi.as_ref().unwrap().some.total, 42);
    assert!(st.memory.psi.is_none(), "no memory.pressure file");
    assert_eq!(st.memory.cache, 8192);
    assert_eq!(
        st.memory.usage,
        MemoryEntry {
            limit: u64::MAX,
            usage: 12288,
            max: 20000,
            failcnt: 0
        }
    );
    // mem+swap; the memory limit is max, so the sum is too.
    assert_eq!(st.memory.swap.usage, 12288);
    assert_eq!(st.memory.swap.limit, u64::MAX);
    assert_eq!(st.pids, Pids { current: 3, limit: 0 });
    assert_eq!(st.blkio.io_service_bytes_recursive.len(), 6);
    assert_eq!(st.hugetlb.len(), 2);
    assert_eq!(st.hugetlb["2MB"].usage, 2097152);
    assert_eq!(st.hugetlb["2MB"].failcnt, 5);

    // With the pids controller, its files win.
    touch(&d.join("pids.current"), "5\n");
    touch(&d.join("pids.max"), "100\n");
    assert_eq!(m.stats().unwrap().pids, Pids { current: 5, limit: 100 });
}

#[test]
fn nothing_there_is_all_zero() {
    for mountinfo in [HYBRID_THIS_MACHINE, PURE_V2] {
        let tmp = tempfile::tempdir().unwrap();
        let m = Manager::with_root(tmp.path(), mountinfo, None, "ctr").unwrap();
        assert_eq!(m.stats().unwrap(), Stats::default(), "{mountinfo}");
    }
}

#[test]
fn malformed_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::with_root(tmp.path(), PURE_V2, None, "ctr").unwrap();
    let d = m.v2_dir().unwrap().to_path_buf();
    touch(&d.join("memory.stat"), "anon 1\n");
    touch(&d.join("memory.current"), "lots\n");
    let err = m.stats().unwrap_err();
    assert!(matches!(err, CgroupError::Parse { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("memory.current") && msg.contains("lots"), "{msg}");
}
