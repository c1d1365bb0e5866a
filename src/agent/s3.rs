//! The agent's S3 client: the few calls the layout needs, over aws-sdk-s3, with POSIX
//! metadata in the s3fs convention and errors turned into sentences a user can act on.

use super::error::{other, Error, Result};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, MetadataDirective, ObjectIdentifier};
use aws_sdk_s3::Client;
use s3shim_protocol::meta;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod read;
pub use read::{same_etag, RemoteObject};

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

/// One listing page merged: objects directly under the prefix and sub-prefixes.
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<ListedObject>,
    pub prefixes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ListedObject {
    pub key: String,
    /// As the listing says; compared with the index to trust a warm cache.
    pub etag: String,
    pub size: u64,
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

/// Knobs read from the environment once (tests make them small).
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Files at least this large are uploaded in parts (`S3SHIM_MULTIPART_THRESHOLD`).
    pub multipart_threshold: u64,
    /// Part size (`S3SHIM_MULTIPART_PART_SIZE`; S3 needs at least 5 MiB).
    pub part_size: u64,
    /// Parts uploaded at once (`S3SHIM_MULTIPART_CONCURRENCY`); memory does not grow
    /// with it (parts are streamed from the file).
    pub part_concurrency: usize,
    /// Attempts per request, with exponential backoff and jitter between them
    /// (`S3SHIM_S3_ATTEMPTS`).
    pub attempts: u32,
    /// Longest wait for a response, from sending the request (`S3SHIM_S3_TIMEOUT_MS`).
    pub timeout: Duration,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

impl Tuning {
    pub fn from_env() -> Tuning {
        const MIB: u64 = 1 << 20;
        Tuning {
            multipart_threshold: env_u64("S3SHIM_MULTIPART_THRESHOLD").unwrap_or(16 * MIB),
            part_size: env_u64("S3SHIM_MULTIPART_PART_SIZE")
                .unwrap_or(16 * MIB)
                .max(5 * MIB),
            part_concurrency: env_u64("S3SHIM_MULTIPART_CONCURRENCY")
                .unwrap_or(4)
                .clamp(1, 64) as usize,
            attempts: env_u64("S3SHIM_S3_ATTEMPTS").unwrap_or(6).max(1) as u32,
            timeout: Duration::from_millis(env_u64("S3SHIM_S3_TIMEOUT_MS").unwrap_or(120_000)),
        }
    }
}

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

/// The class of an SDK error, given the sentence that describes it: where an S3 answer
/// becomes an [`Error`] variant (and so, through `error::errno`, what a program sees).
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &SdkError<E, HttpResponse>,
    sentence: String,
) -> Error {
    match e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            Error::Unavailable(sentence)
        }
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = e.code().unwrap_or("");
            if status == 412 || code == "PreconditionFailed" {
                Error::Conflict(sentence)
            } else if status >= 500
                || status == 429
                || matches!(code, "SlowDown" | "Throttling" | "RequestTimeout")
            {
                Error::Unavailable(sentence)
            } else if status == 403
                || matches!(
                    code,
                    "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"
                )
            {
                Error::AccessDenied(sentence)
            } else if code == "NoSuchKey" || (status == 404 && code != "NoSuchBucket") {
                Error::NotFound(sentence)
            } else {
                Error::Other(sentence)
            }
        }
        _ => Error::Other(sentence),
    }
}

/// Credentials for the embedded server, which accepts exactly one key pair.
pub struct StaticKeys {
    pub access_key: String,
    pub secret_key: String,
}

