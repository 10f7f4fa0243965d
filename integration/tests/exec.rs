//! `exec`: positional args, every option, exit codes, failures, fd hygiene.

use amber_integration::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::fs;

/// Create and start a container whose init sleeps, for processes to be exec'd into.
fn running(name: &str, bundle: Bundle) -> Container {
    let c = Container::new(name, bundle);
    c.create_ok();
    c.start_ok();
    c
}

fn sleeper(name: &str) -> Container {
    running(name, Bundle::sh("sleep 1000"))
}

/// `exec ID args...` with extra options before the id.
fn exec(c: &Container, opts: &[&str], args: &[&str]) -> Output {
    let mut v = vec!["exec"];
    v.extend_from_slice(opts);
    v.push(&c.id);
    v.extend_from_slice(args);
    c.rt(&v)
}

/// Bit mask of capability numbers, as /proc/PID/status prints it.
fn cap_hex(bits: &[u32]) -> String {
    let v = bits.iter().fold(0u64, |acc, b| acc | (1u64 << b));
    format!("{v:016x}")
}

const CAP_CHOWN: u32 = 0;
const CAP_KILL: u32 = 5;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_AUDIT_WRITE: u32 = 29;
/// The base config's capabilities (bounding = effective = permitted = ambient).
const BASE_CAPS: [u32; 3] = [CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE];

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn positional_args_and_exit_code() {
    let c = sleeper("exec-args");
    let out = exec(&c, &[], &["echo", "one", "two  three"]);
    out.assert_ok();
    assert_eq!(out.stdout, "one two  three\n", "{out}");

    // without --detach, exec exits with the process's exit code ...
    let out = exec(&c, &[], &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    out.assert_code(7);
    assert_eq!(out.stdout, "out\n", "{out}");
    assert_eq!(out.stderr, "err\n", "{out}");
    // ... and 128+N when it is killed by signal N
    let out = exec(&c, &[], &["sh", "-c", "kill -9 $$"]);
    out.assert_code(137);
    // options after the id belong to the process, not to the runtime
    let out = exec(&c, &[], &["ls", "-d", "/"]);
    out.assert_ok();
    assert_eq!(out.stdout, "/\n");
    // the container keeps running
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn cwd() {
    let c = sleeper("exec-cwd");
    let out = exec(&c, &["--cwd", "/usr/bin"], &["sh", "-c", "pwd; ls -d ./env"]);
    out.assert_ok();
    assert_eq!(out.stdout, "/usr/bin\n./env\n", "{out}");
    // default: the config's cwd
    let out = exec(&c, &[], &["pwd"]);
    assert_eq!(out.assert_ok().stdout, "/\n");
}

#[test]
fn env_overrides_and_additions() {
    let mut b = Bundle::sh("sleep 1000");
    b.env("FOO=from-config");
    b.env("KEEP=kept");
    let c = running("exec-env", b);
    // (runc's CLI refuses mixing the long and short form of one flag in a command)
    for flag in ["--env", "-e"] {
        let out = exec(
            &c,
            &[flag, "FOO=overridden", flag, "NEW=added", flag, "SPACED=a b"],
            &["env"],
        );
        out.assert_ok();
        let mut got: Vec<&str> = lines(&out.stdout);
        got.sort();
        let mut want = vec![
            "FOO=overridden",
            "HOME=/root",
            "KEEP=kept",
            "NEW=added",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "SPACED=a b",
            "TERM=xterm",
        ];
        want.sort();
        assert_eq!(got, want, "each variable once, the {flag} value winning: {out}");
    }
}

#[test]
fn user_and_additional_gids() {
    let c = sleeper("exec-user");
    for (user, gids) in [("--user", "--additional-gids"), ("-u", "-g")] {
        let out = exec(
            &c,
            &[user, "1000:1001", gids, "10", gids, "20"],
            &["cat", "/proc/self/status"],
        );
        out.assert_ok();
        let s = &out.stdout;
        assert_eq!(status_field(s, "Uid").unwrap(), "1000\t1000\t1000\t1000", "{s}");
        assert_eq!(status_field(s, "Gid").unwrap(), "1001\t1001\t1001\t1001", "{s}");
        let groups = status_field(s, "Groups").unwrap();
        let groups: BTreeSet<&str> = groups.split_whitespace().collect();
        assert_eq!(groups, BTreeSet::from(["10", "20"]), "{user} {gids}: {s}");
        // a non-root user keeps no effective capability
        assert_eq!(status_field(s, "CapEff").unwrap(), cap_hex(&[]), "{s}");
    }

    // -u UID alone: gid 0; HOME from the user's passwd entry
    let out = exec(&c, &["-u", "1000"], &["sh", "-c", "id -u; id -g; echo $HOME"]);
    out.assert_ok();
    assert_eq!(lines(&out.stdout), ["1000", "0", "/tmp"], "{out}");

    // the init was not affected
    let init = fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
    assert_eq!(status_field(&init, "Uid").unwrap(), "0\t0\t0\t0");
}

#[test]
fn cap_adds_capabilities() {
    let c = sleeper("exec-cap");
    let mut want = BASE_CAPS.to_vec();
    want.extend([CAP_SYS_ADMIN, CAP_CHOWN]);
    for flag in ["--cap", "-c"] {
        let out = exec(
            &c,
            &[flag, "CAP_SYS_ADMIN", flag, "CAP_CHOWN"],
            &["cat", "/proc/self/status"],
        );
        out.assert_ok();
        let s = &out.stdout;
        assert_eq!(status_field(s, "CapEff").unwrap(), cap_hex(&want), "{flag}: {s}");
        assert_eq!(status_field(s, "CapBnd").unwrap(), cap_hex(&want), "{flag}: {s}");
    }
    // without --cap: exactly the config's set
    let out = exec(&c, &[], &["cat", "/proc/self/status"]);
    let s = &out.assert_ok().stdout;
    assert_eq!(status_field(s, "CapEff").unwrap(), cap_hex(&BASE_CAPS), "{s}");
    assert_eq!(status_field(s, "CapBnd").unwrap(), cap_hex(&BASE_CAPS), "{s}");
}

#[test]
fn no_new_privs() {
    let mut b = Bundle::sh("sleep 1000");
    b.set("/process/noNewPrivileges", json!(false));
    let c = running("exec-nnp", b);
    let out = exec(&c, &[], &["cat", "/proc/self/status"]);
    assert_eq!(status_field(&out.assert_ok().stdout, "NoNewPrivs").unwrap(), "0");
    let out = exec(&c, &["--no-new-privs"], &["cat", "/proc/self/status"]);
    assert_eq!(
        status_field(&out.assert_ok().stdout, "NoNewPrivs").unwrap(),
        "1",
        "{out}"
    );
}

/// A full OCI process, differing from the config in everything exec can set.
fn process_json() -> serde_json::Value {
    json!({
        "terminal": false,
        "user": { "uid": 1000, "gid": 1000, "additionalGids": [1001, 2000] },
        "args": ["sh", "-c", "echo \"$0|$FROMFILE|$PWD\"; cat /proc/self/status; exit 5"],
        "env": ["PATH=/bin:/usr/bin", "FROMFILE=yes"],
        "cwd": "/etc",
        "capabilities": {
            "bounding": ["CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]
        },
        "noNewPrivileges": true
    })
}

fn check_process_output(out: &Output) {
    out.assert_code(5);
    let first = out.stdout.lines().next().unwrap_or_default();
    assert_eq!(first, "sh|yes|/etc", "{out}");
    let s = &out.stdout;
    assert_eq!(status_field(s, "Uid").unwrap(), "1000\t1000\t1000\t1000", "{s}");
    assert_eq!(status_field(s, "Gid").unwrap(), "1000\t1000\t1000\t1000", "{s}");
    let groups = status_field(s, "Groups").unwrap();
    let groups: BTreeSet<&str> = groups.split_whitespace().collect();
    assert_eq!(groups, BTreeSet::from(["1001", "2000"]), "{s}");
    // ambient CAP_KILL survives the execve of a non-root user
    assert_eq!(status_field(s, "CapEff").unwrap(), cap_hex(&[CAP_KILL]), "{s}");
    assert_eq!(
        status_field(s, "CapBnd").unwrap(),
        cap_hex(&[CAP_KILL, CAP_CHOWN]),
        "{s}"
    );
    assert_eq!(status_field(s, "NoNewPrivs").unwrap(), "1", "{s}");
}

#[test]
fn process_file() {
    let mut b = Bundle::sh("sleep 1000");
    b.set("/process/noNewPrivileges", json!(false));
    let c = running("exec-process", b);
    let file = c.work_dir().join("process.json");
    fs::write(&file, serde_json::to_string(&process_json()).unwrap()).unwrap();
    let f = file.to_string_lossy().into_owned();
    let out = exec(&c, &["--process", &f], &[]);
    check_process_output(&out);
    // the env is exactly the file's (plus HOME from passwd): nothing from config.json
    let mut p = process_json();
    p["args"] = json!(["env"]);
    fs::write(&file, serde_json::to_string(&p).unwrap()).unwrap();
    let out = exec(&c, &["-p", &f], &[]);
    out.assert_ok();
    let mut got = lines(&out.stdout);
    got.sort();
    assert_eq!(got, ["FROMFILE=yes", "HOME=/tmp", "PATH=/bin:/usr/bin"], "{out}");
}

#[test]
fn process_file_terminal_false_wins_over_tty_flag() {
    // conmon passes --tty along with --process; the file's "terminal": false decides,
    // so no console socket is needed and stdio is the runtime's.
    let c = sleeper("exec-process-tty");
    let file = c.work_dir().join("process.json");
    fs::write(&file, serde_json::to_string(&process_json()).unwrap()).unwrap();
    let f = file.to_string_lossy().into_owned();
    let out = exec(&c, &["--tty", "--process", &f], &[]);
    check_process_output(&out);
    // detached too: the process runs with the runtime's stdio (no console socket)
    let pid_file = c.work_dir().join("exec.pid");
    let pf = pid_file.to_string_lossy().into_owned();
    let mut p = process_json();
    p["args"] = json!(["sleep", "1000"]);
    fs::write(&file, serde_json::to_string(&p).unwrap()).unwrap();
    let out = exec(&c, &["-t", "-d", "--pid-file", &pf, "--process", &f], &[]);
    out.assert_ok();
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    c.note_pid(pid);
    assert!(pid_alive(pid), "detached process {pid} not running");
    let fd0 = fs::read_link(format!("/proc/{pid}/fd/0")).unwrap();
    assert!(
        !fd0.to_string_lossy().contains("pts"),
        "terminal: false but stdin is a pty: {fd0:?}"
    );
}

#[test]
fn pid_file_and_detach() {
    let c = sleeper("exec-detach");
    let init = c.pid();
    let pid_file = c.work_dir().join("exec.pid");
    let pf = pid_file.to_string_lossy().into_owned();
    // -d returns while the process keeps running (sleep 1000 would outlive the
    // command bound if exec waited for it)
    let out = exec(&c, &["--detach", "--pid-file", &pf], &["sleep", "1000"]);
    out.assert_ok();
    let text = fs::read_to_string(&pid_file).expect("pid file");
    let pid: i32 = text
        .parse()
        .unwrap_or_else(|_| panic!("pid file is not a bare decimal: {text:?}"));
    c.note_pid(pid);
    assert!(pid_alive(pid), "detached process {pid} is not running");
    assert_eq!(proc_comm(pid), "sleep");
    assert_ne!(pid, init);

    // same cgroups as the init (host view)
    let cg = |p: i32| fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap();
    assert_eq!(cg(pid), cg(init), "exec'd process not in the container's cgroups");
    // same namespaces as the init, all of them
    let ns_init = ns_links(&init.to_string());
    let ns_exec = ns_links(&pid.to_string());
    assert_eq!(ns_exec, ns_init, "exec'd process not in the container's namespaces");
    assert_ne!(
        ns_exec["pid"],
        ns_link("self", "pid"),
        "exec'd process in the host pid ns"
    );
    // a pid inside the container's pid namespace: NSpid has two levels
    let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status_field(&st, "NSpid").unwrap();
    let levels: Vec<&str> = nspid.split_whitespace().collect();
    assert_eq!(levels.len(), 2, "{nspid}");
    assert_eq!(levels[0], pid.to_string());

    // short -d form, without a pid file; the process is in the container's pid ns
    let out = exec(&c, &["-d"], &["sh", "-c", "sleep 1000"]);
    out.assert_ok();
    let out = exec(&c, &[], &["ps", "-o", "pid,args"]);
    out.assert_ok();
    let sleeps = out.stdout.lines().filter(|l| l.contains("sleep 1000")).count();
    assert_eq!(sleeps, 3, "init + 2 detached sleeps: {out}");
}

#[test]
fn pid_file_foreground() {
    let c = sleeper("exec-pidfile-fg");
    let pid_file = c.work_dir().join("exec.pid");
    let pf = pid_file.to_string_lossy().into_owned();
    let out = exec(&c, &["--pid-file", &pf], &["sh", "-c", "echo $$"]);
    out.assert_ok();
    let text = fs::read_to_string(&pid_file).expect("pid file");
    let host_pid: i32 = text.parse().unwrap_or_else(|_| panic!("not a bare decimal: {text:?}"));
    assert!(host_pid > 1);
    // the process printed its pid inside the container's namespace, which differs
    let inner: i32 = out.stdout.trim().parse().unwrap();
    assert_ne!(inner, host_pid, "pid file must hold the host pid");
}

#[test]
fn preserve_fds() {
    let c = sleeper("exec-preserve");
    let dir = tempfile::tempdir().unwrap();
    let (p3, p4) = (dir.path().join("fd3"), dir.path().join("fd4"));
    let f3 = fs::File::create(&p3).unwrap();
    let f4 = fs::File::create(&p4).unwrap();
    let cmd = c.command(&[
        "exec",
        "--preserve-fds",
        "2",
        &c.id,
        "sh",
        "-c",
        "ls /proc/self/fd; echo three >&3; echo four >&4",
    ]);
    let out = run_captured(cmd, &[raw_fd(&f3), raw_fd(&f4)]);
    out.assert_ok();
    // 0-2, the two preserved fds, and ls's own directory fd
    assert_eq!(lines(&out.stdout), ["0", "1", "2", "3", "4", "5"], "{out}");
    assert_eq!(fs::read_to_string(&p3).unwrap(), "three\n");
    assert_eq!(fs::read_to_string(&p4).unwrap(), "four\n");

    // without --preserve-fds, fds the runtime inherited are not passed on
    let cmd = c.command(&["exec", &c.id, "ls", "/proc/self/fd"]);
    let out = run_captured(cmd, &[raw_fd(&f3), raw_fd(&f4)]);
    out.assert_ok();
    assert_eq!(lines(&out.stdout), ["0", "1", "2", "3"], "{out}");
}

#[test]
fn no_leaked_fds() {
    let c = sleeper("exec-fds");
    for opts in [&[][..], &["-u", "1000:1000"][..], &["--cwd", "/tmp"][..]] {
        // ls's own directory fd is 3; anything more was leaked by the runtime
        let out = exec(&c, opts, &["ls", "/proc/self/fd"]);
        out.assert_ok();
        assert_eq!(
            lines(&out.stdout),
            ["0", "1", "2", "3"],
            "exec {opts:?} leaked fds: {out}"
        );
    }
    // and a detached process (checked from the host)
    let pid_file = c.work_dir().join("exec.pid");
    let pf = pid_file.to_string_lossy().into_owned();
    exec(&c, &["-d", "--pid-file", &pf], &["sleep", "1000"]).assert_ok();
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    c.note_pid(pid);
    let mut fds: Vec<i32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect();
    fds.sort();
    let detail: Vec<String> = fds
        .iter()
        .map(|fd| format!("{fd} -> {:?}", fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()))
        .collect();
    assert_eq!(fds, [0, 1, 2], "detached exec leaked fds: {detail:?}");
}

#[test]
fn missing_executable_fails_synchronously() {
    let c = sleeper("exec-missing");
    let pid_file = c.work_dir().join("exec.pid");
    let pf = pid_file.to_string_lossy().into_owned();
    let out = exec(&c, &["--detach", "--pid-file", &pf], &["no-such-binary-xyz", "arg"]);
    out.assert_fail();
    assert!(out.stderr.contains("executable file not found in $PATH"), "{out}");
    assert!(out.stderr.contains("no-such-binary-xyz"), "{out}");
    assert!(!pid_file.exists(), "a failed exec wrote a pid file");
    // in the foreground too
    let out = exec(&c, &[], &["no-such-binary-xyz"]);
    out.assert_fail();
    assert!(out.stderr.contains("executable file not found in $PATH"), "{out}");
    // an absolute path that does not exist
    let out = exec(&c, &["-d"], &["/no/such/file"]);
    out.assert_fail();
    // only the init is left in the container
    let ps = exec(&c, &[], &["ps", "-o", "pid,args"]);
    let procs = ps.assert_ok().stdout.lines().count();
    assert_eq!(procs, 3, "header, init, ps itself: {ps}");
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn exec_into_stopped_container_fails() {
    let c = Container::new("exec-stopped", Bundle::sh("true"));
    c.create_ok();
    c.start_ok();
    c.wait_status("stopped");
    let out = exec(&c, &[], &["true"]);
    out.assert_fail();
    assert!(out.stderr.contains("stopped"), "{out}");
    let out = exec(&c, &["-d"], &["sleep", "1000"]);
    out.assert_fail();
    // and into one that does not exist
    let missing = Container::new("exec-missing-ctr", Bundle::new());
    let out = exec(&missing, &[], &["true"]);
    out.assert_fail();
    assert!(out.all().contains("does not exist"), "{out}");
}

#[test]
fn exec_into_paused_container() {
    let c = sleeper("exec-paused");
    c.rt(&["pause", &c.id]).assert_ok();
    c.wait_status("paused");
    let out = exec(&c, &[], &["true"]);
    out.assert_fail();
    assert!(out.stderr.contains("paused"), "{out}");
    let out = exec(&c, &["-d"], &["sleep", "1000"]);
    out.assert_fail();
    assert!(out.stderr.contains("paused"), "{out}");

    // --ignore-paused is not refused: the process joins the frozen cgroup and runs
    // once the container is resumed (runc's exec blocks until then, so it is driven
    // in the background).
    let pid_file = c.work_dir().join("exec.pid");
    let pf = pid_file.to_string_lossy().into_owned();
    let mut bg = Background::spawn(c.command(&[
        "exec",
        "--ignore-paused",
        "-d",
        "--pid-file",
        &pf,
        &c.id,
        "sleep",
        "1000",
    ]));
    let procs = std::path::Path::new("/sys/fs/cgroup/freezer")
        .join(c.id.as_str())
        .join("cgroup.procs");
    wait_for("the exec'd process to join the frozen cgroup (or exec to exit)", || {
        fs::read_to_string(&procs)
            .map(|s| s.lines().count() >= 2)
            .unwrap_or(false)
            || bg.try_finish().is_some()
    });
    if let Some(out) = bg.try_finish() {
        // a runtime may also finish without waiting for the thaw; it must not refuse
        out.assert_ok();
    }
    c.rt(&["resume", &c.id]).assert_ok();
    let out = bg.wait();
    out.assert_ok();
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    c.note_pid(pid);
    wait_for("the exec'd sleep to run", || proc_comm(pid) == "sleep");
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn bad_cwd_fails() {
    let c = sleeper("exec-bad-cwd");
    let out = exec(&c, &["--cwd", "/no/such/dir"], &["true"]);
    out.assert_fail();
    assert!(out.stderr.contains("/no/such/dir"), "{out}");
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn foreground_exec_forwards_signals() {
    // A foreground exec relays the signals it gets to the process (as runc does).
    let c = sleeper("exec-signals");
    let mut bg = Background::spawn(c.command(&[
        "exec",
        &c.id,
        "sh",
        "-c",
        "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done",
    ]));
    wait_for("the exec'd shell to set its trap", || {
        bg.stdout().contains("ready") || bg.try_finish().is_some()
    });
    assert!(bg.try_finish().is_none(), "exec ended early: {:?}", bg.try_finish());
    // SAFETY: kill(2) of the runtime process we spawned and have not reaped.
    unsafe {
        libc::kill(bg.pid(), libc::SIGTERM);
    }
    let out = bg.wait();
    out.assert_code(3);
    assert_eq!(out.stdout, "ready\ngot-term\n", "{out}");
}

#[test]
fn exec_into_created_container() {
    // runc allows exec before start: the init still waits on the exec fifo.
    let c = Container::new("exec-created", Bundle::sh("echo started; sleep 1000"));
    c.create_ok();
    let out = exec(&c, &[], &["sh", "-c", "echo exec-in-created"]);
    out.assert_ok();
    assert_eq!(out.stdout, "exec-in-created\n");
    assert_eq!(c.status().as_deref(), Some("created"));
    c.start_ok();
    wait_for_content(&c.stdout_path(), "started");
}

#[test]
fn exec_into_sub_cgroup() {
    // --cgroup CONTROLLER:PATH puts the process into an existing sub-cgroup of the
    // container (runc 1.1.5: "run the process in an (existing) sub-cgroup").
    let c = sleeper("exec-subcg");
    let pids_dir = std::path::Path::new("/sys/fs/cgroup/pids").join(c.id.as_str());
    assert!(
        pids_dir.is_dir(),
        "cgroup v1 pids hierarchy expected at {}",
        pids_dir.display()
    );
    fs::create_dir(pids_dir.join("sub")).unwrap();

    // inside the container's cgroup namespace the path is relative to the container
    let out = exec(&c, &["--cgroup", "pids:sub"], &["cat", "/proc/self/cgroup"]);
    out.assert_ok();
    let line = |text: &str, ctrl: &str| -> String {
        text.lines()
            .find(|l| l.split(':').nth(1) == Some(ctrl))
            .unwrap_or_else(|| panic!("no {ctrl} line in {text}"))
            .rsplit(':')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(line(&out.stdout, "pids"), "/sub", "{out}");
    assert_eq!(line(&out.stdout, "memory"), "/", "{out}");

    // a detached process, seen from the host
    let pid_file = c.work_dir().join("exec.pid");
    let pf = pid_file.to_string_lossy().into_owned();
    exec(
        &c,
        &["-d", "--pid-file", &pf, "--cgroup", "pids:sub"],
        &["sleep", "1000"],
    )
    .assert_ok();
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    c.note_pid(pid);
    let host = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(line(&host, "pids"), format!("/{}/sub", c.id), "{host}");
    assert_eq!(line(&host, "memory"), format!("/{}", c.id), "{host}");
    let procs = fs::read_to_string(pids_dir.join("sub/cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), pid.to_string());

    // a sub-cgroup that does not exist is an error
    let out = exec(&c, &["--cgroup", "pids:no-such-sub"], &["true"]);
    out.assert_fail();
    // delete --force removes the sub-cgroup with the container's (checked on drop)
}

#[test]
fn stdin_is_passed_through() {
    let c = sleeper("exec-stdin");
    let input = "line one\nline two\n";
    let out = run_captured_input(
        c.command(&["exec", &c.id, "sh", "-c", "cat; echo eof"]),
        input.as_bytes(),
    );
    out.assert_ok();
    assert_eq!(out.stdout, format!("{input}eof\n"), "{out}");
}

#[test]
fn process_file_rlimits_umask_oom_score() {
    // Amber applies the process file's rlimits, umask and oomScoreAdj to the exec'd
    // process, as the runtime spec says; runc 1.1.5 ignores umask and oomScoreAdj on
    // exec (and sets both rlimit values to the hard one), so only amber is held to it.
    if !is_amber() {
        eprintln!("skipped: runc 1.1.5 ignores these process fields on exec");
        return;
    }
    let c = sleeper("exec-process-limits");
    let process = json!({
        "terminal": false,
        "user": { "uid": 4242, "gid": 4242, "umask": 0o077 },
        "args": ["sh", "-c", "umask; grep 'open files' /proc/self/limits; cat /proc/self/oom_score_adj; echo $HOME"],
        "env": ["PATH=/bin"],
        "cwd": "/",
        "rlimits": [{ "type": "RLIMIT_NOFILE", "soft": 100, "hard": 200 }],
        "oomScoreAdj": 123
    });
    let file = c.work_dir().join("process.json");
    fs::write(&file, process.to_string()).unwrap();
    let out = exec(&c, &["--process", &file.to_string_lossy()], &[]);
    out.assert_ok();
    let l = lines(&out.stdout);
    assert_eq!(l[0], "0077", "{out}");
    let limits: Vec<&str> = l[1].split_whitespace().collect();
    assert_eq!(limits[3..5], ["100", "200"], "{out}");
    assert_eq!(l[2], "123", "{out}");
    // a uid without a passwd entry gets HOME=/
    assert_eq!(l[3], "/", "{out}");
}
