//! Turn linux.cgroupsPath into the path of the container's cgroup inside each hierarchy.
//!
//! Pure string work, so every form (default, absolute, relative, systemd) is unit-tested.

use super::CgroupError;

/// Scope prefix when --systemd-cgroup is used without a cgroupsPath (runc uses "runc").
pub const SYSTEMD_DEFAULT_PREFIX: &str = "amber";
/// Slice when the systemd form leaves it empty, as runc and systemd-run do.
pub const SYSTEMD_DEFAULT_SLICE: &str = "system.slice";

/// Resolve cgroupsPath (cgroupfs form, or runc's "slice:prefix:name" systemd form) into a clean
/// absolute path inside the hierarchy, like "/amber-x" or "/system.slice/amber-x.scope".
///
/// Relative cgroupfs paths are taken relative to the hierarchy root, so the same config always
/// lands in the same place. runc differs here: it joins a relative path onto its own cgroup (v1)
/// or that cgroup's parent (v2), for docker-in-docker without cgroup namespaces. Engines pass
/// absolute paths, so only hand-written configs see the difference.
pub fn resolve(cgroups_path: Option<&str>, id: &str, systemd: bool) -> Result<String, CgroupError> {
    let given = cgroups_path.filter(|p| !p.is_empty());
    let path = if systemd {
        let default;
        let form = match given {
            Some(p) => p,
            None => {
                default = format!("{SYSTEMD_DEFAULT_SLICE}:{SYSTEMD_DEFAULT_PREFIX}:{id}");
                &default
            }
        };
        systemd_to_cgroupfs(form)?
    } else {
        match given {
            // The systemd driver's form without --systemd-cgroup (an engine configured for
            // systemd on a host without it): the cgroupfs path systemd would have used.
            Some(p) if is_systemd_form(p) => systemd_to_cgroupfs(p)?,
            Some(p) => clean(p),
            None => format!("/{id}"),
        }
    };
    if path == "/" {
        // Refused because destroy() removes this directory tree: it must never be a root.
        return Err(CgroupError::InvalidPath {
            path: given.unwrap_or(id).to_string(),
            reason: "it resolves to the root of the cgroup hierarchy",
        });
    }
    Ok(path)
}

/// "slice:prefix:name" (no leading '/', exactly two ':').
pub fn is_systemd_form(p: &str) -> bool {
    !p.starts_with('/') && p.matches(':').count() == 2
}

/// Lexically clean a cgroup path into "/a/b": empty and "." components dropped, ".." clamped at
/// the root so that no cgroupsPath can climb out of the hierarchy (runc's CleanPath does the same).
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Map runc's systemd cgroupsPath "slice:prefix:name" onto the cgroupfs path systemd would give
/// the unit: "system.slice:docker:abc" -> "/system.slice/docker-abc.scope", and nested slices
/// expanded ("a-b.slice:p:n" -> "/a.slice/a-b.slice/p-n.scope").
pub fn systemd_to_cgroupfs(cgroups_path: &str) -> Result<String, CgroupError> {
    let invalid = |reason| CgroupError::InvalidPath {
        path: cgroups_path.to_string(),
        reason,
    };
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(invalid(
            "expected the systemd form \"slice:prefix:name\" (three fields separated by ':')",
        ));
    };
    if name.is_empty() {
        return Err(invalid("the name field of \"slice:prefix:name\" is empty"));
    }
    if prefix.contains('/') || name.contains('/') {
        return Err(invalid("systemd unit names cannot contain '/'"));
    }
    let slice = if slice.is_empty() { SYSTEMD_DEFAULT_SLICE } else { slice };
    let slice_path = expand_slice(slice)?;
    // Like runc: a scope unless the name itself is a slice; the prefix is joined with '-' even
    // when empty so that the unit name matches what runc would have created.
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else {
        format!("{prefix}-{name}.scope")
    };
    Ok(if slice_path == "/" {
        format!("/{unit}")
    } else {
        format!("{slice_path}/{unit}")
    })
}

