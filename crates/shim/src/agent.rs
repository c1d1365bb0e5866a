//! Requests to the agent: one connection per request (AF_UNIX stream, CLOEXEC), one frame
//! out, one response in. Blocking, allocation-free, raw syscalls only. Used on slow paths.

use crate::buf::PATH_MAX;
use core::ffi::c_int;
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use s3shim_protocol::names::is_valid_rel_path;
use s3shim_protocol::wire::{self, Op, RESPONSE_BODY_MAX};

/// Sends `op` for `rel` (relative to the tree, `""` = root) and waits for the answer.
/// `Err(errno)`: the agent's error, or `EIO` when it cannot be reached or misbehaves.
pub fn request(op: Op, rel: &[u8]) -> Result<(), c_int> {
    answer(&send(op, rel)?)
}

/// Sends `op` for `rel` without waiting: the connection to read the answer from with
/// [`answer`] (the caller can do other work while the agent handles it).
pub fn send(op: Op, rel: &[u8]) -> Result<OwnedFd, c_int> {
    if !is_valid_rel_path(rel) {
        return Err(libc::EINVAL);
    }
    let mut frame = [0u8; wire::REQUEST_MAX];
    let n = wire::encode_request(op, rel, &mut frame).ok_or(libc::ENAMETOOLONG)?;
    let sock = crate::config::get().socket().ok_or(libc::EIO)?;
    let fd = connect(sock).map_err(|_| libc::EIO)?;
    send_all(&fd, frame.get(..n).unwrap_or(&[])).map_err(|_| libc::EIO)?;
    Ok(fd)
}

/// Sends `op` for `rel`, waits for the answer and hands its payload to `sink` as it
/// arrives (in pieces of any size).
pub fn request_reading(op: Op, rel: &[u8], sink: impl FnMut(&[u8])) -> Result<(), c_int> {
    answer_reading(&send(op, rel)?, sink)
}

/// Waits for the answer to a request made with [`send`].
pub fn answer(fd: &OwnedFd) -> Result<(), c_int> {
    // The payload (text for humans) is not needed here; it is drained so the agent's
    // write does not fail.
    answer_reading(fd, |_| {})
}

/// [`answer`], handing the payload to `sink`.
fn answer_reading(fd: &OwnedFd, mut sink: impl FnMut(&[u8])) -> Result<(), c_int> {
    let mut header = [0u8; 4];
    recv_exact(fd, &mut header).map_err(|_| libc::EIO)?;
    let body = wire::body_len(header);
    if !(4..=4 + RESPONSE_BODY_MAX).contains(&body) {
        return Err(libc::EIO);
    }
    let mut errno = [0u8; 4];
    recv_exact(fd, &mut errno).map_err(|_| libc::EIO)?;
    let mut left = body - 4;
    let mut buf = [0u8; 512];
    while left > 0 {
        let piece = buf.get_mut(..left.min(512)).unwrap_or(&mut []);
        recv_exact(fd, piece).map_err(|_| libc::EIO)?;
        sink(piece);
        left -= piece.len();
    }
    match i32::from_le_bytes(errno) {
        0 => Ok(()),
        e if e > 0 => Err(e),
        _ => Err(libc::EIO),
    }
}

fn connect(path: &core::ffi::CStr) -> Result<OwnedFd, Errno> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => return Ok(fd),
            Err(Errno::INTR) => continue,
            Err(Errno::ISCONN) => return Ok(fd),
            Err(e) => return Err(e),
        }
    }
}

fn send_all(fd: &OwnedFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // NOSIGNAL: a vanished agent must not kill the caller with SIGPIPE.
        match rustix::net::send(fd, buf, SendFlags::NOSIGNAL) {
            Ok(0) => return Err(Errno::PIPE),
            Ok(n) => buf = buf.get(n..).unwrap_or(&[]),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn recv_exact(fd: &OwnedFd, buf: &mut [u8]) -> Result<(), Errno> {
    let mut got = 0;
    while got < buf.len() {
        let rest = buf.get_mut(got..).unwrap_or(&mut []);
        match rustix::net::recv(fd, rest, RecvFlags::empty()) {
            Ok((0, _)) => return Err(Errno::PIPE),
            Ok((n, _)) => got += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

// The request buffer must hold any path the shim can produce.
const _: () = assert!(wire::PATH_MAX >= PATH_MAX);
