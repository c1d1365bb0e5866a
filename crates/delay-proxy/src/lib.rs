//! A TCP proxy that adds a fixed one-way delay in each direction, and optionally caps the
//! bandwidth of each direction: what a real S3 endpoint's distance does to a client, on a
//! machine whose kernel has no `netem`.
//!
//! The delay is pipelined: every chunk read from one side is written to the other at its
//! arrival time plus the delay, whatever else is in flight, so the proxy limits latency,
//! not concurrency. Many connections are served at once, each with its own two pumps.
//! With a bandwidth cap, each direction is one link shared by every connection: a chunk
//! leaves once the link has sent the chunks before it (a serialisation delay of
//! bytes ÷ bandwidth), then travels for the delay.

pub mod count;

use count::{Counts, RequestParser};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    /// Added to every chunk in each direction (a round trip gains twice this).
    pub one_way: Duration,
    /// Bytes per second per direction, shared by all connections; `None`: unlimited.
    pub bytes_per_sec: Option<u64>,
}

/// One direction's link: when it is free to start sending the next chunk.
#[derive(Default)]
struct Link {
    free_at: Mutex<Option<Instant>>,
}

impl Link {
    /// The time a chunk of `len` bytes ready at `ready` has left the link.
    fn send(&self, ready: Instant, len: usize, bytes_per_sec: Option<u64>) -> Instant {
        let Some(bps) = bytes_per_sec.filter(|b| *b > 0) else {
            return ready;
        };
        let mut free = self.free_at.lock().unwrap();
        let start = free.map_or(ready, |f| f.max(ready));
        let done = start + Duration::from_secs_f64(len as f64 / bps as f64);
        *free = Some(done);
        done
    }
}

/// Serves `listener` until the task is dropped, forwarding every connection to `upstream`.
/// `counts` (when given) gets every request counted by kind.
pub async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    shape: Shape,
    counts: Option<Arc<Counts>>,
) {
    let links = Arc::new((Link::default(), Link::default()));
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let links = links.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return; // the client sees its connection closed, as with a dead endpoint
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let up = pump(cr, sw, shape, links.clone(), true, counts.clone());
            let down = pump(sr, cw, shape, links, false, counts);
            tokio::join!(up, down);
        });
    }
}

/// A chunk and the moment it may be written on.
enum Item {
    Data(Instant, Vec<u8>),
    /// The reading side closed (or failed) at this moment: shut the writing side then.
    End(Instant),
}

/// Moves bytes one way: a reader task stamps each chunk with its due time, this task
/// writes each when due. Reading never waits for writing, so chunks in flight overlap.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shape: Shape,
    links: Arc<(Link, Link)>,
    upstream_direction: bool,
    counts: Option<Arc<Counts>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        let mut parser = RequestParser::default();
        loop {
            let n = from.read(&mut buf).await.unwrap_or(0);
            let now = Instant::now();
            if n == 0 {
                let _ = tx.send(Item::End(now + shape.one_way));
                return;
            }
            if let Some(c) = &counts {
                c.bytes(upstream_direction, n);
                if upstream_direction {
                    parser.feed(&buf[..n], c);
                }
            }
            let link = if upstream_direction {
                &links.0
            } else {
                &links.1
            };
            let sent = link.send(now, n, shape.bytes_per_sec);
            if tx
                .send(Item::Data(sent + shape.one_way, buf[..n].to_vec()))
                .is_err()
            {
                return;
            }
        }
    });
    while let Some(item) = rx.recv().await {
        match item {
            Item::Data(due, bytes) => {
                tokio::time::sleep_until(due).await;
                if to.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            Item::End(due) => {
                tokio::time::sleep_until(due).await;
                let _ = to.shutdown().await;
                break;
            }
        }
    }
    // Writing failed (the peer is gone): stop reading too.
    reader.abort();
}

/// Parses `http://host:port`, `host:port` or `port` into an address.
pub fn parse_upstream(s: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let hostport = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("127.0.0.1:{hostport}")
    };
    hostport
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{s}: no address"))
}
