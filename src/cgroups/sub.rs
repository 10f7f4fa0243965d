//! `exec --cgroup [CONTROLLERS:]PATH`: run an exec'd process in an existing sub-cgroup of the
//! container (runc's format; the controllers part only matters on v1).

use std::path::{Component, Path};

use super::{CgroupError, Manager};

impl Manager {
    /// The container's cgroups with `spec`'s sub-cgroup selected where it applies. The
    /// sub-cgroup must exist and must stay below the container's cgroup.
    pub fn sub_cgroup(&self, spec: &str) -> Result<Manager, CgroupError> {
        let (controllers, rel) = match spec.split_once(':') {
            Some((c, p)) if !c.contains('/') => (Some(c.split(',').collect::<Vec<_>>()), p),
            _ => (None, spec),
        };
        let bad = |reason| CgroupError::InvalidPath {
            path: spec.to_string(),
            reason,
        };
        let rel = Path::new(rel.trim_start_matches('/'));
        if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(bad(
                "exec --cgroup wants a sub-cgroup path below the container's, without '..'",
            ));
        }
        let wanted = |key: &str| match &controllers {
            None => true,
            Some(list) => key.split(',').any(|k| list.contains(&k)),
        };
        let mut st = self.state.clone();
        for (key, dir) in st.v1.iter_mut() {
            if wanted(key) {
                *dir = dir.join(rel);
                if !dir.is_dir() {
                    return Err(bad("no such sub-cgroup (exec --cgroup needs an existing one)"));
                }
            }
        }
        if let Some(dir) = st.v2.as_mut() {
            if controllers.is_none() || self.is_v2() {
                *dir = dir.join(rel);
                if !dir.is_dir() {
                    return Err(bad("no such sub-cgroup (exec --cgroup needs an existing one)"));
                }
            }
        }
        Ok(Manager::from_state(&st))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::{CgroupMode, CgroupState};
    use std::collections::BTreeMap;

    fn manager(root: &Path) -> Manager {
        let mut v1 = BTreeMap::new();
        v1.insert("memory".to_string(), root.join("memory/c"));
        v1.insert("cpu,cpuacct".to_string(), root.join("cpu,cpuacct/c"));
        Manager::from_state(&CgroupState {
            mode: CgroupMode::V1,
            path: "/c".into(),
            v1,
            v2: None,
        })
    }

    #[test]
    fn selects_sub_cgroups() {
        let d = tempfile::tempdir().unwrap();
        for p in ["memory/c/sub", "cpu,cpuacct/c/sub"] {
            std::fs::create_dir_all(d.path().join(p)).unwrap();
        }
        let m = manager(d.path());
        let all = m.sub_cgroup("sub").unwrap().state();
        assert!(all.v1.values().all(|p| p.ends_with("c/sub")));
        let mem = m.sub_cgroup("memory:sub").unwrap().state();
        assert!(mem.v1["memory"].ends_with("c/sub"));
        assert!(mem.v1["cpu,cpuacct"].ends_with("c"));
    }

    #[test]
    fn refuses_escapes_and_missing() {
        let d = tempfile::tempdir().unwrap();
        let m = manager(d.path());
        assert!(m.sub_cgroup("../x").is_err());
        assert!(m.sub_cgroup("").is_err());
        assert!(m.sub_cgroup("nope").is_err());
    }
}
