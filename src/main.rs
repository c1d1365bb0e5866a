//! `s3shim`: run programs on a folder whose true home is an S3 bucket.

use clap::{Parser, Subcommand};
use s3shim_agent::config::{Settings, WorkspaceArgs};
use s3shim_agent::{agent, client, doctor, prefetch, run};
use s3shim_protocol::wire::Op;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "s3shim",
    version,
    about = "Give a process tree a folder whose true home is an S3 bucket, without FUSE or root"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run COMMAND (and everything it starts) with MOUNT backed by the bucket; wait until
    /// every change is in S3 when it exits.
    #[command(after_help = "Examples:\n  \
        s3shim run -- bash                       # embedded S3 server, /workspace\n  \
        AWS_ENDPOINT_URL=http://127.0.0.1:9000 s3shim run --bucket ws --key-prefix team/ -- make test\n  \
        s3shim run --summary --bucket ci --key-prefix ws/ --cache /var/cache/s3shim/ws -- make test   # CI runner, warm cache")]
    Run {
        #[command(flatten)]
        ws: WorkspaceArgs,
        /// At the end, print one line to stderr with the objects and bytes the agent
        /// downloaded (with a warm cache, only what changed in S3).
        #[arg(long, env = "S3SHIM_SUMMARY", value_parser = clap::builder::BoolishValueParser::new())]
        summary: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Block until everything written so far is in S3 (inside the tree, or with the same
    /// --cache/--bucket as `run`).
    #[command(after_help = "Example:\n  s3shim flush && echo 'all changes are in S3'")]
    Flush {
        #[command(flatten)]
        ws: WorkspaceArgs,
    },
    /// Make PATH (default: the whole mount) local, bytes included: for programs the shim
    /// cannot enter (static binaries, Go tools; the shim does this by itself when it sees
    /// one exec'd in the tree), or before going offline.
    #[command(after_help = "Examples:\n  \
        s3shim prefetch                      # inside `s3shim run`: the whole workspace\n  \
        s3shim prefetch /workspace/docs      # one subtree\n  \
        s3shim prefetch --cache ~/.cache/s3shim/ws --mount /workspace /workspace/src")]
    Prefetch {
        #[command(flatten)]
        ws: WorkspaceArgs,
        /// A path under the mount (absolute, or relative to the current directory).
        path: Option<PathBuf>,
    },
    /// Show what the cache's agent is doing: changes not in S3 yet (count and bytes),
    /// failed uploads, the last error, hydrated vs known remote size, downloads.
    #[command(
        after_help = "Example (inside `s3shim run`, or with the same --cache/--bucket):\n  \
        s3shim status\n\n\
        workspace:  s3://team/ws/ via https://s3.example.com\n\
        not in S3:  2 change(s), 4.0 KiB (4096 bytes)\n\
        hydrated:   1.2 MiB (1258291 bytes) in 40 file(s) of those are in the cache\n\
        ...\n\n  \
        s3shim status --json --sync-only     # for programs; schema in the README"
    )]
    Status {
        #[command(flatten)]
        ws: WorkspaceArgs,
        /// Print one JSON document (schema in the README) for programs, e.g. the
        /// VS Code extension.
        #[arg(long)]
        json: bool,
        /// Only the sync state (changes not in S3, failures, paused uploads, conflicts,
        /// last error): skips the walk over every known file, so it is cheap to poll.
        #[arg(long)]
        sync_only: bool,
    },
    /// Check everything a workspace needs (credentials, endpoint, bucket, write access,
    /// conditional writes, cache filesystem, io_uring, glibc): one line per check, with
    /// what to do for each failure; exits non-zero if any check fails.
    #[command(after_help = "Example:\n  \
        AWS_ENDPOINT_URL=http://127.0.0.1:9000 s3shim doctor --bucket ws --key-prefix team/\n\n\
        ok    credentials  access key AKIA… from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)\n\
        ok    endpoint     http://127.0.0.1:9000 accepts connections\n\
        FAIL  bucket       bucket 'ws' does not exist at http://127.0.0.1:9000; create it (e.g. `aws s3 mb s3://ws`) or pass the right --bucket\n\
        ...")]
    Doctor {
        #[command(flatten)]
        ws: WorkspaceArgs,
    },
    /// Serve a local S3-compatible endpoint on loopback (what `run` embeds by default).
    #[command(
        after_help = "Example:\n  s3shim server --data /tmp/s3data --bucket ws --access-key k --secret-key s"
    )]
    Server {
        /// Directory holding the objects.
        #[arg(long)]
        data: PathBuf,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Buckets to create at start if missing.
        #[arg(long = "bucket")]
        buckets: Vec<String>,
        #[arg(long, env = "AWS_ACCESS_KEY_ID")]
        access_key: String,
        #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
        secret_key: String,
        /// Refuse GETs of keys under this prefix with 403 AccessDenied while HEAD and
        /// listings work (as S3 does for an SSE-KMS object the caller may not decrypt).
        #[arg(long = "deny-read", value_name = "KEY_PREFIX")]
        deny_read: Vec<String>,
        /// Refuse PUTs, copies, multipart uploads and deletes of keys under this prefix
        /// with 403 AccessDenied (as a bucket policy denying writes there would).
        #[arg(long = "deny-write", value_name = "KEY_PREFIX")]
        deny_write: Vec<String>,
        /// Refuse writes carrying If-Match / If-None-Match with 501 NotImplemented, as
        /// servers without conditional writes do (to try the agent's fallback).
        #[arg(long = "no-conditional-writes")]
        no_conditional_writes: bool,
    },
    /// The per-cache agent (started by `run`).
    #[command(hide = true)]
    Agent {
        #[command(flatten)]
        ws: WorkspaceArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Run {
            ws,
            summary,
            command,
        } => with_settings(&ws, |s| run(s, &command, summary)),
        Cmd::Flush { ws } => with_settings(&ws, |s| {
            let (errno, report) = client::request(&s.socket(), Op::Flush, "")?;
            if errno == 0 {
                return Ok(0);
            }
            eprintln!("s3shim: these changes are not in S3:");
            for line in report.lines() {
                let (p, why) = line.split_once('\t').unwrap_or((line, ""));
                eprintln!("  {p}: {why}");
            }
            Ok(1)
        }),
        Cmd::Prefetch { ws, path } => with_settings(&ws, |s| prefetch(s, path.as_deref())),
        Cmd::Status {
            ws,
            json,
            sync_only,
        } => with_settings(&ws, |s| {
            let what = if sync_only {
                s3shim_protocol::status::SYNC_ONLY
            } else {
                ""
            };
            let (_, text) = client::request(&s.socket(), Op::Status, what)?;
            if json {
                println!("{}", client::status_json(&text, &s.mount));
            } else {
                print!("{}", client::render_status(&text));
            }
            Ok(0)
        }),
        Cmd::Doctor { ws } => with_settings(&ws, |s| Ok(doctor(s))),
        Cmd::Agent { ws } => match Settings::resolve(&ws) {
            Ok(s) => agent_process(s),
            Err(e) => {
                report(&format!("ERROR\t{e:#}"));
                1
            }
        },
        Cmd::Server {
            data,
            listen,
            buckets,
            access_key,
            secret_key,
            deny_read,
            deny_write,
            no_conditional_writes,
        } => serve_s3(
            data,
            listen,
            buckets,
            access_key,
            secret_key,
            Policy {
                deny_read,
                deny_write,
                conditional_writes: !no_conditional_writes,
            },
        ),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn with_settings(ws: &WorkspaceArgs, f: impl FnOnce(&Settings) -> anyhow::Result<i32>) -> i32 {
    match Settings::resolve(ws).and_then(|s| f(&s)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("s3shim: {e:#}");
            2
        }
    }
}

