//! Writes: uploads (whole or multipart, read from the file as they are sent) under a
//! precondition on the object they replace, server-side copies and deletes.

use super::classify::classify;
use super::{PosixMeta, S3};
use crate::agent::error::{other, Error, Result};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, MetadataDirective, ObjectIdentifier};
use std::path::Path;

/// A write's precondition on the object it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// Only if the object still has this ETag (we last saw it so).
    IfMatch(String),
    /// Only if no object has the key (we never saw one).
    IfNoneMatch,
}

/// The `If-Match` value for an ETag as S3 returned it: without its quotes. Our server,
/// moto and AWS accept both forms, Ceph's RADOS gateway (Pacific) only the bare one: a
/// quoted ETag there fails every overwrite with 412 (found by tests/ceph_cluster.rs and
/// the suites' ceph run).
fn if_match_value(etag: &str) -> &str {
    etag.trim_matches('"')
}

impl Cond {
    /// The `If-Match` and `If-None-Match` headers of a write under `cond`.
    fn headers(cond: &Option<Cond>) -> (Option<String>, Option<String>) {
        match cond {
            Some(Cond::IfMatch(e)) => (Some(if_match_value(e).to_string()), None),
            Some(Cond::IfNoneMatch) => (None, Some("*".to_string())),
            None => (None, None),
        }
    }
}

