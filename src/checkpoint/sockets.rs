//! TCP and UDP sockets that are not connections (`inet`, `create_inet`: listeners without
//! waiting connections, unbound or bound TCP sockets, UDP sockets bound or connected with
//! nothing queued; address, port, backlog and the usual options) and
//! unix sockets (CHECKPOINT.md §1.6, step 13 in part): socket pairs and connections made with
//! connect/accept (also with one end closed) with the data queued in each direction, listening
//! and bound sockets without pending connections or data, unbound ones, datagram sockets
//! connected to a bound one. Pending connections, peers outside the
//! dump, descriptors in flight that no process holds any more, connections between two named
//! sockets and other families are refused by name. Descriptors in flight (SCM_RIGHTS) that
//! some task also holds are sent again with their message, as the same open file description.
//!
//! Dump: sock_diag (NETLINK_SOCK_DIAG, UNIX_DIAG) run inside the task's network namespace gives
//! type, state, name, peer, pending connections and shutdown state by inode; the queues are
//! read without being consumed, from a duplicate of the socket (pidfd_getfd) with MSG_PEEK and
//! SO_PEEK_OFF (put back as it was). Restore (`Made`, in the restorer): listeners and bound
//! sockets first; a connection is made again with connect + accept on its listener (or a
//! stand-in bound to the same name when the listener is gone), so both ends keep their names;
//! queued data is sent again from the other end, in order, message by message.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use nix::sys::socket::{self as ns, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

use super::image::{self, Fd, FdKind, Image};
use super::{CheckpointError, Result};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const UDIAG_SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10; // name, vfs, peer, icons, rqlen
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
pub const TCP_LISTEN: u8 = 10;
/// Queued data above this is refused (it is held in memory while dumping).
const QUEUE_MAX: usize = 16 << 20;

/// What sock_diag says about one unix socket.
#[derive(Debug, Clone, Default)]
pub struct Diag {
    pub sock_type: i32,
    pub state: u8,
    /// sun_path as bound: "" none, "@..." abstract.
    pub name: String,
    pub peer: u64,
    pub pending: usize,
    pub rqueue: u32,
    pub wqueue: u32,
    pub shutdown: u8,
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> CheckpointError {
    move |e| CheckpointError::Sys(what, e.into())
}

/// Every unix socket of the network namespace `pid` lives in, by inode.
pub fn diag(pid: i32) -> Result<BTreeMap<u64, Diag>> {
    let own = File::open("/proc/thread-self/ns/net").map_err(|e| CheckpointError::Sys("opening our netns", e))?;
    let theirs =
        File::open(format!("/proc/{pid}/ns/net")).map_err(|e| CheckpointError::Sys("opening the task's netns", e))?;
    nix::sched::setns(theirs.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(sys("setns(net)"))?;
    let sock = ns::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    );
    nix::sched::setns(own.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(sys("setns(net) back"))?;
    let sock = sock.map_err(sys("socket(NETLINK_SOCK_DIAG)"))?;
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(0x1u16 | 0x300).to_ne_bytes()); // NLM_F_REQUEST | NLM_F_DUMP
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // all states
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&UDIAG_SHOW.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]);
    ns::sendto(sock.as_raw_fd(), &req, &ns::NetlinkAddr::new(0, 0), MsgFlags::empty())
        .map_err(sys("sock_diag request"))?;
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = ns::recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(sys("sock_diag reply"))?;
        if n == 0 {
            return Ok(out);
        }
        let mut off = 0;
        while off + 16 <= n {
            let u32_at = |b: &[u8], o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap_or_default());
            let u16_at = |b: &[u8], o: usize| u16::from_ne_bytes(b[o..o + 2].try_into().unwrap_or_default());
            let len = u32_at(&buf, off) as usize;
            let kind = u16_at(&buf, off + 4);
            if len < 16 || off + len > n {
                return Err(CheckpointError::Sys(
                    "sock_diag reply",
                    std::io::ErrorKind::InvalidData.into(),
                ));
            }
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno = -(u32_at(&buf, off + 16) as i32);
                    return Err(CheckpointError::Sys(
                        "sock_diag",
                        std::io::Error::from_raw_os_error(errno),
                    ));
                }
                _ => {}
            }
            let msg = &buf[off + 16..off + len];
            if msg.len() >= 16 {
                let mut d = Diag {
                    sock_type: msg[1] as i32,
                    state: msg[2],
                    ..Default::default()
                };
                let ino = u32_at(msg, 4) as u64;
                let mut a = 16;
                while a + 4 <= msg.len() {
                    let alen = u16_at(msg, a) as usize;
                    let atype = u16_at(msg, a + 2) & 0x3fff;
                    if alen < 4 || a + alen > msg.len() {
                        break;
                    }
                    let p = &msg[a + 4..a + alen];
                    match atype {
                        UNIX_DIAG_NAME => d.name = decode_name(p),
                        UNIX_DIAG_PEER if p.len() >= 4 => d.peer = u32_at(p, 0) as u64,
                        UNIX_DIAG_ICONS => d.pending = p.len() / 4,
                        UNIX_DIAG_RQLEN if p.len() >= 8 => {
                            d.rqueue = u32_at(p, 0);
                            d.wqueue = u32_at(p, 4);
                        }
                        UNIX_DIAG_SHUTDOWN if !p.is_empty() => d.shutdown = p[0],
                        _ => {}
                    }
                    a += alen.div_ceil(4) * 4;
                }
                out.insert(ino, d);
            }
            off += len.div_ceil(4) * 4;
        }
    }
}

