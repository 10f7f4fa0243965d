//! Survival program for step 16 of CHECKPOINT.md §6: pid namespaces nested two levels deep
//! inside the container (unshare + fork), a child forked after setns into a nested namespace
//! and one that stays there like `nsenter -p`; every process must come back with the same NSpid
//! vector, parent and pid_for_children (see `integration/survival/nested_pidns.c`).

use amber_integration::survival::{survive_with, Opts, Place};
use amber_integration::Bundle;

/// unshare(CLONE_NEWPID) and setns need CAP_SYS_ADMIN, which runc's default set lacks.
fn with_sys_admin(b: &mut Bundle) {
    for set in ["bounding", "effective", "permitted"] {
        b.process()["capabilities"][set]
            .as_array_mut()
            .expect("capability list")
            .push("CAP_SYS_ADMIN".into());
    }
}

fn opts() -> Opts<'static> {
    Opts {
        edit_bundle: Some(&with_sys_admin),
        ..Opts::default()
    }
}

#[test]
fn nested_pidns_as_init() {
    survive_with("nested_pidns", Place::Init, &opts());
}

#[test]
fn nested_pidns_deep() {
    survive_with("nested_pidns", Place::Deep, &opts());
}
