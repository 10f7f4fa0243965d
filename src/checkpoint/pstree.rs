//! Pure planning of how the restored tree is cloned so that every task, zombie, session and
//! process group comes back (CHECKPOINT.md §2.1, CRIU's `prepare_pstree_ids()`, adapted to
//! clone3): who clones whom, before or after whose setsid(), and which helpers must exist for
//! a while because a session or process group outlived its leader.
//!
//! Rules, for a task or zombie T whose real parent is P:
//! - T leads its session (sid == pid): P clones it, T calls setsid().
//! - T is in P's session: P clones it after P's own setsid().
//! - T is in the session P was born into and P leads its own (P forked T, then setsid()): P
//!   clones T *before* its setsid() (CRIU's `born_sid`, one level).
//! - T's session leader is dead: a helper with the leader's pid is cloned by P, calls setsid()
//!   and clones T with CLONE_PARENT (so T's parent is still P), then exits and P reaps it before
//!   the tree resumes. A zombie leader does the same before it dies.
//! - T's session leader L is alive elsewhere and T was reparented to P, the reaper L's orphans
//!   go to (L itself or its nearest subreaper ancestor, else the namespace's init): a helper with
//!   a free pid, cloned by L, clones T and exits, so that T is reparented to P again (CRIU's
//!   helper for a live leader). Subreapers are set in the seeds before anything is cloned.
//! - Process groups: every task and zombie joins its group itself with setpgid(), retrying until
//!   the leader has made it; after cloning its own children when the leader is one of its
//!   descendants. A group whose leader is dead gets a helper with the leader's pid, cloned by
//!   the group's first live member.
//!
//! Anything else (a session led by a task alive elsewhere whose orphans would not go to P, a
//! dead session whose members have different parents, a group outside the container's pid
//! namespace that is not inherited) is refused at dump, naming the pid and the object.

use std::collections::{BTreeMap, BTreeSet};

use super::image::{Tree, TreeEntry};
use super::CheckpointError;

/// What a restored process does once cloned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A live task: seeded, then transplanted.
    Task,
    /// Dies with this wait status (exit code << 8, or the killing signal) and stays unreaped.
    Zombie { status: i32 },
    /// Exists only to lead a session or group while the tree is built; reaped by its parent.
    Helper,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub pid: i32,
    pub kind: NodeKind,
    /// clone3 set_tid, innermost level first.
    pub set_tid: Vec<i32>,
    /// Call setsid() first.
    pub setsid: bool,
    /// setpgid(0, pgid) unless already in it; None: keep the inherited group.
    pub pgid: Option<i32>,
    /// Join the group only after cloning the children (its leader is a descendant).
    pub pgid_after_children: bool,
    /// Cloned before setsid() (they stay in the session this node was born into).
    pub before_setsid: Vec<i32>,
    /// Cloned after setsid().
    pub children: Vec<i32>,
    /// Clone `children` with CLONE_PARENT (a helper or zombie leader cloning for its parent).
    pub clone_parent: bool,
    /// Children (helpers, zombies, incl. CLONE_PARENT ones) that must have exited before this
    /// node reports ready.
    pub await_exit: Vec<i32>,
    /// Helper children the restorer reaps (injected wait4) once every seed is ready.
    pub reap: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreePlan {
    pub root: i32,
    pub nodes: BTreeMap<i32, Node>,
}

impl TreePlan {
    /// Nodes of one kind, by pid.
    pub fn helpers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().filter(|n| n.kind == NodeKind::Helper)
    }
}

fn refuse(pid: i32, what: String) -> CheckpointError {
    CheckpointError::Unsupported { pid, what }
}

struct Entry<'a> {
    e: &'a TreeEntry,
    zombie: Option<i32>,
}

/// Plan the restore of `tree` (tasks and zombies; `subreapers`: the tasks that are child
/// subreapers). Called at dump (to refuse early) and at restore (to act). Errors name the
/// dump-time host pid.
pub fn plan(tree: &Tree, subreapers: &BTreeSet<i32>) -> Result<TreePlan, CheckpointError> {
    let mut p = Planner::new(tree, subreapers)?;
    p.sessions()?;
    p.dead_session_helpers()?;
    p.await_zombies();
    p.groups()?;
    p.dead_group_helpers()?;
    p.live_session_helpers();
    p.join_after_children();
    Ok(p.finish())
}