/// sun_path bytes: "@name" for the abstract namespace, the path otherwise.
fn decode_name(p: &[u8]) -> String {
    match p.split_first() {
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
        _ => {
            let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
            String::from_utf8_lossy(&p[..end]).into_owned()
        }
    }
}

/// One queued message and the descriptors in flight with it (copies installed in the dumper).
pub type Queued = (Vec<u8>, Vec<OwnedFd>);

/// The receive queue of socket `fd` of `pid`, message by message, left in place (a stream's
/// bytes in one message, split where descriptors ride along).
pub fn read_queue(pid: i32, fd: i32, stream: bool) -> Result<Vec<Queued>> {
    let pidfd = crate::sys::pidfd_open(pid).map_err(|e| CheckpointError::Sys("pidfd_open", e))?;
    let sock = crate::sys::pidfd_getfd(pidfd.as_fd(), fd).map_err(|e| CheckpointError::Sys("pidfd_getfd", e))?;
    let refuse = |what: String| CheckpointError::Unsupported {
        pid,
        what: format!("fd {fd}: {what}"),
    };
    let old = crate::sys::getsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF)
        .map_err(|e| CheckpointError::Sys("SO_PEEK_OFF", e))?;
    crate::sys::setsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)
        .map_err(|e| CheckpointError::Sys("SO_PEEK_OFF", e))?;
    let result = (|| {
        let mut out: Vec<Queued> = Vec::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let mut cmsg = nix::cmsg_space!([RawFdAlias; 16]);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
            let msg = match ns::recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
                Ok(m) => m,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => return Err(CheckpointError::Sys("peeking a unix socket queue", e.into())),
            };
            let mut fds: Vec<OwnedFd> = Vec::new();
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ns::ControlMessageOwned::ScmRights(got) = c {
                        fds.extend(got.into_iter().map(crate::sys::own_received_fd));
                    }
                }
            }
            let n = msg.bytes;
            if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
                return Err(refuse("more than 16 descriptors in flight with one message".into()));
            }
            if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                return Err(refuse("a queued datagram larger than 256 KiB".into()));
            }
            if n == 0 {
                break;
            }
            total += n;
            if total > QUEUE_MAX {
                return Err(refuse(format!("more than {QUEUE_MAX} bytes queued in a unix socket")));
            }
            match (stream, out.last_mut()) {
                (true, Some(last)) if last.1.is_empty() && fds.is_empty() => last.0.extend_from_slice(&buf[..n]),
                _ => out.push((buf[..n].to_vec(), fds)),
            }
        }
        Ok(out)
    })();
    let _ = crate::sys::setsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF, old);
    result
}

