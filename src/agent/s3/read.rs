//! Reads: HEAD, a whole object in one GET, and downloads of large objects as parallel
//! ranged GETs with bounded memory, every part from the same version.

use super::{same_etag, ObjectHead, S3};
use crate::agent::error::{other, Context, Result};
use crate::config::Downloads;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use futures::{stream, StreamExt, TryStreamExt};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing::info;

/// Ranged GETs in flight for one object. Memory held is about this many write buffers.
/// At a distance each part is a round trip: more in flight keeps the link full.
const PART_CONCURRENCY: usize = 8;
/// Bytes gathered from a response body before one positioned write.
const WRITE_BUFFER: usize = 1 << 20;

impl S3 {
    /// HEAD; `None` when the object does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectHead>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Ok(Some(ObjectHead::from_parts(
                o.content_length(),
                o.e_tag(),
                o.metadata(),
                o.last_modified(),
            ))),
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(self.err("reading metadata of", key, e)),
        }
    }

    /// A GET of `key` (the caller adds a range or a condition).
    fn get_request(&self, key: &str) -> GetObjectFluentBuilder {
        self.client.get_object().bucket(&self.bucket).key(key)
    }

    /// A whole object's GET that succeeded, counted for `status` (its body not read yet).
    fn counted(&self, o: GetObjectOutput) -> GetObjectOutput {
        self.downloaded_objects.fetch_add(1, Ordering::Relaxed);
        self.downloaded_bytes.fetch_add(
            o.content_length().unwrap_or(0).max(0) as u64,
            Ordering::Relaxed,
        );
        o
    }

    async fn get(&self, key: &str) -> Result<GetObjectOutput> {
        let o = self
            .get_request(key)
            .send()
            .await
            .map_err(|e| self.err("downloading", key, e))?;
        Ok(self.counted(o))
    }

    /// Reads a small object whole (symlink targets).
    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>> {
        let data = self
            .get(key)
            .await?
            .body
            .collect()
            .await
            .map_err(|e| other!("downloading {key}: {e}"))?;
        Ok(data.into_bytes().to_vec())
    }

    /// Whether the object at `key` holds exactly the bytes of the local file (an upload
    /// whose answer was lost: the agent was killed after the PUT, before recording it).
    /// Returns its ETag when it does. Streams both sides; memory stays small.
    pub async fn holds_same_bytes(&self, key: &str, path: &Path) -> Result<Option<String>> {
        use tokio::io::AsyncReadExt;
        let Some(head) = self.head(key).await? else {
            return Ok(None);
        };
        let local_size = tokio::fs::metadata(path).await?.len();
        if head.size != local_size {
            return Ok(None);
        }
        let mut o = self.get(key).await?;
        let mut f = tokio::fs::File::open(path).await?;
        let mut buf = Vec::new();
        while let Some(chunk) = o
            .body
            .try_next()
            .await
            .map_err(|e| other!("downloading {key}: {e}"))?
        {
            buf.resize(chunk.len(), 0);
            if f.read_exact(&mut buf).await.is_err() || buf[..] != chunk[..] {
                return Ok(None);
            }
        }
        Ok(Some(o.e_tag().unwrap_or(&head.etag).to_string()))
    }

    /// Downloads `key` into `file` (empty, created by the caller), as parallel ranged
    /// GETs when `size_hint` (the size last seen) reaches the threshold. Every part is
    /// read from the same version of the object (`If-Match` on the first part's ETag,
    /// and the ETag checked again), and the byte count is checked: an error leaves a
    /// partial file that the caller must discard.
    pub async fn download(
        &self,
        key: &str,
        file: &File,
        size_hint: u64,
        dl: Downloads,
    ) -> Result<ObjectHead> {
        if size_hint < dl.ranged_threshold || size_hint <= dl.part_size {
            return self.download_whole(key, file).await;
        }
        let part = dl.part_size;
        let first = self.get_range(key, 0, part, None).await?;
        let ranged = first.out.content_range().is_some();
        let (head, total) = first.head_and_total(key)?;
        let file = Arc::new(file.try_clone()?);
        let mut written = first.write_at(key, &file, 0).await?;
        if !ranged {
            // The server ignored the range and sent the whole object.
            expect_bytes(key, written, total)?;
            return Ok(head);
        }
        expect_bytes(key, written, part.min(total))?;
        let parts: Vec<u64> = (1..total.div_ceil(part)).map(|i| i * part).collect();
        let n_parts = parts.len() + 1;
        let etag = head.etag.clone();
        let sizes: Vec<u64> = stream::iter(parts)
            .map(|start| {
                let (file, etag) = (file.clone(), etag.clone());
                async move {
                    let len = part.min(total - start);
                    let got = self.get_range(key, start, len, Some(&etag)).await?;
                    if !same_etag(got.etag(), &etag) {
                        return Err(other!("downloading {key}: it changed during the download"));
                    }
                    got.write_at(key, &file, start).await
                }
            })
            .buffer_unordered(PART_CONCURRENCY)
            .try_collect()
            .await?;
        written += sizes.iter().sum::<u64>();
        expect_bytes(key, written, total)?;
        info!("downloaded {key:?} ({total} bytes) as {n_parts} ranged GETs");
        self.downloaded_objects.fetch_add(1, Ordering::Relaxed);
        self.downloaded_bytes.fetch_add(total, Ordering::Relaxed);
        Ok(head)
    }

    /// A whole small object in one GET: what a HEAD would say (the GET carries the same
    /// headers) and its bytes; `None` when it does not exist.
    pub async fn get_small(&self, key: &str) -> Result<Option<(ObjectHead, Vec<u8>)>> {
        let out = match self.get_request(key).send().await {
            Ok(o) => self.counted(o),
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                return Ok(None)
            }
            Err(e) => return Err(self.err("downloading", key, e)),
        };
        let (head, out) = Part { out }.head_owned();
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| other!("downloading {key}: {e}"))?
            .into_bytes()
            .to_vec();
        Ok(Some((head, bytes)))
    }

    async fn download_whole(&self, key: &str, file: &File) -> Result<ObjectHead> {
        let o = self.get(key).await?;
        let got = Part { out: o };
        let head = got.head();
        let written = got.write_at(key, &Arc::new(file.try_clone()?), 0).await?;
        expect_bytes(key, written, head.size)?;
        Ok(head)
    }

    /// GET of `len` bytes from `start`, conditional on `if_match` when given.
    async fn get_range(
        &self,
        key: &str,
        start: u64,
        len: u64,
        if_match: Option<&str>,
    ) -> Result<Part> {
        let out = self
            .get_request(key)
            .range(format!("bytes={start}-{}", start + len - 1))
            .set_if_match(if_match.map(str::to_string))
            .send()
            .await
            .map_err(|e| self.err("downloading", key, e))?;
        let got = out.content_length().unwrap_or(-1);
        if u64::try_from(got).ok() != Some(len) && start > 0 {
            return Err(other!(
                "downloading {key}: asked for {len} bytes at {start}, the server sends {got}"
            ));
        }
        Ok(Part { out })
    }
}

