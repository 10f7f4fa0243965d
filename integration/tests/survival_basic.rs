//! Survival programs, steps 2, 3, 5 (registers) and 7 of CHECKPOINT.md §6: each runs as the
//! container's init and deep in its tree, is checkpointed (kill) and restored, and must find its
//! state intact (see `amber_integration::survival` and `integration/survival/`); the `_clone`
//! variants checkpoint with --leave-running (the original must pass) and restore the image into a
//! fresh container (which must pass too), the `_twice` ones checkpoint and restore twice.

use amber_integration::survival::Opts;
use amber_integration::{survival_tests, Bundle};
use std::path::Path;

survival_tests! {
    identity_as_init: "identity", Init;
    identity_deep: "identity", Deep;
    identity_deep_twice: "identity", Deep + KillTwice;
    identity_as_init_clone: "identity", Init + LeaveRunningClone;
    identity_deep_clone: "identity", Deep + LeaveRunningClone;

    vdso_as_init: "vdso", Init;
    vdso_deep: "vdso", Deep;
    vdso_deep_clone: "vdso", Deep + LeaveRunningClone;
    vdso_as_init_twice: "vdso", Init + KillTwice;

    fpu_as_init: "fpu", Init;
    fpu_deep: "fpu", Deep;
    fpu_deep_clone: "fpu", Deep + LeaveRunningClone;
    fpu_as_init_twice: "fpu", Init + KillTwice;

    glibc_as_init: "glibc", Init, glibc_opts("wait");
    glibc_deep: "glibc", Deep, glibc_opts("wait");
    glibc_deep_clone: "glibc", Deep + LeaveRunningClone, glibc_opts("wait");
    glibc_as_init_twice: "glibc", Init + KillTwice, glibc_opts("wait");
    /// The checkpoint lands in the middle of the coreutils loop.
    glibc_busy_deep: "glibc", Deep, glibc_opts("busy");
}

/// Debian's bash and coreutils from the host's /usr (dynamic: ld.so, libc, locale, rseq).
fn host_usr(b: &mut Bundle) {
    b.bind(Path::new("/usr"), "/usr", &["ro"]);
}

fn glibc_opts(mode: &str) -> Opts<'static> {
    Opts {
        interpreter: Some(vec!["/usr/bin/bash".into()]),
        args: vec![mode.into()],
        edit_bundle: Some(&host_usr),
        tree_changes: mode == "busy",
        ..Opts::default()
    }
}
