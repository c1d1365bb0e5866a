//! A read policy: key prefixes whose objects' bytes cannot be read (GET answers 403
//! AccessDenied) while HEAD and listings still work — what S3 answers for an SSE-KMS
//! object when the caller may not use its key (no `kms:Decrypt`). Tests use it to get a
//! real 403 for a fetch of a listed file.

use s3s::access::S3Access;
use s3s::dto::GetObjectInput;
use s3s::{s3_error, S3Request, S3Result};

pub(crate) struct ReadPolicy {
    pub denied_prefixes: Vec<String>,
}

impl ReadPolicy {
    fn allow(&self, key: &str) -> S3Result<()> {
        if self
            .denied_prefixes
            .iter()
            .any(|p| key.starts_with(p.as_str()))
        {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        Ok(())
    }
}

// The general `check` stays the default (a signature is required); only GETs of
// objects are narrowed.
#[async_trait::async_trait]
impl S3Access for ReadPolicy {
    async fn get_object(&self, req: &mut S3Request<GetObjectInput>) -> S3Result<()> {
        self.allow(&req.input.key)
    }
}
