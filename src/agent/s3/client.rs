//! Building the S3 client from the settings and the environment, and the checks that
//! tell whether the bucket can be reached.

use super::S3;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::Client;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

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

    /// The secret parts of the credentials the client signs with (secret key, session
    /// token), for the log's redaction list. Empty when none resolve (the bucket check
    /// reports that).
    pub async fn credential_secrets(&self) -> Vec<String> {
        let Some(provider) = &self.credentials else {
            return Vec::new();
        };
        match provider.provide_credentials().await {
            Ok(c) => std::iter::once(c.secret_access_key().to_string())
                .chain(c.session_token().map(str::to_string))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}
