//! The S3 operations, on top of [`Store`].

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

/// S3's minimum size of every part but the last.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;
/// How often a read retries when the blob it looked up was replaced (and unlinked) by a
/// concurrent writer between the index lookup and the open.
const BLOB_RACE_ATTEMPTS: usize = 5;

pub(crate) struct Backend {
    pub store: Arc<Store>,
    pub stats: Arc<Counters>,
    pub region: String,
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
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

fn http_date(t: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

fn precondition_failed() -> S3Error {
    s3_error!(
        PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold"
    )
}

fn custom_error(code: &str, status: hyper::StatusCode, msg: &'static str) -> S3Error {
    let code = S3ErrorCode::from_bytes(code.as_bytes()).unwrap_or(S3ErrorCode::InvalidArgument);
    let mut e = S3Error::with_message(code, msg);
    e.set_status_code(status);
    e
}

struct StdHeaders {
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<Timestamp>,
    metadata: Option<Metadata>,
}

fn meta_of(h: StdHeaders) -> Meta {
    Meta {
        content_type: h.content_type,
        cache_control: h.cache_control,
        content_disposition: h.content_disposition,
        content_encoding: h.content_encoding,
        content_language: h.content_language,
        expires: h.expires.as_ref().and_then(http_date),
        user: h.metadata.unwrap_or_default().into_iter().collect(),
    }
}

fn user_metadata(meta: &Meta) -> Option<Metadata> {
    if meta.user.is_empty() {
        None
    } else {
        Some(
            meta.user
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        )
    }
}

fn content_type(meta: &Meta) -> String {
    // What S3 reports for objects stored without a Content-Type.
    meta.content_type
        .clone()
        .unwrap_or_else(|| "binary/octet-stream".to_owned())
}

struct ReadConds<'a> {
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

enum CondResult {
    Ok,
    PreconditionFailed,
    NotModified,
}

/// RFC 9110 §13.2.2 order, which is also what S3 documents: If-Match (else
/// If-Unmodified-Since) can fail with 412; then If-None-Match (else If-Modified-Since)
/// can answer 304.
fn eval_conds(row: &ObjectRow, c: &ReadConds<'_>) -> CondResult {
    let lm = row.last_modified_ms / 1000;
    if let Some(m) = c.if_match {
        if !etag_matches(m, &row.etag) {
            return CondResult::PreconditionFailed;
        }
    } else if let Some(t) = c.if_unmodified_since {
        if lm > secs(t) {
            return CondResult::PreconditionFailed;
        }
    }
    if let Some(m) = c.if_none_match {
        if etag_matches(m, &row.etag) {
            return CondResult::NotModified;
        }
    } else if let Some(t) = c.if_modified_since {
        if lm <= secs(t) {
            return CondResult::NotModified;
        }
    }
    CondResult::Ok
}

fn check_read_conds(row: &ObjectRow, c: &ReadConds<'_>) -> S3Result<()> {
    match eval_conds(row, c) {
        CondResult::Ok => Ok(()),
        CondResult::PreconditionFailed => Err(precondition_failed()),
        CondResult::NotModified => {
            let mut e = s3_error!(NotModified);
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", row.etag)) {
                h.insert(ETAG, v);
            }
            if let Some(v) =
                http_date(&ts(row.last_modified_ms)).and_then(|d| HeaderValue::from_str(&d).ok())
            {
                h.insert(LAST_MODIFIED, v);
            }
            e.set_headers(h);
            Err(e)
        }
    }
}

/// For copies every failed source condition is a 412.
fn check_copy_source_conds(row: &ObjectRow, c: &ReadConds<'_>) -> S3Result<()> {
    match eval_conds(row, c) {
        CondResult::Ok => Ok(()),
        _ => Err(precondition_failed()),
    }
}

struct Slice {
    start: u64,
    len: u64,
    content_range: Option<String>,
    parts_count: Option<i32>,
}

fn slice_of(row: &ObjectRow, range: Option<&Range>, part_number: Option<i32>) -> S3Result<Slice> {
    let whole = Slice {
        start: 0,
        len: row.size,
        content_range: None,
        parts_count: None,
    };
    if let Some(pn) = part_number {
        if range.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            ));
        }
        let bad = || {
            custom_error(
                "InvalidPartNumber",
                hyper::StatusCode::RANGE_NOT_SATISFIABLE,
                "The requested partnumber is not satisfiable",
            )
        };
        let Some(sizes) = &row.parts else {
            return if pn == 1 { Ok(whole) } else { Err(bad()) };
        };
        let idx = usize::try_from(pn)
            .ok()
            .and_then(|p| p.checked_sub(1))
            .ok_or_else(bad)?;
        let len = *sizes.get(idx).ok_or_else(bad)?;
        let start: u64 = sizes[..idx].iter().sum();
        return Ok(Slice {
            start,
            len,
            content_range: Some(format!(
                "bytes {}-{}/{}",
                start,
                (start + len).saturating_sub(1),
                row.size
            )),
            parts_count: i32::try_from(sizes.len()).ok(),
        });
    }
    let Some(range) = range else { return Ok(whole) };
    match range.check(row.size) {
        Ok(r) => Ok(Slice {
            start: r.start,
            len: r.end - r.start,
            content_range: Some(format!("bytes {}-{}/{}", r.start, r.end - 1, row.size)),
            parts_count: None,
        }),
        Err(_) => {
            let mut e = s3_error!(InvalidRange, "The requested range is not satisfiable");
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", row.size)) {
                h.insert(CONTENT_RANGE, v);
            }
            e.set_headers(h);
            Err(e)
        }
    }
}

