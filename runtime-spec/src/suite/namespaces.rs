//! config-linux.md "Namespaces" (new and joined by path), "User namespace mappings",
//! "Offset for Time Namespace".

use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eq, Test};
use crate::case::{ns_inode, Case, Env, Leftovers};
use crate::ensure;
use crate::exec;

const NS_TYPES: [(&str, &str); 8] = [
    ("pid", "pid"),
    ("network", "net"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("mount", "mnt"),
    ("cgroup", "cgroup"),
    ("user", "user"),
    ("time", "time"),
];

/// A process made by util-linux `unshare` that holds namespaces for a container to join.
struct Holder {
    child: Child,
    /// The process inside every new namespace (unshare's child with --fork, else unshare).
    pid: i32,
}

impl Holder {
    fn start(flags: &[&str], fork: bool) -> Result<Holder, String> {
        let mut cmd = Command::new("unshare");
        cmd.args(flags);
        if fork {
            cmd.args(["--fork", "--kill-child"]);
        }
        cmd.args(["sleep", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("unshare: {e}"))?;
        let upid = child.id() as i32;
        let mut h = Holder { child, pid: upid };
        if fork {
            let mut found = None;
            exec::wait_for(Duration::from_secs(5), || {
                found = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
                found.is_some()
            });
            h.pid = found.ok_or("unshare did not fork its child")?;
        }
        // wait until the holder has exec'd sleep (its namespaces are then final)
        let pid = h.pid;
        exec::wait_for(Duration::from_secs(5), || {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
        Ok(h)
    }

    fn ns_path(&self, t: &str) -> String {
        format!("/proc/{}/ns/{t}", self.pid)
    }

    fn ns(&self, t: &str) -> u64 {
        ns_inode(&self.ns_path(t)).unwrap_or(0)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of processes we started.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn monotonic(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// A config that can run in a user namespace: no cgroup v1 mount (not allowed there).
fn userns_friendly(c: &mut Case) {
    c.remove_mount("/sys/fs/cgroup");
}

/// For a joined user namespace that maps only root: devpts's gid=5 would be unmapped.
fn root_only_userns(c: &mut Case) {
    userns_friendly(c);
    c.remove_mount("/dev/pts");
    c.mount(
        "/dev/pts",
        "devpts",
        "devpts",
        &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
    );
}

fn join_test(
    env: &Env,
    left: &Leftovers,
    flags: &[&str],
    fork: bool,
    join: &[(&str, &str)],
    extra: impl Fn(&mut Case),
) -> Result<crate::report::Report, String> {
    let h = Holder::start(flags, fork)?;
    let mut c = Case::new(env, left)?;
    for (typ, short) in join {
        c.namespace(typ, Some(&h.ns_path(short)));
    }
    extra(&mut c);
    let r = c.probe()?;
    for (typ, short) in join {
        eq(&format!("{typ} namespace joined"), r.ns(short), h.ns(short))?;
    }
    Ok(r)
}

pub fn tests() -> Vec<Test> {
    vec![
        Test::probe(
            "linux.namespaces: each listed type is new, the others are the runtime's",
            "config-linux.md#namespaces",
            |_| Ok(()),
            |r, c| {
                let listed = ["pid", "net", "ipc", "uts", "mnt", "cgroup"];
                for (_, short) in NS_TYPES {
                    let host = c.env.host_ns(short);
                    if listed.contains(&short) {
                        ensure!(r.ns(short) != host, "{short} namespace is the host's");
                    } else {
                        ensure!(r.ns(short) == host, "{short} namespace was not asked for but is new");
                    }
                }
                Ok(())
            },
        ),
        Test::probe(
            "linux.namespaces: network and ipc omitted are shared with the runtime",
            "config-linux.md#namespaces",
            |c| {
                c.remove_namespace("network").remove_namespace("ipc");
                // sysfs cannot be mounted without a private network namespace: bind it instead
                c.remove_mount("/sys/fs/cgroup").remove_mount("/sys");
                c.mount("/sys", "bind", "/sys", &["rbind", "ro", "nosuid", "noexec", "nodev"]);
                c.remove_mount("/dev/mqueue");
                Ok(())
            },
            |r, c| {
                eq("net namespace", r.ns("net"), c.env.host_ns("net"))?;
                eq("ipc namespace", r.ns("ipc"), c.env.host_ns("ipc"))
            },
        ),
        Test::probe(
            "linux.namespaces: pid 1 in a new pid namespace that shows only the container",
            "config-linux.md#namespaces",
            |_| Ok(()),
            |r, _| {
                eq("pid", r.i64("/pid"), Some(1))?;
                eq(
                    "NSpid (the container's /proc shows its own level)",
                    r.ints("/nspid"),
                    vec![1],
                )?;
                eq(
                    "/proc shows only the container",
                    r.ls("/proc").map(|v| {
                        v.into_iter()
                            .filter(|e| e.bytes().all(|b| b.is_ascii_digit()))
                            .collect::<Vec<_>>()
                    }),
                    Ok(vec!["1".to_string()]),
                )
            },
        )
        .args(&["--ls", "/proc"]),
        Test::probe(
            "linux.uidMappings/gidMappings: a new user namespace with the mappings",
            "config-linux.md#user-namespace-mappings",
            |c| {
                userns_friendly(c);
                c.namespace("user", None);
                c.set(
                    "/linux/uidMappings",
                    json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
                );
                c.set(
                    "/linux/gidMappings",
                    json!([{"containerID": 0, "hostID": 300000, "size": 65536}]),
                );
                Ok(())
            },
            |r, c| {
                ensure!(r.ns("user") != c.env.host_ns("user"), "user namespace is the host's");
                let norm = |s: Option<&str>| s.unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
                eq("uid_map", norm(r.str("/uid_map")), "0 200000 65536".to_string())?;
                eq("gid_map", norm(r.str("/gid_map")), "0 300000 65536".to_string())?;
                eq("uids", r.ints("/uid"), vec![0; 4])?;
                // the host's root is unmapped: files it owns show as the overflow uid
                eq(
                    "owner of /bin/busybox",
                    r.path("/bin/busybox")["uid"].as_i64(),
                    Some(65534),
                )
            },
        )
        .args(&["--path", "/bin/busybox"]),
        Test::probe(
            "linux.uidMappings: process.user is a container uid, mapped",
            "config-linux.md#user-namespace-mappings",
            |c| {
                userns_friendly(c);
                c.namespace("user", None);
                c.set(
                    "/linux/uidMappings",
                    json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
                );
                c.set(
                    "/linux/gidMappings",
                    json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
                );
                c.set("/process/user", json!({"uid": 1000, "gid": 1000}));
                Ok(())
            },
            |r, _| {
                eq("uids", r.ints("/uid"), vec![1000; 4])?;
                eq("gids", r.ints("/gid"), vec![1000; 4])
            },
        ),
        Test::probe(
            "linux.timeOffsets: a new time namespace with the offsets",
            "config-linux.md#offset-for-time-namespace",
            |c| {
                c.namespace("time", None);
                c.set(
                    "/linux/timeOffsets",
                    json!({"monotonic": {"secs": 864000, "nanosecs": 0},
                           "boottime": {"secs": 1728000, "nanosecs": 0}}),
                );
                // the host's clocks, just before the container starts
                let now = monotonic(libc::CLOCK_MONOTONIC);
                c.set("/annotations", json!({"rs.monotonic": format!("{now}")}));
                Ok(())
            },
            |r, c| {
                ensure!(r.ns("time") != c.env.host_ns("time"), "time namespace is the host's");
                let before: f64 = c.config["annotations"]["rs.monotonic"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0.0);
                let after = monotonic(libc::CLOCK_MONOTONIC);
                let got = r.get("/clocks/monotonic").as_f64().unwrap_or(0.0);
                ensure!(
                    got >= before + 864000.0 - 1.0 && got <= after + 864000.0 + 1.0,
                    "CLOCK_MONOTONIC {got} is not host ({before}..{after}) + 864000"
                );
                let boot = r.get("/clocks/boottime").as_f64().unwrap_or(0.0);
                let host_boot = monotonic(libc::CLOCK_BOOTTIME);
                ensure!(
                    boot >= host_boot + 1728000.0 - 30.0 && boot <= host_boot + 1728000.0 + 1.0,
                    "CLOCK_BOOTTIME {boot} is not host ({host_boot}) + 1728000"
                );
                Ok(())
            },
        )
        .runc_todo("time namespaces are runtime-spec 1.1, first implemented in runc 1.2"),
        Test::custom(
            "linux.namespaces[].path: join network, ipc, uts and cgroup namespaces",
            "config-linux.md#namespaces (path)",
            |env, left| {
                join_test(
                    env,
                    left,
                    &["--net", "--ipc", "--uts", "--cgroup"],
                    false,
                    &[("network", "net"), ("ipc", "ipc"), ("uts", "uts"), ("cgroup", "cgroup")],
                    |_| {},
                )
                .map(|_| ())
            },
        )
        .requires(needs_unshare),
        Test::custom(
            "linux.namespaces[].path: a namespace of another type is refused, nothing is left",
            "config-linux.md#namespaces (path: MUST generate an error if not of the type)",
            |env, left| {
                let mut c = Case::new(env, left)?;
                // the harness's own ipc namespace, offered as a network namespace
                let path = format!("/proc/{}/ns/ipc", std::process::id());
                c.namespace("network", Some(&path));
                c.create().check_fails()?;
                ensure!(c.state().is_err(), "the container exists after a failed create");
                Ok(())
            },
        ),
        Test::custom(
            "linux.namespaces[].path: a missing path is refused, nothing is left",
            "config-linux.md#namespaces (path)",
            |env, left| {
                let mut c = Case::new(env, left)?;
                c.namespace("network", Some("/proc/self/ns/rs-no-such-ns"));
                c.create().check_fails()?;
                ensure!(c.state().is_err(), "the container exists after a failed create");
                Ok(())
            },
        ),
        Test::custom(
            "linux.namespaces[].path: join a pid namespace (the process is not pid 1)",
            "config-linux.md#namespaces (path)",
            |env, left| {
                let r = join_test(env, left, &["--pid"], true, &[("pid", "pid")], |_| {})?;
                ensure!(
                    r.i64("/pid") != Some(1),
                    "the process is pid 1 in a joined pid namespace"
                );
                Ok(())
            },
        )
        .requires(needs_unshare),
        Test::custom(
            "linux.namespaces[].path: join a time namespace",
            "config-linux.md#namespaces (path)",
            |env, left| join_test(env, left, &["--time"], true, &[("time", "time")], |_| {}).map(|_| ()),
        )
        .requires(needs_unshare)
        .runc_todo("time namespaces are runtime-spec 1.1, first implemented in runc 1.2"),
        Test::custom(
            "linux.namespaces[].path: join a user namespace",
            "config-linux.md#namespaces (path)",
            |env, left| {
                let r = join_test(
                    env,
                    left,
                    &["--user", "--map-root-user"],
                    false,
                    &[("user", "user")],
                    root_only_userns,
                )?;
                eq("uids", r.ints("/uid"), vec![0; 4])
            },
        )
        .requires(needs_unshare)
        .runc_todo("runc 1.1.5 insists on uidMappings even when the user namespace is joined by path"),
    ]
}

fn needs_unshare(_: &Env) -> Option<String> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("unshare").is_file()))
        .unwrap_or(false);
    (!found).then(|| "util-linux unshare is not installed".to_string())
}
