//! The counting rules, without a kernel.

use std::collections::BTreeMap;

use super::super::mountinfo::fixtures::HYBRID_THIS_MACHINE;
use super::*;

fn events(text: &str) -> BTreeMap<String, u64> {
    parse_flat_keyed(text).unwrap()
}

#[test]
fn v2_counts_from_memory_events() {
    let before = OomCounts::from_events(&events("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"));
    assert_eq!(before, OomCounts { oom: 1, oom_kill: 1 });
    // One more OOM that killed one process: one event.
    let after = OomCounts::from_events(&events("max 20\noom 2\noom_kill 2\n"));
    assert_eq!(after.since(before), 1);
    // Only "max" moved (reclaim at the limit, nobody killed): nothing.
    let same = OomCounts::from_events(&events("max 30\noom 1\noom_kill 1\n"));
    assert_eq!(same.since(before), 0);
    // A group kill: one OOM, three processes.
    let group = OomCounts::from_events(&events("oom 2\noom_kill 4\noom_group_kill 1\n"));
    assert_eq!(group.since(before), 3);
    // An OOM with nothing to kill still counts.
    let nothing = OomCounts::from_events(&events("oom 3\noom_kill 1\n"));
    assert_eq!(nothing.since(before), 2);
    // Missing keys (old kernels have no oom_group_kill, some no oom_kill): zero.
    assert_eq!(OomCounts::from_events(&events("")), OomCounts::default());
    // Counters never go back; if they seem to (a new cgroup of the same name), no event.
    assert_eq!(OomCounts::default().since(before), 0);
}

#[test]
fn v1_removal_signal_is_not_an_oom() {
    assert_eq!(v1_count(0, false), (0, false));
    assert_eq!(v1_count(2, false), (2, false));
    assert_eq!(v1_count(1, true), (0, true));
    assert_eq!(v1_count(3, true), (2, true));
    assert_eq!(v1_count(0, true), (0, true));
}

#[test]
fn populated() {
    assert!(is_populated(Some(&events("populated 1\nfrozen 0\n"))));
    assert!(!is_populated(Some(&events("populated 0\nfrozen 0\n"))));
    assert!(is_populated(Some(&events("frozen 0\n"))), "no key: assume alive");
    assert!(!is_populated(None), "file gone: cgroup gone");
}

#[test]
fn missing_memory_cgroup_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, None, "ctr").unwrap();
    let err = m.oom_watcher().err().expect("no memory cgroup directory");
    assert!(matches!(err, CgroupError::Read { .. }), "{err}");
    assert!(err.to_string().contains("memory.oom_control"), "{err}");
}
