//! Cache directory layout and the environment that configures the shim.
//!
//! ```text
//! CACHE/                 the --cache directory (one agent per cache)
//! CACHE/tree/            the mirror of the bucket prefix; MOUNT/x maps to CACHE/tree/x
//! CACHE/.s3shim/         agent state, never visible through the mount:
//!     agent.sock         the agent's Unix socket (unless S3SHIM_SOCKET names another)
//!     agent.lock         held (flock) by the running agent
//!     index.db           the agent's index (SQLite)
//!     agent.log          the agent's log
//!     run.lock           held shared (flock) by every `s3shim run` supervising the agent:
//!                        while it is held, the shim waits for a restarted agent
//!     restarts           agent restarts by `run`: count, unix seconds, last cause
//!     tmp/               downloads in progress (same filesystem as tree/, for rename)
//! ```

/// Path programs use for the workspace (e.g. `/workspace`). Set by `s3shim run`.
pub const ENV_MOUNT: &str = "S3SHIM_MOUNT";
/// The cache directory (absolute). The shim maps MOUNT to `$S3SHIM_CACHE/tree`.
pub const ENV_CACHE: &str = "S3SHIM_CACHE";
/// The agent's socket path (absolute).
pub const ENV_SOCKET: &str = "S3SHIM_SOCKET";
/// Set to `0` in every process the shim execs: libuv must not move fs calls to io_uring,
/// where no preload library can see them.
pub const ENV_UV_IO_URING: &str = "UV_USE_IO_URING";

/// `1` makes the shim inert in that process (and so in what it execs): set for the agent,
/// which works on the cache itself and must never ask itself to hydrate.
pub const ENV_DISABLE: &str = "S3SHIM_DISABLE";

/// Every variable the shim re-injects into exec'd programs (besides `LD_PRELOAD`).
pub const SHIM_ENV: [&str; 3] = [ENV_MOUNT, ENV_CACHE, ENV_SOCKET];

/// Seconds a request of the shim waits for an agent being restarted (while a `run` holds
/// the session) before it fails with `EIO`.
pub const ENV_AGENT_WAIT: &str = "S3SHIM_AGENT_WAIT_SECS";

/// File name of the preload library.
pub const LIB_NAME: &str = "libs3shim.so";

pub const TREE_DIR: &str = "tree";
pub const STATE_DIR: &str = ".s3shim";
pub const SOCKET_NAME: &str = "agent.sock";
pub const LOCK_NAME: &str = "agent.lock";
pub const INDEX_NAME: &str = "index.db";
pub const LOG_NAME: &str = "agent.log";
pub const RUN_LOCK_NAME: &str = "run.lock";
pub const RESTARTS_NAME: &str = "restarts";
pub const TMP_DIR: &str = "tmp";

/// Longest path a `sockaddr_un` holds (108 bytes including the NUL on Linux).
pub const SOCKET_PATH_MAX: usize = 107;
