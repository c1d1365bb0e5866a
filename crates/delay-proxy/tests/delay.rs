//! The proxy's promises, checked through real TCP connections on loopback: a round trip
//! through it takes at least twice the one-way delay; many requests at once take about
//! one round trip, not one each; a bandwidth cap holds.

use s3shim_delay_proxy::{serve, Shape};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

/// A line server: answers each line with the same line, after `barrier` (when given) has
/// seen that many requests arrive, so no answer leaves before all requests are in.
async fn line_server(barrier: Option<Arc<Barrier>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(b) = &barrier {
                        b.wait().await;
                    }
                    if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn proxy(upstream: SocketAddr, shape: Shape) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve(l, upstream, shape, None));
    addr
}

/// One request and its answer on a fresh connection; the seconds from sending to answer.
async fn round_trip(proxy: SocketAddr, msg: &str) -> Duration {
    let s = TcpStream::connect(proxy).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    let t0 = Instant::now();
    w.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
    let got = lines.next_line().await.unwrap().expect("an answer");
    assert_eq!(got, msg);
    t0.elapsed()
}

fn delay(ms: u64) -> Shape {
    Shape {
        one_way: Duration::from_millis(ms),
        bytes_per_sec: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_takes_at_least_twice_the_one_way_delay() {
    let p = proxy(line_server(None).await, delay(60)).await;
    for i in 0..3 {
        let rt = round_trip(p, &format!("ping {i}")).await;
        assert!(rt >= Duration::from_millis(120), "round trip {rt:?}");
    }
    // Without a delay the same path is much quicker (the delay is the proxy's doing).
    let p0 = proxy(line_server(None).await, delay(0)).await;
    assert!(round_trip(p0, "ping").await < Duration::from_millis(120));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_take_one_round_trip_not_one_each() {
    const N: usize = 16;
    // The server answers none until all N requests are in: a proxy that held one
    // request back until another's answer came would never finish (the timeout fails).
    let up = line_server(Some(Arc::new(Barrier::new(N)))).await;
    let p = proxy(up, delay(100)).await;
    let t0 = Instant::now();
    let all = futures_join(p, N);
    let rts = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("requests through the proxy did not overlap");
    let total = t0.elapsed();
    assert!(rts.iter().all(|rt| *rt >= Duration::from_millis(200)));
    // Serialised they would take N round trips (3.2 s); in flight together, about one.
    assert!(
        total < Duration::from_millis(200) * (N as u32) / 2,
        "{N} concurrent round trips took {total:?}"
    );
}

async fn futures_join(p: SocketAddr, n: usize) -> Vec<Duration> {
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(async move { round_trip(p, &format!("req {i}")).await }))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_on_one_connection_are_pipelined() {
    // Ten lines sent back to back on one connection, each answered at once: the last
    // answer comes about one round trip after the first line, not ten.
    let p = proxy(line_server(None).await, delay(100)).await;
    let s = TcpStream::connect(p).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    let t0 = Instant::now();
    for i in 0..10 {
        w.write_all(format!("line {i}\n").as_bytes()).await.unwrap();
        w.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 0..10 {
        assert_eq!(
            lines.next_line().await.unwrap().unwrap(),
            format!("line {i}")
        );
    }
    let total = t0.elapsed();
    assert!(total >= Duration::from_millis(200));
    assert!(
        total < Duration::from_millis(1000),
        "ten lines took {total:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bandwidth_cap_holds() {
    // 400 KB through a 2 MB/s link takes at least 0.2 s each way.
    let up = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.unwrap();
            s.write_all(&(buf.len() as u64).to_le_bytes())
                .await
                .unwrap();
        });
        addr
    };
    let p = proxy(
        up,
        Shape {
            one_way: Duration::ZERO,
            bytes_per_sec: Some(2_000_000),
        },
    )
    .await;
    let mut s = TcpStream::connect(p).await.unwrap();
    let t0 = Instant::now();
    s.write_all(&vec![7u8; 400_000]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut n = [0u8; 8];
    s.read_exact(&mut n).await.unwrap();
    assert_eq!(u64::from_le_bytes(n), 400_000, "every byte arrived");
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
}