impl S3 {
    /// Uploads a local file as `key` under `cond`; returns the new ETag. Files at or
    /// above the multipart threshold go up in parts, read from the file as they are sent.
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        m: PosixMeta,
        cond: Option<Cond>,
    ) -> Result<String> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| other!("reading {} for upload: {e}", path.display()))?
            .len();
        let cond = self.check_cond(key, cond).await?;
        if size >= self.tuning.multipart_threshold && size > self.tuning.part_size {
            return self.put_multipart(key, path, size, m, cond).await;
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| other!("reading {} for upload: {e}", path.display()))?;
        self.put(key, body, m, cond).await
    }

    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>, m: PosixMeta) -> Result<String> {
        self.put(key, ByteStream::from(bytes), m, None).await
    }

    /// On a server without conditional writes, checks the precondition with a HEAD
    /// (racy, but catches the common case) and sends the write unconditionally.
    async fn check_cond(&self, key: &str, cond: Option<Cond>) -> Result<Option<Cond>> {
        use std::sync::atomic::Ordering;
        if cond.is_none() || !self.no_conditional_writes.load(Ordering::Relaxed) {
            return Ok(cond);
        }
        let current = self.head(key).await?.map(|h| h.etag);
        let holds = match (&cond, current) {
            (Some(Cond::IfMatch(e)), Some(cur)) => *e == cur,
            (Some(Cond::IfNoneMatch), None) => true,
            _ => false,
        };
        if holds {
            Ok(None)
        } else {
            Err(Error::Conflict(format!(
                "uploading {key}: the object changed in S3 (HEAD check)"
            )))
        }
    }

    /// A conditional write the server rejected as not implemented: remember to check
    /// with HEAD from now on, and say so once.
    fn conditional_unsupported<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        e: &SdkError<E, HttpResponse>,
    ) -> bool {
        use std::sync::atomic::Ordering;
        let status = match e {
            SdkError::ServiceError(se) => se.raw().status().as_u16(),
            _ => return false,
        };
        if status != 501 && e.code() != Some("NotImplemented") {
            return false;
        }
        if !self.no_conditional_writes.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{} does not support conditional writes (If-Match / If-None-Match); checking for concurrent changes with HEAD before each upload instead, which leaves a small window for lost updates",
                self.endpoint_desc
            );
        }
        true
    }

    async fn put(
        &self,
        key: &str,
        body: ByteStream,
        m: PosixMeta,
        cond: Option<Cond>,
    ) -> Result<String> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .set_metadata(Some(self.metadata(m)));
        if key.ends_with('/') {
            // What s3fs gives directory objects.
            req = req.content_type("application/x-directory");
        }
        let (if_match, if_none_match) = Cond::headers(&cond);
        req = req.set_if_match(if_match).set_if_none_match(if_none_match);
        match req.send().await {
            Ok(o) => Ok(o.e_tag().unwrap_or_default().to_string()),
            // Tried again at once, with the HEAD check.
            Err(e) if cond.is_some() && self.conditional_unsupported(&e) => {
                Err(Error::Unavailable(format!(
                    "uploading {key}: the server does not support conditional writes"
                )))
            }
            Err(e) => Err(self.if_match_gone(key, &cond, e)),
        }
    }

    /// `If-Match` on a key deleted meanwhile answers 404: that is a conflict too.
    fn if_match_gone<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        key: &str,
        cond: &Option<Cond>,
        e: SdkError<E, HttpResponse>,
    ) -> Error {
        let gone = matches!(cond, Some(Cond::IfMatch(_)))
            && matches!(&e, SdkError::ServiceError(se) if se.raw().status().as_u16() == 404);
        if gone {
            return Error::Conflict(format!(
                "uploading {key}: the object was deleted in S3 meanwhile"
            ));
        }
        classify(&e, format!("uploading {key}: {}", self.explain(&e)))
    }

    /// Multipart upload: parts of `part_size` streamed from the file at their offset,
    /// `part_concurrency` at a time; memory does not grow with the file or part size.
    /// The upload is aborted on any failure (no orphaned parts are left to bill).
    async fn put_multipart(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        m: PosixMeta,
        cond: Option<Cond>,
    ) -> Result<String> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        use futures::{StreamExt, TryStreamExt};
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(Some(self.metadata(m)))
            .send()
            .await
            .map_err(|e| self.err("starting the upload of", key, e))?;
        let id = created
            .upload_id()
            .ok_or_else(|| other!("uploading {key}: the server gave no upload id"))?
            .to_string();
        let part_size = self.tuning.part_size;
        let count = size.div_ceil(part_size);
        // Timings at debug level (`S3SHIM_LOG=s3shim=debug`): where a large upload's
        // time goes (the parts, or the server assembling them).
        let t0 = std::time::Instant::now();
        let parts = futures::stream::iter(0..count)
            .map(|i| {
                let id = &id;
                async move {
                    let offset = i * part_size;
                    let len = part_size.min(size - offset);
                    let started = t0.elapsed();
                    // Read from the file as it is sent (and again on a retry), in small
                    // buffers: no part is ever held in memory whole.
                    let body = ByteStream::read_from()
                        .path(path)
                        .offset(offset)
                        .length(aws_smithy_types::byte_stream::Length::Exact(len))
                        .build()
                        .await
                        .map_err(|e| other!("reading {} for upload: {e}", path.display()))?;
                    let out = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(id)
                        .part_number(i as i32 + 1)
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| self.err("uploading a part of", key, e))?;
                    tracing::debug!(
                        "{key}: part {} of {count} ({len} bytes) sent from {started:?} to {:?}",
                        i + 1,
                        t0.elapsed()
                    );
                    Ok::<_, Error>(
                        CompletedPart::builder()
                            .part_number(i as i32 + 1)
                            .set_e_tag(out.e_tag().map(str::to_string))
                            .build(),
                    )
                }
            })
            // A slow part does not hold up the start of the next ones.
            .buffer_unordered(self.tuning.part_concurrency)
            .try_collect::<Vec<_>>()
            .await
            .map(|mut parts| {
                // Completing needs the parts in ascending order.
                parts.sort_by_key(|p| p.part_number());
                parts
            });
        let parts_done = t0.elapsed();
        let result = match parts {
            Ok(parts) => {
                let mut req = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    );
                let (if_match, if_none_match) = Cond::headers(&cond);
                req = req.set_if_match(if_match).set_if_none_match(if_none_match);
                match req.send().await {
                    Ok(o) => Ok(o.e_tag().unwrap_or_default().to_string()),
                    // Some servers (moto) answer 200 with a body the SDK cannot read
                    // (another root element): the object tells whether it worked.
                    Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 200 => {
                        match self.head(key).await? {
                            Some(h)
                                if h.size == size
                                    && h.writer.as_deref() == self.writer()
                                    && h.etag.trim_matches('"').ends_with(&format!("-{count}")) =>
                            {
                                Ok(h.etag)
                            }
                            _ => Err(other!(
                                "uploading {key}: the server's answer to completing the upload was unreadable"
                            )),
                        }
                    }
                    // Tried again with the HEAD check (the parts are aborted below).
                    Err(e) if cond.is_some() && self.conditional_unsupported(&e) => {
                        Err(Error::Unavailable(format!(
                            "uploading {key}: the server does not support conditional writes"
                        )))
                    }
                    Err(e) => Err(self.if_match_gone(key, &cond, e)),
                }
            }
            Err(e) => Err(e),
        };
        tracing::debug!(
            "{key}: {count} parts in {parts_done:?}, completed at {:?} ({})",
            t0.elapsed(),
            if result.is_ok() { "ok" } else { "failed" }
        );
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&id)
                .send()
                .await;
        }
        result
    }

    /// Server-side copy with new metadata; returns the new ETag.
    pub async fn copy(&self, src: &str, dst: &str, m: PosixMeta) -> Result<String> {
        let o = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{}", self.bucket, encode_key(src)))
            .key(dst)
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(self.metadata(m)))
            .send()
            .await
            .map_err(|e| self.err("copying to", dst, e))?;
        Ok(o.copy_object_result()
            .and_then(|r| r.e_tag())
            .unwrap_or_default()
            .to_string())
    }

    /// Server-side copy keeping the object's metadata (moving a subtree).
    pub async fn copy_keep_meta(&self, src: &str, dst: &str) -> Result<()> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{}", self.bucket, encode_key(src)))
            .key(dst)
            .metadata_directive(MetadataDirective::Copy)
            .send()
            .await
            .map_err(|e| self.err("copying to", dst, e))?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("deleting", key, e))?;
        Ok(())
    }

    /// Deletes many keys, 1000 per request (the S3 limit).
    pub async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(1000) {
            let ids = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| other!("deleting under {}: {e}", chunk[0]))?;
            let del = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| other!("deleting under {}: {e}", chunk[0]))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(del)
                .send()
                .await
                .map_err(|e| self.err("deleting under", &chunk[0], e))?;
            if let Some(e) = out.errors().first() {
                return Err(other!(
                    "deleting {}: {}",
                    e.key().unwrap_or("?"),
                    e.message().unwrap_or("refused")
                ));
            }
        }
        Ok(())
    }
}

/// Percent-encodes a key for `x-amz-copy-source`, keeping `/` as S3 expects.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_encoding() {
        assert_eq!(encode_key("a b/ü+x.txt"), "a%20b/%C3%BC%2Bx.txt");
        assert_eq!(encode_key("plain/path-1_2.~"), "plain/path-1_2.~");
    }
}
