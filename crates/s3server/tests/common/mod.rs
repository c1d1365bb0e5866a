//! Shared helpers: an in-process server on 127.0.0.1:0 and an aws-sdk-s3 client for it.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use s3shim_s3server::{Config, Server};

pub const AK: &str = "test-access-key";
pub const SK: &str = "test-secret-key";
pub const BUCKET: &str = "work";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub s3: Client,
}

pub fn config(data_dir: &Path) -> Config {
    // fsync off: tests need no power-loss durability and run faster without it.
    let mut cfg = Config::new(data_dir, AK, SK).with_bucket(BUCKET);
    cfg.fsync = false;
    cfg
}

pub async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(&dir.path().join("data")))
        .await
        .unwrap();
    let s3 = client(&server.endpoint(), AK, SK);
    Fixture { dir, server, s3 }
}

pub fn client(endpoint: &str, ak: &str, sk: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(ak, sk, None, None, "test"))
        // Every failure must show: no retries.
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

pub async fn put(s3: &Client, key: &str, body: &[u8]) -> String {
    s3.put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key:?}: {e:?}"))
        .e_tag
        .unwrap()
}

pub async fn get(s3: &Client, key: &str) -> Vec<u8> {
    let out = s3
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key:?}: {e:?}"));
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// HTTP status and S3 error code of a failed request.
pub fn failure<E: ProvideErrorMetadata + std::fmt::Debug>(
    e: SdkError<E, HttpResponse>,
) -> (u16, Option<String>) {
    match e {
        SdkError::ServiceError(se) => (
            se.raw().status().as_u16(),
            se.err().code().map(str::to_owned),
        ),
        other => panic!("expected a service error, got {other:?}"),
    }
}

/// Every key in the bucket (ListObjectsV2, no delimiter, all pages).
pub async fn all_keys(s3: &Client, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    for _ in 0..MAX_PAGES {
        let out = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        if !out.is_truncated().unwrap_or(false) {
            return keys;
        }
        token = out.next_continuation_token.clone();
        assert!(
            token.is_some(),
            "truncated listing without a continuation token"
        );
    }
    panic!("listing did not end within {MAX_PAGES} pages");
}

/// Bound on pages in test listings, so a server that never ends a listing fails the test
/// instead of hanging it.
pub const MAX_PAGES: usize = 100;

/// Deterministic bytes (a simple LCG), so failures reproduce.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

pub fn md5_hex(b: &[u8]) -> String {
    use s3s::crypto::Checksum as _;
    let d = s3s::crypto::Md5::checksum(b);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes a key for `x-amz-copy-source`.
pub fn copy_source(bucket: &str, key: &str) -> String {
    let mut s = format!("{bucket}/");
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}
