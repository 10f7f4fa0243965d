//! config-linux.md: devices (and the default ones), the device cgroup rules, sysctl, seccomp,
//! personality.

use serde_json::{json, Value};

use super::{eq, Test};
use crate::ensure;
use crate::report::{errno_name, Report};

fn dev(r: &Report, p: &str, typ: &str, rdev: Option<[i64; 2]>) -> Result<(), String> {
    let v = r.path(p);
    ensure!(v["errno"] == 0, "{p} is missing (errno {})", v["errno"]);
    eq(&format!("{p} type"), v["type"].as_str(), Some(typ))?;
    if let Some(rd) = rdev {
        eq(&format!("{p} device number"), v["rdev"].clone(), json!(rd))?;
    }
    Ok(())
}

/// A seccomp profile that allows everything but `rules`.
fn seccomp(rules: Value) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules
    })
}

pub fn tests() -> Vec<Test> {
    vec![
        Test::probe(
            "linux.devices: default devices exist with the right numbers",
            "config-linux.md#default-devices",
            |_| Ok(()),
            |r, _| {
                for (p, rd) in [
                    ("/dev/null", [1, 3]),
                    ("/dev/zero", [1, 5]),
                    ("/dev/full", [1, 7]),
                    ("/dev/random", [1, 8]),
                    ("/dev/urandom", [1, 9]),
                    ("/dev/tty", [5, 0]),
                ] {
                    dev(r, p, "chr", Some(rd))?;
                    ensure!(
                        r.open_errno(&format!("{p}:r")) == 0 || p == "/dev/tty",
                        "{p} cannot be opened: {}",
                        errno_name(r.open_errno(&format!("{p}:r")))
                    );
                }
                let ptmx = r.path("/dev/ptmx");
                ensure!(
                    ptmx["type"] == "symlink" && ptmx["target"] == "pts/ptmx"
                        || ptmx["type"] == "chr" && ptmx["rdev"] == json!([5, 2]),
                    "/dev/ptmx is neither a pts/ptmx link nor the ptmx device: {ptmx}"
                );
                eq(
                    "/dev/null writable",
                    errno_name(r.open_errno("/dev/null:rw")),
                    errno_name(0),
                )
            },
        )
        .args(&[
            "--path",
            "/dev/null",
            "--path",
            "/dev/zero",
            "--path",
            "/dev/full",
            "--path",
            "/dev/random",
            "--path",
            "/dev/urandom",
            "--path",
            "/dev/tty",
            "--path",
            "/dev/ptmx",
            "--open",
            "/dev/null:r",
            "--open",
            "/dev/zero:r",
            "--open",
            "/dev/full:r",
            "--open",
            "/dev/random:r",
            "--open",
            "/dev/urandom:r",
            "--open",
            "/dev/null:rw",
        ]),
        Test::probe(
            "linux.devices: /dev/fd, stdin, stdout, stderr links",
            "config-linux.md#default-devices (runtime.md: /dev/fd etc. as runc)",
            |_| Ok(()),
            |r, _| {
                for (p, t) in [
                    ("/dev/fd", "/proc/self/fd"),
                    ("/dev/stdin", "/proc/self/fd/0"),
                    ("/dev/stdout", "/proc/self/fd/1"),
                    ("/dev/stderr", "/proc/self/fd/2"),
                ] {
                    eq(&format!("{p} target"), r.path(p)["target"].as_str(), Some(t))?;
                }
                Ok(())
            },
        )
        .args(&[
            "--path",
            "/dev/fd",
            "--path",
            "/dev/stdin",
            "--path",
            "/dev/stdout",
            "--path",
            "/dev/stderr",
        ]),
        Test::probe(
            "linux.devices: character device with fileMode, uid and gid",
            "config-linux.md#devices",
            |c| {
                c.push(
                    "/linux/devices",
                    json!({"path": "/dev/rs-owned", "type": "c", "major": 1, "minor": 3,
                           "fileMode": 0o620, "uid": 1000, "gid": 1001}),
                );
                c.push(
                    "/linux/devices",
                    json!({"path": "/dev/rs-null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}),
                );
                Ok(())
            },
            |r, _| {
                dev(r, "/dev/rs-owned", "chr", Some([1, 3]))?;
                let v = r.path("/dev/rs-owned");
                eq("mode", v["mode"].as_i64(), Some(0o620))?;
                eq("uid", v["uid"].as_i64(), Some(1000))?;
                eq("gid", v["gid"].as_i64(), Some(1001))?;
                dev(r, "/dev/rs-null", "chr", Some([1, 3]))?;
                eq(
                    "/dev/rs-null mode",
                    r.path("/dev/rs-null")["mode"].as_i64(),
                    Some(0o666),
                )?;
                // a device listed in linux.devices is usable under the deny-all cgroup rule
                eq(
                    "open /dev/rs-null rw",
                    errno_name(r.open_errno("/dev/rs-null:rw")),
                    errno_name(0),
                )
            },
        )
        .args(&[
            "--path",
            "/dev/rs-owned",
            "--path",
            "/dev/rs-null",
            "--open",
            "/dev/rs-null:rw",
        ]),
        Test::probe(
            "linux.devices: block device and fifo",
            "config-linux.md#devices",
            |c| {
                c.push(
                    "/linux/devices",
                    json!({"path": "/dev/rs-loop", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600}),
                );
                c.push(
                    "/linux/devices",
                    json!({"path": "/dev/rs-fifo", "type": "p", "fileMode": 0o644}),
                );
                c.push(
                    "/linux/devices",
                    json!({"path": "/dev/rs/sub/zero", "type": "u", "major": 1, "minor": 5}),
                );
                Ok(())
            },
            |r, _| {
                dev(r, "/dev/rs-loop", "blk", Some([7, 200]))?;
                dev(r, "/dev/rs-fifo", "fifo", None)?;
                dev(r, "/dev/rs/sub/zero", "chr", Some([1, 5]))
            },
        )
        .args(&[
            "--path",
            "/dev/rs-loop",
            "--path",
            "/dev/rs-fifo",
            "--path",
            "/dev/rs/sub/zero",
        ]),
        Test::probe(
            "linux.resources.devices: an allow rule grants exactly its access",
            "config-linux.md#allowed-device-list",
            |c| {
                // /dev/kmsg (c 1:11) is bound from the host: not in any default allow list
                c.mount("/dev/rs-kmsg", "bind", "/dev/kmsg", &["bind"]);
                c.push(
                    "/linux/resources/devices",
                    json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}),
                );
                Ok(())
            },
            |r, _| {
                // opening kmsg for reading needs CAP_SYSLOG anyway: test write, and read through a
                // second rule-less node below
                eq("open w", errno_name(r.open_errno("/dev/rs-kmsg:w")), errno_name(0))
            },
        )
        .args(&["--open", "/dev/rs-kmsg:w"]),
        Test::probe(
            "linux.resources.devices: access outside the rules is refused",
            "config-linux.md#allowed-device-list",
            |c| {
                c.mount("/dev/rs-kmsg", "bind", "/dev/kmsg", &["bind"]);
                c.push(
                    "/linux/resources/devices",
                    json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}),
                );
                Ok(())
            },
            |r, _| eq("open w", errno_name(r.open_errno("/dev/rs-kmsg:w")), errno_name(1)),
        )
        .args(&["--open", "/dev/rs-kmsg:w"]),
        Test::probe(
            "linux.sysctl: namespaced keys are set (net, ipc, uts)",
            "config-linux.md#sysctl",
            |c| {
                c.set(
                    "/linux/sysctl",
                    json!({
                        "net.ipv4.ip_forward": "1",
                        "net.ipv4.tcp_syncookies": "0",
                        "kernel.msgmax": "4096",
                        "kernel.shm_rmid_forced": "1"
                    }),
                );
                Ok(())
            },
            |r, _| {
                let rd = |p: &str| r.read(p).map(|s| s.trim().to_string());
                eq(
                    "net.ipv4.ip_forward",
                    rd("/proc/sys/net/ipv4/ip_forward"),
                    Ok("1".into()),
                )?;
                eq(
                    "net.ipv4.tcp_syncookies",
                    rd("/proc/sys/net/ipv4/tcp_syncookies"),
                    Ok("0".into()),
                )?;
                eq("kernel.msgmax", rd("/proc/sys/kernel/msgmax"), Ok("4096".into()))?;
                eq(
                    "kernel.shm_rmid_forced",
                    rd("/proc/sys/kernel/shm_rmid_forced"),
                    Ok("1".into()),
                )
            },
        )
        .args(&[
            "--read",
            "/proc/sys/net/ipv4/ip_forward",
            "--read",
            "/proc/sys/net/ipv4/tcp_syncookies",
            "--read",
            "/proc/sys/kernel/msgmax",
            "--read",
            "/proc/sys/kernel/shm_rmid_forced",
        ]),
        Test::probe(
            "linux.seccomp: SCMP_ACT_ERRNO returns errnoRet (default EPERM)",
            "config-linux.md#seccomp",
            |c| {
                c.set(
                    "/linux/seccomp",
                    seccomp(json!([
                        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
                        {"names": ["mknod", "mknodat"], "action": "SCMP_ACT_ERRNO"}
                    ])),
                );
                Ok(())
            },
            |r, _| {
                eq("seccomp mode", r.i64("/seccomp"), Some(2))?;
                eq("getppid", r.syscall("getppid"), (-1, 42))?;
                // unfiltered, this mknodat fails with ENOENT
                eq("mknodat", r.syscall("mknod"), (-1, 1))?;
                eq("getpid (allowed)", r.syscall("getpid").1, 0)
            },
        )
        .args(&["--syscall", "getppid", "--syscall", "mknod", "--syscall", "getpid"]),
        Test::probe(
            "linux.seccomp: argument conditions select the call",
            "config-linux.md#seccomp",
            |c| {
                c.set(
                    "/linux/seccomp",
                    seccomp(json!([{
                        "names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                        "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]
                    }])),
                );
                Ok(())
            },
            |r, _| {
                eq("personality(8)", r.syscall("personality:8"), (-1, 13))?;
                eq("personality(0xffffffff)", r.syscall("personality:0xffffffff").1, 0)
            },
        )
        .args(&["--syscall", "personality:8", "--syscall", "personality:0xffffffff"]),
        Test::probe(
            "linux.seccomp: SCMP_CMP_MASKED_EQ compares the masked argument",
            "config-linux.md#seccomp",
            |c| {
                c.set(
                    "/linux/seccomp",
                    seccomp(json!([{
                        "names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                        "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]
                    }])),
                );
                Ok(())
            },
            |r, _| {
                // 0x40008 & 0xff == 8: refused; 0xffffffff & 0xff == 0xff: allowed
                eq("personality(0x40008)", r.syscall("personality:0x40008"), (-1, 13))?;
                eq("personality(0xffffffff)", r.syscall("personality:0xffffffff").1, 0)
            },
        )
        .args(&[
            "--syscall",
            "personality:0x40008",
            "--syscall",
            "personality:0xffffffff",
        ]),
        Test::custom(
            "linux.seccomp: SCMP_ACT_KILL kills the process with SIGSYS",
            "config-linux.md#seccomp",
            |env, left| {
                let mut c = crate::case::Case::new(env, left)?;
                c.set(
                    "/linux/seccomp",
                    seccomp(json!([{"names": ["getppid"], "action": "SCMP_ACT_KILL"}])),
                );
                c.helper_args(&["--syscall", "getppid"]);
                let out = c.run();
                ensure!(
                    c.stdout().trim().is_empty(),
                    "the process survived the killing syscall: {out}"
                );
                // runc's convention: 128 + signal number (SIGSYS = 31)
                eq("run exit status", out.code, Some(128 + 31)).map_err(|e| format!("{e}: {out}"))
            },
        ),
        Test::probe(
            "linux.seccomp: applied without noNewPrivileges (no_new_privs stays off)",
            "config-linux.md#seccomp",
            |c| {
                // Without no_new_privs the runtime must load the filter while it still holds
                // CAP_SYS_ADMIN, so the runtime's own remaining steps run filtered: block a call
                // no runtime makes after that point (runc checks getppid() there).
                c.set("/process/noNewPrivileges", json!(false));
                c.set(
                    "/linux/seccomp",
                    seccomp(json!([{"names": ["mknod", "mknodat"], "action": "SCMP_ACT_ERRNO"}])),
                );
                Ok(())
            },
            |r, _| {
                eq("seccomp mode", r.i64("/seccomp"), Some(2))?;
                eq("no_new_privs", r.i64("/no_new_privs"), Some(0))?;
                eq("mknodat", r.syscall("mknod"), (-1, 1))
            },
        )
        .args(&["--syscall", "mknod"]),
        Test::probe(
            "linux.personality: LINUX32 domain",
            "config-linux.md#personality",
            |c| {
                c.set("/linux/personality", json!({"domain": "LINUX32"}));
                Ok(())
            },
            |r, _| {
                eq(
                    "personality & 0xff (PER_LINUX32=8)",
                    r.i64("/personality").map(|p| p & 0xff),
                    Some(8),
                )?;
                eq("uname machine", r.str("/uname/machine"), Some("i686"))
            },
        )
        .runc_todo("linux.personality is runtime-spec 1.1, first implemented in runc 1.2"),
    ]
}
