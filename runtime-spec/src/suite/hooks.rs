//! config.md "POSIX-platform Hooks" and runtime.md "Lifecycle": order, the state on stdin,
//! args/env, failures and timeouts.

use serde_json::{json, Value};
use std::fs;
use std::time::{Duration, Instant};

use super::{eq, Test};
use crate::case::{Case, Env, Leftovers};
use crate::ensure;

/// A hook that appends `<name> <state JSON>` as one line to `log`. `sh` is the host's for every
/// hook but startContainer, which runs in the container (busybox sh, log under /out).
fn logging_hook(name: &str, log: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("s=$(cat); echo \"{name} $s\" >> {log}")]
    })
}

const ORDER: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn add_all_hooks(c: &mut Case) {
    let host_log = c.out().join("hooks.log").to_string_lossy().into_owned();
    for h in ORDER {
        let log = if h == "startContainer" {
            "/out/hooks.log".to_string()
        } else {
            host_log.clone()
        };
        c.push(&format!("/hooks/{h}"), logging_hook(h, &log));
    }
    c.share_out();
}

/// (hook name, state) lines of the log.
fn read_log(c: &Case) -> Result<Vec<(String, Value)>, String> {
    let text = fs::read_to_string(c.out().join("hooks.log")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let (name, state) = l.split_once(' ').unwrap_or((l, ""));
            let v: Value = serde_json::from_str(state)
                .map_err(|e| format!("hook {name} got a state that is not JSON ({e}): {state:?}"))?;
            Ok((name.to_string(), v))
        })
        .collect()
}

/// create, start, kill, wait for stopped, delete: every hook runs once.
fn full_lifecycle(c: &Case) -> Result<(), String> {
    c.create().check()?;
    c.start().check()?;
    c.wait_stdout("\"argv\"")?;
    c.kill("KILL").check()?;
    c.wait_status("stopped")?;
    c.delete().check()?;
    Ok(())
}

fn order_test(env: &Env, left: &Leftovers) -> Result<(), String> {
    let mut c = Case::new(env, left)?;
    add_all_hooks(&mut c);
    c.helper_args(&["--wait-signal"]);
    full_lifecycle(&c)?;
    let log = read_log(&c)?;
    let names: Vec<&str> = log.iter().map(|(n, _)| n.as_str()).collect();
    eq("hooks in order", names, ORDER.to_vec())
}

/// Run the full lifecycle with every hook logging; return the log, the init's host pid and
/// the canonical bundle path.
/// What [`logged_lifecycle`] returns: the hook log, the init's host pid, the bundle, the id.
struct Logged {
    log: Vec<(String, Value)>,
    pid: i64,
    bundle: String,
    id: String,
}

fn logged_lifecycle(env: &Env, left: &Leftovers) -> Result<Logged, String> {
    let mut c = Case::new(env, left)?;
    add_all_hooks(&mut c);
    c.set("/annotations", json!({"rs.example/key": "value"}));
    c.helper_args(&["--wait-signal"]);
    full_lifecycle(&c)?;
    let pid = c.pid().ok_or("no pid file")? as i64;
    let bundle = fs::canonicalize(c.bundle()).map_err(|e| e.to_string())?;
    let log = read_log(&c)?;
    ensure!(!log.is_empty(), "no hook ran");
    Ok(Logged {
        log,
        pid,
        bundle: bundle.to_string_lossy().into_owned(),
        id: c.id.clone(),
    })
}

