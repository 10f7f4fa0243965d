//! Confinement applied by the container init just before execve: seccomp filters built from
//! `linux.seccomp` with libseccomp (see [`seccomp`]: plan at create time, load as the last step).

pub mod exe;
pub mod seccomp;
