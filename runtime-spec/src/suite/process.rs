//! config.md "Process": args, env, cwd, user, umask, capabilities, rlimits, noNewPrivileges,
//! oomScoreAdj, scheduler, ioPriority, terminal, labels; plus hostname/domainname and root.

use serde_json::json;

use super::{eq, Test};
use crate::case::Case;
use crate::ensure;
use crate::report::{cap_mask, cap_names, errno_name, Report};

fn caps_eq(r: &Report, set: &str, want: u64) -> Result<(), String> {
    let got = r.caps(set);
    ensure!(got == want, "Cap{set}: got {} want {}", cap_names(got), cap_names(want));
    Ok(())
}

pub fn tests() -> Vec<Test> {
    let mut v =
        vec![
        Test::probe(
            "process.args: passed verbatim (spaces, empty, non-ASCII)",
            "config.md#process",
            |c| {
                // the helper reports its argv; pass the odd strings as values of a harmless flag
                c.set(
                    "/process/args",
                    json!(["/rs/report", "--path", "a b  c", "--path", "", "--path", "é ✓"]),
                );
                Ok(())
            },
            |r, _| {
                eq(
                    "argv",
                    r.strings("/argv"),
                    ["/rs/report", "--path", "a b  c", "--path", "", "--path", "é ✓"]
                        .map(String::from)
                        .to_vec(),
                )
            },
        ),
        Test::probe(
            "process.args: args[0] is looked up in the process's PATH",
            "config.md#process",
            |c| {
                c.set("/process/args", json!(["report"]));
                c.set("/process/env", json!(["PATH=/nonexistent:/rs", "HOME=/root"]));
                Ok(())
            },
            |r, _| eq("argv", r.strings("/argv"), vec!["report".to_string()]),
        ),
        Test::probe(
            "process.env: the process gets exactly the configured environment",
            "config.md#process",
            |c| {
                c.set(
                    "/process/env",
                    json!(["PATH=/bin", "HOME=/root", "RS_A=1", "RS_B=with space", "RS_EMPTY="]),
                );
                Ok(())
            },
            |r, _| {
                let mut got = r.strings("/env");
                got.sort();
                let mut want: Vec<String> =
                    ["PATH=/bin", "HOME=/root", "RS_A=1", "RS_B=with space", "RS_EMPTY="]
                        .map(String::from)
                        .to_vec();
                want.sort();
                eq("environment", got, want)
            },
        ),
        Test::probe(
            "process.cwd: the process starts in cwd",
            "config.md#process",
            |c| {
                c.set("/process/cwd", json!("/etc"));
                Ok(())
            },
            |r, _| eq("cwd", r.str("/cwd"), Some("/etc")),
        ),
        Test::probe(
            "process.user: uid and gid (real, effective, saved, fs)",
            "config.md#posix-platform-user",
            |c| {
                c.set("/process/user", json!({"uid": 1000, "gid": 1000}));
                Ok(())
            },
            |r, _| {
                eq("uids", r.ints("/uid"), vec![1000; 4])?;
                eq("gids", r.ints("/gid"), vec![1000; 4])
            },
        ),
        Test::probe(
            "process.user: a uid and gid with no passwd/group entry",
            "config.md#posix-platform-user",
            |c| {
                c.set("/process/user", json!({"uid": 4242, "gid": 4343}));
                Ok(())
            },
            |r, _| {
                eq("uids", r.ints("/uid"), vec![4242; 4])?;
                eq("gids", r.ints("/gid"), vec![4343; 4])
            },
        ),
        Test::probe(
            "process.user.additionalGids: exactly the listed groups",
            "config.md#posix-platform-user",
            |c| {
                c.set(
                    "/process/user",
                    json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 1001, 4242]}),
                );
                Ok(())
            },
            |r, _| {
                let mut g = r.ints("/groups");
                g.sort();
                eq("groups", g, vec![5, 1001, 4242])
            },
        ),
        Test::probe(
            "process.user: no additionalGids means no supplementary groups (not /etc/group's)",
            "config.md#posix-platform-user",
            |c| {
                // uid 1000 is "tester", a member of group "extra" (1001) in the rootfs's /etc/group
                c.set("/process/user", json!({"uid": 1000, "gid": 1000}));
                Ok(())
            },
            |r, _| eq("groups", r.ints("/groups"), vec![]),
        ),
        Test::probe(
            "process.user.umask: applied",
            "config.md#posix-platform-user",
            |c| {
                c.set("/process/user/umask", json!(0o027));
                Ok(())
            },
            |r, _| eq("umask", r.i64("/umask"), Some(0o027)),
        ),
        Test::probe(
            "process.capabilities: root gets every set as configured",
            "config.md#linux-process",
            |c| {
                let s = json!(["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID"]);
                c.set(
                    "/process/capabilities",
                    json!({"bounding": s, "effective": s, "permitted": s, "inheritable": s,
                           "ambient": s}),
                );
                Ok(())
            },
            |r, _| {
                let want = cap_mask(&["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID"]);
                for set in ["bnd", "eff", "prm", "inh", "amb"] {
                    caps_eq(r, set, want)?;
                }
                Ok(())
            },
        ),
        Test::probe(
            "process.capabilities: non-root keeps bounding/inheritable/ambient; ambient becomes permitted+effective",
            "config.md#linux-process",
            |c| {
                c.set("/process/user", json!({"uid": 1000, "gid": 1000}));
                c.set(
                    "/process/capabilities",
                    json!({
                        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"],
                        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                        "effective": ["CAP_CHOWN", "CAP_KILL"],
                        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                        "ambient": ["CAP_NET_BIND_SERVICE"]
                    }),
                );
                Ok(())
            },
            |r, _| {
                // execve by a non-root user without file capabilities: P' = E' = ambient.
                caps_eq(
                    r,
                    "bnd",
                    cap_mask(&["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"]),
                )?;
                caps_eq(r, "inh", cap_mask(&["CAP_KILL", "CAP_NET_BIND_SERVICE"]))?;
                caps_eq(r, "amb", cap_mask(&["CAP_NET_BIND_SERVICE"]))?;
                caps_eq(r, "prm", cap_mask(&["CAP_NET_BIND_SERVICE"]))?;
                caps_eq(r, "eff", cap_mask(&["CAP_NET_BIND_SERVICE"]))
            },
        ),
        Test::probe(
            "process.capabilities: empty lists leave no capability",
            "config.md#linux-process",
            |c| {
                c.set(
                    "/process/capabilities",
                    json!({"bounding": [], "effective": [], "permitted": [], "inheritable": [],
                           "ambient": []}),
                );
                Ok(())
            },
            |r, _| {
                for set in ["bnd", "eff", "prm", "inh", "amb"] {
                    caps_eq(r, set, 0)?;
                }
                Ok(())
            },
        ),
        Test::probe(
            "process.rlimits: each listed limit is set (soft and hard)",
            "config.md#posix-process",
            |c| {
                c.set(
                    "/process/rlimits",
                    json!([
                        {"type": "RLIMIT_NOFILE", "soft": 256, "hard": 512},
                        {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
                        {"type": "RLIMIT_CPU", "soft": 100, "hard": 200},
                        {"type": "RLIMIT_MSGQUEUE", "soft": 4096, "hard": 8192},
                        {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600}
                    ]),
                );
                Ok(())
            },
            |r, _| {
                eq("RLIMIT_NOFILE", r.rlimit("RLIMIT_NOFILE"), Some((256, 512)))?;
                eq("RLIMIT_CORE", r.rlimit("RLIMIT_CORE"), Some((0, 4096)))?;
                eq("RLIMIT_CPU", r.rlimit("RLIMIT_CPU"), Some((100, 200)))?;
                eq("RLIMIT_MSGQUEUE", r.rlimit("RLIMIT_MSGQUEUE"), Some((4096, 8192)))?;
                eq("RLIMIT_NPROC", r.rlimit("RLIMIT_NPROC"), Some((500, 600)))
            },
        ),
        Test::custom(
            "process.rlimits: a limit that cannot be set fails the create",
            "config.md#posix-process",
            |env, left| {
                // Raising a hard limit above the runtime's needs CAP_SYS_RESOURCE (not held here).
                let (_, hard) = current_rlimit(libc::RLIMIT_NOFILE);
                let mut c = Case::new(env, left)?;
                c.set(
                    "/process/rlimits",
                    json!([{"type": "RLIMIT_NOFILE", "soft": hard + 1000, "hard": hard + 1000}]),
                );
                let out = c.create();
                out.check_fails()?;
                ensure!(
                    c.state().is_err(),
                    "the container exists after a failed create"
                );
                Ok(())
            },
        )
        .requires(|_| {
            let (_, hard) = current_rlimit(libc::RLIMIT_NOFILE);
            (has_cap(24) || hard == u64::MAX)
                .then(|| "the harness can raise RLIMIT_NOFILE (CAP_SYS_RESOURCE held)".to_string())
        }),
        Test::probe(
            "process.noNewPrivileges: true sets no_new_privs",
            "config.md#linux-process",
            |c| {
                c.set("/process/noNewPrivileges", json!(true));
                Ok(())
            },
            |r, _| eq("no_new_privs", r.i64("/no_new_privs"), Some(1)),
        ),
        Test::probe(
            "process.noNewPrivileges: false leaves it unset",
            "config.md#linux-process",
            |c| {
                c.set("/process/noNewPrivileges", json!(false));
                Ok(())
            },
            |r, _| eq("no_new_privs", r.i64("/no_new_privs"), Some(0)),
        )
        .requires(|_| {
            (status_field("NoNewPrivs").as_deref() != Some("0"))
                .then(|| "the harness itself runs with no_new_privs".to_string())
        }),
        Test::probe(
            "process.oomScoreAdj: applied",
            "config.md#linux-process",
            |c| {
                c.set("/process/oomScoreAdj", json!(432));
                Ok(())
            },
            |r, _| eq("oom_score_adj", r.str("/oom_score_adj"), Some("432")),
        ),
        Test::probe(
            "process.scheduler: policy and nice applied",
            "config.md#linux-process",
            |c| {
                c.set("/process/scheduler", json!({"policy": "SCHED_BATCH", "nice": 7}));
                Ok(())
            },
            |r, _| {
                eq("sched policy (SCHED_BATCH=3)", r.i64("/sched/policy"), Some(3))?;
                eq("nice", r.i64("/sched/nice"), Some(7))
            },
        )
        .runc_todo("process.scheduler is runtime-spec 1.2, first implemented in runc 1.2 (ignored by 1.1.5)"),
        Test::probe(
            "process.ioPriority: class and priority applied",
            "config.md#linux-process",
            |c| {
                c.set("/process/ioPriority", json!({"class": "IOPRIO_CLASS_BE", "priority": 3}));
                Ok(())
            },
            // ioprio = class << 13 | data; IOPRIO_CLASS_BE = 2
            |r, _| eq("ioprio", r.i64("/sched/ioprio"), Some((2 << 13) | 3)),
        )
        .runc_todo("process.ioPriority is runtime-spec 1.2, first implemented in runc 1.2 (ignored by 1.1.5)"),
        Test::probe(
            "process: only stdio is open in the container process",
            "runtime.md#create (no runtime fd may leak; CVE-2024-21626)",
            |_| Ok(()),
            |r, _| {
                let fds = r.get("/fds").as_object().cloned().unwrap_or_default();
                let extra: Vec<String> = fds
                    .iter()
                    .filter(|(k, _)| !["0", "1", "2"].contains(&k.as_str()))
                    .map(|(k, v)| format!("{k} -> {}", v.as_str().unwrap_or("")))
                    .collect();
                ensure!(extra.is_empty(), "fds beyond stdio are open: {extra:?}");
                Ok(())
            },
        ),
        Test::probe(
            "process.apparmorProfile: applied",
            "config.md#linux-process",
            |c| {
                c.set("/process/apparmorProfile", json!("unconfined"));
                Ok(())
            },
            |r, _| {
                let cur = r.read("/proc/self/attr/current").unwrap_or_default();
                ensure!(cur.trim() == "unconfined", "AppArmor label {cur:?}");
                Ok(())
            },
        )
        .args(&["--read", "/proc/self/attr/current"])
        .requires(|_| {
            (!std::path::Path::new("/sys/kernel/security/apparmor").exists())
                .then(|| "AppArmor is not enabled on this host".to_string())
        }),
        Test::probe(
            "process.selinuxLabel: applied",
            "config.md#linux-process",
            |c| {
                c.set("/process/selinuxLabel", json!("system_u:system_r:container_t:s0:c1,c2"));
                Ok(())
            },
            |r, _| {
                let cur = r.read("/proc/self/attr/current").unwrap_or_default();
                let cur = cur.trim_end_matches(['\0', '\n']);
                eq("SELinux label", cur, "system_u:system_r:container_t:s0:c1,c2")
            },
        )
        .args(&["--read", "/proc/self/attr/current"])
        .requires(|_| {
            (!std::path::Path::new("/sys/fs/selinux/enforce").exists())
                .then(|| "SELinux is not enabled on this host".to_string())
        }),
        Test::probe(
            "hostname: set in the new uts namespace",
            "config.md#hostname",
            |c| {
                c.set("/hostname", json!("rs-host.example"));
                Ok(())
            },
            |r, _| eq("nodename", r.str("/uname/nodename"), Some("rs-host.example")),
        ),
        Test::probe(
            "domainname: set in the new uts namespace",
            "config.md#domainname",
            |c| {
                c.set("/domainname", json!("rs.example.org"));
                Ok(())
            },
            |r, _| eq("domainname", r.str("/uname/domainname"), Some("rs.example.org")),
        )
        .runc_todo("domainname is runtime-spec 1.1; runc 1.1.5 ignores it"),
        Test::probe(
            "root.readonly: true makes / read-only",
            "config.md#root",
            |c| {
                c.set("/root/readonly", json!(true));
                Ok(())
            },
            |r, _| {
                ensure!(
                    r.mount_opts("/").contains(&"ro".to_string()),
                    "/ is not mounted ro: {:?}",
                    r.mount_opts("/")
                );
                eq("create in /etc", errno_name(r.create_errno("/etc")), errno_name(30))
            },
        )
        .args(&["--create", "/etc"]),
        Test::probe(
            "root.readonly: false leaves / read-write",
            "config.md#root",
            |c| {
                c.set("/root/readonly", json!(false));
                Ok(())
            },
            |r, _| {
                ensure!(
                    r.mount_opts("/").contains(&"rw".to_string()),
                    "/ is not mounted rw: {:?}",
                    r.mount_opts("/")
                );
                Ok(())
            },
        ),
        Test::probe(
            "root.path: a relative path is relative to the bundle",
            "config.md#root",
            |c| {
                // ../../.. from /tmp/amber-rs-X/bundle is /: no symlink (runc refuses those)
                let bundle = std::fs::canonicalize(c.bundle()).map_err(|e| e.to_string())?;
                let up = "../".repeat(bundle.components().count() - 1);
                let rel = format!("{up}{}", c.env.rootfs.to_string_lossy().trim_start_matches('/'));
                c.set("/root/path", json!(rel));
                Ok(())
            },
            |r, _| {
                // The rootfs copy holds /rs-marker; the host's / does not.
                eq("/rs-marker", r.path("/rs-marker")["errno"].as_i64(), Some(0))
            },
        )
        .args(&["--path", "/rs-marker"]),
        Test::custom(
            "process.terminal: the process gets a pty, sent to --console-socket",
            "config.md#process",
            terminal_test,
        ),
        Test::custom(
            "process: the container's exit status is run's exit status",
            "runtime.md#lifecycle (runc CLI)",
            |env, left| {
                let mut c = Case::new(env, left)?;
                c.helper_args(&["--exit", "7"]);
                let out = c.run();
                eq("run exit code", out.code, Some(7)).map_err(|e| format!("{e}: {out}"))
            },
        ),
    ];
    // process.user: gid 0 group list when additionalGids is given for root
    v.push(Test::probe(
        "process.user: root with additionalGids",
        "config.md#posix-platform-user",
        |c| {
            c.set("/process/user/additionalGids", json!([10, 20]));
            Ok(())
        },
        |r, _| {
            let mut g = r.ints("/groups");
            g.sort();
            eq("groups", g, vec![10, 20])?;
            eq("uids", r.ints("/uid"), vec![0; 4])
        },
    ));
    v
}

