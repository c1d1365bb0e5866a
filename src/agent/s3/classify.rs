//! Where an S3 answer becomes an [`Error`] variant (and so, through `error::errno`, what
//! a program sees), with a sentence that names the likely cause and the fix.

use super::S3;
use crate::agent::error::Error;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The class of an SDK error, given the sentence that describes it: where an S3 answer
/// becomes an [`Error`] variant (and so, through `error::errno`, what a program sees).
pub(super) fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
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

impl S3 {
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

    pub(super) fn err<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        what: &str,
        key: &str,
        e: SdkError<E, HttpResponse>,
    ) -> Error {
        classify(&e, format!("{what} {key}: {}", self.explain(&e)))
    }
}

/// The innermost cause of an error chain, which is the part that names the problem
/// ("Connection refused", "dns error").
fn short_cause(chain: &str) -> String {
    chain.rsplit(": ").next().unwrap_or(chain).to_string()
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
    fn innermost_cause() {
        assert_eq!(
            short_cause("dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)"),
            "Connection refused (os error 111)"
        );
    }
}