type RawFdAlias = std::os::fd::RawFd;

/// SO_PASSCRED of socket `fd` of `pid`.
pub fn passcred(pid: i32, fd: i32) -> Result<bool> {
    let pidfd = crate::sys::pidfd_open(pid).map_err(|e| CheckpointError::Sys("pidfd_open", e))?;
    let sock = crate::sys::pidfd_getfd(pidfd.as_fd(), fd).map_err(|e| CheckpointError::Sys("pidfd_getfd", e))?;
    Ok(
        crate::sys::getsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED)
            .map_err(|e| CheckpointError::Sys("SO_PASSCRED", e))?
            != 0,
    )
}

/// Mode, owner and group of the socket file of a path name (None: abstract or gone).
pub fn name_file(name: &str) -> Option<(u32, u32, u32)> {
    if !name.starts_with('/') {
        return None;
    }
    let m = std::fs::symlink_metadata(name).ok()?;
    Some((m.mode() & 0o7777, m.uid(), m.gid()))
}

fn restore_err(pid: i32, f: &Fd, msg: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Restore(format!("pid {pid} fd {}: {msg}", f.fd))
}

fn sock_type(t: i32) -> Option<SockType> {
    match t {
        libc::SOCK_STREAM => Some(SockType::Stream),
        libc::SOCK_DGRAM => Some(SockType::Datagram),
        libc::SOCK_SEQPACKET => Some(SockType::SeqPacket),
        _ => None,
    }
}

fn unix_addr(name: &str) -> std::result::Result<ns::UnixAddr, nix::Error> {
    match name.strip_prefix('@') {
        Some(abs) => ns::UnixAddr::new_abstract(abs.as_bytes()),
        None => ns::UnixAddr::new(name),
    }
}

/// Sockets the restorer made ahead of their turn: listeners and bound sockets first (others
/// connect to them), the second end of each pair or connection by inode.
pub struct Made {
    ends: BTreeMap<u64, OwnedFd>,
    /// (sender, receiving socket's inode, the receiver's descriptor in the image, pid): queues
    /// to send again once every description exists.
    fills: Vec<(OwnedFd, u64, Fd, i32)>,
    /// Ends to shut down (RCV 1 | SEND 2) after the fills.
    shutdowns: Vec<(OwnedFd, u8)>,
    /// A duplicate of each listening or bound socket, by name, to connect and accept through.
    named: BTreeMap<String, OwnedFd>,
}

impl Made {
    /// Make every listening and bound, unconnected socket of the image.
    pub fn prepare(image: &Image) -> Result<Made> {
        let mut made = Made {
            ends: BTreeMap::new(),
            fills: Vec::new(),
            shutdowns: Vec::new(),
            named: BTreeMap::new(),
        };
        for (pid, t) in &image.tasks {
            for f in &t.fds {
                let FdKind::Unix { ino, name, peer, .. } = &f.kind else {
                    continue;
                };
                if *peer != 0 || name.is_empty() || made.ends.contains_key(ino) {
                    continue;
                }
                let sock = standalone(*pid, f)?;
                let dup = sock.try_clone().map_err(|e| restore_err(*pid, f, e))?;
                made.named.insert(name.clone(), dup);
                made.ends.insert(*ino, sock);
            }
        }
        Ok(made)
    }

    /// Send every queue again, with its descriptors in flight (`descs`: description -> the
    /// restorer's descriptor of it), then apply the shutdown states.
    pub fn finish(self, image: &Image, descs: &BTreeMap<u32, std::os::fd::RawFd>) -> Result<()> {
        for (sender, ino, f, pid) in &self.fills {
            fill(image, *pid, f, sender, *ino, descs)?;
        }
        for (end, sd) in &self.shutdowns {
            if sd & 2 != 0 {
                let _ = ns::shutdown(end.as_raw_fd(), ns::Shutdown::Write);
            }
            if sd & 1 != 0 {
                let _ = ns::shutdown(end.as_raw_fd(), ns::Shutdown::Read);
            }
        }
        Ok(())
    }

