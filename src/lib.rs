//! amber: an OCI container runtime library; the `amber` binary is a thin wrapper over
//! `cli::main`. amber is (a drop-in for runc) whose signature is pid-exact
//! checkpoint/restore without CRIU. See shared/docs/ARCHITECTURE.md for the module map.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cgroups;
pub mod checkpoint;
pub mod cli;
pub mod container;
pub mod init;
pub mod logging;
pub mod rootfs;
pub mod security;
pub mod spawn;
pub mod spec;
#[allow(unsafe_code)]
pub mod sys;
