//! Namespaces: new ones, joined ones (by path), user namespace mappings, time.

use amber_integration::*;
use serde_json::json;
use std::collections::HashMap;

/// Run `sh -c script` to completion; stdout, exit 0 required.
fn run_sh(name: &str, mut bundle: Bundle, script: &str) -> String {
    bundle.args(&["sh", "-c", script]);
    let c = Container::new(name, bundle);
    let out = c.run_foreground();
    out.assert_ok();
    out.stdout
}

const NS: [&str; 7] = ["pid", "net", "ipc", "uts", "mnt", "cgroup", "user"];

/// `name=link` lines for every namespace of the calling process.
fn ns_script() -> String {
    NS.iter()
        .map(|n| format!("echo {n}=$(readlink /proc/self/ns/{n}); "))
        .collect()
}

fn parse_ns(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn new_namespaces_differ_from_host() {
    let out = run_sh("ns-new", Bundle::new(), &ns_script());
    let inside = parse_ns(&out);
    for ns in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
        assert_ne!(inside[ns], ns_link("self", ns), "{ns} namespace is the host's");
    }
    // no user namespace requested: the host's
    assert_eq!(inside["user"], ns_link("self", "user"));
}

#[test]
fn without_namespaces_shares_host() {
    let mut b = Bundle::new();
    for ns in ["network", "ipc", "uts", "cgroup"] {
        b.remove_namespace(ns);
    }
    b.remove("/hostname"); // a hostname needs a private uts namespace
                           // sysfs cannot be mounted for a network namespace we do not own: bind the host's
    for m in b.config["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/sys" {
            *m = json!({ "destination": "/sys", "type": "bind", "source": "/sys",
                         "options": ["rbind", "nosuid", "noexec", "nodev", "ro"] });
        }
    }
    let out = run_sh("ns-host", b, &ns_script());
    let inside = parse_ns(&out);
    for ns in ["net", "ipc", "uts", "cgroup"] {
        assert_eq!(inside[ns], ns_link("self", ns), "{ns} namespace should be the host's");
    }
    for ns in ["pid", "mnt"] {
        assert_ne!(inside[ns], ns_link("self", ns), "{ns} namespace is the host's");
    }
}

#[test]
fn pid_namespace_init_is_pid_1() {
    let out = run_sh("ns-pid", Bundle::new(), "echo $$; ps -o pid,comm | tail -n +2");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{out}");
    // only the container's own processes are visible: sh (1), ps, the pipeline's
    // subshell, all with small pids
    let procs: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(procs[0], ["1", "sh"], "{out}");
    assert!(procs.len() <= 4, "host processes visible: {out}");
    for p in &procs {
        assert!(p[0].parse::<u32>().unwrap() < 100, "{out}");
    }
}

#[test]
fn uts_namespace_hostname() {
    let mut b = Bundle::new();
    b.set("/hostname", json!("ns-uts-test"));
    let out = run_sh("ns-uts", b, "hostname; cat /proc/sys/kernel/hostname");
    assert_eq!(out, "ns-uts-test\nns-uts-test\n");
}

#[test]
fn ipc_namespace_is_private() {
    // A SysV shm segment made on the host is visible on the host but not inside.
    // SAFETY: shmget/shmctl on a private segment we create and remove here.
    let shmid = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, 0o600 | libc::IPC_CREAT) };
    assert!(shmid >= 0, "shmget: {}", std::io::Error::last_os_error());
    struct Rm(i32);
    impl Drop for Rm {
        fn drop(&mut self) {
            // SAFETY: removes the segment created above.
            unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
        }
    }
    let _rm = Rm(shmid);
    let ids = |table: &str| -> Vec<String> {
        table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect()
    };
    let host = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    assert!(ids(&host).contains(&shmid.to_string()), "{host}");
    let inside = run_sh("ns-ipc", Bundle::new(), "cat /proc/sysvipc/shm");
    assert!(
        !ids(&inside).contains(&shmid.to_string()),
        "host shm segment visible: {inside}"
    );
    assert!(ids(&inside).is_empty(), "{inside}");
}

#[test]
fn net_namespace_has_only_lo() {
    let out = run_sh(
        "ns-net",
        Bundle::new(),
        "ls /sys/class/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
    );
    assert_eq!(out, "lo\nlo\n", "{out}");
}

#[test]
fn mount_namespace_is_private() {
    // the container's mounts are not in the host's mount table
    let mut b = Bundle::new();
    b.tmpfs("/tmp");
    let out = run_sh("ns-mnt", b, "grep -c ' /tmp ' /proc/self/mountinfo");
    assert_eq!(out.trim(), "1");
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = rootfs();
    assert!(
        !host.contains(&*root.to_string_lossy()),
        "container mounts visible on the host"
    );
}

