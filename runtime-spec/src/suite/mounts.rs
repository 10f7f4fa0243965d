//! config.md "Mounts" and config-linux.md "Default Filesystems", maskedPaths, readonlyPaths,
//! rootfsPropagation, mountLabel.

use serde_json::json;

use super::{eq, Test};
use crate::ensure;
use crate::report::{errno_name, Report};

fn has_opt(r: &Report, mp: &str, opts: &[&str]) -> Result<(), String> {
    ensure!(r.mount(mp).is_some(), "nothing is mounted at {mp}");
    let got = r.mount_opts(mp);
    for o in opts {
        ensure!(
            got.iter().any(|g| g == o),
            "{mp}: mount option {o} missing from {got:?}"
        );
    }
    Ok(())
}

fn fstype(r: &Report, mp: &str, want: &str) -> Result<(), String> {
    eq(&format!("fstype at {mp}"), r.fstype(mp), Some(want))
}

/// The optional fields (propagation) of the mount at `mp`.
fn optional(r: &Report, mp: &str) -> String {
    r.mount(mp)
        .and_then(|m| m["optional"].as_str())
        .unwrap_or("")
        .to_string()
}

pub fn tests() -> Vec<Test> {
    vec![
        Test::probe(
            "mounts: the default filesystems are mounted as configured",
            "config-linux.md#default-filesystems",
            |_| Ok(()),
            |r, _| {
                fstype(r, "/proc", "proc")?;
                fstype(r, "/sys", "sysfs")?;
                has_opt(r, "/sys", &["ro", "nosuid", "nodev", "noexec"])?;
                fstype(r, "/dev", "tmpfs")?;
                fstype(r, "/dev/pts", "devpts")?;
                has_opt(r, "/dev/pts", &["nosuid", "noexec"])?;
                fstype(r, "/dev/shm", "tmpfs")?;
                has_opt(r, "/dev/shm", &["nosuid", "nodev", "noexec"])?;
                fstype(r, "/dev/mqueue", "mqueue")?;
                Ok(())
            },
        ),
        Test::probe(
            "mounts: tmpfs with flags and data options",
            "config.md#mounts",
            |c| {
                c.mount(
                    "/tmp",
                    "tmpfs",
                    "rs-tmp",
                    &["nosuid", "nodev", "noexec", "noatime", "mode=1750", "size=2m"],
                );
                Ok(())
            },
            |r, _| {
                fstype(r, "/tmp", "tmpfs")?;
                has_opt(r, "/tmp", &["rw", "nosuid", "nodev", "noexec", "noatime"])?;
                let sup = r.super_opts("/tmp");
                ensure!(
                    sup.iter().any(|o| o == "size=2048k"),
                    "size=2m not applied: {sup:?}"
                );
                ensure!(
                    sup.iter().any(|o| o == "mode=1750"),
                    "mode=1750 not applied: {sup:?}"
                );
                eq(
                    "source",
                    r.mount("/tmp").and_then(|m| m["source"].as_str()),
                    Some("rs-tmp"),
                )
            },
        ),
        Test::probe(
            "mounts: read-only bind mount of a host directory",
            "config.md#mounts",
            |c| {
                let src = c.dir().join("src");
                std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
                std::fs::write(src.join("hello"), "from the host").map_err(|e| e.to_string())?;
                let s = src.to_string_lossy().into_owned();
                c.mount("/mnt", "bind", &s, &["rbind", "ro"]);
                Ok(())
            },
            |r, _| {
                eq("/mnt/hello", r.read("/mnt/hello"), Ok("from the host".to_string()))?;
                has_opt(r, "/mnt", &["ro"])?;
                eq("create in /mnt", errno_name(r.create_errno("/mnt")), errno_name(30))
            },
        )
        .args(&["--read", "/mnt/hello", "--create", "/mnt"]),
        Test::probe(
            "mounts: read-write bind mount writes through to the host",
            "config.md#mounts",
            |c| {
                c.share_out();
                Ok(())
            },
            |r, _| {
                has_opt(r, "/out", &["rw"])?;
                eq("create in /out", errno_name(r.create_errno("/out")), errno_name(0))
            },
        )
        .args(&["--create", "/out"]),
        Test::probe(
            "mounts: bind mount of a single file",
            "config.md#mounts",
            |c| {
                let f = c.dir().join("file.txt");
                std::fs::write(&f, "one file").map_err(|e| e.to_string())?;
                c.mount("/tmp", "tmpfs", "tmpfs", &["size=1m"]);
                c.mount("/tmp/file.txt", "bind", &f.to_string_lossy(), &["bind", "ro"]);
                Ok(())
            },
            |r, _| {
                eq("/tmp/file.txt", r.read("/tmp/file.txt"), Ok("one file".to_string()))?;
                eq("type", r.path("/tmp/file.txt")["type"].as_str(), Some("file"))
            },
        )
        .args(&["--read", "/tmp/file.txt", "--path", "/tmp/file.txt"]),
        Test::probe(
            "mounts: applied in order, a later mount on top of an earlier one",
            "config.md#mounts",
            |c| {
                c.mount("/tmp", "tmpfs", "first", &["size=1m"]);
                c.mount("/tmp/a/b", "tmpfs", "second", &["size=1m"]);
                c.mount("/tmp/a/b", "tmpfs", "third", &["size=1m"]);
                Ok(())
            },
            |r, _| {
                let mounts = r.get("/mounts").as_array().cloned().unwrap_or_default();
                let order: Vec<&str> = mounts
                    .iter()
                    .filter(|m| {
                        ["first", "second", "third"].contains(&m["source"].as_str().unwrap_or(""))
                    })
                    .map(|m| m["source"].as_str().unwrap_or(""))
                    .collect();
                eq("mount order", order, vec!["first", "second", "third"])?;
                eq(
                    "top of /tmp/a/b",
                    r.mount("/tmp/a/b").and_then(|m| m["source"].as_str()),
                    Some("third"),
                )
            },
        ),
        Test::custom(
            "mounts: bind copies one mount, rbind its submounts too",
            "config.md#mounts (bind, rbind)",
            bind_vs_rbind,
        ),
        Test::custom(
            "mounts: an unknown filesystem type fails the create, nothing is left",
            "runtime.md#create (MUST generate an error)",
            |env, left| {
                let mut c = crate::case::Case::new(env, left)?;
                c.mount("/tmp", "rs-no-such-fs", "none", &[]);
                c.create().check_fails()?;
                ensure!(c.state().is_err(), "the container exists after a failed create");
                Ok(())
            },
        ),
        Test::probe(
            "mounts: flags on a bind mount (ro, nosuid, nodev, noexec)",
            "config.md#mounts",
            |c| {
                let s = c.out().to_string_lossy().into_owned();
                c.mount("/mnt", "bind", &s, &["bind", "ro", "nosuid", "nodev", "noexec"]);
                Ok(())
            },
            |r, _| has_opt(r, "/mnt", &["ro", "nosuid", "nodev", "noexec"]),
        ),
        Test::probe(
            "mounts: propagation option (shared) on a mount",
            "config.md#mounts",
            |c| {
                c.mount("/tmp", "tmpfs", "tmpfs", &["size=1m", "shared"]);
                Ok(())
            },
            |r, _| {
                let o = optional(r, "/tmp");
                ensure!(o.contains("shared:"), "/tmp is not shared: optional fields {o:?}");
                Ok(())
            },
        ),
        Test::probe(
            "mounts: atime options (strictatime, nodiratime)",
            "config.md#mounts",
            |c| {
                c.mount("/tmp", "tmpfs", "tmpfs", &["size=1m", "strictatime", "nodiratime"]);
                Ok(())
            },
            |r, _| {
                has_opt(r, "/tmp", &["nodiratime"])?;
                let o = r.mount_opts("/tmp");
                ensure!(
                    !o.iter().any(|x| x == "relatime" || x == "noatime"),
                    "strictatime not applied: {o:?}"
                );
                Ok(())
            },
        ),
        Test::probe(
            "mounts: a missing destination is created (inside an earlier tmpfs)",
            "config.md#mounts",
            |c| {
                c.mount("/tmp", "tmpfs", "tmpfs", &["size=1m"]);
                c.mount("/tmp/x/y/z", "tmpfs", "deep", &["size=1m"]);
                Ok(())
            },
            |r, _| fstype(r, "/tmp/x/y/z", "tmpfs"),
        ),
        Test::probe(
            "mounts: a destination through an absolute symlink stays inside the rootfs",
            "config.md#mounts (destination is relative to the container's root)",
            |c| {
                // The rootfs copy holds /rs-link-tmp -> /tmp: resolved in the container, the mount
                // must land on the container's /tmp, never on the host's.
                c.mount("/rs-link-tmp", "tmpfs", "via-link", &["size=1m"]);
                Ok(())
            },
            |r, _| {
                eq(
                    "mount reached through /rs-link-tmp",
                    r.mount("/tmp").and_then(|m| m["source"].as_str()),
                    Some("via-link"),
                )
            },
        ),
        Test::probe(
            "mounts: a destination with .. components stays inside the rootfs",
            "config.md#mounts (destination is relative to the container's root)",
            |c| {
                c.mount("/tmp/../../../../tmp", "tmpfs", "dotdot", &["size=1m"]);
                Ok(())
            },
            |r, _| {
                eq(
                    "mount reached through ..",
                    r.mount("/tmp").and_then(|m| m["source"].as_str()),
                    Some("dotdot"),
                )
            },
        ),
        Test::probe(
            "maskedPaths: files read as empty (bound from /dev/null)",
            "config-linux.md#masked-paths",
            |_| Ok(()),
            |r, _| {
                for f in ["/proc/keys", "/proc/timer_list"] {
                    let p = r.path(f);
                    eq(&format!("{f} type"), p["type"].as_str(), Some("chr"))?;
                    eq(&format!("{f} rdev"), p["rdev"].clone(), json!([1, 3]))?;
                    eq(&format!("read {f}"), r.read(f), Ok(String::new()))?;
                }
                Ok(())
            },
        )
        .args(&[
            "--path", "/proc/keys", "--read", "/proc/keys", "--path", "/proc/timer_list", "--read",
            "/proc/timer_list",
        ])
        .requires(|_| {
            (!std::path::Path::new("/proc/keys").exists() || !std::path::Path::new("/proc/timer_list").exists())
                .then(|| "the host has no /proc/keys or /proc/timer_list to mask".into())
        }),
        Test::probe(
            "maskedPaths: directories are empty and read-only",
            "config-linux.md#masked-paths",
            |_| Ok(()),
            |r, _| {
                eq("ls /sys/firmware", r.ls("/sys/firmware"), Ok(vec![]))?;
                has_opt(r, "/sys/firmware", &["ro"])
            },
        )
        .args(&["--ls", "/sys/firmware"]),
        Test::probe(
            "maskedPaths: a path missing from the container is ignored",
            "config-linux.md#masked-paths",
            |c| {
                c.push("/linux/maskedPaths", json!("/proc/rs-does-not-exist"));
                Ok(())
            },
            |r, _| eq("masked path", r.path("/proc/rs-does-not-exist")["errno"].as_i64(), Some(2)),
        )
        .args(&["--path", "/proc/rs-does-not-exist"]),
        Test::probe(
            "maskedPaths: an extra configured path is masked",
            "config-linux.md#masked-paths",
            |c| {
                c.push("/linux/maskedPaths", json!("/proc/cmdline"));
                c.push("/linux/maskedPaths", json!("/proc/driver"));
                Ok(())
            },
            |r, _| {
                eq("read /proc/cmdline", r.read("/proc/cmdline"), Ok(String::new()))?;
                eq("ls /proc/driver", r.ls("/proc/driver"), Ok(vec![]))
            },
        )
        .args(&["--read", "/proc/cmdline", "--ls", "/proc/driver"]),
        Test::probe(
            "readonlyPaths: mounted read-only, writes refused",
            "config-linux.md#readonly-paths",
            |_| Ok(()),
            |r, _| {
                has_opt(r, "/proc/sys", &["ro"])?;
                eq(
                    "open /proc/sys/kernel/domainname for writing",
                    errno_name(r.open_errno("/proc/sys/kernel/domainname:w")),
                    errno_name(30),
                )?;
                eq(
                    "open /proc/irq/default_smp_affinity for writing",
                    errno_name(r.open_errno("/proc/irq/default_smp_affinity:w")),
                    errno_name(30),
                )?;
                // still readable
                ensure!(
                    r.read("/proc/sys/kernel/ostype").is_ok(),
                    "/proc/sys/kernel/ostype is not readable"
                );
                Ok(())
            },
        )
        .args(&[
            "--open",
            "/proc/sys/kernel/domainname:w",
            "--open",
            "/proc/irq/default_smp_affinity:w",
            "--read",
            "/proc/sys/kernel/ostype",
        ]),
        Test::probe(
            "readonlyPaths: an extra path is read-only, a missing one ignored",
            "config-linux.md#readonly-paths",
            |c| {
                c.mount("/tmp", "tmpfs", "tmpfs", &["size=1m"]);
                c.mount("/tmp/ro", "tmpfs", "tmpfs", &["size=1m"]);
                c.push("/linux/readonlyPaths", json!("/tmp/ro"));
                c.push("/linux/readonlyPaths", json!("/proc/rs-does-not-exist"));
                Ok(())
            },
            |r, _| {
                eq("create in /tmp/ro", errno_name(r.create_errno("/tmp/ro")), errno_name(30))?;
                eq("create in /tmp", errno_name(r.create_errno("/tmp")), errno_name(0))
            },
        )
        .args(&["--create", "/tmp/ro", "--create", "/tmp"]),
        Test::probe(
            "linux.rootfsPropagation: private",
            "config-linux.md#rootfs-mount-propagation",
            |c| {
                c.set("/linux/rootfsPropagation", json!("private"));
                Ok(())
            },
            |r, _| {
                let o = optional(r, "/");
                ensure!(
                    !o.contains("shared:") && !o.contains("master:"),
                    "/ is not private: {o:?}"
                );
                Ok(())
            },
        ),
        Test::probe(
            "linux.rootfsPropagation: slave",
            "config-linux.md#rootfs-mount-propagation",
            |c| {
                c.set("/linux/rootfsPropagation", json!("slave"));
                Ok(())
            },
            |r, _| {
                let o = optional(r, "/");
                ensure!(o.contains("master:"), "/ is not a slave mount: {o:?}");
                Ok(())
            },
        )
        .requires(host_root_shared),
        Test::probe(
            "linux.rootfsPropagation: shared",
            "config-linux.md#rootfs-mount-propagation",
            |c| {
                c.set("/linux/rootfsPropagation", json!("shared"));
                Ok(())
            },
            |r, _| {
                let o = optional(r, "/");
                ensure!(o.contains("shared:"), "/ is not shared: {o:?}");
                Ok(())
            },
        )
        .runc_todo("runc 1.1.5 makes the rootfs's parent mount private before bind-mounting the rootfs, so the container's / ends up private"),
        Test::probe(
            "linux.rootfsPropagation: unbindable",
            "config-linux.md#rootfs-mount-propagation",
            |c| {
                c.set("/linux/rootfsPropagation", json!("unbindable"));
                Ok(())
            },
            |r, _| {
                let o = optional(r, "/");
                ensure!(o.contains("unbindable"), "/ is not unbindable: {o:?}");
                Ok(())
            },
        )
        .runc_todo("runc 1.1.5 makes the whole tree unbindable before bind-mounting the rootfs, and that bind then fails (EINVAL)"),
        Test::probe(
            "linux.mountLabel: accepted when SELinux is off",
            "config-linux.md#mount-label",
            |c| {
                c.set("/linux/mountLabel", json!("system_u:object_r:container_file_t:s0:c1,c2"));
                Ok(())
            },
            |_, _| Ok(()),
        )
        .runc_todo("runc 1.1.5 adds context=LABEL to every mount even with SELinux off, and the kernel refuses it (EINVAL)")
        .requires(|_| {
            std::path::Path::new("/sys/fs/selinux/enforce")
                .exists()
                .then(|| "SELinux is enabled: the label would have to be checked".to_string())
        }),
    ]
}