/// The planning state: every task and zombie, the nodes being built, and the leaders that need
/// helpers.
struct Planner<'a> {
    tree: &'a Tree,
    subreapers: &'a BTreeSet<i32>,
    all: BTreeMap<i32, Entry<'a>>,
    nodes: BTreeMap<i32, Node>,
    /// The session each node is in right after its clone.
    born: BTreeMap<i32, i32>,
    /// Dead session leader -> (helper's parent, members it clones).
    dead_sessions: BTreeMap<i32, (i32, Vec<i32>)>,
    /// (live session leader, reaper) -> members a helper under the leader clones.
    live_sessions: BTreeMap<(i32, i32), Vec<i32>>,
    /// Dead group leader -> members.
    dead_groups: BTreeMap<i32, Vec<i32>>,
}

fn node(pid: i32, kind: NodeKind, set_tid: Vec<i32>) -> Node {
    Node {
        pid,
        kind,
        set_tid,
        setsid: false,
        pgid: None,
        pgid_after_children: false,
        before_setsid: vec![],
        children: vec![],
        clone_parent: false,
        await_exit: vec![],
        reap: vec![],
    }
}

impl<'a> Planner<'a> {
    /// One node per task and zombie, each with a live parent (but the root).
    fn new(tree: &'a Tree, subreapers: &'a BTreeSet<i32>) -> Result<Self, CheckpointError> {
        let mut all: BTreeMap<i32, Entry> = BTreeMap::new();
        for t in &tree.tasks {
            all.insert(t.pid, Entry { e: t, zombie: None });
        }
        for z in &tree.zombies {
            let entry = Entry {
                e: &z.entry,
                zombie: Some(z.status),
            };
            all.insert(z.entry.pid, entry);
        }
        let root = all
            .get(&tree.root)
            .ok_or_else(|| CheckpointError::Corrupt(format!("the tree's root {} is not in it", tree.root)))?;
        let born = BTreeMap::from([(tree.root, root.e.sid)]);
        let mut nodes = BTreeMap::new();
        for (pid, x) in &all {
            if *pid == tree.root && x.zombie.is_some() {
                return Err(refuse(x.e.host_pid, "the root task is a zombie".into()));
            }
            let live_parent = all.get(&x.e.ppid).is_some_and(|p| p.zombie.is_none());
            if *pid != tree.root && !live_parent {
                let what = format!("its parent {} is not a live task of the dump", x.e.ppid);
                return Err(refuse(x.e.host_pid, what));
            }
            let kind = match x.zombie {
                Some(status) => NodeKind::Zombie { status },
                None => NodeKind::Task,
            };
            let mut n = node(*pid, kind, x.e.levels().into_iter().rev().collect());
            n.setsid = x.e.sid == *pid;
            nodes.insert(*pid, n);
        }
        Ok(Planner {
            tree,
            subreapers,
            all,
            nodes,
            born,
            dead_sessions: BTreeMap::new(),
            live_sessions: BTreeMap::new(),
            dead_groups: BTreeMap::new(),
        })
    }

    fn host(&self, pid: i32) -> i32 {
        self.all.get(&pid).map(|x| x.e.host_pid).unwrap_or(pid)
    }

    /// Lives below the container's pid namespace: a helper, which gets only a container-level
    /// pid, cannot be cloned there.
    fn nested(&self, pid: i32) -> bool {
        self.all.get(&pid).is_some_and(|x| x.e.levels().len() > 1)
    }

    /// Where the orphans of `start`'s children go: `start` or its nearest subreaper ancestor,
    /// or the init of the container's pid namespace (the root when it is pid 1).
    fn reaper_of(&self, start: i32) -> Option<i32> {
        let mut cur = start;
        for _ in 0..self.all.len() {
            if self.subreapers.contains(&cur) || (cur == self.tree.root && cur == 1) {
                return Some(cur);
            }
            if cur == self.tree.root {
                return None;
            }
            cur = self.all.get(&cur)?.e.ppid;
        }
        None
    }

