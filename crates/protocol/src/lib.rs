//! The contract between `libs3shim.so` (inside user processes) and the `s3shim` agent.
//!
//! * [`layout`]: where things live inside a cache directory and which environment
//!   variables carry the configuration into shimmed processes.
//! * [`marker`]: the `user.s3shim` extended attribute that marks cache entries whose
//!   content has not been fetched from S3 yet. The shim reads only its first byte.
//! * [`wire`]: request/response frames on the agent's Unix socket. Encoding works on
//!   caller-provided buffers so the shim never allocates.
//! * [`names`]: which relative paths and object-key names are acceptable, and how a
//!   relative path maps to an S3 key.
//! * [`status`]: the fields of the agent's status reply.
//! * [`meta`]: POSIX metadata in the s3fs convention (`x-amz-meta-mode`, `-mtime`, ...).
//!
//! The shim uses only the allocation-free parts (marker parsing, request encoding).

// Compiled in s3shim-protocol-core (no_std, for the shim); their sources are here.
pub use s3shim_protocol_core::{layout, marker, wire};
pub mod meta;
pub mod names;
pub mod status;