    /// The socket for descriptor `f` of `pid`.
    pub fn create(&mut self, image: &Image, pid: i32, f: &Fd) -> Result<OwnedFd> {
        let FdKind::Unix {
            ino,
            sock_type: ty,
            name,
            peer,
            shutdown,
            passcred,
            ..
        } = &f.kind
        else {
            return Err(restore_err(pid, f, "not a unix socket"));
        };
        let st = sock_type(*ty).ok_or_else(|| restore_err(pid, f, format!("socket type {ty}")))?;
        let sock = if let Some(end) = self.ends.remove(ino) {
            end
        } else if *peer == 0 {
            standalone(pid, f)?
        } else {
            let other = find(image, *peer);
            let other_name = other.map_or("", |o| name_of(&o.kind));
            let (mine, theirs) = if name.is_empty() && other_name.is_empty() {
                ns::socketpair(AddressFamily::Unix, st, None, SockFlag::SOCK_CLOEXEC)
                    .map_err(|e| restore_err(pid, f, format!("socketpair: {e}")))?
            } else if st == SockType::Datagram {
                // Connected to a bound datagram socket (made by `prepare`); nothing queued.
                let s = ns::socket(AddressFamily::Unix, st, SockFlag::SOCK_CLOEXEC, None)
                    .map_err(|e| restore_err(pid, f, format!("socket: {e}")))?;
                let addr = unix_addr(other_name).map_err(|e| restore_err(pid, f, format!("{other_name}: {e}")))?;
                ns::connect(s.as_raw_fd(), &addr)
                    .map_err(|e| restore_err(pid, f, format!("connect {other_name}: {e}")))?;
                s.try_clone().map(|t| (s, t)).map_err(|e| restore_err(pid, f, e))?
            } else {
                let server = if name.is_empty() { other_name } else { name.as_str() };
                let (client, accepted) = self.connect(pid, f, st, server)?;
                if name.is_empty() {
                    (client, accepted)
                } else {
                    (accepted, client)
                }
            };
            if st != SockType::Datagram || (name.is_empty() && other_name.is_empty()) {
                // Each end's queue was sent by the other end; the descriptors in flight with
                // it may not exist yet: filled (then shut down) by `finish`.
                let dup = |s: &OwnedFd| s.try_clone().map_err(|e| restore_err(pid, f, e));
                self.fills.push((dup(&theirs)?, *ino, f.clone(), pid));
                self.shutdowns.push((dup(&mine)?, *shutdown));
                if let Some(o) = other {
                    self.fills.push((dup(&mine)?, *peer, o.clone(), pid));
                    self.shutdowns.push((dup(&theirs)?, shutdown_of(&o.kind)));
                    self.ends.insert(*peer, theirs);
                } else {
                    // The other end was closed before the dump: it goes after the fill.
                    self.shutdowns.push((theirs, 3));
                }
            }
            mine
        };
        if *passcred {
            crate::sys::setsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1)
                .map_err(|e| restore_err(pid, f, format!("SO_PASSCRED: {e}")))?;
        }
        Ok(sock)
    }

    /// A connection to the listener named `server` as connect + accept make it (so both ends
    /// have the names they had): through the restored listener, or a stand-in when that one
    /// was closed before the dump. Returns (client, accepted).
    fn connect(&mut self, pid: i32, f: &Fd, st: SockType, server: &str) -> Result<(OwnedFd, OwnedFd)> {
        let addr = unix_addr(server).map_err(|e| restore_err(pid, f, format!("{server}: {e}")))?;
        let standin;
        let listener = match self.named.get(server) {
            Some(l) => l,
            None => {
                let s = ns::socket(AddressFamily::Unix, st, SockFlag::SOCK_CLOEXEC, None)
                    .map_err(|e| restore_err(pid, f, format!("socket: {e}")))?;
                remove_stale(server);
                ns::bind(s.as_raw_fd(), &addr).map_err(|e| restore_err(pid, f, format!("bind {server}: {e}")))?;
                ns::listen(&s, ns::Backlog::new(1).unwrap_or(ns::Backlog::MAXCONN))
                    .map_err(|e| restore_err(pid, f, format!("listen {server}: {e}")))?;
                standin = s;
                &standin
            }
        };
        let client = ns::socket(AddressFamily::Unix, st, SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| restore_err(pid, f, format!("socket: {e}")))?;
        ns::connect(client.as_raw_fd(), &addr).map_err(|e| restore_err(pid, f, format!("connect {server}: {e}")))?;
        let accepted = ns::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC)
            .map_err(|e| restore_err(pid, f, format!("accept on {server}: {e}")))?;
        Ok((client, crate::sys::own_fresh_fd(accepted)))
    }
}