    /// Top-down, for each child: who clones it, and when relative to its parent's setsid().
    fn sessions(&mut self) -> Result<(), CheckpointError> {
        let mut queue = vec![self.tree.root];
        while let Some(p) = queue.pop() {
            let kids: Vec<i32> = (self.all.values())
                .filter(|c| c.e.ppid == p && c.e.pid != self.tree.root)
                .map(|c| c.e.pid)
                .collect();
            for c in kids {
                self.place_in_session(p, c)?;
                queue.push(c);
            }
        }
        Ok(())
    }

    fn place_in_session(&mut self, p: i32, c: i32) -> Result<(), CheckpointError> {
        let (pe, ce) = (self.all[&p].e, self.all[&c].e);
        let sid = ce.sid;
        let leader = self.all.get(&sid);
        if sid == c || sid == pe.sid {
            self.nodes.get_mut(&p).unwrap().children.push(c);
            self.born.insert(c, pe.sid);
        } else if pe.sid == p && sid == self.born[&p] {
            self.nodes.get_mut(&p).unwrap().before_setsid.push(c);
            self.born.insert(c, sid);
        } else if sid != 0 && leader.is_none() {
            let (parent, members) = self.dead_sessions.entry(sid).or_insert((p, vec![]));
            if *parent != p {
                let what = format!(
                    "session {sid} (its leader is gone) has members with different parents ({} and {p}); not restorable yet",
                    *parent
                );
                return Err(refuse(ce.host_pid, what));
            }
            members.push(c);
            self.born.insert(c, sid);
        } else if leader.is_some_and(|z| z.zombie.is_some() && z.e.ppid == p && z.e.sid == sid) {
            let z = self.nodes.get_mut(&sid).unwrap();
            z.children.push(c);
            z.clone_parent = true;
            self.born.insert(c, sid);
        } else if leader.is_some_and(|l| l.zombie.is_none() && l.e.sid == sid)
            && !self.nested(sid)
            && !self.nested(c)
            && self.reaper_of(sid) == Some(p)
        {
            self.live_sessions.entry((sid, p)).or_default().push(c);
            self.born.insert(c, sid);
        } else {
            let what = format!(
                "session {sid} is neither its own, its parent {p}'s (session {}), one the parent left by setsid(), nor one whose leader's orphans go to {p}; not restorable yet",
                pe.sid
            );
            return Err(refuse(ce.host_pid, what));
        }
        Ok(())
    }

    /// `parent` clones the helper, waits for it to die and the restorer reaps it.
    fn add_helper(&mut self, parent: i32, helper: Node) {
        let h = helper.pid;
        self.nodes.insert(h, helper);
        let p = self.nodes.get_mut(&parent).unwrap();
        p.children.push(h);
        p.await_exit.push(h);
        p.reap.push(h);
    }

    /// A helper with a dead session leader's pid: setsid(), then it clones the members with
    /// CLONE_PARENT.
    fn dead_session_helpers(&mut self) -> Result<(), CheckpointError> {
        for (sid, (parent, members)) in self.dead_sessions.clone() {
            if self.nested(parent) {
                let what = format!("session {sid} lost its leader inside a nested pid namespace; not restorable yet");
                return Err(refuse(self.host(members[0]), what));
            }
            let mut h = node(sid, NodeKind::Helper, vec![sid]);
            h.setsid = true;
            h.children = members;
            h.clone_parent = true;
            self.add_helper(parent, h);
        }
        Ok(())
    }

    /// Every zombie is awaited (never reaped) by its real parent, whoever cloned it.
    fn await_zombies(&mut self) {
        let zombies: Vec<(i32, i32)> = (self.all.iter())
            .filter(|(_, x)| x.zombie.is_some())
            .map(|(pid, x)| (*pid, x.e.ppid))
            .collect();
        for (pid, ppid) in zombies {
            self.nodes.get_mut(&ppid).unwrap().await_exit.push(pid);
        }
    }

