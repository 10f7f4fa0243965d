//! Survival programs, steps 2, 3, 5 (registers) and 7 of CHECKPOINT.md §6: each runs as the
//! container's init and deep in its tree, is checkpointed (kill) and restored, and must find its
//! state intact (see `amber_integration::survival` and `integration/survival/`); the `_clone`
//! variants checkpoint with --leave-running (the original must pass) and restore the image into a
//! fresh container (which must pass too), the `_twice` ones checkpoint and restore twice.

use amber_integration::survival::{survive, survive_with, Opts, Place, Variant};
use amber_integration::Bundle;
use std::path::Path;

#[test]
fn identity_as_init() {
    survive("identity", Place::Init);
}

#[test]
fn identity_deep() {
    survive("identity", Place::Deep);
}

fn clone() -> Opts<'static> {
    Opts {
        variant: Variant::LeaveRunningClone,
        ..Opts::default()
    }
}

fn twice() -> Opts<'static> {
    Opts {
        variant: Variant::KillTwice,
        ..Opts::default()
    }
}

#[test]
fn identity_deep_twice() {
    survive_with("identity", Place::Deep, &twice());
}

#[test]
fn identity_as_init_clone() {
    survive_with("identity", Place::Init, &clone());
}

#[test]
fn identity_deep_clone() {
    survive_with("identity", Place::Deep, &clone());
}

#[test]
fn vdso_as_init() {
    survive("vdso", Place::Init);
}

#[test]
fn vdso_deep() {
    survive("vdso", Place::Deep);
}

#[test]
fn vdso_deep_clone() {
    survive_with("vdso", Place::Deep, &clone());
}

#[test]
fn vdso_as_init_twice() {
    survive_with("vdso", Place::Init, &twice());
}

#[test]
fn fpu_as_init() {
    survive("fpu", Place::Init);
}

#[test]
fn fpu_deep() {
    survive("fpu", Place::Deep);
}

#[test]
fn fpu_deep_clone() {
    survive_with("fpu", Place::Deep, &clone());
}

#[test]
fn fpu_as_init_twice() {
    survive_with("fpu", Place::Init, &twice());
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

#[test]
fn glibc_as_init() {
    survive_with("glibc", Place::Init, &glibc_opts("wait"));
}

#[test]
fn glibc_deep() {
    survive_with("glibc", Place::Deep, &glibc_opts("wait"));
}

#[test]
fn glibc_deep_clone() {
    survive_with(
        "glibc",
        Place::Deep,
        &Opts {
            variant: Variant::LeaveRunningClone,
            ..glibc_opts("wait")
        },
    );
}

#[test]
fn glibc_as_init_twice() {
    survive_with(
        "glibc",
        Place::Init,
        &Opts {
            variant: Variant::KillTwice,
            ..glibc_opts("wait")
        },
    );
}

/// The checkpoint lands in the middle of the coreutils loop.
#[test]
fn glibc_busy_deep() {
    survive_with("glibc", Place::Deep, &glibc_opts("busy"));
}
