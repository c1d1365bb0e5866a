//! The keys of the agent's reply to [`crate::wire::Op::Status`]: one `key\tvalue[\tvalue…]`
//! line per fact (see `s3shim_protocol::status`). Here, without the standard library, so
//! that `libs3shim.so` reads the reply with the same names the agent writes it with.

/// `s3://bucket/prefix`, endpoint.
pub const WORKSPACE: &str = "workspace";
/// The cache's tree directory.
pub const CACHE: &str = "cache";
/// Open `s3shim run` sessions.
pub const SESSIONS: &str = "sessions";
/// Entries the agent knows to be in S3.
pub const INDEXED: &str = "indexed";
/// Changes not in S3 yet: count, bytes of their local files.
pub const PENDING: &str = "pending";
/// Of those, uploads being made now: count.
pub const IN_FLIGHT: &str = "in_flight";
/// A change that could not be uploaded: path, problem (one line each).
pub const FAILED: &str = "failed";
/// The most recent problem: unix seconds, text.
pub const LAST_ERROR: &str = "last_error";
/// Files known to be in S3: bytes, count.
pub const REMOTE: &str = "remote";
/// Of those, the ones whose bytes are in the cache: bytes, count.
pub const HYDRATED: &str = "hydrated";
/// Objects downloaded since the agent started: count, bytes.
pub const DOWNLOADED: &str = "downloaded";

/// Agent restarts by the supervising `run`: count, unix seconds of the last, its cause.
pub const RESTARTS: &str = "restarts";

/// Uploads: `running`, or `paused`, unix seconds since, the error that paused them.
pub const UPLOADS: &str = "uploads";
/// A conflict kept both versions: path, the name the local version was saved as, unix
/// seconds (one line each, while that copy is in the cache).
pub const CONFLICT: &str = "conflict";

/// The first value of an [`UPLOADS`] line while uploads are paused.
pub const PAUSED: &str = "paused";
/// The first value of an [`UPLOADS`] line otherwise.
pub const RUNNING: &str = "running";