impl S3 {
    pub async fn new(endpoint: Option<&str>, bucket: &str, keys: Option<StaticKeys>) -> S3 {
        let tuning = Tuning::from_env();
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(tuning.timeout)
            .build();
        // The SDK's standard retry: exponential backoff with full jitter on 5xx,
        // throttling (503 SlowDown), timeouts and connection errors; more attempts than
        // its default 3, since a sync engine would rather wait than report.
        let retry = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(tuning.attempts)
            .with_initial_backoff(Duration::from_millis(200))
            .with_max_backoff(Duration::from_secs(10));
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .retry_config(retry);
        // With a custom endpoint, take the region from the environment or the profile,
        // else sign for us-east-1, rather than asking EC2's metadata service (which
        // fails, slowly, off EC2).
        if endpoint.is_some() {
            let chain = aws_config::meta::region::RegionProviderChain::first_try(
                aws_config::environment::region::EnvironmentVariableRegionProvider::new(),
            )
            .or_else(aws_config::profile::ProfileFileRegionProvider::new())
            .or_else(Region::new("us-east-1"));
            loader = loader.region(chain);
        }
        if let Some(k) = keys {
            loader = loader.credentials_provider(Credentials::new(
                k.access_key,
                k.secret_key,
                None,
                None,
                "s3shim-embedded",
            ));
        }
        let shared = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&shared)
            // Third-party servers often reject the SDK's default trailing checksums.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        if shared.region().is_none() {
            b = b.region(Region::new("us-east-1"));
        }
        if let Some(ep) = endpoint {
            b = b.endpoint_url(ep).force_path_style(true);
        }
        S3 {
            client: Client::from_conf(b.build()),
            bucket: bucket.to_string(),
            credentials: shared.credentials_provider(),
            endpoint_desc: endpoint.unwrap_or("AWS").to_string(),
            tuning,
            writer: Default::default(),
            no_conditional_writes: Default::default(),
            downloaded_objects: AtomicU64::new(0),
            downloaded_bytes: AtomicU64::new(0),
        }
    }

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

    /// Checks that the bucket is reachable with these credentials; the error is one
    /// sentence that says what is wrong and what to do.
    pub async fn check_bucket(&self) -> std::result::Result<(), String> {
        let attempt = self.client.head_bucket().bucket(&self.bucket).send();
        match tokio::time::timeout(Duration::from_secs(20), attempt).await {
            Err(_) => Err(format!(
                "the S3 endpoint {} did not answer within 20 s; check --endpoint / AWS_ENDPOINT_URL and your network",
                self.endpoint_desc
            )),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.explain(&e)),
        }
    }

    /// Turns an SDK error into a sentence naming the likely cause and the fix.
    pub fn explain<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        e: &SdkError<E, HttpResponse>,
    ) -> String {
        let ep = &self.endpoint_desc;
        let b = &self.bucket;
        let chain = DisplayErrorContext(e).to_string();
        match e {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                if chain.contains("credentials") || chain.contains("identity") {
                    return "no usable AWS credentials were found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE".to_string();
                }
                format!(
                    "cannot reach the S3 endpoint {ep} ({}); check --endpoint / AWS_ENDPOINT_URL and that the server is running",
                    short_cause(&chain)
                )
            }
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = e.code().unwrap_or("");
                match (status, code) {
                    (_, "NoSuchKey") => format!(
                        "the object is not in bucket '{b}' (deleted in S3 since it was listed?)"
                    ),
                    (_, "NoSuchBucket") | (404, _) => format!(
                        "bucket '{b}' does not exist at {ep}; create it (e.g. `aws s3 mb s3://{b}`) or pass the right --bucket"
                    ),
                    (_, "InvalidAccessKeyId") | (_, "SignatureDoesNotMatch") | (403, _) => format!(
                        "{ep} refused access to bucket '{b}' (HTTP {status}{}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE and the bucket policy",
                        if code.is_empty() { String::new() } else { format!(", {code}") }
                    ),
                    (301, _) | (_, "PermanentRedirect") => format!(
                        "bucket '{b}' is in another region; set AWS_REGION to the bucket's region"
                    ),
                    _ => format!("{ep} answered HTTP {status} {code} for bucket '{b}'"),
                }
            }
            _ => {
                if chain.contains("credentials") || chain.contains("identity") {
                    "no usable AWS credentials were found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE".to_string()
                } else {
                    format!("S3 request to {ep} failed: {}", short_cause(&chain))
                }
            }
        }
    }

    fn err<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        what: &str,
        key: &str,
        e: SdkError<E, HttpResponse>,
    ) -> Error {
        classify(&e, format!("{what} {key}: {}", self.explain(&e)))
    }

    /// One HEAD of the bucket, without retries: is the endpoint back?
    pub async fn probe(&self) -> std::result::Result<(), String> {
        let attempt = self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::new()
                    .retry_config(aws_config::retry::RetryConfig::disabled()),
            )
            .send();
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Err(_) => Err(format!("{} did not answer within 10 s", self.endpoint_desc)),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.explain(&e)),
        }
    }

    /// Lists the objects and sub-prefixes directly under `prefix` (delimiter `/`).
    pub async fn list_dir(&self, prefix: &str) -> Result<Listing> {
        self.list(prefix, Some("/")).await
    }

    /// Lists every object under `prefix`, at any depth.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<ListedObject>> {
        Ok(self.list(prefix, None).await?.objects)
    }

    async fn list(&self, prefix: &str, delimiter: Option<&str>) -> Result<Listing> {
        let mut out = Listing::default();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = self.list_page(prefix, delimiter, token).await?;
            out.objects.extend(page.objects);
            out.prefixes.extend(page.prefixes);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(out)
    }

    /// One page of a listing (at most 1,000 entries) and the token of the next one,
    /// `None` after the last.
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
    ) -> Result<(Listing, Option<String>)> {
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            // Keys may hold characters XML 1.0 cannot carry (a control character in
            // one key would make the whole listing unparseable).
            .encoding_type(aws_sdk_s3::types::EncodingType::Url);
        if let Some(d) = delimiter {
            req = req.delimiter(d);
        }
        let page = req
            .send()
            .await
            .map_err(|e| self.err("listing", prefix, e))?;
        let mut out = Listing::default();
        for o in page.contents() {
            if let Some(key) = o.key().and_then(|k| listed_key(k, prefix)) {
                out.objects.push(ListedObject {
                    key,
                    etag: o.e_tag().unwrap_or_default().to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        for p in page.common_prefixes() {
            if let Some(p) = p.prefix().and_then(|k| listed_key(k, prefix)) {
                out.prefixes.push(p);
            }
        }
        let next = match page.next_continuation_token() {
            Some(t) if page.is_truncated().unwrap_or(false) => Some(t.to_string()),
            _ => None,
        };
        Ok((out, next))
    }

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

    async fn get(&self, key: &str) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        let o = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("downloading", key, e))?;
        self.downloaded_objects.fetch_add(1, Ordering::Relaxed);
        self.downloaded_bytes.fetch_add(
            o.content_length().unwrap_or(0).max(0) as u64,
            Ordering::Relaxed,
        );
        Ok(o)
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
        req = match &cond {
            Some(Cond::IfMatch(e)) => req.if_match(if_match_value(e)),
            Some(Cond::IfNoneMatch) => req.if_none_match("*"),
            None => req,
        };
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
                req = match &cond {
                    Some(Cond::IfMatch(e)) => req.if_match(if_match_value(e)),
                    Some(Cond::IfNoneMatch) => req.if_none_match("*"),
                    None => req,
                };
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

/// A key from a URL-encoded listing, decoded (`+` is a space, as S3 encodes it); `None`,
/// with a log line, for one that is not UTF-8 once decoded (S3 keys must be, so only a
/// misbehaving server sends one) — no local name could be made of it.
fn listed_key(encoded: &str, listed: &str) -> Option<String> {
    let plus_as_space = encoded.replace('+', " ");
    match percent_encoding::percent_decode_str(&plus_as_space).decode_utf8() {
        Ok(k) => Some(k.into_owned()),
        Err(_) => {
            tracing::warn!(
                "skipping key {encoded:?} (URL-encoded) while listing {listed:?}: not valid UTF-8 once decoded"
            );
            None
        }
    }
}

/// The innermost cause of an error chain, which is the part that names the problem
/// ("Connection refused", "dns error").
fn short_cause(chain: &str) -> String {
    chain.rsplit(": ").next().unwrap_or(chain).to_string()
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
    use crate::agent::error::errno;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;

    /// An answer of the server with this status and error code, as the SDK returns it.
    fn answer(status: u16, code: &str) -> SdkError<GetObjectError, HttpResponse> {
        let mut meta = ErrorMetadata::builder();
        if !code.is_empty() {
            meta = meta.code(code);
        }
        SdkError::service_error(
            GetObjectError::generic(meta.build()),
            HttpResponse::new(
                status.try_into().unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            ),
        )
    }

    fn errno_of(e: &SdkError<GetObjectError, HttpResponse>) -> i32 {
        errno(&classify(e, String::new()))
    }

    #[test]
    fn s3_answers_map_to_errno() {
        // Throttling and 5xx (what is left after the SDK's retries): EIO, and transient
        // (the queue pauses and retries).
        for (status, code) in [
            (500, "InternalError"),
            (503, "SlowDown"),
            (503, ""),
            (429, ""),
            (400, "Throttling"),
            (400, "RequestTimeout"),
        ] {
            let e = classify(&answer(status, code), String::new());
            assert!(e.is_transient(), "{status} {code}");
            assert_eq!(errno(&e), libc::EIO, "{status} {code}");
        }
        // Refusals: EACCES, never retried.
        for (status, code) in [
            (403, "AccessDenied"),
            (403, ""),
            (403, "InvalidAccessKeyId"),
            (403, "SignatureDoesNotMatch"),
        ] {
            let e = classify(&answer(status, code), String::new());
            assert!(!e.is_transient());
            assert_eq!(errno(&e), libc::EACCES, "{status} {code}");
        }
        assert_eq!(errno_of(&answer(404, "NoSuchKey")), libc::ENOENT);
        assert_eq!(errno_of(&answer(404, "")), libc::ENOENT);
        // A missing bucket is not a missing file.
        assert_eq!(errno_of(&answer(404, "NoSuchBucket")), libc::EIO);
        // A precondition: its own class and errno.
        for (status, code) in [(412, "PreconditionFailed"), (412, "")] {
            let e = classify(&answer(status, code), String::new());
            assert!(e.is_conflict() && !e.is_transient());
            assert_eq!(errno(&e), libc::EAGAIN);
        }
        assert_eq!(errno_of(&answer(400, "InvalidArgument")), libc::EIO);
    }

    #[test]
    fn no_answer_is_eio_and_transient() {
        let timeout: SdkError<GetObjectError, HttpResponse> =
            SdkError::timeout_error("read timed out after 120 s");
        let e = classify(&timeout, String::new());
        assert!(e.is_transient());
        assert_eq!(errno(&e), libc::EIO);
    }

    #[test]
    fn copy_source_encoding() {
        assert_eq!(encode_key("a b/ü+x.txt"), "a%20b/%C3%BC%2Bx.txt");
        assert_eq!(encode_key("plain/path-1_2.~"), "plain/path-1_2.~");
    }

    #[test]
    fn listed_keys_are_decoded_and_invalid_utf8_is_skipped() {
        assert_eq!(listed_key("a%20b/c+d%2B", "").as_deref(), Some("a b/c d+"));
        assert_eq!(listed_key("ctl%01x", "").as_deref(), Some("ctl\u{1}x"));
        assert_eq!(listed_key("bad%FFname", ""), None);
        assert_eq!(listed_key("%C3%BC", "").as_deref(), Some("ü"));
    }

    #[test]
    fn innermost_cause() {
        assert_eq!(
            short_cause("dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)"),
            "Connection refused (os error 111)"
        );
    }
}
