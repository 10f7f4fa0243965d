//! Process attributes from config.json: hostname, env, cwd, user, umask, rlimits,
//! capabilities, no_new_privs, oom_score_adj, sysctl; and create-time flags.

use amber_integration::*;
use serde_json::json;
use std::fs;

/// Run `sh -c script` in a container built from `bundle`, require exit 0, return stdout.
fn run_sh(name: &str, mut bundle: Bundle, script: &str) -> String {
    bundle.args(&["sh", "-c", script]);
    let c = Container::new(name, bundle);
    let out = c.run_foreground();
    out.assert_ok();
    out.stdout
}

#[test]
fn hostname_and_domainname() {
    let mut b = Bundle::new();
    b.set("/hostname", json!("amber-host"));
    b.set("/domainname", json!("amber.example"));
    let out = run_sh("hostname", b, "hostname; cat /proc/sys/kernel/domainname");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "amber-host", "{out}");
    // `domainname` is supported from runc 1.2 on; runc 1.1.5 ignores it (the
    // container keeps the "(none)" default), so only amber is held to it.
    if is_amber() {
        assert_eq!(lines[1], "amber.example", "{out}");
    }
    // the host's names are untouched
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "amber-host");
}

#[test]
fn env_is_exact() {
    let mut b = Bundle::new();
    b.env("FOO=bar baz");
    b.env("EMPTY=");
    // `env` prints the whole environment: only what the config says, plus HOME
    // (runc adds HOME from /etc/passwd when the config has none).
    let out = run_sh("env", b, "env | sort");
    let mut want = vec![
        "EMPTY=",
        "FOO=bar baz",
        "HOME=/root",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PWD=/",
        "SHLVL=1",
        "TERM=xterm",
    ];
    want.sort();
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, want, "{out}");
}

#[test]
fn home_from_passwd_for_user() {
    let mut b = Bundle::new();
    b.set("/process/user", json!({ "uid": 1000, "gid": 1000 }));
    let out = run_sh("home", b, "echo $HOME");
    assert_eq!(out, "/tmp\n", "HOME comes from the user's /etc/passwd entry");
}

#[test]
fn cwd() {
    let mut b = Bundle::new();
    b.set("/process/cwd", json!("/usr/bin"));
    let out = run_sh("cwd", b, "pwd; ls -d ./env");
    assert_eq!(out, "/usr/bin\n./env\n");
}

#[test]
fn user_groups_umask() {
    let mut b = Bundle::new();
    b.set(
        "/process/user",
        json!({ "uid": 1000, "gid": 1000, "additionalGids": [1001, 2000], "umask": 0o027 }),
    );
    let status = run_sh("user", b, "cat /proc/self/status; id -u; id -g");
    assert_eq!(status_field(&status, "Uid").unwrap(), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(&status, "Gid").unwrap(), "1000\t1000\t1000\t1000");
    let groups_line = status_field(&status, "Groups").unwrap();
    let mut groups: Vec<&str> = groups_line.split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["1001", "2000"], "{status}");
    assert_eq!(status_field(&status, "Umask").unwrap(), "0027");
    // a non-root user has no effective capabilities
    assert_eq!(status_field(&status, "CapEff").unwrap(), "0000000000000000");
}

#[test]
fn default_umask_is_0022() {
    let status = run_sh("umask", Bundle::new(), "cat /proc/self/status");
    assert_eq!(status_field(&status, "Umask").unwrap(), "0022");
}

#[test]
fn rlimits_below_hard_limit() {
    let mut b = Bundle::new();
    b.set(
        "/process/rlimits",
        json!([
            { "type": "RLIMIT_NOFILE", "soft": 123, "hard": 456 },
            { "type": "RLIMIT_NPROC", "soft": 1000, "hard": 2000 }
        ]),
    );
    let limits = run_sh("rlimits", b, "cat /proc/self/limits");
    let row = |name: &str| -> Vec<String> {
        let line = limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing in {limits}"));
        line[name.len()..].split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(row("Max open files")[..2], ["123", "456"], "{limits}");
    assert_eq!(row("Max processes")[..2], ["1000", "2000"], "{limits}");
}

#[test]
fn rlimit_above_host_hard_limit_fails() {
    // Raising a hard limit needs CAP_SYS_RESOURCE, which this host lacks: the runtime
    // must fail create cleanly (runc: "error setting rlimits for ready process").
    let mut host = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut host) }, 0);
    if host.rlim_max == libc::RLIM_INFINITY || can_raise_hard_limit() {
        eprintln!("skipped: this host can raise RLIMIT_NOFILE's hard limit");
        return;
    }
    let mut b = Bundle::sh("true");
    b.set(
        "/process/rlimits",
        json!([{ "type": "RLIMIT_NOFILE", "soft": 1024, "hard": host.rlim_max + 1000 }]),
    );
    let c = Container::new("rlimit-raise", b);
    let out = c.create();
    out.assert_fail();
    assert!(
        out.stderr.contains("rlimit") && out.stderr.contains("operation not permitted"),
        "{out}"
    );
    assert!(!c.state_dir().exists(), "failed create left its state dir");
    assert!(!c.pid_file().exists(), "failed create wrote a pid file");
    assert!(
        find_cgroup_dirs(std::slice::from_ref(&c.id)).is_empty(),
        "failed create left a cgroup"
    );
}

