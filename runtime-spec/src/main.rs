//! amber's OCI runtime-spec conformance suite.
//!
//! Starts containers from many config.json variants under a runtime (amber, runc, or any
//! runc-compatible binary), lets a static helper report from inside each container what it
//! sees, and compares that with what the runtime-spec requires. Prints TAP and, for two or
//! more runtimes, a side-by-side table. See runtime-spec/README.md.
//!
//! ```text
//! runtime-spec --helper H --rootfs R [--jobs N] [--filter TEXT] [--compare] [--list] [RUNTIME...]
//! ```

mod case;
mod exec;
mod report;
mod suite;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use case::{Env, Leftovers, Runtime};
use suite::{Known, Test};

/// The result of one test on one runtime.
#[derive(Clone, Debug)]
enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
    /// Failed as expected (an open issue or a documented runtime difference).
    Todo(String, String),
    /// Marked as expected to fail, but passed: the marker can go.
    Fixed(String),
}

impl Outcome {
    fn short(&self) -> &'static str {
        match self {
            Outcome::Pass => "ok",
            Outcome::Fail(_) => "FAIL",
            Outcome::Skip(_) => "skip",
            Outcome::Todo(..) => "todo",
            Outcome::Fixed(_) => "ok (fixed)",
        }
    }
}

struct Opts {
    helper: PathBuf,
    rootfs: PathBuf,
    jobs: usize,
    filter: Vec<String>,
    runtimes: Vec<String>,
    list: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: runtime-spec --helper PATH --rootfs PATH [--jobs N] [--filter TEXT]... [--compare] [--list] [RUNTIME...]\n\
         RUNTIME: amber (default; <repo>/target/debug/amber), runc, or a path. Two or more\n\
         runtimes (or --compare: amber and runc) print a side-by-side table."
    );
    std::process::exit(2)
}

fn parse_args() -> Opts {
    let mut helper = None;
    let mut rootfs = None;
    let mut jobs = 3;
    let mut filter = Vec::new();
    let mut runtimes = Vec::new();
    let mut compare = false;
    let mut list = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--helper" => helper = Some(PathBuf::from(val())),
            "--rootfs" => rootfs = Some(PathBuf::from(val())),
            "--jobs" | "-j" => jobs = val().parse().unwrap_or_else(|_| usage()),
            "--filter" => filter.push(val()),
            "--compare" => compare = true,
            "--list" => list = true,
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => usage(),
            s => runtimes.extend(s.split(',').filter(|x| !x.is_empty()).map(str::to_string)),
        }
    }
    if runtimes.is_empty() {
        runtimes.push(std::env::var("RUNTIME").unwrap_or_else(|_| "amber".into()));
    }
    if compare {
        for r in ["amber", "runc"] {
            if !runtimes.iter().any(|x| x == r) {
                runtimes.push(r.to_string());
            }
        }
    }
    Opts {
        helper: helper.unwrap_or_else(|| usage()),
        rootfs: rootfs.unwrap_or_else(|| usage()),
        jobs: jobs.max(1),
        filter,
        runtimes,
        list,
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Run one test on one runtime, honouring preconditions and known markers.
fn run_one(t: &Test, env: &Env) -> Outcome {
    if let Some(req) = &t.requires {
        if let Some(why) = req(env) {
            return Outcome::Skip(format!("host: {why}"));
        }
    }
    let known = t.known_for(env.rt.kind).cloned();
    let left = Leftovers::default();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.run(env, &left))).unwrap_or_else(|p| {
        Err(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        ))
    });
    let left = left.0.into_inner();
    if !left.is_empty() {
        let mut why = left.join("; ");
        if let Err(e) = &res {
            why = format!("{e}; and {why}");
        }
        return Outcome::Fail(why);
    }
    match (res, known) {
        (Ok(()), Some(Known::Todo(why))) => Outcome::Fixed(why),
        (Ok(()), _) => Outcome::Pass,
        (Err(e), Some(Known::Todo(why))) => Outcome::Todo(why, e),
        (Err(e), _) => Outcome::Fail(e),
    }
}

fn tap_line(n: usize, name: &str, o: &Outcome) -> String {
    let diag = |s: &str| s.lines().map(|l| format!("\n#   {l}")).collect::<String>();
    match o {
        Outcome::Pass => format!("ok {n} - {name}"),
        Outcome::Fail(e) => format!("not ok {n} - {name}{}", diag(e)),
        Outcome::Skip(why) => format!("ok {n} - {name} # SKIP {why}"),
        Outcome::Todo(why, e) => format!("not ok {n} - {name} # TODO {why}{}", diag(e)),
        Outcome::Fixed(why) => {
            format!("ok {n} - {name} # TODO {why} (passes now: remove the marker)")
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Counts {
    pass: usize,
    fail: usize,
    skip: usize,
    todo: usize,
    fixed: usize,
}

impl Counts {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Pass => self.pass += 1,
            Outcome::Fail(_) => self.fail += 1,
            Outcome::Skip(_) => self.skip += 1,
            Outcome::Todo(..) => self.todo += 1,
            Outcome::Fixed(_) => self.fixed += 1,
        }
    }

    /// `N passed, N failed, N skipped`: a fixed test counts as passed, a todo as skipped.
    fn line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.pass + self.fixed,
            self.fail,
            self.skip + self.todo
        )
    }
}

