//! Access policies by key prefix, for tests that need S3's real refusals:
//! - read: GET answers 403 AccessDenied while HEAD and listings still work — what S3
//!   answers for an SSE-KMS object when the caller may not use its key (no
//!   `kms:Decrypt`): a real 403 for a fetch of a listed file.
//! - write: PUT, copy, multipart upload and delete answer 403 AccessDenied — what S3
//!   answers when a bucket policy denies `s3:PutObject`/`s3:DeleteObject` there: a real
//!   failed upload.

use s3s::access::S3Access;
use s3s::dto::{
    CopyObjectInput, CreateMultipartUploadInput, DeleteObjectInput, DeleteObjectsInput,
    GetObjectInput, PutObjectInput, UploadPartInput,
};
use s3s::{s3_error, S3Request, S3Result};

pub(crate) struct Policy {
    pub deny_read: Vec<String>,
    pub deny_write: Vec<String>,
}

fn allow(denied: &[String], key: &str) -> S3Result<()> {
    if denied.iter().any(|p| key.starts_with(p.as_str())) {
        return Err(s3_error!(AccessDenied, "Access Denied"));
    }
    Ok(())
}

// The general `check` stays the default (a signature is required); only the requests
// below are narrowed.
#[async_trait::async_trait]
impl S3Access for Policy {
    async fn get_object(&self, req: &mut S3Request<GetObjectInput>) -> S3Result<()> {
        allow(&self.deny_read, &req.input.key)
    }

    async fn put_object(&self, req: &mut S3Request<PutObjectInput>) -> S3Result<()> {
        allow(&self.deny_write, &req.input.key)
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        allow(&self.deny_write, &req.input.key)
    }

    async fn create_multipart_upload(
        &self,
        req: &mut S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<()> {
        allow(&self.deny_write, &req.input.key)
    }

    async fn upload_part(&self, req: &mut S3Request<UploadPartInput>) -> S3Result<()> {
        allow(&self.deny_write, &req.input.key)
    }

    async fn delete_object(&self, req: &mut S3Request<DeleteObjectInput>) -> S3Result<()> {
        allow(&self.deny_write, &req.input.key)
    }

    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        for o in &req.input.delete.objects {
            allow(&self.deny_write, &o.key)?;
        }
        Ok(())
    }
}