/// A slave mount needs a shared peer group above it: the host's / must be shared.
fn host_root_shared(_: &crate::case::Env) -> Option<String> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let shared = mi.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.len() > 6
            && f[4] == "/"
            && f[6..]
                .iter()
                .take_while(|x| **x != "-")
                .any(|x| x.starts_with("shared:"))
    });
    (!shared).then(|| "the host's / is not a shared mount".to_string())
}

/// A host directory with a tmpfs mounted inside it, bound with bind and with rbind.
fn bind_vs_rbind(env: &crate::case::Env, left: &crate::case::Leftovers) -> Result<(), String> {
    use std::process::Command;
    let mut c = crate::case::Case::new(env, left)?;
    let src = c.dir().join("tree");
    let sub = src.join("sub");
    std::fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "rs-sub"])
        .arg(&sub)
        .status()
        .map_err(|e| format!("mount: {e}"))?;
    ensure!(st.success(), "cannot mount a tmpfs on the host");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(sub.clone());
    std::fs::write(sub.join("inner"), "x").map_err(|e| e.to_string())?;
    let s = src.to_string_lossy().into_owned();
    c.mount("/mnt", "bind", &s, &["bind"]);
    c.mount("/tmp", "bind", &s, &["rbind"]);
    c.helper_args(&["--ls", "/mnt/sub", "--ls", "/tmp/sub"]);
    let r = c.probe()?;
    eq("ls /mnt/sub (bind)", r.ls("/mnt/sub"), Ok(vec![]))?;
    eq("ls /tmp/sub (rbind)", r.ls("/tmp/sub"), Ok(vec!["inner".to_string()]))
}
