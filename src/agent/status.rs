//! The agent's answer to `Status` (fields in [`s3shim_protocol::status`]).

use super::fsops::{marker_of, OwnedMarker};
use super::{Ctx, Server};
use s3shim_protocol::layout;
use s3shim_protocol::status::{self as st, field};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Server {
    /// `what` is [`st::SYNC_ONLY`] for the sync state alone (no walk over every known
    /// file: what a status bar polls), anything else for the whole report.
    pub(super) async fn status(&self, what: &str) -> String {
        let ctx = self.ctx.clone();
        let sessions = self.sessions.load(Ordering::SeqCst);
        let whole = what != st::SYNC_ONLY;
        // Sizes come from the file system: keep the walk off the request threads.
        tokio::task::spawn_blocking(move || report(&ctx, sessions, whole))
            .await
            .unwrap_or_else(|e| field(st::LAST_ERROR, &["0", &format!("status failed: {e}")]))
    }
}

fn report(ctx: &Arc<Ctx>, sessions: usize, whole: bool) -> String {
    let mut out = field(
        st::WORKSPACE,
        &[
            &format!("s3://{}/{}", ctx.s3.bucket(), ctx.prefix),
            &ctx.s3.endpoint_desc,
        ],
    );
    out += &field(st::CACHE, &[&ctx.tree.display().to_string()]);
    out += &field(st::SESSIONS, &[&sessions.to_string()]);
    let indexed = ctx.index.count().unwrap_or(0);
    out += &field(st::INDEXED, &[&indexed.to_string()]);

    let (_, in_flight, failed) = ctx.queue.counts();
    let waiting = ctx.queue.not_in_s3();
    let bytes: u64 = waiting.iter().map(|p| file_size(&ctx.tree.join(p))).sum();
    out += &field(
        st::PENDING,
        &[&waiting.len().to_string(), &bytes.to_string()],
    );
    out += &field(st::IN_FLIGHT, &[&in_flight.to_string()]);
    for (p, why) in &failed {
        out += &field(st::FAILED, &[p, why]);
    }
    if let Some((when, what)) = ctx.queue.last_error() {
        let secs = when
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        out += &field(st::LAST_ERROR, &[&secs.to_string(), &what]);
    }

    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string()
    };
    // Written by the `run` that restarted an agent of this cache: count, when, cause.
    if let Some(state) = ctx.staging.dir().parent() {
        if let Ok(text) = std::fs::read_to_string(state.join(layout::RESTARTS_NAME)) {
            let v: Vec<&str> = text.trim_end().splitn(3, '\t').collect();
            out += &field(st::RESTARTS, &v);
        }
    }
    match ctx.queue.paused() {
        Some((since, why)) => out += &field(st::UPLOADS, &["paused", &unix(since), &why]),
        None => out += &field(st::UPLOADS, &["running"]),
    }
    // A conflict is open while its copy is there: deleting the copy resolves it.
    for c in ctx.queue.conflicts() {
        if std::fs::symlink_metadata(ctx.local(&c.saved_as)).is_ok() {
            out += &field(st::CONFLICT, &[&c.path, &c.saved_as, &unix(c.at)]);
        }
    }
    if !whole {
        return out;
    }

    let (mut remote, mut hydrated) = ((0u64, 0u64), (0u64, 0u64));
    for (rel, size) in ctx.index.files().unwrap_or_default() {
        remote.0 += size;
        remote.1 += 1;
        let local = ctx.local(&rel);
        let here = std::fs::symlink_metadata(&local).is_ok_and(|m| m.is_file())
            && !matches!(marker_of(&local), Ok(Some(OwnedMarker::Placeholder(..))));
        if here {
            hydrated.0 += size;
            hydrated.1 += 1;
        }
    }
    out += &field(st::REMOTE, &[&remote.0.to_string(), &remote.1.to_string()]);
    out += &field(
        st::HYDRATED,
        &[&hydrated.0.to_string(), &hydrated.1.to_string()],
    );
    out += &field(
        st::DOWNLOADED,
        &[
            &ctx.s3
                .downloaded_objects
                .load(Ordering::Relaxed)
                .to_string(),
            &ctx.s3.downloaded_bytes.load(Ordering::Relaxed).to_string(),
        ],
    );
    out
}

/// Bytes of a regular file (0 for anything else or a vanished path).
fn file_size(p: &Path) -> u64 {
    std::fs::symlink_metadata(p)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .unwrap_or(0)
}
