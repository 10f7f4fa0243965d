//! The runc-compatible command line. Engines send argv shapes clap does not accept by default
//! (single-dash long flags like `-no-subreaper`, repeated booleans like `--leave-running`
//! twice): `normalize` fixes the former, `args_override_self` the latter.

mod features;
mod spec_cmd;

use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser, Subcommand};

use crate::container::{self, create::CreateOpts, ops, Error, Global};
use crate::logging;

pub const VERSION_TEXT: &str = concat!("amber version ", env!("CARGO_PKG_VERSION"), "\nspec: ", "1.2.0", "\n");

#[derive(Parser, Debug)]
#[command(
    name = "amber",
    about = "amber: an OCI container runtime with pid-exact checkpoint/restore",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Cli {
    /// Root directory for container state (default /run/amber; $XDG_RUNTIME_DIR/amber when
    /// rootless)
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Write logs to this file instead of stderr
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long = "log-format", global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Enable debug logging
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd for cgroups (cgroupsPath is slice:prefix:name)
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility (amber never runs criu)
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// Accepted for runc compatibility: true, false or auto
    #[arg(long = "rootless", id = "global_rootless", hide = true)]
    rootless: Option<String>,
    /// Print the version
    #[arg(short = 'v', long = "version", action = ArgAction::SetTrue)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Debug, Clone)]
struct CreateArgs {
    /// Path to the bundle directory (holding config.json)
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket path to which the pty master is sent when process.terminal is true
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the container init's pid to
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on ramfs)
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N additional fds (3..3+N-1) through to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Unix socket path to which the init's pidfd is sent (as runc >= 1.2)
    #[arg(long = "pidfd-socket")]
    pidfd_socket: Option<PathBuf>,
    /// Start the container init at exact pids: its pid in amber's pid namespace, then in each
    /// ancestor namespace outward; 0 leaves a level to the kernel. Also settable with the
    /// config annotation run.amber.init-pid. Example: --init-pid 4242 (host pid 4242).
    #[arg(long = "init-pid", value_name = "PID[,PID...]")]
    init_pid: Option<String>,
    /// Container id
    id: String,
}

#[derive(clap::Args, Debug, Clone)]
struct UpdateArgs {
    /// A linux.resources JSON file, or - for stdin
    #[arg(short = 'r', long)]
    resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "cpu-idle", allow_hyphen_values = true)]
    cpu_idle: Option<i64>,
    /// Memory limit, e.g. 512m (-1: unlimited)
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    #[arg(long = "kernel-memory", allow_hyphen_values = true)]
    kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", allow_hyphen_values = true)]
    kernel_memory_tcp: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Accepted for runc compatibility (Intel RDT is not supported)
    #[arg(long = "l3-cache-schema", hide = true)]
    l3_cache_schema: Option<String>,
    /// Accepted for runc compatibility (Intel RDT is not supported)
    #[arg(long = "mem-bw-schema", hide = true)]
    mem_bw_schema: Option<String>,
    id: String,
}

#[derive(clap::Args, Debug, Clone)]
struct ExecArgs {
    /// Unix socket path to which the pty master is sent when a terminal is used
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Working directory inside the container
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE), repeatable
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Allocate a pseudo-TTY (ignored with --process, whose terminal field decides)
    #[arg(short = 't', long)]
    tty: bool,
    /// UID[:GID] to run as
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Additional group id, repeatable
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// A full OCI process JSON file
    #[arg(short = 'p', long)]
    process: Option<PathBuf>,
    /// Detach from the process
    #[arg(short = 'd', long)]
    detach: bool,
    /// File to write the process's pid to
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility (SELinux label; no LSM is active here)
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// Accepted for runc compatibility (AppArmor profile; no LSM is active here)
    #[arg(long)]
    apparmor: Option<String>,
    /// Set no_new_privs for the process
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Add a capability, repeatable
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    /// Pass N additional fds (3..3+N-1) through to the process
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Run even if the container is paused
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Sub-cgroup of the container to run in
    #[arg(long)]
    cgroup: Option<String>,
    /// Unix socket path to which the process's pidfd is sent (as runc >= 1.2)
    #[arg(long = "pidfd-socket")]
    pidfd_socket: Option<PathBuf>,
    /// Container id
    id: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
