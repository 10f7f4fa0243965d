//! Native checkpoint/restore (amber only: runc would need CRIU, which does not run on this
//! kernel). A counter container is checkpointed, killed, restored at the same pids and goes on
//! counting; a second checkpoint of the restored container, a clone under a new id, and the
//! refusals (corrupt image, unsupported flags) are checked too.

use amber_integration::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Counts into /out/count every 0.1 s, with a child process (the sleep) most of the time.
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /out/count; sleep 0.1; done";

fn counter_bundle(out: &Path) -> Bundle {
    // runc's default process: three capabilities, no_new_privs; the engine restores them.
    let mut b = Bundle::sh(COUNTER);
    b.bind(out, "/out", &["rw"]);
    b
}

fn count(out: &Path) -> u64 {
    std::fs::read_to_string(out.join("count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn wait_count_above(out: &Path, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = count(out);
        if c > n {
            return c;
        }
        assert!(Instant::now() < deadline, "counter stuck at {c} (waiting for > {n})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The credential lines of /proc/<pid>/status (ids, groups, capability sets, no_new_privs).
fn creds(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            ["Uid:", "Gid:", "Groups:", "Cap", "NoNewPrivs:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(String::from)
        .collect()
}

fn nspid(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Running (a zombie waiting for the test's subreaper to reap it does not count).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

/// Container `name` from bundle `b`, running detached.
fn run_detached(name: &str, b: Bundle) -> Container {
    let c = Container::new(name, b);
    c.bundle.write();
    let bundle = c.bundle.path_str();
    c.run_console(c.command(&["run", "-d", "--bundle", &bundle, &c.id]), &[])
        .assert_ok();
    c
}

fn tmpdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").unwrap()
}

#[test]
fn checkpoint_kill_restore_continues_at_the_same_pids() {
    if !is_amber() {
        eprintln!("skipped: native checkpoint/restore is amber's (runc needs CRIU)");
        return;
    }
    let out = tmpdir("amber-it-cr-out.");
    let images = tmpdir("amber-it-cr-img.");
    let c = run_detached("cr", counter_bundle(out.path()));
    let bundle = c.bundle.path_str();
    let before = wait_count_above(out.path(), 2);
    let pids_before = c.rt(&["ps", "--format", "nspid", &c.id]);
    pids_before.assert_ok();
    let old_pid = c.pid();
    let creds_before = creds(old_pid);
    assert!(
        creds_before.iter().any(|l| l.starts_with("CapEff:")),
        "{creds_before:?}"
    );

    // checkpoint without --leave-running: the container is gone afterwards, as with runc
    let img = images.path().join("one");
    let work = images.path().join("work");
    let img_s = img.to_string_lossy().into_owned();
    let work_s = work.to_string_lossy().into_owned();
    c.rt(&["checkpoint", "--image-path", &img_s, "--work-path", &work_s, &c.id])
        .assert_ok();
    assert!(std::fs::read_to_string(work.join("dump.log"))
        .unwrap()
        .contains("dumped"));
    c.state().assert_fail();
    let frozen_at = count(out.path());
    assert!(frozen_at >= before);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(count(out.path()), frozen_at, "the checkpointed tree kept running");
    assert!(
        !alive(old_pid),
        "the dumped init survived: {:?}",
        std::fs::read_to_string(format!("/proc/{old_pid}/stat"))
    );

    // the image inspects as JSON
    let inspect = rt(&["checkpoint-inspect", "--image-path", &img_s]);
    inspect.assert_ok();
    assert!(inspect.stdout.contains("\"tasks\""), "{inspect}");

    // restore: running at once, pid file = state pid, same pids inside, counting on
    let pid_file = images.path().join("pid");
    let pid_file_s = pid_file.to_string_lossy().into_owned();
    let restore = c.command(&[
        "restore",
        "-d",
        "--bundle",
        &bundle,
        "--image-path",
        &img_s,
        "--work-path",
        &work_s,
        "--pid-file",
        &pid_file_s,
        &c.id,
    ]);
    c.run_console(restore, &[]).assert_ok();
    let st = c.state_json();
    assert_eq!(st["status"], "running", "{st}");
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    assert!(
        nspid(pid).ends_with(" 1"),
        "restored init is not pid 1 inside: {}",
        nspid(pid)
    );
    assert_eq!(
        creds(pid),
        creds_before,
        "credentials changed across checkpoint/restore"
    );
    let after = wait_count_above(out.path(), frozen_at);
    assert!(
        after > frozen_at && after < frozen_at + 50,
        "counter restarted instead of continuing: {frozen_at} -> {after}"
    );
    let pids_after = c.rt(&["ps", "--format", "nspid", &c.id]);
    let inner = |o: &Output| -> Vec<Vec<i64>> {
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        let mut r: Vec<Vec<i64>> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p["nspid"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect()
            })
            .collect();
        r.sort();
        r
    };
    // the init keeps pid 1; its child is whatever the dump caught, at its own pid
    assert_eq!(inner(&pids_after)[0], vec![1], "{pids_after}");

    // a restored container can be checkpointed again (leaving it running) ...
    let img2 = images.path().join("two");
    let img2_s = img2.to_string_lossy().into_owned();
    c.rt(&["checkpoint", "--leave-running", "--image-path", &img2_s, &c.id])
        .assert_ok();
    assert_eq!(c.state_json()["status"], "running");
    let mid = count(out.path());
    wait_count_above(out.path(), mid);

    // ... and restored under a new id while the original still runs (a clone)
    let c2 = Container::new("cr-clone", counter_bundle(out.path()));
    c2.bundle.write();
    let b2 = c2.bundle.path_str();
    c2.run_console(
        c2.command(&["restore", "-d", "--bundle", &b2, "--image-path", &img2_s, &c2.id]),
        &[],
    )
    .assert_ok();
    assert_eq!(c2.state_json()["status"], "running");
    assert_eq!(c.state_json()["status"], "running");
    let p2 = c2.pid();
    assert!(nspid(p2).ends_with(" 1"), "{}", nspid(p2));
    let _ = pids_before;
}

#[test]
fn corrupt_image_is_refused_before_anything_is_made() {
    if !is_amber() {
        eprintln!("skipped: native checkpoint/restore is amber's");
        return;
    }
    let out = tmpdir("amber-it-cr-out.");
    let images = tmpdir("amber-it-cr-img.");
    let c = run_detached("cr-corrupt", counter_bundle(out.path()));
    let bundle = c.bundle.path_str();
    wait_count_above(out.path(), 1);
    let img = images.path().join("img");
    let img_s = img.to_string_lossy().into_owned();
    c.rt(&["checkpoint", "--image-path", &img_s, &c.id]).assert_ok();
    // flip one byte of the first pages file
    let pages = std::fs::read_dir(img.join("task"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pages") && std::fs::metadata(p).unwrap().len() > 0)
        .expect("a pages file");
    let mut data = std::fs::read(&pages).unwrap();
    data[0] ^= 0xff;
    std::fs::write(&pages, data).unwrap();
    let r = c.rt(&["restore", "-d", "--bundle", &bundle, "--image-path", &img_s, &c.id]);
    r.assert_fail();
    assert!(
        r.stderr.contains("corrupt") || r.stderr.contains("checksum") || r.stderr.contains("SHA"),
        "{r}"
    );
    assert!(!c.state_dir().exists(), "a refused restore left its state dir");
    let cg = format!("/sys/fs/cgroup/pids/{}", c.id);
    assert!(!Path::new(&cg).exists(), "a refused restore left its cgroup");
}

#[test]
fn unsupported_flags_are_refused_and_help_works() {
    if !is_amber() {
        eprintln!("skipped: amber's checkpoint flags");
        return;
    }
    rt(&["checkpoint", "--help"]).assert_ok();
    let r = rt(&["checkpoint", "--pre-dump", "some-id"]);
    r.assert_fail();
    assert!(
        r.stderr.contains("--pre-dump") && r.stderr.contains("not supported"),
        "{r}"
    );
    let r = rt(&["restore", "--tcp-established", "some-id"]);
    r.assert_fail();
    assert!(r.stderr.contains("not supported"), "{r}");
    // podman's pod-restore probe: a flag without its value must say "flag needs an argument"
    let r = rt(&["restore", "--lsm-mount-context"]);
    r.assert_fail();
    assert!(r.all().contains("flag needs an argument"), "{r}");
    // repeated --leave-running (podman sends it twice) parses
    let r = rt(&["checkpoint", "--leave-running", "--leave-running", "no-such-container"]);
    assert!(r.stderr.contains("does not exist"), "{r}");
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `amber ARGS` under capsh with `drop` removed from every set, as a shell command.
fn without_caps(c: &Container, drop: &str, args: &[&str]) -> std::process::Command {
    let rt = sh_quote(&std::fs::canonicalize(runtime()).unwrap().to_string_lossy());
    let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    let script = format!("exec {rt} --root {} {}", sh_quote(&c.root_str()), args.join(" "));
    let mut cmd = std::process::Command::new("capsh");
    cmd.args([&format!("--drop={drop}"), "--", "-c", &script]);
    cmd
}

/// checkpoint without CAP_SYS_PTRACE and restore without CAP_SYS_ADMIN/CAP_CHECKPOINT_RESTORE are
/// refused before anything is frozen or made, naming what is missing: the container keeps
/// counting, no image is written, and a refused restore leaves no container behind.
#[test]
fn checkpoint_and_restore_check_their_capabilities_first() {
    if !is_amber() {
        eprintln!("skipped: native checkpoint/restore is amber's (runc needs CRIU)");
        return;
    }
    let out = tmpdir("amber-it-cr-caps-out.");
    let images = tmpdir("amber-it-cr-caps-img.");
    let c = run_detached("cr-caps", counter_bundle(out.path()));
    let bundle = c.bundle.path_str();
    let before = wait_count_above(out.path(), 1);
    let img = images.path().join("img");
    let img_s = img.to_string_lossy().into_owned();

    let r = c.run_console(
        without_caps(&c, "cap_sys_ptrace", &["checkpoint", "--image-path", &img_s, &c.id]),
        &[],
    );
    r.assert_fail();
    assert!(r.stderr.contains("checkpoint needs CAP_SYS_PTRACE"), "{r}");
    assert!(
        !img.join("manifest.json").exists(),
        "a refused checkpoint wrote an image"
    );
    assert_eq!(c.state_json()["status"], "running");
    wait_count_above(out.path(), before); // not frozen, not killed

    c.rt(&["checkpoint", "--image-path", &img_s, &c.id]).assert_ok();
    let r = c.run_console(
        without_caps(
            &c,
            "cap_sys_admin,cap_checkpoint_restore",
            &["restore", "-d", "--bundle", &bundle, "--image-path", &img_s, &c.id],
        ),
        &[],
    );
    r.assert_fail();
    assert!(
        r.stderr
            .contains("restore needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE"),
        "{r}"
    );
    c.state().assert_fail();
    assert!(c.leftovers().is_empty(), "refused restore left {:?}", c.leftovers());
    // with every capability it restores
    c.run_console(
        c.command(&["restore", "-d", "--bundle", &bundle, "--image-path", &img_s, &c.id]),
        &[],
    )
    .assert_ok();
    assert_eq!(c.state_json()["status"], "running");
}

/// A restore that fails after processes exist (faults injected once every seed is cloned, once
/// the root and a child are transplanted and seized, once every task is, and once all but the
/// last have their registers loaded, none released) or before (a hard limit the restorer cannot
/// give) leaves no container, process, cgroup, mount or state behind, and the image still
/// restores after. With tasks seized, the restore must not hang (bounded by run_console)
/// killing the pid namespace's init, which cannot reap children traced from outside.
#[test]
fn a_failed_restore_leaves_nothing_behind() {
    if !is_amber() {
        eprintln!("skipped: native checkpoint/restore is amber's (runc needs CRIU)");
        return;
    }
    let out = tmpdir("amber-it-cr-fail-out.");
    let images = tmpdir("amber-it-cr-fail-img.");
    // The counter under a long-lived child: the image always holds a task besides the root,
    // which the restorer has seized (prepared) when the later fault points fire.
    let mut b = Bundle::sh(&format!("sleep 1000 & {COUNTER}"));
    b.bind(out.path(), "/out", &["rw"]);
    let c = run_detached("cr-fail", b);
    let bundle = c.bundle.path_str();
    wait_count_above(out.path(), 1);
    let img = images.path().join("img");
    let img_s = img.to_string_lossy().into_owned();
    c.rt(&["checkpoint", "--image-path", &img_s, &c.id]).assert_ok();
    let tree: serde_json::Value = serde_json::from_slice(&std::fs::read(img.join("tree.json")).unwrap()).unwrap();
    assert!(tree["tasks"].as_array().unwrap().len() >= 2, "{tree}");
    let args = ["restore", "-d", "--bundle", &bundle, "--image-path", &img_s, &c.id];

    let points = [
        "restore-after-clone",
        "restore-mid-transplant",
        "restore-after-transplant",
        "restore-load-state",
    ];
    for point in points {
        let mut cmd = c.command(&args);
        cmd.env("AMBER_FAULT", point);
        let r = c.run_console(cmd, &[]);
        r.assert_fail();
        assert!(r.stderr.contains(&format!("fault injected at {point}")), "{r}");
        c.state().assert_fail();
        assert_eq!(c.leftovers(), Vec::<String>::new(), "after a failure at {point}");
    }

    // the counter's hard RLIMIT_NOFILE is 1024 (config.json); a restorer with 512 cannot give it
    let rt = std::fs::canonicalize(runtime()).unwrap();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--nofile=512:512")
        .arg("--")
        .arg(&rt)
        .args(["--root", &c.root_str()])
        .args(args);
    let r = c.run_console(cmd, &[]);
    r.assert_fail();
    assert!(
        r.stderr
            .contains("RLIMIT_NOFILE hard limit 1024 is above the restorer's 512"),
        "{r}"
    );
    c.state().assert_fail();
    assert_eq!(c.leftovers(), Vec::<String>::new(), "after the refused rlimit");

    let before = count(out.path());
    c.run_console(c.command(&args), &[]).assert_ok();
    assert_eq!(c.state_json()["status"], "running");
    wait_count_above(out.path(), before);
}