/// Run every test against one runtime, printing TAP lines in order as results come in.
fn run_runtime(tests: &[Test], env: &Env, jobs: usize, first_number: usize, prefix: &str) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
    let mut results: Vec<Option<Outcome>> = vec![None; tests.len()];
    std::thread::scope(|s| {
        for _ in 0..jobs.min(tests.len().max(1)) {
            let tx = tx.clone();
            let next = &next;
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= tests.len() {
                    break;
                }
                let o = run_one(&tests[i], env);
                if tx.send((i, o)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut printed = 0;
        let stdout = std::io::stdout();
        for (i, o) in rx {
            results[i] = Some(o);
            while printed < tests.len() {
                let Some(o) = &results[printed] else { break };
                let mut lock = stdout.lock();
                let _ = writeln!(
                    lock,
                    "{}",
                    tap_line(first_number + printed, &format!("{prefix}{}", tests[printed].name), o)
                );
                let _ = lock.flush();
                printed += 1;
            }
        }
    });
    results
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Fail("never ran".into())))
        .collect()
}

fn main() {
    let opts = parse_args();
    let mut tests = suite::all();
    if !opts.filter.is_empty() {
        tests.retain(|t| opts.filter.iter().any(|f| t.name.contains(f.as_str())));
    }
    if opts.list {
        for t in &tests {
            println!("{}  [{}]", t.name, t.spec);
        }
        return;
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("runtime-spec: run as root (the suite creates real containers)");
        std::process::exit(2);
    }
    for (what, p) in [("helper", &opts.helper), ("rootfs", &opts.rootfs)] {
        if !p.exists() {
            eprintln!("runtime-spec: {what} {} not found", p.display());
            std::process::exit(2);
        }
    }
    let repo = repo_root();
    let mut runtimes = Vec::new();
    for r in &opts.runtimes {
        match Runtime::resolve(r, &repo) {
            Ok(rt) => runtimes.push(rt),
            Err(e) => {
                eprintln!("runtime-spec: {e}");
                std::process::exit(2);
            }
        }
    }
    let multi = runtimes.len() > 1;
    println!("TAP version 13");
    println!("1..{}", tests.len() * runtimes.len());
    let mut all: Vec<(String, Vec<Outcome>, Counts, f64)> = Vec::new();
    let mut total = Counts::default();
    for (k, rt) in runtimes.iter().enumerate() {
        println!("# runtime {}: {}", rt.name, rt.path.display());
        let env = Env::new(rt.clone(), opts.helper.clone(), opts.rootfs.clone());
        let t0 = Instant::now();
        let prefix = if multi {
            format!("[{}] ", rt.name)
        } else {
            String::new()
        };
        let res = run_runtime(&tests, &env, opts.jobs, 1 + k * tests.len(), &prefix);
        let mut c = Counts::default();
        res.iter().for_each(|o| c.add(o));
        res.iter().for_each(|o| total.add(o));
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "# {}: {} ({} expected failures, {} fixed) in {secs:.1}s",
            rt.name,
            c.line(),
            c.todo,
            c.fixed
        );
        all.push((rt.name.clone(), res, c, secs));
    }
    if multi {
        print_table(&tests, &all);
    }
    println!("{}", total.line());
    std::process::exit(if total.fail > 0 { 1 } else { 0 });
}

/// Side by side: one line per test, one column per runtime, then the reasons.
fn print_table(tests: &[Test], all: &[(String, Vec<Outcome>, Counts, f64)]) {
    let width = tests.iter().map(|t| t.name.len()).max().unwrap_or(10).min(90);
    let mut head = format!("# {:width$}", "test");
    for (name, ..) in all {
        head.push_str(&format!("  {name:<12}"));
    }
    println!("#");
    println!("{head}");
    for (i, t) in tests.iter().enumerate() {
        let mut line = format!("# {:width$}", clip_name(&t.name, width));
        for (_, res, ..) in all {
            line.push_str(&format!("  {:<12}", res[i].short()));
        }
        println!("{}", line.trim_end());
    }
    let mut foot = format!("# {:width$}", "totals (passed/failed/skipped)");
    for (_, _, c, _) in all {
        foot.push_str(&format!(
            "  {:<12}",
            format!("{}/{}/{}", c.pass + c.fixed, c.fail, c.skip + c.todo)
        ));
    }
    println!("{foot}");
}

fn clip_name(s: &str, w: usize) -> String {
    if s.len() <= w {
        s.to_string()
    } else {
        let mut cut = w.saturating_sub(3);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    }
}