    /// The group each task and zombie joins, and the groups whose leader is gone.
    fn groups(&mut self) -> Result<(), CheckpointError> {
        for (pid, x) in &self.all {
            let g = x.e.pgid;
            if x.e.sid == *pid {
                if g != *pid {
                    let what = format!("pid {pid} leads session {pid} but is in group {g}");
                    return Err(CheckpointError::Corrupt(what));
                }
                continue; // setsid() made the group
            }
            if g == 0 {
                // Led from outside the container's pid namespace: only inheritable.
                let inherited = *pid == self.tree.root || self.all.get(&x.e.ppid).is_some_and(|p| p.e.pgid == 0);
                if !inherited {
                    let what = "its process group is led from outside the container's pid namespace and not inherited";
                    return Err(refuse(x.e.host_pid, what.into()));
                }
                continue;
            }
            if *pid == self.tree.root && g != *pid {
                continue; // the root's group, when not its own, is the restorer's
            }
            if !self.all.contains_key(&g) && !self.dead_sessions.contains_key(&g) {
                self.dead_groups.entry(g).or_default().push(*pid);
            }
            // setpgid() takes the group as the task sees it: the innermost level of its vector
            // (0: led from outside its own pid namespace, so only inherited).
            let inner = x.e.nspgid.last().copied().unwrap_or(g);
            if inner != 0 {
                self.nodes.get_mut(pid).unwrap().pgid = Some(inner);
            }
        }
        Ok(())
    }

    /// A helper with a dead group leader's pid, cloned by the first live member (which is in
    /// the group's session): setpgid(0, 0), then it dies.
    fn dead_group_helpers(&mut self) -> Result<(), CheckpointError> {
        for (g, members) in self.dead_groups.clone() {
            let Some(&m) = members.iter().find(|m| self.all[*m].zombie.is_none()) else {
                let what = format!("process group {g} has only zombies left; not restorable yet");
                return Err(refuse(self.host(members[0]), what));
            };
            if self.nested(m) {
                let what =
                    format!("process group {g} lost its leader inside a nested pid namespace; not restorable yet");
                return Err(refuse(self.host(m), what));
            }
            let mut h = node(g, NodeKind::Helper, vec![g]);
            h.pgid = Some(g);
            self.add_helper(m, h);
        }
        Ok(())
    }

    /// A helper with a free pid, cloned by a live session leader: it clones the members and
    /// dies, leaving them to the leader's reaper. Its pid is taken from the top of the default
    /// pid range, far from where the kernel hands out new pids (in the restorer's own pid
    /// namespace the next one after the tree is likely taken by the time of the restore).
    fn live_session_helpers(&mut self) {
        const TOP: i32 = 32767;
        let max = self.nodes.keys().max().copied().unwrap_or(1);
        let free: Vec<i32> = if max < TOP - self.live_sessions.len() as i32 {
            (max + 1..=TOP).rev().take(self.live_sessions.len()).collect()
        } else {
            (max + 1..).take(self.live_sessions.len()).collect()
        };
        for (h, ((leader, _), members)) in free.into_iter().zip(self.live_sessions.clone()) {
            let mut n = node(h, NodeKind::Helper, vec![h]);
            n.children = members;
            self.add_helper(leader, n);
        }
    }

    /// A node joins its group after cloning its children when the leader is one of its
    /// descendants (through the cloning links), before otherwise.
    fn join_after_children(&mut self) {
        let cloner: BTreeMap<i32, i32> = (self.nodes.values())
            .flat_map(|n| n.before_setsid.iter().chain(&n.children).map(move |c| (*c, n.pid)))
            .collect();
        let descends = |mut d: i32, a: i32| {
            let mut seen = BTreeSet::new();
            while let Some(&up) = cloner.get(&d) {
                if up == a {
                    return true;
                }
                if !seen.insert(up) {
                    break;
                }
                d = up;
            }
            false
        };
        let group_of = |n: &Node| self.all.get(&n.pid).map(|x| x.e.pgid).or(n.pgid);
        let after: Vec<i32> = (self.nodes.values())
            .filter(|n| n.pgid.is_some())
            .filter(|n| group_of(n).is_some_and(|g| g != n.pid && descends(g, n.pid)))
            .map(|n| n.pid)
            .collect();
        for pid in after {
            self.nodes.get_mut(&pid).unwrap().pgid_after_children = true;
        }
    }