/// A short (or long) body is an error, never a file taken as complete.
fn expect_bytes(key: &str, written: u64, expected: u64) -> Result<()> {
    if written != expected {
        return Err(other!(
            "downloading {key}: got {written} bytes, expected {expected}"
        ));
    }
    Ok(())
}

/// One GET response, whole or ranged.
struct Part {
    out: GetObjectOutput,
}

impl Part {
    fn etag(&self) -> &str {
        self.out.e_tag().unwrap_or_default()
    }

    /// What the response says, and the response (for its body).
    fn head_owned(self) -> (ObjectHead, GetObjectOutput) {
        (self.head(), self.out)
    }

    fn head(&self) -> ObjectHead {
        let o = &self.out;
        ObjectHead::from_parts(
            o.content_length(),
            o.e_tag(),
            o.metadata(),
            o.last_modified(),
        )
    }

    /// What the object is, and its whole size (from `Content-Range`; a server that
    /// ignored the range sent the whole object, whose size is its length).
    fn head_and_total(&self, key: &str) -> Result<(ObjectHead, u64)> {
        let mut head = self.head();
        let total = match self.out.content_range() {
            Some(r) => r
                .rsplit('/')
                .next()
                .and_then(|t| t.parse().ok())
                .with_context(|| format!("downloading {key}: bad Content-Range {r:?}"))?,
            None => head.size,
        };
        head.size = total;
        Ok((head, total))
    }

    /// Streams the body into `file` at `offset`, in positioned writes of at most
    /// [`WRITE_BUFFER`] bytes; returns the byte count.
    async fn write_at(self, key: &str, file: &Arc<File>, offset: u64) -> Result<u64> {
        let mut body = self.out.body;
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BUFFER);
        let mut at = offset;
        loop {
            let chunk = body
                .try_next()
                .await
                .map_err(|e| other!("downloading {key}: {e}"))?;
            let last = chunk.is_none();
            if let Some(c) = &chunk {
                buf.extend_from_slice(c);
            }
            if buf.len() >= WRITE_BUFFER || (last && !buf.is_empty()) {
                let (f, data, pos) = (file.clone(), std::mem::take(&mut buf), at);
                at += data.len() as u64;
                buf = tokio::task::spawn_blocking(move || {
                    f.write_all_at(&data, pos).map(|()| {
                        let mut data = data;
                        data.clear();
                        data
                    })
                })
                .await??;
            }
            if last {
                return Ok(at - offset);
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::testkit::{kit, put};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_objects_come_as_ranged_gets_from_one_version() {
        let dl = Downloads {
            ranged_threshold: 1 << 20,
            part_size: 300 << 10,
            eager_max: 0,
        };
        let k = kit("", dl).await;
        let body: Vec<u8> = (0..(3 << 20) + 12345u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        put(&k.ctx, "big", &body).await;
        let out = k._dir.path().join("out");
        let f = File::create(&out).unwrap();
        let before = k.server.stats();
        let head = k
            .ctx
            .s3
            .download("big", &f, body.len() as u64, dl)
            .await
            .unwrap();
        let gets = (k.server.stats() - before).get;
        assert_eq!(head.size, body.len() as u64);
        assert_eq!(std::fs::read(&out).unwrap(), body);
        assert_eq!(
            gets,
            (body.len() as u64).div_ceil(300 << 10),
            "one GET per part"
        );

        // Below the threshold: one GET.
        let f = File::create(&out).unwrap();
        let before = k.server.stats();
        k.ctx.s3.download("big", &f, 1000, dl).await.unwrap();
        assert_eq!((k.server.stats() - before).get, 1);
        assert_eq!(std::fs::read(&out).unwrap(), body);

        // A part of another version is refused, never stitched in.
        let wrong = k.ctx.s3.get_range("big", 0, 10, Some("\"0000\"")).await;
        assert!(wrong.is_err());
        k.server.shutdown().await;
    }
}
