//! Survival programs for step 4 (memory maps) and step 8 (files and descriptors) of
//! CHECKPOINT.md §6, each as the container's init and deep in its tree (see
//! `amber_integration::survival` and `integration/survival/{maps,files}.c`).

use amber_integration::survival::{survive, Place};

#[test]
fn files_as_init() {
    survive("files", Place::Init);
}

#[test]
fn files_deep() {
    survive("files", Place::Deep);
}

#[test]
fn maps_as_init() {
    survive("maps", Place::Init);
}

#[test]
fn maps_deep() {
    survive("maps", Place::Deep);
}