#[test]
fn cgroup_namespace_root() {
    // In a cgroup namespace /proc/self/cgroup shows "/" for the container's cgroups;
    // without one it shows the full path.
    let c_ns = run_sh("ns-cgroup", Bundle::new(), "cat /proc/self/cgroup");
    for line in c_ns.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap();
        assert_eq!(path, "/", "cgroup namespace not rooted at the container: {c_ns}");
    }

    let mut b = Bundle::new();
    b.remove_namespace("cgroup");
    b.args(&["cat", "/proc/self/cgroup"]);
    let c = Container::new("ns-no-cgroup", b);
    let cg_path = c.bundle.cgroups_path().unwrap();
    let out = c.run_foreground();
    out.assert_ok();
    let memory = out
        .stdout
        .lines()
        .find(|l| l.contains(":memory:") || l.starts_with("0::"))
        .expect("memory or unified line");
    assert!(memory.ends_with(&cg_path), "{}", out.stdout);
}

#[test]
fn join_namespaces_by_path() {
    // First container: its own net and uts namespaces, a distinct hostname.
    let mut b1 = Bundle::sh("sleep 1000");
    b1.set("/hostname", json!("first"));
    let first = Container::new("ns-join-a", b1);
    first.create_ok();
    first.start_ok();
    let pid1 = first.pid();

    let mut b2 = Bundle::new();
    b2.namespace("network", Some(&format!("/proc/{pid1}/ns/net")));
    b2.namespace("uts", Some(&format!("/proc/{pid1}/ns/uts")));
    b2.namespace("ipc", Some(&format!("/proc/{pid1}/ns/ipc")));
    b2.remove("/hostname"); // do not rename the first container's uts namespace
    let script = format!("{} hostname", ns_script());
    let out = run_sh("ns-join-b", b2, &script);
    let inside = parse_ns(&out);
    for (ns, short) in [("net", "net"), ("uts", "uts"), ("ipc", "ipc")] {
        assert_eq!(
            inside[short],
            ns_link(&pid1.to_string(), ns),
            "{ns} namespace was not joined"
        );
    }
    // a namespace not given by path is still new
    assert_ne!(inside["mnt"], ns_link(&pid1.to_string(), "mnt"));
    assert!(out.ends_with("first\n"), "joined uts shows the first hostname: {out}");
}

#[test]
fn join_bad_namespace_path_fails() {
    let mut b = Bundle::sh("true");
    b.namespace("network", Some("/proc/self/ns/amber-nonexistent"));
    let c = Container::new("ns-join-bad", b);
    let out = c.create();
    out.assert_fail();
    assert!(!c.state_dir().exists());
}

#[test]
fn user_namespace_mappings() {
    let mut b = Bundle::new();
    b.namespace("user", None);
    b.set(
        "/linux/uidMappings",
        json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]),
    );
    b.set(
        "/linux/gidMappings",
        json!([{ "containerID": 0, "hostID": 200000, "size": 65536 }]),
    );
    b.args(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; readlink /proc/self/ns/user; sleep 1000",
    ]);
    let c = Container::new("ns-user", b);
    c.create_ok();
    let pid = c.pid();
    // seen from the host, the init runs as the mapped ids
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(status_field(&status, "Uid").unwrap(), "100000\t100000\t100000\t100000");
    assert_eq!(status_field(&status, "Gid").unwrap(), "200000\t200000\t200000\t200000");
    c.start_ok();
    let out = wait_for_content(&c.stdout_path(), "user:[");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["0", "100000", "65536"], "{out}");
    assert_eq!(lines[1], ["0", "200000", "65536"], "{out}");
    assert_eq!(lines[2], ["0"], "{out}");
    assert_ne!(lines[3][0], ns_link("self", "user"), "{out}");
}

/// runc 1.1.5 has no time namespace support (added in runc 1.2); this test runs only
/// against amber.
#[test]
fn time_namespace_offsets() {
    if !is_amber() {
        eprintln!("skipped: time namespaces need a runtime newer than runc 1.1.5");
        return;
    }
    let mut b = Bundle::new();
    b.namespace("time", None);
    b.set(
        "/linux/timeOffsets",
        json!({
            "monotonic": { "secs": 86400, "nanosecs": 0 },
            "boottime": { "secs": 172800, "nanosecs": 0 }
        }),
    );
    let out = run_sh("ns-time", b, "cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime");
    let mut offsets: Vec<Vec<&str>> = out.lines().take(2).map(|l| l.split_whitespace().collect()).collect();
    offsets.sort();
    assert_eq!(
        offsets,
        [vec!["boottime", "172800", "0"], vec!["monotonic", "86400", "0"]],
        "{out}"
    );
    let uptime: u64 = out.lines().nth(2).unwrap().trim().parse().unwrap();
    assert!(uptime >= 172800, "boottime offset not applied: {out}");
}