/// The socket file of a path name left by the dumped socket: bind would find the name taken.
fn remove_stale(name: &str) {
    if name.starts_with('/')
        && std::fs::symlink_metadata(name).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
    {
        let _ = std::fs::remove_file(name);
    }
}

/// A listening, bound or unbound socket that is not connected.
fn standalone(pid: i32, f: &Fd) -> Result<OwnedFd> {
    let FdKind::Unix {
        sock_type: ty,
        name,
        backlog,
        file,
        ..
    } = &f.kind
    else {
        return Err(restore_err(pid, f, "not a unix socket"));
    };
    let st = sock_type(*ty).ok_or_else(|| restore_err(pid, f, format!("socket type {ty}")))?;
    let s = ns::socket(AddressFamily::Unix, st, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| restore_err(pid, f, format!("socket: {e}")))?;
    if !name.is_empty() {
        remove_stale(name);
        let addr = unix_addr(name).map_err(|e| restore_err(pid, f, format!("address {name}: {e}")))?;
        ns::bind(s.as_raw_fd(), &addr).map_err(|e| restore_err(pid, f, format!("bind {name}: {e}")))?;
        if let Some((mode, uid, gid)) = file {
            let _ = std::fs::set_permissions(name, std::fs::Permissions::from_mode(*mode));
            let _ = std::os::unix::fs::chown(name, Some(*uid), Some(*gid));
        }
    }
    if let Some(b) = backlog {
        let backlog = ns::Backlog::new(*b as i32).unwrap_or(ns::Backlog::MAXCONN);
        ns::listen(&s, backlog).map_err(|e| restore_err(pid, f, format!("listen {name}: {e}")))?;
    }
    Ok(s)
}

fn name_of(kind: &FdKind) -> &str {
    match kind {
        FdKind::Unix { name, .. } => name,
        _ => "",
    }
}

fn find(image: &Image, ino: u64) -> Option<&Fd> {
    image
        .tasks
        .values()
        .flat_map(|t| &t.fds)
        .find(|f| matches!(f.kind, FdKind::Unix { ino: i, .. } if i == ino))
}

fn shutdown_of(kind: &FdKind) -> u8 {
    match kind {
        FdKind::Unix { shutdown, .. } => *shutdown,
        _ => 0,
    }
}

