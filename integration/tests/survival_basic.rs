//! Survival programs, steps 2, 3, 5 (registers) and 7 of CHECKPOINT.md §6: each runs as the
//! container's init and deep in its tree, is checkpointed (kill) and restored, and must find its
//! state intact (see `amber_integration::survival` and `integration/survival/`).

use amber_integration::survival::{survive, Place};

#[test]
fn identity_as_init() {
    survive("identity", Place::Init);
}

#[test]
fn identity_deep() {
    survive("identity", Place::Deep);
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
fn fpu_as_init() {
    survive("fpu", Place::Init);
}

#[test]
fn fpu_deep() {
    survive("fpu", Place::Deep);
}
