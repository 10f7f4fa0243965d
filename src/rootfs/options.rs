//! Mount options from config.json as data: the same table runc and crun keep, turned into
//! flags to set, flags to clear, propagation changes and the filesystem-specific data string.

use nix::mount::MsFlags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub clear: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive_bind: bool,
    /// `tmpcopyup` (runc, podman): fill a new tmpfs with what the directory held before.
    pub tmpcopyup: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            bind: false,
            recursive_bind: false,
            tmpcopyup: false,
        }
    }
}

/// (name, clear?, flag)
const FLAG_TABLE: &[(&str, bool, MsFlags)] = &[
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("suid", true, MsFlags::MS_NOSUID),
    ("nodev", false, MsFlags::MS_NODEV),
    ("dev", true, MsFlags::MS_NODEV),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("defaults", false, MsFlags::empty()),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("atime", true, MsFlags::MS_NOATIME),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
];

const PROPAGATION_TABLE: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    PROPAGATION_TABLE.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

pub fn parse(options: &[String]) -> MountOptions {
    let mut out = MountOptions::default();
    for opt in options {
        let o = opt.as_str();
        if let Some((_, clear, flag)) = FLAG_TABLE.iter().find(|(n, _, _)| *n == o) {
            if *clear {
                out.flags.remove(*flag);
                out.clear.insert(*flag);
            } else {
                out.flags.insert(*flag);
                out.clear.remove(*flag);
            }
        } else if let Some(p) = propagation_flag(o) {
            out.propagation.push(p);
        } else if o == "bind" {
            out.bind = true;
        } else if o == "tmpcopyup" {
            out.tmpcopyup = true;
        } else if o == "rbind" {
            out.bind = true;
            out.recursive_bind = true;
        } else {
            // Filesystem-specific (mode=755, size=65536k, newinstance, gid=5, ...).
            out.data.push(opt.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_runc_default_dev() {
        let o = parse(&s(&["nosuid", "strictatime", "mode=755", "size=65536k"]));
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, s(&["mode=755", "size=65536k"]));
        assert!(!o.bind);
    }

    #[test]
    fn tmpcopyup_is_ours_not_the_kernels() {
        let o = parse(&s(&["size=1m", "rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]));
        assert!(o.tmpcopyup);
        assert_eq!(o.data, s(&["size=1m"]));
    }

    #[test]
    fn later_options_win() {
        let o = parse(&s(&["ro", "rw"]));
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.clear.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn bind_and_propagation() {
        let o = parse(&s(&["rbind", "ro", "rprivate"]));
        assert!(o.bind && o.recursive_bind);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(o.flags.contains(MsFlags::MS_RDONLY));
    }
}
