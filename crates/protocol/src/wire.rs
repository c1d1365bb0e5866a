//! Frames on the agent socket (Unix stream, one request then one response; a `Session`
//! connection stays open for the life of an `s3shim run`).
//!
//! ```text
//! request:  u32 LE body_len | u8 op | u16 LE path_len | path bytes
//! response: u32 LE body_len | i32 LE errno (0 = done) | payload (UTF-8 text)
//! ```
//! Paths are relative to the tree root (`""` is the root), as checked by
//! [`crate::names::is_valid_rel_path`]. An errno in a response is what the shim returns
//! to its caller when it cannot go on (e.g. `EIO` when S3 could not be reached).

/// Longest relative path carried in a request (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Largest request frame, for stack buffers in the shim.
pub const REQUEST_MAX: usize = 4 + 1 + 2 + PATH_MAX;
/// The byte a `run` sends on its `Session` connection when it ends the session in order
/// (its command done, its changes flushed), before it half-closes the connection; the
/// agent closes its side once it has acted on it. A connection that just closes (a
/// `run` killed) has not said it.
pub const SESSION_BYE: u8 = b'B';
/// Largest response body the agent sends (flush reports are truncated to fit).
pub const RESPONSE_BODY_MAX: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Make a directory's entries local (list it from S3 if it is unlisted).
    ListDir = 1,
    /// Make a file's bytes local (download it if it is a placeholder).
    Fetch = 2,
    /// List every unlisted ancestor of the path, so that whether it exists in the cache
    /// is the truth. Sent when a call on the path fails with `ENOENT`.
    Lookup = 3,
    /// List a whole subtree (entries, not bytes), for walkers whose own directory reads
    /// the shim cannot see (glibc `fts`).
    ListTree = 4,
    /// Make a whole subtree local, bytes included (for programs the shim cannot enter).
    FetchTree = 5,
    /// Wait until every change made so far is in S3. Payload on failure: one
    /// `path\tproblem` line per path that could not be uploaded.
    Flush = 6,
    /// Wait until the given path's changes so far are in S3 (fsync).
    Sync = 7,
    /// Held open by each `s3shim run`; the agent drains and exits after the last closes.
    Session = 8,
    /// A human-readable summary of the agent's state.
    Status = 9,
    /// The caller is about to replace a placeholder's whole content (an open with
    /// `O_TRUNC`, `truncate(0)`): drop the marker without downloading, after any fetch of
    /// the same path in progress, so the fetch cannot write into the new content.
    Discard = 10,
    /// Supervise a program that bypasses libc (issue 15): after the request frame, one
    /// byte carrying a seccomp user-notification listener fd (SCM_RIGHTS). The agent
    /// answers once it serves the listener.
    Supervise = 11,
}

impl Op {
    pub fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::ListDir,
            2 => Op::Fetch,
            3 => Op::Lookup,
            4 => Op::ListTree,
            5 => Op::FetchTree,
            6 => Op::Flush,
            7 => Op::Sync,
            8 => Op::Session,
            9 => Op::Status,
            10 => Op::Discard,
            11 => Op::Supervise,
            _ => return None,
        })
    }
}

/// Encodes a request into `out`; `None` if the path is too long or `out` too small.
pub fn encode_request(op: Op, path: &[u8], out: &mut [u8]) -> Option<usize> {
    if path.len() > PATH_MAX {
        return None;
    }
    let body_len = 1 + 2 + path.len();
    let total = 4 + body_len;
    let out = out.get_mut(..total)?;
    out[..4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[4] = op as u8;
    out[5..7].copy_from_slice(&(path.len() as u16).to_le_bytes());
    out[7..].copy_from_slice(path);
    Some(total)
}

/// Reads the body length from a frame header.
pub fn body_len(header: [u8; 4]) -> usize {
    u32::from_le_bytes(header) as usize
}

/// Decodes a request body (the bytes after the length field).
pub fn decode_request(body: &[u8]) -> Option<(Op, &[u8])> {
    let (&op, rest) = body.split_first()?;
    let op = Op::from_u8(op)?;
    let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let path = rest.get(2..)?;
    (path.len() == len).then_some((op, path))
}

/// Encodes a response header (length + errno) for a payload of `payload_len` bytes.
pub fn response_header(errno: i32, payload_len: usize) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&((4 + payload_len) as u32).to_le_bytes());
    h[4..].copy_from_slice(&errno.to_le_bytes());
    h
}

/// Splits a response body into errno and payload.
pub fn decode_response(body: &[u8]) -> Option<(i32, &[u8])> {
    let errno = i32::from_le_bytes(body.get(..4)?.try_into().ok()?);
    Some((errno, &body[4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let mut buf = [0u8; REQUEST_MAX];
        let n = encode_request(Op::Fetch, "src/ü x.rs".as_bytes(), &mut buf).unwrap();
        let len = body_len(buf[..4].try_into().unwrap());
        assert_eq!(len + 4, n);
        let (op, path) = decode_request(&buf[4..n]).unwrap();
        assert_eq!(op, Op::Fetch);
        assert_eq!(path, "src/ü x.rs".as_bytes());
    }

    #[test]
    fn rejects_bad_requests() {
        let long = [b'a'; PATH_MAX + 1];
        let mut buf = [0u8; REQUEST_MAX + 8];
        assert_eq!(encode_request(Op::ListDir, &long, &mut buf), None);
        assert_eq!(decode_request(&[42, 0, 0]), None, "unknown op");
        assert_eq!(decode_request(&[1, 5, 0, b'a']), None, "length mismatch");
        assert_eq!(decode_request(&[]), None);
    }

    #[test]
    fn response_round_trip() {
        let payload = b"a.txt\tAccessDenied\n";
        let h = response_header(5, payload.len());
        let mut body = h[4..].to_vec();
        body.extend_from_slice(payload);
        assert_eq!(body_len(h[..4].try_into().unwrap()), body.len());
        assert_eq!(decode_response(&body), Some((5, &payload[..])));
    }
}