struct CheckpointArgs {
    /// Where to write the image
    #[arg(long = "image-path", default_value = "checkpoint")]
    image_path: PathBuf,
    /// Where to write dump.log
    #[arg(long = "work-path")]
    work_path: Option<PathBuf>,
    /// Leave the container running after the checkpoint
    #[arg(long = "leave-running")]
    leave_running: bool,
    // runc/podman/containerd flags the engine does not implement yet: refused when given.
    #[arg(long = "tcp-established", hide = true)]
    tcp_established: bool,
    #[arg(long = "tcp-skip-in-flight", hide = true)]
    tcp_skip_in_flight: bool,
    #[arg(long = "link-remap", hide = true)]
    link_remap: bool,
    #[arg(long = "ext-unix-sk", hide = true)]
    ext_unix_sk: bool,
    #[arg(long = "shell-job", hide = true)]
    shell_job: bool,
    #[arg(long = "lazy-pages", hide = true)]
    lazy_pages: bool,
    #[arg(long = "status-fd", hide = true)]
    status_fd: Option<i32>,
    #[arg(long = "page-server", hide = true)]
    page_server: Option<String>,
    /// Accepted and implied: file locks are always dumped and restored.
    #[arg(long = "file-locks", hide = true)]
    _file_locks: bool,
    #[arg(long = "pre-dump", hide = true)]
    pre_dump: bool,
    #[arg(long = "parent-path", hide = true)]
    parent_path: Option<PathBuf>,
    #[arg(long = "manage-cgroups-mode", hide = true)]
    manage_cgroups_mode: Option<String>,
    #[arg(long = "empty-ns", hide = true)]
    empty_ns: Vec<String>,
    #[arg(long = "auto-dedup", hide = true)]
    auto_dedup: bool,
    /// Container id
    id: String,
}