/// What `s3shim server` refuses: reads and writes under key prefixes, and (when
/// `conditional_writes` is off) writes with preconditions.
struct Policy {
    deny_read: Vec<String>,
    deny_write: Vec<String>,
    conditional_writes: bool,
}

fn serve_s3(
    data: PathBuf,
    listen: std::net::SocketAddr,
    buckets: Vec<String>,
    access_key: String,
    secret_key: String,
    policy: Policy,
) -> i32 {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("s3shim: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let mut cfg = s3shim_s3server::Config::new(data, access_key, secret_key);
        cfg.addr = listen;
        cfg.buckets = buckets;
        cfg.deny_read = policy.deny_read;
        cfg.deny_write = policy.deny_write;
        cfg.conditional_writes = policy.conditional_writes;
        let server = match s3shim_s3server::Server::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("s3shim: cannot start the S3 server: {e:#}");
                return 1;
            }
        };
        // Scripts and tests read the endpoint from this line.
        println!("endpoint {}", server.endpoint());
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("s3shim: {e}");
                    return 1;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        server.shutdown().await;
        0
    })
}

/// `s3shim agent`: this process is the agent. Start-up is reported to the `run` that
/// spawned it as one line on stdout: `READY\t<info>`, `BUSY` (another agent holds the
/// cache) or `ERROR\t<sentence>`; after that its output goes to
/// `CACHE/.s3shim/agent.log`. It exits when the last `run` session closes (or on
/// SIGTERM/SIGINT), after draining every pending upload.
fn agent_process(settings: Settings) -> i32 {
    // glibc gives each thread that allocates its own arena (up to 8 per core), and a
    // large batch leaves every one of them holding freed memory: two arenas keep the
    // agent's footprint near what it uses (issue 6: ≤ 100 MiB with 100,000 files).
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    agent::log_to_cache(&settings);
    // Same-user processes (everything the shim runs) must not read our memory or
    // /proc/PID/environ, where the credentials are.
    // SAFETY: prctl with these arguments only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // A panicking task would leave the agent half alive (a dead sync worker makes every
    // flush wait forever): log it and stop, so `run` reports a dead agent instead.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("agent bug, stopping: {info}");
        std::process::abort();
    }));
    let handle = match agent::Agent::new(settings)
        .stop_after_sessions(first_session_timeout())
        .start()
    {
        Ok(h) => h,
        Err(agent::StartError::Busy) => {
            report("BUSY");
            return 0;
        }
        Err(agent::StartError::Failed(sentence)) => {
            report(&format!("ERROR\t{sentence}"));
            return 1;
        }
    };
    handle.stop_when(async {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("SIGINT: draining"),
            },
            _ => tracing::error!("cannot install signal handlers; stopping"),
        }
    });
    report(&format!("READY\t{}", handle.info()));
    detach_stdout();
    handle.join()
}

/// How long a freshly started agent waits for its first session before giving up (the
/// `run` that started it died before connecting). `S3SHIM_FIRST_SESSION_TIMEOUT`
/// (seconds) overrides it, for tests.
fn first_session_timeout() -> Duration {
    std::env::var("S3SHIM_FIRST_SESSION_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(30))
}

/// Writes the start-up line for `run`.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Points stdout at /dev/null so `run` sees end-of-file after the start-up line.
fn detach_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::unix::io::AsRawFd;
        // SAFETY: both fds are valid.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}