/// Send socket `ino`'s dumped queue from `sender` (its peer), message by message.
/// Send socket `ino`'s dumped queue (as `f`, a descriptor of it, describes it) from `sender`
/// (its peer), message by message, with the descriptors in flight.
fn fill(
    image: &Image,
    pid: i32,
    f: &Fd,
    sender: &OwnedFd,
    ino: u64,
    descs: &BTreeMap<u32, std::os::fd::RawFd>,
) -> Result<()> {
    let FdKind::Unix { queue, queue_fds, .. } = &f.kind else {
        return Ok(());
    };
    let total: u64 = queue.iter().map(|&l| l as u64).sum();
    if total == 0 {
        return Ok(());
    }
    let path = image.object_path(&image::socket_data(ino), total)?;
    let mut data = Vec::new();
    File::open(&path)
        .and_then(|mut d| d.read_to_end(&mut data))
        .map_err(|source| CheckpointError::Image { path, source })?;
    let mut off = 0usize;
    for (i, &len) in queue.iter().enumerate() {
        let msg = &data[off..off + len as usize];
        let mut sent = 0;
        if let Some(with) = queue_fds.get(i).filter(|d| !d.is_empty()) {
            let raws: Vec<std::os::fd::RawFd> =
                with.iter()
                    .map(|d| {
                        descs.get(d).copied().ok_or_else(|| {
                            restore_err(pid, f, format!("no description {d} for a descriptor in flight"))
                        })
                    })
                    .collect::<Result<_>>()?;
            let iov = [std::io::IoSlice::new(msg)];
            let cmsg = [ns::ControlMessage::ScmRights(&raws)];
            sent = ns::sendmsg::<()>(sender.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_DONTWAIT, None).map_err(|e| {
                restore_err(
                    pid,
                    f,
                    format!("refilling socket {ino} with descriptors in flight: {e}"),
                )
            })?;
        }
        while sent < msg.len() {
            let n = ns::send(sender.as_raw_fd(), &msg[sent..], MsgFlags::MSG_DONTWAIT)
                .map_err(|e| restore_err(pid, f, format!("refilling socket {ino} ({total} bytes): {e}")))?;
            sent += n;
        }
        off += len as usize;
    }
    Ok(())
}