    /// Deterministic order: helpers first (leaders before members), then by pid.
    fn finish(mut self) -> TreePlan {
        let helpers: BTreeSet<i32> = (self.nodes.values())
            .filter(|n| n.kind == NodeKind::Helper)
            .map(|n| n.pid)
            .collect();
        for n in self.nodes.values_mut() {
            n.children.sort_by_key(|c| (!helpers.contains(c), *c));
            n.before_setsid.sort();
            n.await_exit.sort();
            n.await_exit.dedup();
        }
        TreePlan {
            root: self.tree.root,
            nodes: self.nodes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::image::ZombieEntry;
    use super::*;

    fn e(pid: i32, ppid: i32, pgid: i32, sid: i32) -> TreeEntry {
        TreeEntry {
            pid,
            ppid,
            pgid,
            sid,
            host_pid: 1000 + pid,
            ..Default::default()
        }
    }

    fn tree(tasks: Vec<TreeEntry>, zombies: Vec<(TreeEntry, i32)>) -> Tree {
        Tree {
            root: 1,
            host_levels: 1,
            tasks,
            zombies: zombies
                .into_iter()
                .map(|(entry, status)| ZombieEntry { entry, status })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn plain_tree_and_own_groups() {
        let t = tree(vec![e(1, 0, 1, 1), e(5, 1, 5, 1), e(6, 5, 5, 1), e(7, 1, 1, 1)], vec![]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        assert_eq!(p.nodes[&1].children, vec![5, 7]);
        assert!(p.nodes[&1].setsid);
        assert_eq!(p.nodes[&5].pgid, Some(5));
        assert!(!p.nodes[&5].pgid_after_children);
        assert_eq!(p.nodes[&6].pgid, Some(5));
        assert_eq!(p.nodes[&7].pgid, Some(1));
        assert_eq!(p.helpers().count(), 0);
    }

    #[test]
    fn zombies_are_cloned_by_their_parent_and_awaited() {
        let t = tree(vec![e(1, 0, 1, 1)], vec![(e(3, 1, 1, 1), 7 << 8)]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        assert_eq!(p.nodes[&1].children, vec![3]);
        assert_eq!(p.nodes[&3].kind, NodeKind::Zombie { status: 7 << 8 });
        assert_eq!(p.nodes[&1].await_exit, vec![3], "the parent waits for it to die");
        assert!(p.nodes[&1].reap.is_empty(), "and never reaps it");
    }

    #[test]
    fn dead_session_leader_gets_a_helper_that_clones_for_the_parent() {
        // 4 did setsid, forked 8 and 9 (8 made its own group), and exited: 8 and 9 are init's.
        let t = tree(vec![e(1, 0, 1, 1), e(8, 1, 8, 4), e(9, 1, 4, 4)], vec![]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        let h = &p.nodes[&4];
        assert_eq!(h.kind, NodeKind::Helper);
        assert!(h.setsid && h.clone_parent);
        assert_eq!(h.children, vec![8, 9]);
        assert_eq!(p.nodes[&1].children, vec![4]);
        assert_eq!(p.nodes[&1].reap, vec![4]);
        assert_eq!(p.nodes[&9].pgid, Some(4));
        assert_eq!(p.nodes[&8].pgid, Some(8));
    }

    #[test]
    fn dead_group_leader_gets_a_helper_under_the_first_member() {
        // Group 6's leader exited; 7 and 9 remain in it (children of 1).
        let t = tree(vec![e(1, 0, 1, 1), e(7, 1, 6, 1), e(9, 1, 6, 1)], vec![]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        assert_eq!(p.nodes[&6].kind, NodeKind::Helper);
        assert_eq!(p.nodes[&6].pgid, Some(6));
        assert_eq!(p.nodes[&7].children, vec![6]);
        assert_eq!(p.nodes[&7].reap, vec![6]);
        assert!(p.nodes[&7].pgid_after_children, "its leader is its own child");
        assert!(!p.nodes[&9].pgid_after_children);
    }

    #[test]
    fn born_sid_one_level_is_cloned_before_setsid() {
        // 5 (in session 1) forked 6, then called setsid().
        let t = tree(vec![e(1, 0, 1, 1), e(5, 1, 5, 5), e(6, 5, 1, 1)], vec![]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        assert_eq!(p.nodes[&5].before_setsid, vec![6]);
        assert!(p.nodes[&5].children.is_empty());
    }

    #[test]
    fn zombie_session_leader_clones_its_members() {
        let t = tree(vec![e(1, 0, 1, 1), e(8, 1, 4, 4)], vec![(e(4, 1, 4, 4), 0)]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        assert_eq!(p.nodes[&4].children, vec![8]);
        assert!(p.nodes[&4].clone_parent);
        assert_eq!(p.nodes[&1].children, vec![4]);
        assert_eq!(p.nodes[&1].await_exit, vec![4]);
    }

    #[test]
    fn live_session_leader_gets_a_helper_whose_orphans_go_to_the_reaper() {
        // 1 (init) -> 4 (setsid) -> 5 -> 6; 5 exited: 6 went to 1, still in session 4.
        let t = tree(vec![e(1, 0, 1, 1), e(4, 1, 4, 4), e(6, 1, 4, 4)], vec![]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        // Its pid: free, from the top of the default range.
        let h = &p.nodes[&32767];
        assert_eq!(h.kind, NodeKind::Helper);
        assert!(!h.setsid && !h.clone_parent);
        assert_eq!(h.children, vec![6]);
        let leader = &p.nodes[&4];
        assert_eq!(
            (leader.children.clone(), leader.reap.clone()),
            (vec![32767], vec![32767])
        );
        // With 4 a subreaper its orphans would go to 4, not 1: refused.
        let err = plan(&t, &BTreeSet::from([4])).unwrap_err().to_string();
        assert!(err.contains("pid 1006") && err.contains("session 4"), "{err}");
        // A subreaper between: 1 -> 2 (subreaper) -> 4 (setsid) ... 6 went to 2.
        let t = tree(vec![e(1, 0, 1, 1), e(2, 1, 1, 1), e(4, 2, 4, 4), e(6, 2, 4, 4)], vec![]);
        let p = plan(&t, &BTreeSet::from([2])).unwrap();
        assert_eq!(p.nodes[&32767].children, vec![6]);
        assert!(
            plan(&t, &BTreeSet::new()).is_err(),
            "without the subreaper 6 would go to 1"
        );
    }

    #[test]
    fn refusals_name_the_pid_and_the_object() {
        // Session 5 led by a live task whose orphans go to 1, not to 6's parent 2.
        let t = tree(vec![e(1, 0, 1, 1), e(2, 1, 1, 1), e(5, 1, 5, 5), e(6, 2, 5, 5)], vec![]);
        let err = plan(&t, &BTreeSet::new()).unwrap_err().to_string();
        assert!(err.contains("pid 1006") && err.contains("session 5"), "{err}");
        // A dead session whose members have different parents.
        let t = tree(vec![e(1, 0, 1, 1), e(2, 1, 1, 1), e(8, 1, 4, 4), e(9, 2, 4, 4)], vec![]);
        let err = plan(&t, &BTreeSet::new()).unwrap_err().to_string();
        assert!(err.contains("session 4") && err.contains("different parents"), "{err}");
        // An outside group that is not inherited.
        let t = tree(vec![e(1, 0, 1, 1), e(2, 1, 0, 1)], vec![]);
        let err = plan(&t, &BTreeSet::new()).unwrap_err().to_string();
        assert!(err.contains("pid 1002") && err.contains("outside"), "{err}");
    }
}
