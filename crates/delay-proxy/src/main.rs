//! `delay-proxy --upstream http://127.0.0.1:9000 --delay-ms 10 [--mbit 100]`: listens on
//! loopback, prints `endpoint http://127.0.0.1:PORT` once it accepts connections, and
//! forwards every connection to the upstream with the delay added each way.

use anyhow::{bail, Context, Result};
use s3shim_delay_proxy::count::Counts;
use s3shim_delay_proxy::{parse_upstream, serve, Shape};
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage: delay-proxy --upstream HOST:PORT [--listen ADDR] [--delay-ms ONE_WAY] [--mbit BANDWIDTH] [--stats-listen ADDR]";

fn main() -> Result<()> {
    let mut upstream = None;
    let mut listen = "127.0.0.1:0".to_string();
    let mut shape = Shape::default();
    let mut stats_listen = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{a} needs a value; {USAGE}"))
        };
        match a.as_str() {
            "--upstream" => upstream = Some(parse_upstream(&value()?)?),
            "--listen" => listen = value()?,
            "--delay-ms" => {
                let ms: f64 = value()?.parse().context("--delay-ms")?;
                shape.one_way = Duration::from_secs_f64(ms / 1000.0);
            }
            "--mbit" => {
                let mbit: f64 = value()?.parse().context("--mbit")?;
                shape.bytes_per_sec = (mbit > 0.0).then_some((mbit * 1e6 / 8.0) as u64);
            }
            "--stats-listen" => stats_listen = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => bail!("unknown argument {a}; {USAGE}"),
        }
    }
    let Some(upstream) = upstream else {
        bail!("{USAGE}")
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        // Scripts read the endpoint from this line.
        println!("endpoint http://{}", listener.local_addr()?);
        let counts = Arc::new(Counts::default());
        if let Some(addr) = stats_listen {
            // Each connection to this address reads the request counts so far, then EOF.
            let stats = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            println!("stats {}", stats.local_addr()?);
            let counts = counts.clone();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = stats.accept().await {
                    use tokio::io::AsyncWriteExt;
                    let _ = s.write_all(counts.report().as_bytes()).await;
                }
            });
        }
        use std::io::Write;
        std::io::stdout().flush()?;
        serve(listener, upstream, shape, Some(counts)).await;
        Ok(())
    })
}
