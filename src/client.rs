//! The CLI's side of the agent socket (blocking; the shim has its own allocation-free
//! client).

use anyhow::{bail, Context, Result};
use s3shim_protocol::wire::{self, Op};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Sends one request and returns (errno, payload).
pub fn request(socket: &Path, op: Op, rel: &str) -> Result<(i32, String)> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("no agent is running for this cache ({})", socket.display()))?;
    send(&mut s, op, rel)?;
    read_reply(&mut s)
}

pub fn send(s: &mut UnixStream, op: Op, rel: &str) -> Result<()> {
    let mut buf = vec![0u8; wire::REQUEST_MAX];
    let Some(n) = wire::encode_request(op, rel.as_bytes(), &mut buf) else {
        bail!("path too long: {rel}");
    };
    s.write_all(&buf[..n])?;
    Ok(())
}

pub fn read_reply(s: &mut UnixStream) -> Result<(i32, String)> {
    let mut hdr = [0u8; 4];
    s.read_exact(&mut hdr)
        .context("the agent closed the connection")?;
    let len = wire::body_len(hdr);
    if len > wire::RESPONSE_BODY_MAX {
        bail!("oversized reply from the agent");
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let Some((errno, payload)) = wire::decode_response(&body) else {
        bail!("malformed reply from the agent");
    };
    Ok((errno, String::from_utf8_lossy(payload).into_owned()))
}
