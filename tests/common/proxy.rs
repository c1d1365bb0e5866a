//! A loopback HTTP proxy between the agent and the S3 server for fault-injection tests:
//! it forwards every request to the real server, counts requests by method and path, and
//! on demand fails a share of them (500, 503 SlowDown, connection reset, stall) or plays
//! an endpoint that is down. The S3 server behind it is real; only the network is not.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Share of requests (0.0..=1.0) that fail, each with one of five faults: 500,
    /// 503 SlowDown, a reset before forwarding, a stall, or a reset after the server
    /// carried the request out (the answer is lost).
    pub share: f64,
    /// Every connection is closed unanswered (the endpoint is down).
    pub down: bool,
    /// How long a stalled request hangs before its connection is closed.
    pub stall: Duration,
}

#[derive(Default)]
struct State {
    faults: Faults,
    /// (method, path) -> requests seen (forwarded or failed).
    counts: HashMap<(String, String), usize>,
    injected: usize,
}

pub struct Proxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 (a free port) in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("plain http upstream")
            .trim_end_matches('/')
            .to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let stream = tokio::select! {
                        _ = &mut stop_rx => return,
                        r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                    };
                    let (st, up) = (st.clone(), upstream.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            handle(req, st.clone(), up.clone())
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        Proxy {
            endpoint,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn set(&self, faults: Faults) {
        self.state.lock().unwrap().faults = faults;
    }

    /// Requests seen with `method` whose path (without the query) is `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.counts
            .get(&(method.to_string(), path.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Requests seen with `method` whose path (without the query) starts with `prefix`.
    pub fn count_under(&self, method: &str, prefix: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.counts
            .iter()
            .filter(|((m, p), _)| m == method && p.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every (method, path) seen with its count, sorted (for failure messages).
    pub fn seen(&self) -> Vec<((String, String), usize)> {
        let s = self.state.lock().unwrap();
        let mut v: Vec<_> = s.counts.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort();
        v
    }

    /// Requests seen in all.
    pub fn total(&self) -> usize {
        self.state.lock().unwrap().counts.values().sum()
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.state.lock().unwrap().injected
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An error makes hyper close the connection without an answer: a reset to the client.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    upstream: String,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let fault = {
        let mut s = state.lock().unwrap();
        *s.counts
            .entry((parts.method.to_string(), parts.uri.path().to_string()))
            .or_default() += 1;
        let f = s.faults;
        let pick = if f.down {
            Some(2)
        } else if rand::random::<f64>() < f.share {
            Some(rand::random::<u8>() % 5)
        } else {
            None
        };
        if pick.is_some() {
            s.injected += 1;
        }
        pick.map(|p| (p, f.stall))
    };
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Dropped),
    };
    match fault {
        Some((0, _)) => return Ok(s3_error(500, "InternalError", "injected fault")),
        Some((1, _)) => {
            return Ok(s3_error(
                503,
                "SlowDown",
                "Please reduce your request rate.",
            ))
        }
        Some((2, _)) => return Err(Dropped),
        Some((3, stall)) => {
            tokio::time::sleep(stall).await;
            return Err(Dropped);
        }
        Some(_) => {
            let _ = forward(parts, body, &upstream).await;
            return Err(Dropped);
        }
        None => {}
    }
    forward(parts, body, &upstream).await.map_err(|_| Dropped)
}

fn s3_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(xml)))
        .unwrap()
}

async fn forward(
    parts: hyper::http::request::Parts,
    body: Bytes,
    upstream: &str,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(parts.method).uri(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    // Headers as sent, Host included: the signature covers it.
    for (k, v) in parts.headers.iter() {
        req = req.header(k, v);
    }
    let resp = sender.send_request(req.body(Full::new(body))?).await?;
    let (rparts, rbody) = resp.into_parts();
    let bytes = rbody.collect().await?.to_bytes();
    let mut out = Response::builder().status(rparts.status);
    for (k, v) in rparts.headers.iter() {
        if k != "transfer-encoding" && k != "connection" {
            out = out.header(k, v);
        }
    }
    Ok(out.body(Full::new(bytes))?)
}
