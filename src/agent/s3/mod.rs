//! The agent's S3 client: the few calls the layout needs, over aws-sdk-s3, with POSIX
//! metadata in the s3fs convention and errors turned into sentences a user can act on.
//!
//! - `client`: building the SDK client (endpoint, region, credentials, retries, timeouts)
//!   and the bucket check and probe.
//! - `classify`: where an S3 answer becomes an [`Error`](super::error::Error) variant,
//!   with a sentence naming the cause and the fix.
//! - `read`: HEAD and GET, whole or as parallel ranged GETs.
//! - `write`: PUT (single or multipart, conditional), copy, delete.
//! - `list`: listings by directory, whole and a page at a time.

use aws_sdk_s3::Client;
use s3shim_protocol::meta;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

mod classify;
mod client;
mod list;
mod read;
mod write;
pub use client::{StaticKeys, Tuning};
pub use list::{ListedObject, Listing, RemoteObject};
pub use write::Cond;

/// POSIX attributes stored as user metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosixMeta {
    pub mode: u32,
    pub mtime: (i64, u32),
    pub uid: u32,
    pub gid: u32,
}

/// User metadata naming the cache that wrote an object (see [`S3::set_writer`]).
pub const WRITER: &str = "s3shim-writer";

impl PosixMeta {
    fn to_headers(self) -> HashMap<String, String> {
        HashMap::from([
            (meta::MODE.to_string(), self.mode.to_string()),
            (
                meta::MTIME.to_string(),
                meta::format_mtime(self.mtime.0, self.mtime.1),
            ),
            (meta::UID.to_string(), self.uid.to_string()),
            (meta::GID.to_string(), self.gid.to_string()),
        ])
    }
}

/// What a HEAD (or GET) says about an object.
#[derive(Debug, Clone)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: String,
    /// `mode` metadata, when the writer stored one.
    pub mode: Option<u32>,
    /// `mtime` metadata, else Last-Modified.
    pub mtime: (i64, u32),
    /// The cache that wrote it, when it was one of ours.
    pub writer: Option<String>,
}

impl ObjectHead {
    fn from_parts(
        size: Option<i64>,
        etag: Option<&str>,
        user: Option<&HashMap<String, String>>,
        last_modified: Option<&aws_smithy_types::DateTime>,
    ) -> ObjectHead {
        let lookup = |k: &str| user.and_then(|m| m.get(k));
        let mtime = lookup(meta::MTIME)
            .and_then(|v| meta::parse_mtime(v))
            .or_else(|| last_modified.map(|t| (t.secs(), t.subsec_nanos())))
            .unwrap_or((0, 0));
        ObjectHead {
            size: size.unwrap_or(0).max(0) as u64,
            etag: etag.unwrap_or_default().to_string(),
            mode: lookup(meta::MODE).and_then(|v| meta::parse_mode(v)),
            mtime,
            writer: lookup(WRITER).cloned(),
        }
    }
}
pub struct S3 {
    client: Client,
    bucket: String,
    /// Where the client gets its credentials (for the log's redaction list).
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    /// For messages: the endpoint URL or "AWS".
    pub endpoint_desc: String,
    tuning: Tuning,
    writer: std::sync::OnceLock<String>,
    /// The server refused a conditional write as not implemented: check with HEAD.
    no_conditional_writes: std::sync::atomic::AtomicBool,
    /// GETs that succeeded and the body bytes they brought, since the agent started
    /// (`status`, `run --summary`).
    pub downloaded_objects: AtomicU64,
    pub downloaded_bytes: AtomicU64,
}

/// ETags compare without their quotes (servers differ on quoting in listings).
pub fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

impl S3 {
    /// Names this cache on every object it uploads, so that after a crash between a
    /// PUT and its record in the index the agent recognises its own object and does not
    /// take it for another writer's.
    pub fn set_writer(&self, id: String) {
        let _ = self.writer.set(id);
    }

    pub fn writer(&self) -> Option<&str> {
        self.writer.get().map(String::as_str)
    }

    /// The user metadata of an upload: POSIX attributes and the writer.
    fn metadata(&self, m: PosixMeta) -> HashMap<String, String> {
        let mut h = m.to_headers();
        if let Some(w) = self.writer.get() {
            h.insert(WRITER.to_string(), w.clone());
        }
        h
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The SDK client, for `s3shim doctor`'s probes.
    pub fn sdk(&self) -> &Client {
        &self.client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_without_quotes() {
        assert!(same_etag("\"abc\"", "abc"));
        assert!(!same_etag("\"abc\"", "\"abd\""));
    }
}
