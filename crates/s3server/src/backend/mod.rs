//! The S3 operations, on top of [`Store`]: the `S3` trait below is the routing table; each
//! request's work is in the file of its kind (`buckets`, `objects`, `listing`,
//! `multipart`), with what a read's conditions and range select in `conds`.

mod buckets;
mod conds;
mod listing;
mod multipart;
mod objects;

use conds::*;
use listing::*;
use objects::*;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use hyper::header::{HeaderValue, CONTENT_RANGE, ETAG, LAST_MODIFIED};
use hyper::HeaderMap;
use s3s::crypto::Checksum as _;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

use crate::body::{self, hex, FileBody};
use crate::list::{list_page, Entry, Page};
use crate::store::{
    self, etag_matches, internal, now_ms, Meta, ObjectRow, PartRow, Store, UploadRow, WriteCond,
};
use crate::Counters;

/// How often a read retries when the blob it looked up was replaced (and unlinked) by a
/// concurrent writer between the index lookup and the open.
const BLOB_RACE_ATTEMPTS: usize = 5;

pub(crate) struct Backend {
    pub store: Arc<Store>,
    pub stats: Arc<Counters>,
    pub region: String,
    /// Off: writes with `If-Match` / `If-None-Match` get 501 (see `Config`).
    pub conditional_writes: bool,
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn etag(v: &str) -> ETag {
    ETag::Strong(v.to_owned())
}

fn owner() -> Owner {
    Owner {
        display_name: Some("s3shim".to_owned()),
        id: Some("s3shim".to_owned()),
    }
}

fn custom_error(code: &str, status: hyper::StatusCode, msg: &'static str) -> S3Error {
    let code = S3ErrorCode::from_bytes(code.as_bytes()).unwrap_or(S3ErrorCode::InvalidArgument);
    let mut e = S3Error::with_message(code, msg);
    e.set_status_code(status);
    e
}

fn is_not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

impl Backend {
    fn count(&self, f: impl FnOnce(&Counters) -> &std::sync::atomic::AtomicU64) {
        f(&self.stats).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn lookup(&self, bucket: &str, key: &str) -> S3Result<ObjectRow> {
        let (b, k) = (bucket.to_owned(), key.to_owned());
        self.store.db(move |c| store::get_object(c, &b, &k)).await
    }

    async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        let b = bucket.to_owned();
        self.store.db(move |c| store::require_bucket(c, &b)).await
    }

    /// Opens the current blob of an object, re-reading the index if a concurrent writer
    /// replaced it in between. Returns the row and the file positioned at `slice.start`.
    async fn open_object(
        &self,
        bucket: &str,
        key: &str,
        check: impl Fn(&ObjectRow) -> S3Result<()>,
    ) -> S3Result<(ObjectRow, Option<tokio::fs::File>)> {
        for _ in 0..BLOB_RACE_ATTEMPTS {
            let row = self.lookup(bucket, key).await?;
            check(&row)?;
            let Some(blob) = &row.blob else {
                return Ok((row, None));
            };
            match tokio::fs::File::open(self.store.blob_path(blob)).await {
                Ok(f) => return Ok((row, Some(f))),
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(internal(e)),
            }
        }
        Err(internal("object kept changing while being read"))
    }

    /// Renames a received temp file into `blobs/`; empty bodies need no blob.
    fn persist_blob(&self, rec: body::Received) -> S3Result<Option<String>> {
        if rec.size == 0 {
            return Ok(None);
        }
        let id = self.store.new_id();
        rec.tmp
            .persist(&self.store.blob_path(&id))
            .map_err(internal)?;
        Ok(Some(id))
    }

    /// Commits a new object version and cleans up the blob it replaced (or, on failure,
    /// its own blob).
    async fn commit(
        &self,
        bucket: &str,
        row: ObjectRow,
        cond: WriteCond,
        upload_to_drop: Option<String>,
    ) -> S3Result<()> {
        let b = bucket.to_owned();
        let new_blob = row.blob.clone();
        let result = self
            .store
            .db(move |c| {
                store::commit_object(c, &b, &row, &cond, |tx| match &upload_to_drop {
                    Some(u) => store::drop_upload(tx, u),
                    None => Ok(()),
                })
            })
            .await;
        match result {
            Ok(old) => {
                self.store.remove_blob(old.as_deref());
                Ok(())
            }
            Err(e) => {
                self.store.remove_blob(new_blob.as_deref());
                Err(e)
            }
        }
    }

    /// A server without conditional writes refuses a write that asks for them, as AWS S3
    /// did: 501 NotImplemented, naming no header.
    fn refuse_unsupported_cond(&self, cond: &WriteCond) -> S3Result<()> {
        if self.conditional_writes || (cond.if_match.is_none() && cond.if_none_match.is_none()) {
            return Ok(());
        }
        Err(custom_error(
            "NotImplemented",
            hyper::StatusCode::NOT_IMPLEMENTED,
            "A header you provided implies functionality that is not implemented",
        ))
    }

    /// Fails fast (before a body is received) on a missing bucket or a write condition
    /// that already fails; the commit checks again atomically.
    async fn precheck_write(&self, bucket: &str, key: &str, cond: &WriteCond) -> S3Result<()> {
        self.refuse_unsupported_cond(cond)?;
        if cond.if_match.is_none() && cond.if_none_match.is_none() {
            return self.require_bucket(bucket).await;
        }
        match self.lookup(bucket, key).await {
            Ok(row) => cond.check(Some(&row.etag)),
            Err(e) if *e.code() == S3ErrorCode::NoSuchKey => cond.check(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl S3 for Backend {
    // ---- buckets ----

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        buckets::list_buckets(self, req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        buckets::create_bucket(self, req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        buckets::head_bucket(self, req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        buckets::delete_bucket(self, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        buckets::get_bucket_location(self, req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        buckets::get_bucket_versioning(self, req).await
    }

    // ---- objects ----

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        objects::head_object(self, req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        objects::get_object(self, req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        objects::put_object(self, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        objects::delete_object(self, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        objects::delete_objects(self, req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        objects::copy_object(self, req).await
    }

    // ---- listing ----

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        listing::list_objects_v2(self, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        listing::list_objects(self, req).await
    }

    // ---- multipart ----

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create_multipart_upload(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        multipart::upload_part_copy(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete_multipart_upload(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort_multipart_upload(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_multipart_uploads(self, req).await
    }
}
