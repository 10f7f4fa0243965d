//! Root filesystem, mounts, masked/readonly paths and devices.

use amber_integration::*;
use serde_json::json;
use std::fs;

fn run_sh(name: &str, mut bundle: Bundle, script: &str) -> Output {
    bundle.args(&["sh", "-c", script]);
    let c = Container::new(name, bundle);
    c.run_foreground()
}

/// The `/proc/mounts` line whose mount point is `dest`, split into fields.
fn mount_line(mounts: &str, dest: &str) -> Vec<String> {
    mounts
        .lines()
        .rfind(|l| l.split_whitespace().nth(1) == Some(dest))
        .unwrap_or_else(|| panic!("no mount at {dest} in:\n{mounts}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn has_opt(line: &[String], opt: &str) -> bool {
    line[3].split(',').any(|o| o == opt)
}

#[test]
fn readonly_root() {
    let out = run_sh(
        "ro-root",
        Bundle::new(),
        "touch /newfile 2>&1; echo rc=$?; cat /proc/mounts",
    );
    out.assert_ok();
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    assert!(out.stdout.contains("rc=1"), "{out}");
    assert!(has_opt(&mount_line(&out.stdout, "/"), "ro"), "{out}");
    assert!(!rootfs().join("newfile").exists());
}

#[test]
fn writable_root_when_not_readonly() {
    // root.readonly=false: the rootfs is mounted rw (checked on /proc/mounts only,
    // so the shared rootfs is never written).
    let mut b = Bundle::new();
    b.set("/root/readonly", json!(false));
    let out = run_sh("rw-root", b, "cat /proc/mounts");
    out.assert_ok();
    assert!(has_opt(&mount_line(&out.stdout, "/"), "rw"), "{out}");
}

#[test]
fn tmpfs_with_options() {
    let mut b = Bundle::new();
    b.add_mount(
        "/tmp",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "noexec", "mode=1770", "size=2m"],
    );
    b.tmpfs("/run");
    b.add_mount("/run/sub", "tmpfs", "tmpfs", &["mode=0710"]);
    let out = run_sh(
        "tmpfs",
        b,
        "echo data > /tmp/f && cat /tmp/f && stat -c %a /tmp /run/sub && cat /proc/mounts",
    );
    out.assert_ok();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("data"));
    // runc quirk (libcontainer/rootfs_linux.go, tmpfs case of mountToRootfs): when the
    // mount point already exists, the new tmpfs is chmod'ed back to the mount point's
    // old mode, so the rootfs's /tmp (1777) wins over mode=1770. A mount point the
    // runtime had to create keeps the mode= option.
    assert_eq!(lines.next(), Some("1777"), "{out}");
    assert_eq!(lines.next(), Some("710"), "{out}");
    let m = mount_line(&out.stdout, "/tmp");
    assert_eq!(m[2], "tmpfs");
    for o in ["rw", "nosuid", "nodev", "noexec", "size=2048k"] {
        assert!(has_opt(&m, o), "{o} missing: {m:?}");
    }
}

#[test]
fn bind_mounts_ro_and_rw() {
    let ro = tempfile::tempdir().unwrap();
    fs::write(ro.path().join("hello.txt"), "hello from host\n").unwrap();
    let rw = tempfile::tempdir().unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), "single file\n").unwrap();

    let mut b = Bundle::new();
    // /run exists in the rootfs; the bind targets below are created in this tmpfs.
    b.tmpfs("/run");
    b.bind(ro.path(), "/run/ro", &["ro"]);
    b.bind(rw.path(), "/run/rw", &["rw"]);
    b.bind(file.path(), "/run/file.txt", &["ro"]);
    let out = run_sh(
        "bind",
        b,
        "cat /run/ro/hello.txt; \
         touch /run/ro/x 2>/dev/null && echo ro-writable; \
         echo written > /run/rw/out; \
         cat /run/file.txt; \
         cat /proc/mounts",
    );
    out.assert_ok();
    assert!(out.stdout.starts_with("hello from host\nsingle file\n"), "{out}");
    assert!(!out.stdout.contains("ro-writable"), "ro bind is writable: {out}");
    assert!(!ro.path().join("x").exists());
    assert_eq!(fs::read_to_string(rw.path().join("out")).unwrap(), "written\n");
    assert!(has_opt(&mount_line(&out.stdout, "/run/ro"), "ro"), "{out}");
    assert!(has_opt(&mount_line(&out.stdout, "/run/rw"), "rw"), "{out}");
}