/// systemd's slice naming: "a-b-c.slice" lives at "/a.slice/a-b.slice/a-b-c.slice", and "-.slice"
/// is the root slice.
pub fn expand_slice(slice: &str) -> Result<String, CgroupError> {
    let invalid = |reason| CgroupError::InvalidSlice {
        slice: slice.to_string(),
        reason,
    };
    let Some(base) = slice.strip_suffix(".slice") else {
        return Err(invalid("a slice name must end in \".slice\""));
    };
    if base.is_empty() {
        return Err(invalid("a slice name cannot be just \".slice\""));
    }
    if slice.contains('/') {
        return Err(invalid("a slice name cannot contain '/'"));
    }
    if base == "-" {
        return Ok("/".to_string());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for comp in base.split('-') {
        if comp.is_empty() {
            return Err(invalid("empty component (leading, trailing or doubled '-')"));
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(comp);
        path.push_str(".slice");
        prefix.push_str(comp);
        prefix.push('-');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_slash_id() {
        assert_eq!(resolve(None, "abc", false).unwrap(), "/abc");
        assert_eq!(resolve(Some(""), "abc", false).unwrap(), "/abc");
    }

    #[test]
    fn absolute_and_relative_are_cleaned_from_the_root() {
        assert_eq!(resolve(Some("/docker/abc"), "x", false).unwrap(), "/docker/abc");
        assert_eq!(resolve(Some("docker/abc/"), "x", false).unwrap(), "/docker/abc");
        assert_eq!(resolve(Some("//a/./b//c"), "x", false).unwrap(), "/a/b/c");
    }

    #[test]
    fn dotdot_cannot_escape_the_hierarchy() {
        assert_eq!(resolve(Some("/../../etc"), "x", false).unwrap(), "/etc");
        assert_eq!(resolve(Some("a/../../b"), "x", false).unwrap(), "/b");
    }

    #[test]
    fn root_is_refused() {
        for p in ["/", "..", "/a/..", "."] {
            let err = resolve(Some(p), "x", false).unwrap_err();
            assert!(err.to_string().contains("root of the cgroup hierarchy"), "{p}: {err}");
        }
    }

    #[test]
    fn systemd_form() {
        let r = |p| resolve(Some(p), "id", true);
        assert_eq!(r("system.slice:docker:abc").unwrap(), "/system.slice/docker-abc.scope");
        assert_eq!(r(":crio:abc").unwrap(), "/system.slice/crio-abc.scope");
        assert_eq!(
            r("machine-libpod_pod_1.slice:libpod:abc").unwrap(),
            "/machine.slice/machine-libpod_pod_1.slice/libpod-abc.scope"
        );
        assert_eq!(r("-.slice:p:n").unwrap(), "/p-n.scope");
        assert_eq!(
            r("user.slice:p:my.slice").unwrap(),
            "/user.slice/my.slice",
            "a name ending in .slice is a slice, not a scope"
        );
        assert_eq!(r("system.slice::abc").unwrap(), "/system.slice/-abc.scope");
    }

    #[test]
    fn systemd_default_when_path_missing() {
        assert_eq!(resolve(None, "abc", true).unwrap(), "/system.slice/amber-abc.scope");
    }

    #[test]
    fn systemd_form_errors() {
        for bad in ["/abs/path", "a:b", "a:b:c:d", "system.slice:p:", "system.slice:p/q:n"] {
            let err = resolve(Some(bad), "id", true).unwrap_err();
            assert!(matches!(err, CgroupError::InvalidPath { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(bad), "error names the path: {err}");
        }
        for bad in [
            "foo:p:n",
            ".slice:p:n",
            "a--b.slice:p:n",
            "-a.slice:p:n",
            "a-.slice:p:n",
        ] {
            let err = resolve(Some(bad), "id", true).unwrap_err();
            assert!(matches!(err, CgroupError::InvalidSlice { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn slice_expansion() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(expand_slice("a-b.slice").unwrap(), "/a.slice/a-b.slice");
        assert_eq!(expand_slice("a-b-c.slice").unwrap(), "/a.slice/a-b.slice/a-b-c.slice");
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
    }
}

#[cfg(test)]
mod systemd_form_without_systemd {
    use super::*;

    #[test]
    fn systemd_form_maps_to_cgroupfs_without_the_flag() {
        assert!(is_systemd_form("machine.slice:libpod:abc"));
        assert!(!is_systemd_form("/machine.slice/x"));
        assert_eq!(
            resolve(Some("machine.slice:libpod:abc"), "abc", false).unwrap(),
            systemd_to_cgroupfs("machine.slice:libpod:abc").unwrap()
        );
        assert_eq!(resolve(Some("/a/b"), "x", false).unwrap(), "/a/b");
        assert_eq!(resolve(None, "x", false).unwrap(), "/x");
    }
}