/// Can this process raise its NOFILE hard limit (CAP_SYS_RESOURCE)? Checked in a
/// child so the test process keeps its limits.
fn can_raise_hard_limit() -> bool {
    let st = std::process::Command::new("sh")
        .args(["-c", "ulimit -H -n $(( $(ulimit -H -n) + 1 ))"])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("sh");
    st.success()
}

/// Bit for a capability number in /proc/PID/status hex.
fn cap_hex(bits: &[u32]) -> String {
    let v = bits.iter().fold(0u64, |acc, b| acc | (1u64 << b));
    format!("{v:016x}")
}

const CAP_CHOWN: u32 = 0;
const CAP_KILL: u32 = 5;
const CAP_NET_BIND_SERVICE: u32 = 10;

fn caps_status(name: &str, user: serde_json::Value) -> String {
    let mut b = Bundle::new();
    b.args(&["cat", "/proc/self/status"]);
    b.set("/process/user", user);
    b.set(
        "/process/capabilities",
        json!({
            "bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "permitted": ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"],
            "inheritable": ["CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"]
        }),
    );
    let c = Container::new(name, b);
    let out = c.run_foreground();
    out.assert_ok();
    out.stdout
}

#[test]
fn capabilities_as_root() {
    let s = caps_status("caps-root", json!({ "uid": 0, "gid": 0 }));
    // The sets are applied to the init, then the kernel recomputes them at execve.
    // For uid 0 (no SECBIT_NOROOT) the file sets count as full, so permitted and
    // effective become bounding | ambient; inheritable, ambient, bounding stay.
    let all = cap_hex(&[CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE]);
    assert_eq!(status_field(&s, "CapBnd").unwrap(), all, "{s}");
    assert_eq!(status_field(&s, "CapPrm").unwrap(), all, "{s}");
    assert_eq!(status_field(&s, "CapEff").unwrap(), all, "{s}");
    let nbs = cap_hex(&[CAP_NET_BIND_SERVICE]);
    assert_eq!(status_field(&s, "CapInh").unwrap(), nbs, "{s}");
    assert_eq!(status_field(&s, "CapAmb").unwrap(), nbs, "{s}");
}

#[test]
fn capabilities_as_user() {
    let s = caps_status("caps-user", json!({ "uid": 1000, "gid": 1000 }));
    // For a non-root user only the ambient set survives execve into permitted and
    // effective: this shows the runtime raised ambient (which needs the cap in
    // permitted and inheritable) and kept the bounding set.
    let nbs = cap_hex(&[CAP_NET_BIND_SERVICE]);
    assert_eq!(
        status_field(&s, "CapBnd").unwrap(),
        cap_hex(&[CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE]),
        "{s}"
    );
    assert_eq!(status_field(&s, "CapPrm").unwrap(), nbs, "{s}");
    assert_eq!(status_field(&s, "CapEff").unwrap(), nbs, "{s}");
    assert_eq!(status_field(&s, "CapInh").unwrap(), nbs, "{s}");
    assert_eq!(status_field(&s, "CapAmb").unwrap(), nbs, "{s}");
}

#[test]
fn capabilities_default_spec() {
    // runc spec's set: AUDIT_WRITE, KILL, NET_BIND_SERVICE in every set but
    // inheritable, so the ambient entries cannot be raised and are dropped.
    let s = run_sh("caps-default", Bundle::new(), "cat /proc/self/status");
    let want = cap_hex(&[5, 10, 29]);
    assert_eq!(status_field(&s, "CapBnd").unwrap(), want, "{s}");
    assert_eq!(status_field(&s, "CapPrm").unwrap(), want, "{s}");
    assert_eq!(status_field(&s, "CapEff").unwrap(), want, "{s}");
    assert_eq!(status_field(&s, "CapInh").unwrap(), cap_hex(&[]), "{s}");
    assert_eq!(status_field(&s, "CapAmb").unwrap(), cap_hex(&[]), "{s}");
}