pub fn current_rlimit(res: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: l is a valid, writable rlimit.
    unsafe { libc::getrlimit(res, &mut l) };
    (l.rlim_cur, l.rlim_max)
}

pub fn status_field(key: &str) -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// Whether the harness holds capability number `bit` in its effective set.
pub fn has_cap(bit: u32) -> bool {
    status_field("CapEff")
        .and_then(|h| u64::from_str_radix(&h, 16).ok())
        .is_some_and(|m| m & (1 << bit) != 0)
}

/// terminal: true with a console socket: receive the pty master, start, read the report.
fn terminal_test(env: &crate::case::Env, left: &crate::case::Leftovers) -> Result<(), String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::net::UnixListener;
    let mut c = Case::new(env, left)?;
    c.set("/process/terminal", json!(true));
    c.set("/process/consoleSize", json!({"height": 30, "width": 100}));
    c.helper_args(&["--path", "/dev/console"]);
    let sock = c.dir().join("console.sock");
    let listener = UnixListener::bind(&sock).map_err(|e| format!("bind: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    let sock_s = sock.to_string_lossy().into_owned();
    let out = c.create_with(&["--console-socket", &sock_s]);
    out.check()?;
    let stream = match listener.accept() {
        Ok((s, _)) => s,
        Err(e) => return Err(format!("the runtime never connected to the console socket: {e}")),
    };
    let master = recv_fd(stream.as_raw_fd())?;
    // SAFETY: recv_fd returned a fresh descriptor that we own.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    c.start().check()?;
    // Read until the pty reports EIO (the slave side closed) or 10 s pass.
    let mut buf = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 200) };
        if n > 0 {
            let mut chunk = [0u8; 4096];
            // SAFETY: chunk is a writable buffer of the given length.
            let r = unsafe { libc::read(master.as_raw_fd(), chunk.as_mut_ptr() as *mut libc::c_void, chunk.len()) };
            if r <= 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..r as usize]);
        }
        if std::time::Instant::now() > deadline {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf).replace("\r\n", "\n");
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no report on the terminal: {:?}", crate::case::clip(&text)))?;
    let r = Report::parse(line)?;
    eq("isatty(0,1,2)", r.ints("/tty"), vec![1, 1, 1])?;
    let console = r.path("/dev/console");
    eq("/dev/console", console["errno"].as_i64(), Some(0))?;
    Ok(())
}

/// Receive one fd over SCM_RIGHTS.
fn recv_fd(sock: i32) -> Result<i32, String> {
    let mut data = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cmsg = [0u8; 64];
    // SAFETY: zeroed msghdr is a valid initial value; the pointers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = cmsg.len();
    let mut pfd = libc::pollfd {
        fd: sock,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is valid.
    if unsafe { libc::poll(&mut pfd, 1, 10_000) } <= 0 {
        return Err("no message on the console socket".into());
    }
    // SAFETY: msg points at live buffers.
    let n = unsafe { libc::recvmsg(sock, &mut msg, 0) };
    if n < 0 {
        return Err(format!("recvmsg: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: CMSG_FIRSTHDR reads within msg's control buffer.
    let hdr = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if hdr.is_null() {
        return Err("no fd on the console socket".into());
    }
    // SAFETY: hdr points into cmsg; its data holds one int when it is SCM_RIGHTS.
    unsafe {
        if (*hdr).cmsg_level != libc::SOL_SOCKET || (*hdr).cmsg_type != libc::SCM_RIGHTS {
            return Err("unexpected control message on the console socket".into());
        }
        Ok(std::ptr::read_unaligned(libc::CMSG_DATA(hdr) as *const i32))
    }
}