#[test]
fn masked_paths() {
    let mut b = Bundle::new();
    // Two masks that always exist in the rootfs (a file and a directory), plus the
    // spec's defaults that exist on this kernel (/proc/kcore is absent on some).
    b.config["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .extend([json!("/etc/hostname"), json!("/usr/sbin")]);
    let mut paths = vec!["/etc/hostname".to_string(), "/usr/sbin".to_string()];
    for p in b.config["linux"]["maskedPaths"].as_array().unwrap() {
        let p = p.as_str().unwrap();
        if std::path::Path::new(p).exists() && !paths.iter().any(|q| q == p) {
            paths.push(p.to_string());
        }
    }
    let script: String = paths
        .iter()
        .map(|p| format!("if test -d {p}; then echo {p} $(ls -A {p} | wc -l); else echo {p} $(wc -c < {p}); fi; "))
        .collect();
    let out = run_sh("masked", b, &script);
    out.assert_ok();
    let want: String = paths.iter().map(|p| format!("{p} 0\n")).collect();
    assert_eq!(out.stdout, want, "masked paths must read empty: {out}");
}

#[test]
fn readonly_paths() {
    let out = run_sh(
        "ro-paths",
        Bundle::new(),
        // /proc/sys/kernel/hostname is per-uts-namespace: harmless if the test fails.
        "(echo changed > /proc/sys/kernel/hostname) 2>&1; echo rc=$?; hostname; cat /proc/mounts",
    );
    out.assert_ok();
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    assert!(out.stdout.contains("rc=1\nrunc\n"), "{out}");
    for p in ["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"] {
        if !std::path::Path::new(p).exists() {
            continue; // the runtime skips paths this kernel lacks
        }
        assert!(has_opt(&mount_line(&out.stdout, p), "ro"), "{p}: {out}");
    }
}

#[test]
fn default_devices() {
    let out = run_sh(
        "devices",
        Bundle::new(),
        "for d in null zero full random urandom tty; do \
             test -c /dev/$d && echo char-$d; done; \
         for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done; \
         test -d /dev/pts && test -d /dev/shm && test -d /dev/mqueue && echo dirs; \
         head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok",
    );
    out.assert_ok();
    let want = "char-null\nchar-zero\nchar-full\nchar-random\nchar-urandom\nchar-tty\n\
                fd=/proc/self/fd\nstdin=/proc/self/fd/0\nstdout=/proc/self/fd/1\n\
                stderr=/proc/self/fd/2\nptmx=pts/ptmx\ndirs\n4\nnull-ok\n";
    assert_eq!(out.stdout, want, "{out}");
}

#[test]
fn default_device_numbers() {
    let out = run_sh(
        "devnums",
        Bundle::new(),
        "for d in null zero full random urandom tty; do stat -c '%n %t %T %a' /dev/$d; done",
    );
    out.assert_ok();
    assert_eq!(
        out.stdout,
        "/dev/null 1 3 666\n/dev/zero 1 5 666\n/dev/full 1 7 666\n\
         /dev/random 1 8 666\n/dev/urandom 1 9 666\n/dev/tty 5 0 666\n",
        "{out}"
    );
}

#[test]
fn linux_devices_created() {
    let mut b = Bundle::new();
    b.set(
        "/linux/devices",
        json!([{
            "path": "/dev/amber-null",
            "type": "c",
            "major": 1,
            "minor": 3,
            "fileMode": 0o640,
            "uid": 1000,
            "gid": 1001
        }]),
    );
    // let the device cgroup allow it (the default rule denies everything else)
    b.set(
        "/linux/resources/devices",
        json!([
            { "allow": false, "access": "rwm" },
            { "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm" }
        ]),
    );
    // uid 1000 owns the node: it can write it (root here has no CAP_DAC_OVERRIDE)
    b.set("/process/user", json!({ "uid": 1000, "gid": 1000 }));
    let out = run_sh(
        "linux-devices",
        b,
        "stat -c '%F %t %T %a %u %g' /dev/amber-null; echo x > /dev/amber-null && echo writable",
    );
    out.assert_ok();
    assert_eq!(
        out.stdout, "character special file 1 3 640 1000 1001\nwritable\n",
        "{out}"
    );
}

#[test]
fn device_cgroup_allows_and_denies() {
    // Two device nodes, neither in any runtime's default allow list: 10:229
    // (/dev/fuse) is allowed by a rule, 1:11 (/dev/kmsg) is not. Opening either needs
    // no privilege (fuse opens without a mount, kmsg opens write-only for anyone), so
    // the only reason the second open fails is the device cgroup: EPERM.
    let mut b = Bundle::new();
    b.set(
        "/linux/devices",
        json!([
            { "path": "/dev/amber-fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666 },
            { "path": "/dev/amber-kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o222 }
        ]),
    );
    b.set(
        "/linux/resources/devices",
        json!([
            { "allow": false, "access": "rwm" },
            { "allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw" }
        ]),
    );
    let out = run_sh(
        "dev-cgroup",
        b,
        "test -c /dev/amber-fuse && test -c /dev/amber-kmsg && echo exist; \
         (exec 3<>/dev/amber-fuse) 2>/dev/null && echo fuse-open; \
         (exec 3>/dev/amber-kmsg) 2>&1 && echo kmsg-open; true",
    );
    out.assert_ok();
    assert!(
        out.stdout.starts_with("exist\nfuse-open\n"),
        "allowed device not usable: {out}"
    );
    assert!(!out.stdout.contains("kmsg-open"), "denied device opened: {out}");
    let devkmsg = fs::read_to_string("/proc/sys/kernel/printk_devkmsg").unwrap_or_default();
    assert_ne!(
        devkmsg.trim(),
        "off",
        "printk.devkmsg=off: EPERM would not prove the cgroup"
    );
    assert!(out.stdout.contains("Operation not permitted"), "{out}");
}