#[derive(clap::Args, Debug, Clone)]
struct RestoreArgs {
    /// The image to restore
    #[arg(long = "image-path", default_value = "checkpoint")]
    image_path: PathBuf,
    /// Where to write restore.log
    #[arg(long = "work-path")]
    work_path: Option<PathBuf>,
    /// Path to the bundle directory (holding config.json)
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// Detach from the restored container's process
    #[arg(short = 'd', long)]
    detach: bool,
    /// File to write the restored init's pid to
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket path for a restored terminal (not supported by the engine yet)
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Do not use pivot_root
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not make amber a child subreaper while it waits in the foreground
    #[arg(long = "no-subreaper")]
    no_subreaper: bool,
    /// Accepted as conmon sends it: keep the caller's session keyring
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Accepted as conmon sends it
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Accepted as podman 5 sends it (no TCP sockets are restored yet)
    #[arg(long = "tcp-close")]
    tcp_close: bool,
    // runc/podman/containerd flags the engine does not implement yet: refused when given.
    #[arg(long = "tcp-established", hide = true)]
    tcp_established: bool,
    #[arg(long = "ext-unix-sk", hide = true)]
    ext_unix_sk: bool,
    #[arg(long = "shell-job", hide = true)]
    shell_job: bool,
    /// Accepted and implied: file locks are always dumped and restored.
    #[arg(long = "file-locks", hide = true)]
    _file_locks: bool,
    #[arg(long = "manage-cgroups-mode", hide = true)]
    manage_cgroups_mode: Option<String>,
    #[arg(long = "empty-ns", hide = true)]
    empty_ns: Vec<String>,
    #[arg(long = "auto-dedup", hide = true)]
    auto_dedup: bool,
    #[arg(long = "lazy-pages", hide = true)]
    lazy_pages: bool,
    #[arg(long = "lsm-profile", hide = true)]
    lsm_profile: Option<String>,
    #[arg(long = "lsm-mount-context", hide = true)]
    lsm_mount_context: Option<String>,
    #[arg(long = "parent-path", hide = true)]
    parent_path: Option<PathBuf>,
    /// Container id
    id: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a container (its process waits until `start`)
    Create(CreateArgs),
    /// Create and start a container
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Detach from the container's process
        #[arg(short = 'd', long)]
        detach: bool,
        /// Do not make amber a child subreaper
        #[arg(long = "no-subreaper")]
        no_subreaper: bool,
        /// Keep the container's state after it exits
        #[arg(long)]
        keep: bool,
    },
    /// Run the user process of a created container
    Start { id: String },
    /// Print the state of a container as JSON
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init
    Kill {
        /// Send the signal to every process in the container
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and everything it holds
    Delete {
        /// Kill the container first if it is still running
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// List containers
    List {
        /// table or json
        #[arg(short = 'f', long = "format", default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only the ids
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Suspend every process in the container
    Pause { id: String },
    /// Resume a paused container
    Resume { id: String },
    /// List the processes in a container
    Ps {
        /// table, json (pids), or nspid (each process's pid vector relative to the container)
        #[arg(short = 'f', long = "format", default_value = "table", value_parser = ["table", "json", "nspid"])]
        format: String,
        id: String,
        /// Options passed to ps(1) for the table format
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print the OCI features JSON of this build
    Features,
    /// Checkpoint a running container into an image (native engine, no CRIU)
    Checkpoint(CheckpointArgs),
    /// Restore a container from a checkpoint image; it comes up running
    Restore(RestoreArgs),
    /// Print a checkpoint image as JSON (after verifying its checksums)
    CheckpointInspect {
        #[arg(long = "image-path", default_value = "checkpoint")]
        image_path: PathBuf,
    },
    /// Stream container events: stats every interval, and OOM kills
    Events {
        /// Print one stats event and exit
        #[arg(long)]
        stats: bool,
        /// How often to print stats
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Update a container's resource limits
    Update(UpdateArgs),
    /// Run a new process inside a running container
    Exec(ExecArgs),
    /// Write a new config.json template
    Spec {
        /// Directory to write config.json to
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// Generate a config for a rootless container
        #[arg(long)]
        rootless: bool,
    },
}

/// Turn single-dash long flags (`-no-subreaper`, `-bundle`) into double-dash ones, as Go's flag
/// package accepts both. Only names clap knows as long flags are touched.
pub fn normalize(args: Vec<String>) -> Vec<String> {
    let mut longs = std::collections::HashSet::new();
    fn collect(cmd: &clap::Command, out: &mut std::collections::HashSet<String>) {
        for a in cmd.get_arguments() {
            if let Some(l) = a.get_long() {
                out.insert(l.to_string());
            }
        }
        for s in cmd.get_subcommands() {
            collect(s, out);
        }
    }
    collect(&Cli::command(), &mut longs);
    let mut done = false;
    args.into_iter()
        .map(|a| {
            if a == "--" {
                done = true;
            }
            if done || a.starts_with("--") || !a.starts_with('-') || a.len() < 3 {
                return a;
            }
            let name = a[1..].split('=').next().unwrap_or("");
            if longs.contains(name) {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

/// runc's state dir rule: /run/<name> for root; $XDG_RUNTIME_DIR/<name> when rootless (not
/// root, or uid 0 inside a user namespace) and XDG_RUNTIME_DIR is set.
fn default_root() -> PathBuf {
    let euid = nix::unistd::geteuid().as_raw();
    let in_userns = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false);
    if euid != 0 || in_userns {
        if let Ok(x) = std::env::var("XDG_RUNTIME_DIR") {
            if !x.is_empty() {
                return PathBuf::from(x).join("amber");
            }
        }
    }
    PathBuf::from("/run/amber")
}

/// Parse, run, and return the process exit code.
pub fn main(args: Vec<String>) -> i32 {
    let cli = match Cli::try_parse_from(normalize(args.clone())) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Go's flag package (runc) says "flag needs an argument"; podman's pod-restore probe
            // looks for exactly those words.
            if e.kind() == clap::error::ErrorKind::InvalidValue && e.to_string().contains("a value is required") {
                eprintln!("flag needs an argument");
            }
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    if cli.version {
        print!("{VERSION_TEXT}");
        return 0;
    }
    let format = if cli.log_format == "json" {
        logging::Format::Json
    } else {
        logging::Format::Text
    };
    if let Err(e) = logging::init(cli.log.as_deref(), format, cli.debug) {
        eprintln!(
            "opening log file {:?}: {e}",
            cli.log.as_deref().unwrap_or(std::path::Path::new(""))
        );
    }
    let Some(command) = cli.command else {
        let _ = Cli::command().print_help();
        return 1;
    };
    let g = Global {
        root: cli.root.clone().unwrap_or_else(default_root),
        systemd_cgroup: cli.systemd_cgroup,
    };
    // CVE-2019-5736: commands that put amber code inside a container run from a sealed copy.
    if matches!(command, Command::Create(_) | Command::Run { .. } | Command::Exec(_)) {
        if let Err(e) = crate::security::exe::ensure_sealed(&args) {
            logging::error(&e.to_string());
            return 1;
        }
    }
    match dispatch(&g, command) {
        Ok(code) => code,
        Err(e) => {
            logging::error(&e.to_string());
            1
        }
    }
}

fn create_opts(a: &CreateArgs, foreground: bool) -> Result<CreateOpts, Error> {
    let init_pid = match &a.init_pid {
        Some(t) => crate::spawn::tid::parse_init_pids(t).map_err(Error::InitPid)?,
        None => Vec::new(),
    };
    // A relative pid file is relative to where we were started, not to the bundle.
    let pid_file = a
        .pid_file
        .as_ref()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()));
    Ok(CreateOpts {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file,
        console_socket: a.console_socket.clone(),
        pidfd_socket: a.pidfd_socket.clone(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        init_pid,
        foreground,
        no_new_keyring: a.no_new_keyring,
        restore: None,
    })
}

fn dispatch(g: &Global, command: Command) -> Result<i32, Error> {
    match command {
        Command::Create(a) => {
            container::create::create(g, &create_opts(&a, false)?)?;
            Ok(0)
        }
        Command::Run { create, detach, .. } => {
            if detach {
                let created = container::create::create(g, &create_opts(&create, false)?)?;
                let id = created.state.id.clone();
                drop(created);
                // A run that cannot start leaves nothing behind (runc destroys it too).
                if let Err(e) = ops::start(g, &id) {
                    let _ = ops::delete(g, &id, true);
                    return Err(e);
                }
                return Ok(0);
            }
            // Foreground: signals we forward are blocked before the container exists, so a
            // SIGTERM between create and start cannot kill amber and strand the container.
            let sfd = ops::forwarding_signalfd()
                .map_err(|e| Error::io("creating signalfd", std::path::Path::new("signalfd"), e.into()))?;
            let created = container::create::create(g, &create_opts(&create, true)?)?;
            ops::run_foreground(g, created, &sfd)
        }
        Command::Start { id } => ops::start(g, &id).map(|_| 0),
        Command::State { id } => {
            // runc prints the state without a trailing newline.
            print!("{}", ops::state_json(g, &id)?);
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let sig = container::signal::parse(&signal).ok_or(Error::BadSignal(signal))?;
            ops::kill(g, &id, sig, all).map(|_| 0)
        }
        Command::Delete { force, id } => ops::delete(g, &id, force).map(|_| 0),
        Command::List { format, quiet } => {
            print!("{}", list_output(&ops::list(g), &format, quiet));
            Ok(0)
        }
        Command::Pause { id } => ops::pause(g, &id).map(|_| 0),
        Command::Resume { id } => ops::resume(g, &id).map(|_| 0),
        Command::Ps { format, id, ps_args } => ops::ps(g, &id, &format, &ps_args),
        Command::Exec(a) => {
            let opts = container::exec::ExecOpts {
                id: a.id,
                process_file: a.process,
                args: a.command,
                cwd: a.cwd,
                env: a.env,
                user: a.user,
                additional_gids: a.additional_gids,
                caps: a.cap,
                no_new_privs: a.no_new_privs,
                tty: a.tty,
                console_socket: a.console_socket,
                pidfd_socket: a.pidfd_socket,
                pid_file: a.pid_file.map(|p| std::path::absolute(&p).unwrap_or(p)),
                detach: a.detach,
                preserve_fds: a.preserve_fds,
                ignore_paused: a.ignore_paused,
                cgroup: a.cgroup,
            };
            container::exec::exec(g, &opts)
        }
        Command::Update(a) => {
            let opts = container::update::UpdateOpts {
                id: a.id,
                resources: a.resources,
                blkio_weight: a.blkio_weight,
                cpu_period: a.cpu_period,
                cpu_quota: a.cpu_quota,
                cpu_share: a.cpu_share,
                cpu_rt_period: a.cpu_rt_period,
                cpu_rt_runtime: a.cpu_rt_runtime,
                cpuset_cpus: a.cpuset_cpus,
                cpuset_mems: a.cpuset_mems,
                cpu_idle: a.cpu_idle,
                memory: a.memory,
                memory_reservation: a.memory_reservation,
                memory_swap: a.memory_swap,
                kernel_memory: a.kernel_memory,
                kernel_memory_tcp: a.kernel_memory_tcp,
                pids_limit: a.pids_limit,
            };
            container::update::update(g, &opts).map(|_| 0)
        }
        Command::Events { stats, interval, id } => {
            let every = container::events::parse_duration(&interval).ok_or(Error::BadInterval(interval))?;
            container::events::events(g, &id, stats, every).map(|_| 0)
        }
        Command::Checkpoint(a) => {
            use container::checkpoint::refuse_unsupported;
            refuse_unsupported(
                "checkpoint",
                &[
                    ("--tcp-established", a.tcp_established),
                    ("--tcp-skip-in-flight", a.tcp_skip_in_flight),
                    ("--link-remap", a.link_remap),
                    ("--ext-unix-sk", a.ext_unix_sk),
                    ("--shell-job", a.shell_job),
                    ("--lazy-pages", a.lazy_pages),
                    ("--status-fd", a.status_fd.is_some()),
                    ("--page-server", a.page_server.is_some()),
                    ("--pre-dump", a.pre_dump),
                    ("--parent-path", a.parent_path.is_some()),
                    ("--manage-cgroups-mode", a.manage_cgroups_mode.is_some()),
                    ("--empty-ns", !a.empty_ns.is_empty()),
                    ("--auto-dedup", a.auto_dedup),
                ],
            )?;
            let opts = container::checkpoint::CheckpointOpts {
                id: a.id,
                image_path: std::path::absolute(&a.image_path).unwrap_or(a.image_path),
                work_path: a.work_path,
                leave_running: a.leave_running,
            };
            container::checkpoint::checkpoint(g, &opts).map(|_| 0)
        }
        Command::Restore(a) => restore(g, a),
        Command::CheckpointInspect { image_path } => {
            let v = crate::checkpoint::image::inspect_json(&image_path)?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(0)
        }
        Command::Features => {
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut out = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            serde::Serialize::serialize(&features::document(), &mut ser).expect("a JSON value always serialises");
            println!("{}", String::from_utf8_lossy(&out));
            Ok(0)
        }
        Command::Spec { bundle, rootless } => spec_cmd::write(&bundle, rootless).map(|_| 0),
    }
}

fn restore(g: &Global, a: RestoreArgs) -> Result<i32, Error> {
    use container::checkpoint::{refuse_unsupported, work_log};
    refuse_unsupported(
        "restore",
        &[
            ("--tcp-established", a.tcp_established),
            ("--ext-unix-sk", a.ext_unix_sk),
            ("--shell-job", a.shell_job),
            ("--manage-cgroups-mode", a.manage_cgroups_mode.is_some()),
            ("--empty-ns", !a.empty_ns.is_empty()),
            ("--auto-dedup", a.auto_dedup),
            ("--lazy-pages", a.lazy_pages),
            ("--lsm-profile", a.lsm_profile.is_some()),
            ("--lsm-mount-context", a.lsm_mount_context.is_some()),
            ("--parent-path", a.parent_path.is_some()),
            ("--console-socket (restored terminals)", a.console_socket.is_some()),
        ],
    )?;
    crate::checkpoint::require_capabilities("restore")?;
    let image = std::path::absolute(&a.image_path).unwrap_or(a.image_path.clone());
    let opts = CreateOpts {
        id: a.id.clone(),
        bundle: a.bundle,
        pid_file: a.pid_file.map(|p| std::path::absolute(&p).unwrap_or(p)),
        console_socket: None,
        pidfd_socket: None,
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        init_pid: Vec::new(),
        foreground: !a.detach,
        no_new_keyring: a.no_new_keyring,
        restore: Some(image),
    };
    // In the foreground the restored init must become our child once the restorer leaves.
    let sfd = if a.detach {
        None
    } else {
        if !a.no_subreaper {
            nix::sys::prctl::set_child_subreaper(true)
                .map_err(|e| Error::io("becoming a child subreaper", std::path::Path::new("prctl"), e.into()))?;
        }
        Some(
            ops::forwarding_signalfd()
                .map_err(|e| Error::io("creating signalfd", std::path::Path::new("signalfd"), e.into()))?,
        )
    };
    let started = std::time::Instant::now();
    let created = container::create::create(g, &opts);
    let line = match &created {
        Ok(c) => format!(
            "restored {} at pid {} in {:.3}s",
            a.id,
            c.state.init_pid,
            started.elapsed().as_secs_f64()
        ),
        Err(e) => format!("restore of {} failed: {e}", a.id),
    };
    work_log(a.work_path.as_deref(), "restore.log", &line);
    let created = created?;
    match sfd {
        None => Ok(0),
        Some(sfd) => ops::wait_restored(g, created, &sfd),
    }
}

/// The seccomp part of `features`: what this build and the linked libseccomp support.
pub fn features_seccomp() -> serde_json::Value {
    use crate::security::seccomp::{LibSupport, KNOWN_FLAGS};
    let lib = LibSupport::probe();
    serde_json::json!({
        "enabled": true,
        "actions": [
            "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
        ],
        "operators": [
            "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
            "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
        ],
        "archs": [
            "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
            "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
            "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64",
            "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"
        ],
        "knownFlags": KNOWN_FLAGS,
        "supportedFlags": lib.supported_flags(),
    })
}

/// `list`: runc's tabwriter table, `-q` ids, or a JSON array (`null` when empty, as Go encodes a
/// nil slice).
fn list_output(items: &[(container::state::State, container::state::Status)], format: &str, quiet: bool) -> String {
    if quiet {
        return items.iter().map(|(s, _)| format!("{}\n", s.id)).collect();
    }
    if format == "json" {
        if items.is_empty() {
            return "null\n".into();
        }
        // runc's list reports the state directory's owner by name (state shows it empty).
        let v: Vec<_> = items
            .iter()
            .map(|(s, st)| {
                let mut p = s.public(*st);
                p.owner = if s.owner.is_empty() { "root" } else { &s.owner };
                p
            })
            .collect();
        return format!("{}\n", serde_json::to_string(&v).unwrap_or_default());
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "PID".into(),
        "STATUS".into(),
        "BUNDLE".into(),
        "CREATED".into(),
        "OWNER".into(),
    ]];
    for (s, st) in items {
        let p = s.public(*st);
        rows.push(vec![
            s.id.clone(),
            p.pid.to_string(),
            st.to_string(),
            s.bundle.display().to_string(),
            s.created.clone(),
            if s.owner.is_empty() {
                "root".into()
            } else {
                s.owner.clone()
            },
        ]);
    }
    tabwrite(&rows, 12, 3)
}

/// Go's text/tabwriter with minwidth, padding and ' ' padding: every column but the last is
/// padded to max(width + padding, minwidth).
fn tabwrite(rows: &[Vec<String>], minwidth: usize, padding: usize) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols.saturating_sub(1)) {
            widths[i] = widths[i].max((c.chars().count() + padding).max(minwidth));
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                out.push_str(&format!("{c:<w$}", w = widths[i]));
            } else {
                out.push_str(c);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn single_dash_long_flags_become_double() {
        let out = normalize(v(&["amber", "-root", "/x", "run", "-bundle", "/b", "-d", "id"]));
        assert_eq!(out, v(&["amber", "--root", "/x", "run", "--bundle", "/b", "-d", "id"]));
        // unknown names and anything after -- are untouched
        assert_eq!(
            normalize(v(&["amber", "-la", "--", "-bundle"])),
            v(&["amber", "-la", "--", "-bundle"])
        );
    }

    #[test]
    fn flag_forms_and_repeats_parse() {
        let c = Cli::try_parse_from(v(&[
            "amber",
            "--log-format=json",
            "--log",
            "/l",
            "create",
            "--bundle=/b",
            "--pid-file",
            "/p",
            "x",
        ]))
        .unwrap();
        assert_eq!(c.log_format, "json");
        match c.command.unwrap() {
            Command::Create(a) => {
                assert_eq!(a.bundle, PathBuf::from("/b"));
                assert_eq!(a.pid_file, Some(PathBuf::from("/p")));
            }
            other => panic!("{other:?}"),
        }
        // A repeated boolean is accepted.
        assert!(Cli::try_parse_from(v(&["amber", "delete", "--force", "--force", "x"])).is_ok());
        assert!(Cli::try_parse_from(normalize(v(&["amber", "run", "-no-subreaper", "-d", "x"]))).is_ok());
    }

    #[test]
    fn kill_takes_named_and_numeric_signals() {
        for s in ["9", "KILL", "SIGKILL"] {
            let c = Cli::try_parse_from(v(&["amber", "kill", "x", s])).unwrap();
            match c.command.unwrap() {
                Command::Kill { signal, .. } => {
                    assert_eq!(crate::container::signal::parse(&signal), Some(9))
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn tabwriter_matches_go() {
        let rows = vec![v(&["ID", "PID", "OWNER"]), v(&["a-long-container-id", "1", "root"])];
        let out = tabwrite(&rows, 12, 3);
        // Checked against runc 1.1.5's `list` with the same id.
        assert_eq!(
            out,
            "ID                    PID         OWNER\na-long-container-id   1           root\n"
        );
    }

    #[test]
    fn empty_json_list_is_null() {
        assert_eq!(list_output(&[], "json", false), "null\n");
        assert_eq!(list_output(&[], "table", true), "");
    }
}