#[test]
fn unknown_capability_is_reported() {
    let mut b = Bundle::sh("true");
    b.set("/process/capabilities/bounding", json!(["CAP_NOT_A_CAP", "CAP_KILL"]));
    let c = Container::new("caps-unknown", b);
    let out = c.create();
    assert!(out.stderr.contains("CAP_NOT_A_CAP"), "{out}");
    if is_amber() {
        // ARCHITECTURE.md (clone path, step 1): amber refuses unknown capability
        // names before any side effect.
        out.assert_fail();
        assert!(!c.state_dir().exists());
    } else {
        // runc 1.1.5 only warns ("ignoring unknown or unavailable capabilities").
        out.assert_ok();
    }
}

#[test]
fn no_new_privileges() {
    for (nnp, want) in [(true, "1"), (false, "0")] {
        let mut b = Bundle::new();
        b.set("/process/noNewPrivileges", json!(nnp));
        let s = run_sh("nnp", b, "cat /proc/self/status");
        assert_eq!(status_field(&s, "NoNewPrivs").unwrap(), want, "nnp={nnp}");
    }
}

#[test]
fn oom_score_adj() {
    let mut b = Bundle::new();
    b.set("/process/oomScoreAdj", json!(567));
    let out = run_sh("oom", b, "cat /proc/self/oom_score_adj");
    assert_eq!(out, "567\n");
}

#[test]
fn sysctl_in_container_namespaces() {
    let mut b = Bundle::new();
    b.set(
        "/linux/sysctl",
        json!({ "kernel.shmmax": "123456789", "net.ipv4.ip_forward": "1" }),
    );
    let host_shmmax = fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let out = run_sh("sysctl", b, "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward");
    assert_eq!(out, "123456789\n1\n");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host_shmmax,
        "sysctl leaked to the host"
    );
}

#[test]
fn missing_executable_fails_create() {
    let c = Container::new("no-exe", Bundle::sh("true"));
    let mut c = c;
    c.bundle.args(&["nonexistent-cmd"]);
    let out = c.create();
    out.assert_fail();
    assert!(out.stderr.contains("executable file not found in $PATH"), "{out}");
    assert!(!c.state_dir().exists());
    assert!(!c.pid_file().exists());
}

#[test]
fn preserve_fds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fd3");
    let f = fs::File::create(&path).unwrap();
    let c = Container::new("preserve-fds", Bundle::sh("ls /proc/self/fd; echo via-fd3 >&3"));
    let out = c.run_with(&["--preserve-fds", "1"], &[raw_fd(&f)]);
    out.assert_ok();
    let fds: Vec<&str> = out.stdout.lines().collect();
    // ls itself opens one more fd (its directory handle), so 0-3 plus that one
    assert!(fds.contains(&"3"), "fd 3 not passed: {fds:?}");
    assert!(!fds.contains(&"5"), "unexpected extra fds: {fds:?}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "via-fd3\n");
}

#[test]
fn extra_fds_not_leaked_without_preserve() {
    let dir = tempfile::tempdir().unwrap();
    let f = fs::File::create(dir.path().join("fd3")).unwrap();
    let c = Container::new("no-preserve", Bundle::sh("ls /proc/self/fd"));
    let out = c.run_with(&[], &[raw_fd(&f)]);
    out.assert_ok();
    let fds: Vec<&str> = out.stdout.lines().collect();
    // 0, 1, 2 and ls's own directory fd (3)
    assert_eq!(fds, ["0", "1", "2", "3"], "{out}");
}

#[test]
fn pid_file_relative() {
    let c = Container::new("pidfile-rel", Bundle::sh("sleep 1000"));
    c.bundle.write();
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = c.command(&[
        "create",
        "--bundle",
        &c.bundle.path_str(),
        "--pid-file",
        "rel.pid",
        &c.id,
    ]);
    cmd.current_dir(cwd.path());
    let out = c.run_console(cmd, &[]);
    out.assert_ok();
    let pid = fs::read_to_string(cwd.path().join("rel.pid")).expect("relative pid file");
    c.note_pid(pid.parse().unwrap());
    assert_eq!(pid, c.pid().to_string());
    assert!(!c.bundle.path().join("rel.pid").exists(), "resolved against the bundle");
}

#[test]
fn no_pivot() {
    // With --no-pivot the runtime moves the rootfs over / and chroots instead of
    // pivot_root; the container must still see only its rootfs.
    let host_only = repo_root();
    let script = format!(
        "test ! -e {0} && test -x /bin/busybox && cat /etc/hostname && echo isolated",
        host_only.display()
    );
    let c = Container::new("no-pivot", Bundle::sh(&script));
    c.create_with(&[], &["--no-pivot"]).assert_ok();
    c.start_ok();
    c.wait_status("stopped");
    assert_eq!(c.stdout(), "amber\nisolated\n", "stderr: {}", c.stderr());
}