fn state_test(env: &Env, left: &Leftovers) -> Result<(), String> {
    let Logged { log, pid, bundle, id } = logged_lifecycle(env, left)?;
    let mut problems = Vec::new();
    for (name, st) in &log {
        let mut bad = |what: String| problems.push(format!("{name}: {what}"));
        if st["ociVersion"].as_str().is_none_or(str::is_empty) {
            bad("ociVersion missing".into());
        }
        if st["id"] != json!(id) {
            bad(format!("id {}", st["id"]));
        }
        if st["bundle"].as_str() != Some(&bundle) {
            bad(format!("bundle {} (want {bundle:?})", st["bundle"]));
        }
        if st["annotations"]["rs.example/key"] != "value" {
            bad(format!("annotations {}", st["annotations"]));
        }
        let want_status = match name.as_str() {
            "prestart" | "createRuntime" | "createContainer" => Some("creating"),
            "poststop" => Some("stopped"),
            _ => None,
        };
        if let Some(w) = want_status {
            if st["status"].as_str() != Some(w) {
                bad(format!("status {} (want {w:?})", st["status"]));
            }
        }
        // the hooks that run in the runtime's namespaces see the host's pid
        if ["prestart", "createRuntime", "poststart"].contains(&name.as_str()) && st["pid"] != json!(pid) {
            bad(format!("pid {} (want {pid})", st["pid"]));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

pub fn tests() -> Vec<Test> {
    vec![
        Test::custom(
            "hooks: all six kinds run once, in lifecycle order",
            "config.md#posix-platform-hooks, runtime.md#lifecycle",
            order_test,
        )
        .runc_todo("runc 1.1.5 runs poststart as soon as the init is released, racing the startContainer hooks (racy: may pass)"),
        Test::custom(
            "hooks: each gets the state on stdin (id, bundle, pid, status, annotations)",
            "config.md#posix-platform-hooks, runtime.md#state",
            state_test,
        ),
        Test::custom(
            "hooks: poststart and startContainer see status running/created, poststart after the program started",
            "runtime.md#state (status), runtime.md#lifecycle steps 8-10",
            |env, left| {
                let log = logged_lifecycle(env, left)?.log;
                for (name, st) in &log {
                    let want: &[&str] = match name.as_str() {
                        "startContainer" => &["created", "running"],
                        "poststart" => &["running"],
                        _ => continue,
                    };
                    let got = st["status"].as_str().unwrap_or("");
                    ensure!(want.contains(&got), "{name}: status {got:?} (want {want:?})");
                }
                Ok(())
            },
        )
        .runc_todo("runc 1.1.5 gives poststart the status \"created\" (it runs poststart before it records the container as running)"),
        Test::custom(
            "hooks: createContainer and startContainer get the pid as seen by the host",
            "runtime.md#state (pid: the ID of the container process, as seen by the host)",
            |env, left| {
                let Logged { log, pid, .. } = logged_lifecycle(env, left)?;
                for (name, st) in &log {
                    if (name == "createContainer" || name == "startContainer") && st["pid"] != json!(pid) {
                        return Err(format!("{name}: pid {} (want the host's {pid})", st["pid"]));
                    }
                }
                Ok(())
            },
        )
        .runc_todo("runc 1.1.5 fills the pid in the container init, which sees itself as pid 1"),
        Test::custom(
            "hooks: path, args and env are used as given",
            "config.md#posix-platform-hooks",
            |env, left| {
                let mut c = Case::new(env, left)?;
                let out = c.out().join("args");
                c.push(
                    "/hooks/createRuntime",
                    json!({
                        "path": "/bin/sh",
                        "args": ["rs-argv0", "-c", format!("echo \"$(head -c 8 /proc/$$/cmdline)|$1|$RS_HOOK|${{HOME-unset}}\" > {}", out.display()), "zero", "first"],
                        "env": ["RS_HOOK=hook env"]
                    }),
                );
                c.create().check()?;
                let got = fs::read_to_string(&out).unwrap_or_default();
                eq("hook saw", got.trim(), "rs-argv0|first|hook env|unset")
            },
        ),
        Test::custom(
            "hooks: a failing prestart/createRuntime hook fails create and leaves nothing",
            "runtime.md#lifecycle (step 4: MUST generate an error and stop the container)",
            |env, left| {
                let mut c = Case::new(env, left)?;
                c.push(
                    "/hooks/createRuntime",
                    json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}),
                );
                c.create().check_fails()?;
                ensure!(c.state().is_err(), "the container exists after the hook failed");
                Ok(())
            },
        ),
        Test::custom(
            "hooks: a failing createContainer hook fails create and leaves nothing",
            "runtime.md#lifecycle (step 6: MUST generate an error and stop the container)",
            |env, left| {
                let mut c = Case::new(env, left)?;
                c.push(
                    "/hooks/createContainer",
                    json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}),
                );
                c.create().check_fails()?;
                ensure!(c.state().is_err(), "the container exists after the hook failed");
                Ok(())
            },
        ),
        Test::custom(
            "hooks: a failing startContainer hook fails start; the program never runs",
            "runtime.md#lifecycle (step 7: MUST generate an error and stop the container)",
            |env, left| {
                let mut c = Case::new(env, left)?;
                c.push(
                    "/hooks/startContainer",
                    json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}),
                );
                c.helper_args(&["--wait-signal"]);
                c.create().check()?;
                let out = c.start();
                // the program must not run and the container must not stay running...
                c.wait_status("stopped")?;
                ensure!(c.stdout().is_empty(), "the user program ran: {:?}", c.stdout());
                // ...and start itself must report the failure
                out.check_fails().map(|_| ())
            },
        )
        .runc_todo("runc 1.1.5 runs startContainer hooks in the init after `start` has returned, so start exits 0"),
        Test::custom(
            "hooks: timeout stops a hook that runs too long and fails create",
            "config.md#posix-platform-hooks (timeout)",
            |env, left| {
                let mut c = Case::new(env, left)?;
                c.push(
                    "/hooks/createRuntime",
                    json!({"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}),
                );
                let t = Instant::now();
                c.create().check_fails()?;
                ensure!(
                    t.elapsed() < Duration::from_secs(10),
                    "create took {:?} with a 1 s hook timeout",
                    t.elapsed()
                );
                ensure!(c.state().is_err(), "the container exists after the hook timed out");
                Ok(())
            },
        ),
        Test::custom(
            "hooks: a failing poststart hook only warns; the container keeps running",
            "runtime.md#lifecycle (step 10: MUST log a warning, lifecycle continues)",
            |env, left| {
                let mut c = Case::new(env, left)?;
                c.push(
                    "/hooks/poststart",
                    json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}),
                );
                c.helper_args(&["--wait-signal"]);
                c.create().check()?;
                let out = c.start();
                ensure!(out.ok(), "start failed because of a poststart hook: {out}");
                c.wait_stdout("\"argv\"")?;
                eq("status", c.status(), Some("running".to_string()))
            },
        )
        .runc_todo("runc 1.1.5 treats a failing poststart hook as an error (observed: create fails)"),
        Test::custom(
            "hooks: a failing poststop hook only warns; delete succeeds",
            "runtime.md#lifecycle (step 13: MUST log a warning, lifecycle continues)",
            |env, left| {
                let mut c = Case::new(env, left)?;
                c.push(
                    "/hooks/poststop",
                    json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}),
                );
                c.create().check()?;
                c.kill("KILL").check()?;
                c.wait_status("stopped")?;
                c.delete().check()?;
                ensure!(c.state().is_err(), "the container still exists after delete");
                Ok(())
            },
        ),
        Test::custom(
            "hooks: createContainer runs in the container's mount namespace",
            "config.md#createContainer-hooks",
            |env, left| {
                let mut c = Case::new(env, left)?;
                let log = c.out().join("ns");
                c.push(
                    "/hooks/createContainer",
                    json!({"path": "/bin/sh", "args": ["sh", "-c",
                        format!("readlink /proc/self/ns/mnt > {}", log.display())]}),
                );
                c.push(
                    "/hooks/createRuntime",
                    json!({"path": "/bin/sh", "args": ["sh", "-c",
                        format!("readlink /proc/self/ns/mnt > {}.rt", log.display())]}),
                );
                c.create().check()?;
                let pid = c.pid().ok_or("no pid file")?;
                let init_mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .into_owned();
                let hook_mnt = fs::read_to_string(&log).unwrap_or_default();
                eq("createContainer's mount ns", hook_mnt.trim(), init_mnt.as_str())?;
                let rt_mnt = fs::read_to_string(format!("{}.rt", log.display())).unwrap_or_default();
                let host = std::fs::read_link("/proc/self/ns/mnt")
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .into_owned();
                eq("createRuntime's mount ns (the runtime's)", rt_mnt.trim(), host.as_str())
            },
        ),
    ]
}
