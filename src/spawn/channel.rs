//! The parent ⇄ child channel: a SOCK_SEQPACKET socketpair carrying one JSON message per packet,
//! so message boundaries survive and a dead peer reads as end-of-file instead of a hang.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::de::DeserializeOwned;
use serde::Serialize;

const MAX_MESSAGE: usize = 64 * 1024;

pub struct Channel {
    fd: OwnedFd,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("creating the sync socketpair: {0}")]
    Create(#[source] nix::Error),
    #[error("sending on the sync socket: {0}")]
    Send(#[source] io::Error),
    #[error("receiving on the sync socket: {0}")]
    Recv(#[source] io::Error),
    #[error("the other side closed the sync socket before {expected}")]
    Closed { expected: &'static str },
    #[error("malformed message on the sync socket: {0}")]
    Decode(#[source] serde_json::Error),
}

/// Two connected ends: `.0` for the parent, `.1` for the child. Both are close-on-exec, so the
/// child's end never reaches the container's process.
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(ChannelError::Create)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send<T: Serialize>(&self, msg: &T) -> Result<(), ChannelError> {
        let bytes = serde_json::to_vec(msg).map_err(ChannelError::Decode)?;
        let n = nix::unistd::write(self.fd.as_fd(), &bytes).map_err(|e| ChannelError::Send(io::Error::from(e)))?;
        if n != bytes.len() {
            return Err(ChannelError::Send(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write on a seqpacket socket",
            )));
        }
        Ok(())
    }

    /// Receive one message; `expected` names what we wait for, for the error when the peer died.
    pub fn recv<T: DeserializeOwned>(&self, expected: &'static str) -> Result<T, ChannelError> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = loop {
            match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&self.fd), &mut buf) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ChannelError::Recv(io::Error::from(e))),
            }
        };
        if n == 0 {
            return Err(ChannelError::Closed { expected });
        }
        serde_json::from_slice(&buf[..n]).map_err(ChannelError::Decode)
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