fn parse_max(v: Option<i32>, what: &str) -> S3Result<usize> {
    match v {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(
            InvalidArgument,
            "{what} must be a non-negative integer"
        )),
        Some(n) => Ok(usize::try_from(n).unwrap_or(1000).min(1000)),
    }
}

/// Whether keys in a listing are to be URL-encoded (`encoding-type=url`, which aws-cli
/// always sends).
fn url_encoding(e: Option<&EncodingType>) -> S3Result<bool> {
    match e.map(EncodingType::as_str) {
        None => Ok(false),
        Some(s) if s.eq_ignore_ascii_case("url") => Ok(true),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request"
        )),
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn enc(s: &str, on: bool) -> String {
    if on {
        url_encode(s)
    } else {
        s.to_owned()
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn decode_token(t: &str) -> S3Result<String> {
    unhex(t)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

fn listed_object(row: ObjectRow, encode: bool, with_owner: bool) -> Object {
    Object {
        key: Some(enc(&row.key, encode)),
        last_modified: Some(ts(row.last_modified_ms)),
        e_tag: Some(etag(&row.etag)),
        size: i64::try_from(row.size).ok(),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        owner: with_owner.then(owner),
        ..Default::default()
    }
}

fn split_page(page: Page, encode: bool, with_owner: bool) -> (Vec<Object>, Vec<CommonPrefix>) {
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    for e in page.entries {
        match e {
            Entry::Object(o) => objects.push(listed_object(*o, encode, with_owner)),
            Entry::Prefix(p) => prefixes.push(CommonPrefix {
                prefix: Some(enc(&p, encode)),
            }),
        }
    }
    (objects, prefixes)
}

fn source_of(cs: &CopySource) -> S3Result<(String, String)> {
    match cs {
        CopySource::Bucket { bucket, key, .. } => Ok((bucket.to_string(), key.to_string())),
        _ => Err(s3_error!(
            NotImplemented,
            "copy sources other than bucket/key are not supported"
        )),
    }
}

fn check_part_number(pn: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&pn) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
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

    /// Fails fast (before a body is received) on a missing bucket or a write condition
    /// that already fails; the commit checks again atomically.
    async fn precheck_write(&self, bucket: &str, key: &str, cond: &WriteCond) -> S3Result<()> {
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
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.count(|c| &c.bucket);
        let rows = self.store.db(|c| store::list_buckets(c)).await?;
        let buckets = rows
            .into_iter()
            .map(|(name, created)| Bucket {
                name: Some(name),
                creation_date: Some(ts(created)),
                bucket_region: Some(self.region.clone()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner()),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.count(|c| &c.bucket);
        let bucket = req.input.bucket;
        let b = bucket.clone();
        let created = self.store.db(move |c| store::create_bucket(c, &b)).await?;
        if !created {
            return Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it."
            ));
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.count(|c| &c.bucket);
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.count(|c| &c.bucket);
        let b = req.input.bucket;
        let uploads = self.store.db(move |c| store::delete_bucket(c, &b)).await?;
        for u in uploads {
            self.store.remove_upload_dir(&u);
        }
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.count(|c| &c.bucket);
        self.require_bucket(&req.input.bucket).await?;
        // S3 reports us-east-1 as an empty location constraint.
        let location_constraint = (self.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint,
        }))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.count(|c| &c.bucket);
        self.require_bucket(&req.input.bucket).await?;
        // Buckets are never versioned: no Status element, as for a bucket that never had it.
        Ok(S3Response::new(GetBucketVersioningOutput::default()))
    }

    // ---- objects ----

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.count(|c| &c.head);
        let input = req.input;
        let conds = ReadConds {
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
        };
        let row = self.lookup(&input.bucket, &input.key).await?;
        check_read_conds(&row, &conds)?;
        let slice = slice_of(&row, input.range.as_ref(), input.part_number)?;
        let meta = &row.meta;
        Ok(S3Response::new(HeadObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            content_length: i64::try_from(slice.len).ok(),
            content_range: slice.content_range,
            parts_count: slice.parts_count,
            content_type: Some(content_type(meta)),
            cache_control: meta.cache_control.clone(),
            content_disposition: meta.content_disposition.clone(),
            content_encoding: meta.content_encoding.clone(),
            content_language: meta.content_language.clone(),
            expires: meta.expires.as_deref().and_then(parse_http_date),
            e_tag: Some(etag(&row.etag)),
            last_modified: Some(ts(row.last_modified_ms)),
            metadata: user_metadata(meta),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.count(|c| &c.get);
        let input = req.input;
        let conds = ReadConds {
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
        };
        let (row, file) = self
            .open_object(&input.bucket, &input.key, |row| {
                check_read_conds(row, &conds)?;
                slice_of(row, input.range.as_ref(), input.part_number).map(drop)
            })
            .await?;
        let slice = slice_of(&row, input.range.as_ref(), input.part_number)?;
        let body = match file {
            Some(mut f) => {
                use tokio::io::AsyncSeekExt;
                f.seek(std::io::SeekFrom::Start(slice.start))
                    .await
                    .map_err(internal)?;
                FileBody::new(f, slice.len)
            }
            None => return Ok(empty_get(&row, slice)),
        };
        self.stats
            .get_bytes
            .fetch_add(slice.len, std::sync::atomic::Ordering::Relaxed);
        let meta = &row.meta;
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::new(body)),
            accept_ranges: Some("bytes".to_owned()),
            content_length: i64::try_from(slice.len).ok(),
            content_range: slice.content_range,
            parts_count: slice.parts_count,
            content_type: Some(content_type(meta)),
            cache_control: meta.cache_control.clone(),
            content_disposition: meta.content_disposition.clone(),
            content_encoding: meta.content_encoding.clone(),
            content_language: meta.content_language.clone(),
            expires: meta.expires.as_deref().and_then(parse_http_date),
            e_tag: Some(etag(&row.etag)),
            last_modified: Some(ts(row.last_modified_ms)),
            metadata: user_metadata(meta),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.count(|c| &c.put);
        let headers = req.headers;
        let trailers = req.trailing_headers;
        let input = req.input;
        let cond = WriteCond {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
        };
        self.precheck_write(&input.bucket, &input.key, &cond)
            .await?;
        let rec = body::receive(
            &self.store,
            input.body,
            input.content_length,
            &headers,
            trailers.as_ref(),
        )
        .await?;
        self.stats
            .put_bytes
            .fetch_add(rec.size, std::sync::atomic::Ordering::Relaxed);
        let size = rec.size;
        let md5 = hex(&rec.md5);
        let blob = self.persist_blob(rec)?;
        let row = ObjectRow {
            key: input.key,
            size,
            etag: md5.clone(),
            last_modified_ms: now_ms(),
            meta: meta_of(StdHeaders {
                content_type: input.content_type,
                cache_control: input.cache_control,
                content_disposition: input.content_disposition,
                content_encoding: input.content_encoding,
                content_language: input.content_language,
                expires: input.expires,
                metadata: input.metadata,
            }),
            blob,
            parts: None,
        };
        self.commit(&input.bucket, row, cond, None).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&md5)),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.count(|c| &c.delete);
        let input = req.input;
        let (b, k, m) = (input.bucket, input.key, input.if_match);
        let blobs = self
            .store
            .db(move |c| store::delete_objects(c, &b, std::slice::from_ref(&k), m.as_ref()))
            .await?;
        for blob in blobs {
            self.store.remove_blob(Some(&blob));
        }
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.count(|c| &c.delete);
        let input = req.input;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "at most 1000 keys can be deleted in one request"
            ));
        }
        let keys: Vec<String> = input.delete.objects.into_iter().map(|o| o.key).collect();
        let quiet = input.delete.quiet.unwrap_or(false);
        let b = input.bucket;
        let k = keys.clone();
        let blobs = self
            .store
            .db(move |c| store::delete_objects(c, &b, &k, None))
            .await?;
        for blob in blobs {
            self.store.remove_blob(Some(&blob));
        }
        let deleted = if quiet {
            Vec::new()
        } else {
            keys.into_iter()
                .map(|k| DeletedObject {
                    key: Some(k),
                    ..Default::default()
                })
                .collect()
        };
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.count(|c| &c.copy);
        let input = req.input;
        let (src_bucket, src_key) = source_of(&input.copy_source)?;
        let replace = match input
            .metadata_directive
            .as_ref()
            .map(MetadataDirective::as_str)
        {
            None | Some("COPY") => false,
            Some("REPLACE") => true,
            Some(_) => return Err(s3_error!(InvalidArgument, "Unknown metadata directive.")),
        };
        if !replace && src_bucket == input.bucket && src_key == input.key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        self.require_bucket(&input.bucket).await?;
        let conds = ReadConds {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        };
        // Blobs are immutable, so a hard link is a copy; retried if the source blob is
        // replaced between the lookup and the link.
        let mut copied = None;
        for _ in 0..BLOB_RACE_ATTEMPTS {
            let src = self.lookup(&src_bucket, &src_key).await?;
            check_copy_source_conds(&src, &conds)?;
            let Some(src_blob) = src.blob.clone() else {
                copied = Some((src, None));
                break;
            };
            let id = self.store.new_id();
            let from = self.store.blob_path(&src_blob);
            let to = self.store.blob_path(&id);
            let linked = tokio::task::spawn_blocking(move || {
                std::fs::hard_link(&from, &to).or_else(|e| {
                    if is_not_found(&e) {
                        Err(e)
                    } else {
                        // Hard links unsupported here: copy the bytes instead.
                        std::fs::copy(&from, &to).map(drop)
                    }
                })
            })
            .await
            .map_err(internal)?;
            match linked {
                Ok(()) => {
                    copied = Some((src, Some(id)));
                    break;
                }
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(internal(e)),
            }
        }
        let Some((src, blob)) = copied else {
            return Err(internal("source object kept changing while being copied"));
        };
        // A copy is a single-part object, so its ETag is the MD5 of the data, which a
        // multipart source's ETag is not.
        let md5 = if src.etag.contains('-') {
            match &blob {
                Some(id) => {
                    let path = self.store.blob_path(id);
                    let sum = tokio::task::spawn_blocking(move || body::md5_file(&path))
                        .await
                        .map_err(internal)?;
                    match sum {
                        Ok(s) => hex(&s),
                        Err(e) => {
                            self.store.remove_blob(Some(id));
                            return Err(internal(e));
                        }
                    }
                }
                None => hex(&s3s::crypto::Md5::checksum(b"")),
            }
        } else {
            src.etag.clone()
        };
        let meta = if replace {
            meta_of(StdHeaders {
                content_type: input.content_type,
                cache_control: input.cache_control,
                content_disposition: input.content_disposition,
                content_encoding: input.content_encoding,
                content_language: input.content_language,
                expires: input.expires,
                metadata: input.metadata,
            })
        } else {
            src.meta.clone()
        };
        let lm = now_ms();
        let row = ObjectRow {
            key: input.key,
            size: src.size,
            etag: md5.clone(),
            last_modified_ms: lm,
            meta,
            blob,
            parts: None,
        };
        self.commit(&input.bucket, row, WriteCond::default(), None)
            .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&md5)),
                last_modified: Some(ts(lm)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.count(|c| &c.list);
        let input = req.input;
        let max = parse_max(input.max_keys, "max-keys")?;
        let encode = url_encoding(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        // An empty `delimiter=` means no delimiter.
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let after = match &input.continuation_token {
            Some(t) => Some(decode_token(t)?),
            None => input.start_after.clone().filter(|s| !s.is_empty()),
        };
        let (b, p, d) = (
            input.bucket.clone(),
            prefix.clone(),
            delimiter.clone().unwrap_or_default(),
        );
        let page = self
            .store
            .db(move |c| {
                store::require_bucket(c, &b)?;
                list_page(c, &b, &p, &d, after.as_deref(), max)
            })
            .await?;
        let truncated = page.truncated;
        let next = truncated
            .then(|| page.last().map(|l| hex(l.as_bytes())))
            .flatten();
        let (objects, prefixes) = split_page(page, encode, false);
        let key_count = i32::try_from(objects.len() + prefixes.len()).unwrap_or(i32::MAX);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(&prefix, encode)),
            delimiter: delimiter.map(|d| enc(&d, encode)),
            max_keys: i32::try_from(max).ok(),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            start_after: input.start_after.map(|s| enc(&s, encode)),
            is_truncated: Some(truncated),
            next_continuation_token: next,
            contents: Some(objects),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.count(|c| &c.list);
        let input = req.input;
        let max = parse_max(input.max_keys, "max-keys")?;
        let encode = url_encoding(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let after = input.marker.clone().filter(|s| !s.is_empty());
        let (b, p, d) = (
            input.bucket.clone(),
            prefix.clone(),
            delimiter.clone().unwrap_or_default(),
        );
        let page = self
            .store
            .db(move |c| {
                store::require_bucket(c, &b)?;
                list_page(c, &b, &p, &d, after.as_deref(), max)
            })
            .await?;
        let truncated = page.truncated;
        // S3 sends NextMarker only with a delimiter; sending it always is allowed and saves
        // clients that rely on it from re-deriving it.
        let next_marker = truncated
            .then(|| page.last().map(|l| enc(l, encode)))
            .flatten();
        let (objects, prefixes) = split_page(page, encode, true);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(&prefix, encode)),
            delimiter: delimiter.map(|d| enc(&d, encode)),
            marker: Some(input.marker.map(|m| enc(&m, encode)).unwrap_or_default()),
            max_keys: i32::try_from(max).ok(),
            is_truncated: Some(truncated),
            next_marker,
            contents: Some(objects),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    // ---- multipart ----

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.count(|c| &c.multipart);
        let input = req.input;
        let up = UploadRow {
            upload_id: self.store.new_id(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            initiated_ms: now_ms(),
            meta: meta_of(StdHeaders {
                content_type: input.content_type,
                cache_control: input.cache_control,
                content_disposition: input.content_disposition,
                content_encoding: input.content_encoding,
                content_language: input.content_language,
                expires: input.expires,
                metadata: input.metadata,
            }),
        };
        std::fs::create_dir_all(self.store.upload_dir(&up.upload_id)).map_err(internal)?;
        let upload_id = up.upload_id.clone();
        let result = self.store.db(move |c| store::create_upload(c, &up)).await;
        if let Err(e) = result {
            self.store.remove_upload_dir(&upload_id);
            return Err(e);
        }
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.count(|c| &c.multipart);
        let headers = req.headers;
        let trailers = req.trailing_headers;
        let input = req.input;
        check_part_number(input.part_number)?;
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        self.store
            .db(move |c| store::get_upload(c, &b, &k, &u).map(drop))
            .await?;
        let rec = body::receive(
            &self.store,
            input.body,
            input.content_length,
            &headers,
            trailers.as_ref(),
        )
        .await?;
        self.stats
            .put_bytes
            .fetch_add(rec.size, std::sync::atomic::Ordering::Relaxed);
        let md5 = hex(&rec.md5);
        self.store_part(
            &input.bucket,
            &input.key,
            &input.upload_id,
            input.part_number,
            rec,
        )
        .await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&md5)),
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.count(|c| &c.copy);
        let input = req.input;
        check_part_number(input.part_number)?;
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        self.store
            .db(move |c| store::get_upload(c, &b, &k, &u).map(drop))
            .await?;
        let (src_bucket, src_key) = source_of(&input.copy_source)?;
        let conds = ReadConds {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        };
        let range = match &input.copy_source_range {
            Some(r) => Some(Range::parse(r).map_err(|_| s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"))?),
            None => None,
        };
        let mut received = None;
        for _ in 0..BLOB_RACE_ATTEMPTS {
            let src = self.lookup(&src_bucket, &src_key).await?;
            check_copy_source_conds(&src, &conds)?;
            let (start, len) = match &range {
                Some(r) => match r.check(src.size) {
                    Ok(r) => (r.start, r.end - r.start),
                    Err(_) => {
                        return Err(s3_error!(
                            InvalidRange,
                            "The requested range is not satisfiable"
                        ))
                    }
                },
                None => (0, src.size),
            };
            let store = Arc::clone(&self.store);
            let path = src.blob.as_ref().map(|b| self.store.blob_path(b));
            let result = tokio::task::spawn_blocking(move || {
                body::copy_range(&store, path.as_deref(), start, len)
            })
            .await
            .map_err(internal)?;
            match result {
                Ok(rec) => {
                    received = Some(rec);
                    break;
                }
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(internal(e)),
            }
        }
        let Some(rec) = received else {
            return Err(internal("source object kept changing while being copied"));
        };
        let md5 = hex(&rec.md5);
        self.store_part(
            &input.bucket,
            &input.key,
            &input.upload_id,
            input.part_number,
            rec,
        )
        .await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&md5)),
                last_modified: Some(ts(now_ms())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.count(|c| &c.multipart);
        let input = req.input;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let (up, parts) = self
            .store
            .db(move |c| {
                let up = store::get_upload(c, &b, &k, &u)?;
                let parts = store::list_parts(c, &u, 0, usize::MAX)?;
                Ok((up, parts))
            })
            .await?;
        let by_number: HashMap<i32, &PartRow> = parts.iter().map(|p| (p.part_number, p)).collect();
        let invalid_part = || {
            s3_error!(
                InvalidPart,
                "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
            )
        };
        let mut chosen = Vec::with_capacity(requested.len());
        let mut prev = 0;
        for (i, cp) in requested.iter().enumerate() {
            let pn = cp.part_number.ok_or_else(invalid_part)?;
            if pn <= prev {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "The list of parts was not in ascending order. The parts list must be specified in order by part number."
                ));
            }
            prev = pn;
            let part = by_number.get(&pn).ok_or_else(invalid_part)?;
            match &cp.e_tag {
                Some(t) if t.value() == part.etag => {}
                _ => return Err(invalid_part()),
            }
            if i + 1 < requested.len() && part.size < MIN_PART_SIZE {
                return Err(s3_error!(
                    EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed object size."
                ));
            }
            chosen.push(*part);
        }
        let mut md5s = Vec::with_capacity(chosen.len() * 16);
        for p in &chosen {
            md5s.extend(unhex(&p.etag).ok_or_else(|| internal("bad part etag in index"))?);
        }
        let md5 = format!(
            "{}-{}",
            hex(&s3s::crypto::Md5::checksum(&md5s)),
            chosen.len()
        );
        let sizes: Vec<u64> = chosen.iter().map(|p| p.size).collect();
        let paths: Vec<_> = chosen
            .iter()
            .map(|p| self.store.part_path(&input.upload_id, &p.file))
            .collect();
        let store = Arc::clone(&self.store);
        let (tmp, size) = tokio::task::spawn_blocking(move || body::concat(&store, &paths))
            .await
            .map_err(internal)?
            .map_err(|e| {
                if is_not_found(&e) {
                    // A concurrent Complete/Abort removed the parts.
                    s3_error!(NoSuchUpload, "The specified upload does not exist.")
                } else {
                    internal(e)
                }
            })?;
        let blob = self.persist_blob(body::Received {
            tmp,
            size,
            md5: [0; 16],
        })?;
        let row = ObjectRow {
            key: input.key.clone(),
            size,
            etag: md5.clone(),
            last_modified_ms: now_ms(),
            meta: up.meta,
            blob,
            parts: Some(sizes),
        };
        let cond = WriteCond {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
        };
        self.commit(&input.bucket, row, cond, Some(input.upload_id.clone()))
            .await?;
        self.store.remove_upload_dir(&input.upload_id);
        // No version id: the bucket is unversioned, and `x-amz-version-id: null` makes
        // rclone send `versionId=null` afterwards.
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            location: Some(format!("/{}/{}", input.bucket, url_encode(&input.key))),
            e_tag: Some(etag(&md5)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.count(|c| &c.multipart);
        let input = req.input;
        let (b, k, u) = (input.bucket, input.key, input.upload_id.clone());
        self.store
            .db(move |c| store::abort_upload(c, &b, &k, &u))
            .await?;
        self.store.remove_upload_dir(&input.upload_id);
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.count(|c| &c.multipart);
        let input = req.input;
        let max = parse_max(input.max_parts, "max-parts")?;
        let marker = input.part_number_marker.unwrap_or(0);
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let mut parts = self
            .store
            .db(move |c| {
                store::get_upload(c, &b, &k, &u)?;
                store::list_parts(c, &u, marker, max + 1)
            })
            .await?;
        let truncated = parts.len() > max;
        parts.truncate(max);
        let next = truncated
            .then(|| parts.last().map(|p| p.part_number))
            .flatten();
        let parts = parts
            .into_iter()
            .map(|p| Part {
                part_number: Some(p.part_number),
                size: i64::try_from(p.size).ok(),
                e_tag: Some(etag(&p.etag)),
                last_modified: Some(ts(p.last_modified_ms)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            max_parts: i32::try_from(max).ok(),
            is_truncated: Some(truncated),
            parts: Some(parts),
            owner: Some(owner()),
            initiator: Some(Initiator {
                display_name: Some("s3shim".to_owned()),
                id: Some("s3shim".to_owned()),
            }),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.count(|c| &c.multipart);
        let input = req.input;
        let max = parse_max(input.max_uploads, "max-uploads")?;
        let encode = url_encoding(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let (b, p) = (input.bucket.clone(), prefix.clone());
        let (km, um) = (input.key_marker.clone(), input.upload_id_marker.clone());
        let mut uploads = self
            .store
            .db(move |c| {
                store::require_bucket(c, &b)?;
                store::list_uploads(c, &b, &p, km.as_deref(), um.as_deref(), max + 1)
            })
            .await?;
        let truncated = uploads.len() > max;
        uploads.truncate(max);
        let (next_key, next_id) = match (truncated, uploads.last()) {
            (true, Some(u)) => (Some(enc(&u.key, encode)), Some(u.upload_id.clone())),
            _ => (None, None),
        };
        let uploads = uploads
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(enc(&u.key, encode)),
                upload_id: Some(u.upload_id),
                initiated: Some(ts(u.initiated_ms)),
                owner: Some(owner()),
                initiator: Some(Initiator {
                    display_name: Some("s3shim".to_owned()),
                    id: Some("s3shim".to_owned()),
                }),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(enc(&prefix, encode)),
            delimiter: input.delimiter,
            key_marker: input.key_marker.map(|k| enc(&k, encode)),
            upload_id_marker: input.upload_id_marker,
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            max_uploads: i32::try_from(max).ok(),
            is_truncated: Some(truncated),
            uploads: Some(uploads),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

fn empty_get(row: &ObjectRow, slice: Slice) -> S3Response<GetObjectOutput> {
    let meta = &row.meta;
    S3Response::new(GetObjectOutput {
        body: None,
        accept_ranges: Some("bytes".to_owned()),
        content_length: Some(0),
        content_range: slice.content_range,
        parts_count: slice.parts_count,
        content_type: Some(content_type(meta)),
        cache_control: meta.cache_control.clone(),
        content_disposition: meta.content_disposition.clone(),
        content_encoding: meta.content_encoding.clone(),
        content_language: meta.content_language.clone(),
        expires: meta.expires.as_deref().and_then(parse_http_date),
        e_tag: Some(etag(&row.etag)),
        last_modified: Some(ts(row.last_modified_ms)),
        metadata: user_metadata(meta),
        ..Default::default()
    })
}

impl Backend {
    /// Renames a received part into the upload's directory and records it.
    async fn store_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        rec: body::Received,
    ) -> S3Result<()> {
        let file = format!("{part_number}-{}", self.store.new_id());
        let dest = self.store.part_path(upload_id, &file);
        let size = rec.size;
        let md5 = hex(&rec.md5);
        rec.tmp.persist(&dest).map_err(|e| {
            if is_not_found(&e) {
                s3_error!(NoSuchUpload, "The specified upload does not exist.")
            } else {
                internal(e)
            }
        })?;
        let part = PartRow {
            part_number,
            size,
            etag: md5,
            last_modified_ms: now_ms(),
            file,
        };
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let result = self
            .store
            .db(move |c| store::put_part(c, &b, &k, &u, &part))
            .await;
        match result {
            Ok(old) => {
                if let Some(old) = old {
                    let _ = std::fs::remove_file(self.store.part_path(upload_id, &old));
                }
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&dest);
                Err(e)
            }
        }
    }
}
