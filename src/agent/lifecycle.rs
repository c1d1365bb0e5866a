//! Starting and stopping an agent: [`Agent::start`] brings one up on its own runtime and
//! hands back a [`Handle`] (its socket, the requests it served, shutdown). It touches
//! nothing process-wide beyond what the agent itself needs (the SIGIO disposition, for
//! the file leases of the remote-change check), so tests can run several in one process.
//! What a process that *is* the agent adds (allocator tuning, not dumpable, the start-up
//! line, logging, SIGTERM/SIGINT) is `s3shim agent`'s, in `src/main.rs`.

use super::requests::{RequestLog, Requests};
use super::{prepare_dirs, serve, start, take_lock};
use crate::config::Settings;
use s3shim_protocol::layout;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info};

/// An agent to start: its settings and when it stops by itself.
pub struct Agent {
    settings: Settings,
    options: super::Options,
    stop_after_sessions: Option<Duration>,
}

/// Why an agent did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another agent holds the cache's lock (and serves its socket).
    #[error("another agent serves this cache")]
    Busy,
    /// A sentence for the user: what failed and what to do.
    #[error("{0}")]
    Failed(String),
}

impl Agent {
    /// An agent that runs until [`Handle::shutdown`]; credentials from the standard AWS
    /// chain (environment, profile, instance role); sibling prefetch on unless
    /// `S3SHIM_PREFETCH=0`.
    pub fn new(settings: Settings) -> Agent {
        Agent {
            settings,
            options: super::Options {
                keys: None,
                sibling_prefetch: super::prefetch::Prefetch::from_env().is_some(),
            },
            stop_after_sessions: None,
        }
    }

    /// Whether reading a file fetches the small files beside it in the background.
    pub fn sibling_prefetch(mut self, on: bool) -> Agent {
        self.options.sibling_prefetch = on;
        self
    }

    /// Signs requests with this key pair instead of the AWS credential chain.
    pub fn credentials(mut self, access_key: &str, secret_key: &str) -> Agent {
        super::redact::add_secrets([secret_key.to_string()]);
        self.options.keys = Some(super::s3::StaticKeys {
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
        });
        self
    }

    /// Also stops (draining) when the last `run` session closes, or when no session
    /// came within `first_session` (the `run` that started it died before connecting).
    pub fn stop_after_sessions(mut self, first_session: Duration) -> Agent {
        self.stop_after_sessions = Some(first_session);
        self
    }

    /// Takes the cache's lock, starts the S3 client (and the embedded server when the
    /// settings ask for it), revalidates a warm cache, and serves the socket; returns once
    /// requests are accepted.
    pub fn start(self) -> Result<Handle, StartError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .thread_name("s3shim-agent")
            .enable_all()
            .build()
            .map_err(|e| StartError::Failed(format!("cannot start the agent's runtime: {e}")))?;
        let settings = self.settings;
        let state = settings.state_dir();
        let tree = settings.tree();
        let tmp = state.join(layout::TMP_DIR);
        prepare_dirs(&settings.cache, &state, &tmp).map_err(StartError::Failed)?;
        // A file lease held while the remote-change check edits a file signals us when
        // another process opens it; the open just waits, nothing to do here (and the
        // default action would end the process).
        // SAFETY: signal with these arguments only sets this process's disposition.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
        let lock = match take_lock(&state.join(layout::LOCK_NAME)) {
            Ok(Some(f)) => f,
            Ok(None) => return Err(StartError::Busy),
            Err(e) => {
                return Err(StartError::Failed(format!(
                    "cannot lock the cache {}: {e}",
                    settings.cache.display()
                )))
            }
        };
        let socket = settings.socket();
        let (ctx, watch, listener, info, server) = rt
            .block_on(start(&settings, &tree, &tmp, self.options))
            .map_err(|e| {
                let sentence = format!("{e:#}");
                error!("start-up failed: {sentence}");
                StartError::Failed(sentence)
            })?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let requests = Arc::new(RequestLog::default());
        let task = rt.spawn({
            let socket = socket.clone();
            let requests = requests.clone();
            let sessions = self.stop_after_sessions;
            async move {
                let code = serve(ctx, watch, listener, &socket, stop_rx, sessions, requests).await;
                if let Some(s) = server {
                    s.shutdown().await;
                }
                info!("agent stopped");
                code
            }
        });
        Ok(Handle {
            rt: Some(rt),
            task: Some(task),
            stop,
            socket,
            info,
            requests,
            _lock: lock,
        })
    }
}

/// A running agent. Dropping it shuts it down (see [`Handle::shutdown`]).
pub struct Handle {
    rt: Option<tokio::runtime::Runtime>,
    task: Option<tokio::task::JoinHandle<i32>>,
    stop: tokio::sync::watch::Sender<bool>,
    socket: PathBuf,
    info: String,
    requests: Arc<RequestLog>,
    /// Held while the agent runs: another agent on this cache reports busy.
    _lock: std::fs::File,
}

impl Handle {
    /// The Unix socket the shim and the CLI talk to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What `run` shows at start (e.g. where the embedded server is); empty otherwise.
    pub fn info(&self) -> &str {
        &self.info
    }

    /// How many requests of each kind the agent has answered (or, for a `Session`,
    /// accepted) so far.
    pub fn requests(&self) -> Requests {
        self.requests.snapshot()
    }

    /// Waits until `done` holds for the requests answered so far, at most `limit`;
    /// returns the last counts and whether `done` held.
    pub fn wait_for_requests(
        &self,
        limit: Duration,
        done: impl Fn(&Requests) -> bool,
    ) -> (Requests, bool) {
        self.requests.wait(limit, done)
    }

    /// Stops (draining) once `stop` completes; it runs on the agent's runtime, so it
    /// may use tokio (e.g. wait for a signal).
    pub fn stop_when(&self, stop: impl Future<Output = ()> + Send + 'static) {
        let tx = self.stop.clone();
        if let Some(rt) = &self.rt {
            rt.spawn(async move {
                stop.await;
                let _ = tx.send(true);
            });
        }
    }

    /// Stops taking requests, uploads every pending change (bounded by
    /// `S3SHIM_DRAIN_TIMEOUT_SECS`) and stops; the exit code `s3shim agent` would give:
    /// 0 when everything is in S3.
    pub fn shutdown(mut self) -> i32 {
        let _ = self.stop.send(true);
        self.join_inner()
    }

    /// Waits until the agent stops by itself (see [`Agent::stop_after_sessions`]) or
    /// through [`Handle::stop_when`]; its exit code.
    pub fn join(mut self) -> i32 {
        self.join_inner()
    }

    fn join_inner(&mut self) -> i32 {
        let (Some(rt), Some(task)) = (self.rt.take(), self.task.take()) else {
            return 0;
        };
        let code = rt.block_on(task).unwrap_or_else(|e| {
            error!("the agent's task failed: {e}");
            1
        });
        // Tasks that outlive the server (a watcher read, a prefetch) are dropped.
        rt.shutdown_timeout(Duration::from_secs(5));
        code
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.join_inner();
    }
}
