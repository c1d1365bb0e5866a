//! Counting the HTTP/1.1 requests that go through the proxy by the kind S3 bills them as,
//! read from the client's byte stream as it passes (the bytes are forwarded unchanged):
//! each request head is parsed, its body skipped by Content-Length or chunked framing.

use std::sync::atomic::{AtomicU64, Ordering};

/// Request kinds, in the order [`Counts::report`] prints them.
pub const KINDS: [&str; 8] = [
    "GET", "HEAD", "LIST", "PUT", "COPY", "POST", "DELETE", "OTHER",
];

#[derive(Default)]
pub struct Counts {
    by_kind: [AtomicU64; 8],
    /// Connections whose stream could not be followed (counts may be short).
    lost: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl Counts {
    fn add(&self, kind: usize) {
        self.by_kind[kind].fetch_add(1, Ordering::Relaxed);
    }

    pub fn bytes(&self, up: bool, n: usize) {
        let c = if up { &self.bytes_up } else { &self.bytes_down };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `KIND count` lines, then `lost`, `bytes_up`, `bytes_down`.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for (i, k) in KINDS.iter().enumerate() {
            out += &format!("{k} {}\n", self.by_kind[i].load(Ordering::Relaxed));
        }
        out += &format!("lost {}\n", self.lost.load(Ordering::Relaxed));
        out += &format!("bytes_up {}\n", self.bytes_up.load(Ordering::Relaxed));
        out += &format!("bytes_down {}\n", self.bytes_down.load(Ordering::Relaxed));
        out
    }
}

/// The kind of a request from its method, target and headers: a GET of a bucket (no key)
/// or with `list-type` lists; a PUT with `x-amz-copy-source` copies; a POST `?delete`
/// deletes (free, as DELETE is).
fn kind_of(method: &str, target: &str, copy: bool) -> usize {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path
        .split_once("://")
        .map_or(path, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    let no_key = path.trim_matches('/').split('/').count() <= 1;
    let has = |q: &str| {
        query
            .split('&')
            .any(|p| p == q || p.starts_with(&format!("{q}=")))
    };
    let name = match method {
        "GET" if has("list-type") || (no_key && !has("location")) => "LIST",
        "GET" => "GET",
        "HEAD" => "HEAD",
        "PUT" if copy => "COPY",
        "PUT" => "PUT",
        "POST" if has("delete") => "DELETE",
        "POST" => "POST",
        "DELETE" => "DELETE",
        _ => "OTHER",
    };
    KINDS.iter().position(|k| *k == name).unwrap()
}

enum State {
    /// Gathering a request head.
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Body(u64),
    /// A chunked body: gathering a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Skipping chunk data and its CRLF.
    ChunkData(u64),
    /// After the last chunk: gathering trailer lines until an empty one.
    Trailer(Vec<u8>),
    /// Not followable any more.
    Lost,
}

/// Follows one connection's client-to-server bytes.
pub struct RequestParser {
    state: State,
}

impl Default for RequestParser {
    fn default() -> Self {
        RequestParser {
            state: State::Head(Vec::new()),
        }
    }
}

const HEAD_MAX: usize = 64 << 10;

impl RequestParser {
    pub fn feed(&mut self, mut data: &[u8], counts: &Counts) {
        while !data.is_empty() {
            match &mut self.state {
                State::Lost => return,
                State::Body(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::ChunkData(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::ChunkSize(Vec::new());
                    }
                }
                State::Head(buf) | State::ChunkSize(buf) | State::Trailer(buf) => {
                    let start = buf.len().saturating_sub(3);
                    buf.extend_from_slice(data);
                    let (used, next) = match &self.state {
                        State::Head(buf) => match find(&buf[start..], b"\r\n\r\n") {
                            Some(i) => {
                                let end = start + i + 4;
                                (end, head_done(&buf[..end], counts))
                            }
                            None => (buf.len(), None),
                        },
                        State::ChunkSize(buf) => match find(&buf[start..], b"\r\n") {
                            Some(i) => {
                                let end = start + i + 2;
                                let line = String::from_utf8_lossy(&buf[..end - 2]);
                                let hex = line.split(';').next().unwrap_or("").trim();
                                match u64::from_str_radix(hex, 16) {
                                    Ok(0) => (end, Some(State::Trailer(Vec::new()))),
                                    Ok(n) => (end, Some(State::ChunkData(n + 2))),
                                    Err(_) => (end, Some(State::Lost)),
                                }
                            }
                            None => (buf.len(), None),
                        },
                        State::Trailer(buf) => {
                            if buf.starts_with(b"\r\n") {
                                (2, Some(State::Head(Vec::new())))
                            } else {
                                match find(&buf[start..], b"\r\n\r\n") {
                                    Some(i) => (start + i + 4, Some(State::Head(Vec::new()))),
                                    None => (buf.len(), None),
                                }
                            }
                        }
                        _ => unreachable!(),
                    };
                    let consumed_before = match &self.state {
                        State::Head(b) | State::ChunkSize(b) | State::Trailer(b) => {
                            b.len() - data.len()
                        }
                        _ => unreachable!(),
                    };
                    match next {
                        Some(s) => {
                            // Bytes of `data` past the end of this head/line are the next state's.
                            data = &data[used - consumed_before..];
                            self.state = s;
                        }
                        None => {
                            if let State::Head(b) | State::ChunkSize(b) | State::Trailer(b) =
                                &self.state
                            {
                                if b.len() > HEAD_MAX {
                                    counts.lost.fetch_add(1, Ordering::Relaxed);
                                    self.state = State::Lost;
                                }
                            }
                            return;
                        }
                    }
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Counts a complete request head; the state its body puts the parser in.
fn head_done(head: &[u8], counts: &Counts) -> Option<State> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut len = 0u64;
    let mut chunked = false;
    let mut copy = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => len = v.parse().unwrap_or(0),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            "x-amz-copy-source" => copy = true,
            _ => {}
        }
    }
    counts.add(kind_of(method, target, copy));
    Some(if chunked {
        State::ChunkSize(Vec::new())
    } else if len > 0 {
        State::Body(len)
    } else {
        State::Head(Vec::new())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(stream: &[u8], pieces: usize) -> String {
        let c = Counts::default();
        let mut p = RequestParser::default();
        let step = stream.len().div_ceil(pieces).max(1);
        for chunk in stream.chunks(step) {
            p.feed(chunk, &c);
        }
        c.report()
    }

    #[test]
    fn requests_are_counted_by_kind_whatever_the_chunking() {
        let s = b"GET /b?list-type=2&prefix=a%2F&delimiter=%2F HTTP/1.1\r\nhost: x\r\n\r\n\
PUT /b/k HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello\
HEAD /b/k HTTP/1.1\r\n\r\n\
PUT /b/c HTTP/1.1\r\nx-amz-copy-source: b/k\r\ncontent-length: 0\r\n\r\n\
POST /b/k?uploads HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
POST /b?delete HTTP/1.1\r\ncontent-length: 4\r\n\r\n<x/>\
GET /b/k HTTP/1.1\r\n\r\n\
GET /b HTTP/1.1\r\n\r\n";
        for pieces in [1, 3, 7, s.len()] {
            let r = counted(s, pieces);
            assert!(
                r.starts_with(
                    "GET 1\nHEAD 1\nLIST 2\nPUT 1\nCOPY 1\nPOST 1\nDELETE 1\nOTHER 0\nlost 0\n"
                ),
                "{pieces}: {r}"
            );
        }
    }
}
