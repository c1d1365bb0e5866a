//! The agent's S3 client: the few calls the layout needs, over aws-sdk-s3, with POSIX
//! metadata in the s3fs convention and errors turned into sentences a user can act on.

use anyhow::{anyhow, Result};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, MetadataDirective, ObjectIdentifier};
use aws_sdk_s3::Client;
use s3shim_protocol::meta;
use std::collections::HashMap;
use std::path::Path;
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
}

/// Credentials for the embedded server, which accepts exactly one key pair.
pub struct StaticKeys {
    pub access_key: String,
    pub secret_key: String,
}

impl S3 {
    pub async fn new(endpoint: Option<&str>, bucket: &str, keys: Option<StaticKeys>) -> S3 {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .build();
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts);
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
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
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
    ) -> anyhow::Error {
        anyhow!("{what} {key}: {}", self.explain(&e))
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
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
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
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
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
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("downloading", key, e))
    }

    /// Reads a small object whole (symlink targets).
    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>> {
        let data = self
            .get(key)
            .await?
            .body
            .collect()
            .await
            .map_err(|e| anyhow!("downloading {key}: {e}"))?;
        Ok(data.into_bytes().to_vec())
    }

    /// Uploads a local file as `key`; returns the new ETag.
    pub async fn put_file(&self, key: &str, path: &Path, m: PosixMeta) -> Result<String> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| anyhow!("reading {} for upload: {e}", path.display()))?;
        self.put(key, body, m).await
    }

    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>, m: PosixMeta) -> Result<String> {
        self.put(key, ByteStream::from(bytes), m).await
    }

    async fn put(&self, key: &str, body: ByteStream, m: PosixMeta) -> Result<String> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .set_metadata(Some(m.to_headers()));
        if key.ends_with('/') {
            // What s3fs gives directory objects.
            req = req.content_type("application/x-directory");
        }
        let o = req
            .send()
            .await
            .map_err(|e| self.err("uploading", key, e))?;
        Ok(o.e_tag().unwrap_or_default().to_string())
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
            .set_metadata(Some(m.to_headers()))
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
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let del = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(del)
                .send()
                .await
                .map_err(|e| self.err("deleting under", &chunk[0], e))?;
            if let Some(e) = out.errors().first() {
                return Err(anyhow!(
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