/// The socket options carried for TCP and UDP sockets: (name, level, option).
const INET_OPTIONS: [(&str, i32, i32); 6] = [
    ("SO_REUSEADDR", libc::SOL_SOCKET, libc::SO_REUSEADDR),
    ("SO_REUSEPORT", libc::SOL_SOCKET, libc::SO_REUSEPORT),
    ("SO_KEEPALIVE", libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    ("SO_BROADCAST", libc::SOL_SOCKET, libc::SO_BROADCAST),
    ("IPV6_V6ONLY", libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
    ("TCP_NODELAY", libc::IPPROTO_TCP, libc::TCP_NODELAY),
];

/// A TCP or UDP socket of `pid`'s descriptor `fd`, from a duplicate of it: what can be made
/// again (Err: why not).
pub fn inet(pid: i32, fd: i32, ino: u64) -> std::result::Result<FdKind, String> {
    let pidfd = crate::sys::pidfd_open(pid).map_err(|e| format!("pidfd_open: {e}"))?;
    let sock = crate::sys::pidfd_getfd(pidfd.as_fd(), fd).map_err(|e| format!("pidfd_getfd: {e}"))?;
    let opt = |level, name| crate::sys::getsockopt_int(sock.as_fd(), level, name);
    let family = opt(libc::SOL_SOCKET, libc::SO_DOMAIN).map_err(|e| format!("SO_DOMAIN: {e}"))?;
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return Err(format!(
            "sockets of family {family} are not supported yet (unix, TCP and UDP are)"
        ));
    }
    let ty = opt(libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| format!("SO_TYPE: {e}"))?;
    let proto = opt(libc::SOL_SOCKET, libc::SO_PROTOCOL).map_err(|e| format!("SO_PROTOCOL: {e}"))?;
    let raw = sock.as_raw_fd();
    let local = crate::sys::inet_name(raw, false)
        .map_err(|e| format!("getsockname: {e}"))?
        .ok_or("no local address")?;
    let peer = crate::sys::inet_name(raw, true).map_err(|e| format!("getpeername: {e}"))?;
    let mut backlog = None;
    let proto_name = match (ty, proto) {
        (libc::SOCK_STREAM, libc::IPPROTO_TCP) => {
            // struct tcp_info: state at 0; for a listener tcpi_unacked (24) is the accept
            // queue and tcpi_sacked (28) the backlog.
            let info = crate::sys::getsockopt_bytes(sock.as_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, 32)
                .map_err(|e| format!("TCP_INFO: {e}"))?;
            let word = |o: usize| u32::from_ne_bytes(info[o..o + 4].try_into().unwrap_or_default());
            match info[0] {
                10 if word(24) > 0 => return Err(format!("{} connections wait to be accepted", word(24))),
                10 => backlog = Some(word(28)),
                7 => {}
                state => {
                    return Err(format!(
                        "a TCP connection (state {state}) is not supported yet (it needs TCP repair)"
                    ))
                }
            }
            "tcp"
        }
        (libc::SOCK_DGRAM, libc::IPPROTO_UDP) => {
            if crate::sys::fionread(sock.as_fd()).unwrap_or(0) > 0 {
                return Err("datagrams queued on a UDP socket are not supported yet".into());
            }
            "udp"
        }
        _ => {
            return Err(format!(
                "socket type {ty} protocol {proto} is not supported yet (TCP and UDP are)"
            ))
        }
    };
    let options = INET_OPTIONS
        .iter()
        .filter(|(_, level, name)| opt(*level, *name).unwrap_or(0) != 0)
        .map(|(n, ..)| n.to_string())
        .collect();
    Ok(FdKind::Inet {
        ino,
        family,
        proto: proto_name.into(),
        local: local.to_string(),
        peer: peer.map(|p| p.to_string()),
        backlog,
        options,
    })
}

/// A TCP or UDP socket as `inet` described it: options, bound (with SO_REUSEADDR while
/// binding: connections of the dumped socket may linger in TIME_WAIT), listening or connected.
pub fn create_inet(pid: i32, f: &Fd) -> Result<OwnedFd> {
    let FdKind::Inet {
        family,
        proto,
        local,
        peer,
        backlog,
        options,
        ..
    } = &f.kind
    else {
        return Err(restore_err(pid, f, "not a TCP/UDP socket"));
    };
    let fam = if *family == libc::AF_INET6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let (ty, pr) = match proto.as_str() {
        "tcp" => (SockType::Stream, SockProtocol::Tcp),
        _ => (SockType::Datagram, SockProtocol::Udp),
    };
    let s = ns::socket(fam, ty, SockFlag::SOCK_CLOEXEC, pr).map_err(|e| restore_err(pid, f, format!("socket: {e}")))?;
    for (name, level, opt) in INET_OPTIONS {
        let on = options.iter().any(|o| o == name);
        if on || name == "SO_REUSEADDR" || (name == "IPV6_V6ONLY" && *family == libc::AF_INET6) {
            let v = if name == "SO_REUSEADDR" { 1 } else { on as i32 };
            crate::sys::setsockopt_int(s.as_fd(), level, opt, v)
                .map_err(|e| restore_err(pid, f, format!("{name}: {e}")))?;
        }
    }
    let addr: std::net::SocketAddr = local
        .parse()
        .map_err(|e| restore_err(pid, f, format!("address {local}: {e}")))?;
    if addr.port() != 0 || !addr.ip().is_unspecified() {
        crate::sys::inet_bind_or_connect(s.as_raw_fd(), &addr, false)
            .map_err(|e| restore_err(pid, f, format!("bind {local}: {e}")))?;
    }
    let reuse = options.iter().any(|o| o == "SO_REUSEADDR") as i32;
    crate::sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, reuse)
        .map_err(|e| restore_err(pid, f, format!("SO_REUSEADDR: {e}")))?;
    if let Some(b) = backlog {
        let backlog = ns::Backlog::new(*b as i32).unwrap_or(ns::Backlog::MAXCONN);
        ns::listen(&s, backlog).map_err(|e| restore_err(pid, f, format!("listen {local}: {e}")))?;
    }
    if let Some(p) = peer {
        let to: std::net::SocketAddr = p
            .parse()
            .map_err(|e| restore_err(pid, f, format!("address {p}: {e}")))?;
        crate::sys::inet_bind_or_connect(s.as_raw_fd(), &to, true)
            .map_err(|e| restore_err(pid, f, format!("connect {p}: {e}")))?;
    }
    Ok(s)
}
