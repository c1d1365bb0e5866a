//! Bucket requests: list, create, head, delete, location, versioning.

use super::*;

pub(super) async fn list_buckets(
    backend: &Backend,
    _req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    backend.count(|c| &c.bucket);
    let rows = backend.store.db(|c| store::list_buckets(c)).await?;
    let buckets = rows
        .into_iter()
        .map(|(name, created)| Bucket {
            name: Some(name),
            creation_date: Some(ts(created)),
            bucket_region: Some(backend.region.clone()),
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(owner()),
        ..Default::default()
    }))
}

pub(super) async fn create_bucket(
    backend: &Backend,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    backend.count(|c| &c.bucket);
    let bucket = req.input.bucket;
    let b = bucket.clone();
    let created = backend
        .store
        .db(move |c| store::create_bucket(c, &b))
        .await?;
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

pub(super) async fn head_bucket(
    backend: &Backend,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    backend.count(|c| &c.bucket);
    backend.require_bucket(&req.input.bucket).await?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(backend.region.clone()),
        ..Default::default()
    }))
}

pub(super) async fn delete_bucket(
    backend: &Backend,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    backend.count(|c| &c.bucket);
    let b = req.input.bucket;
    let uploads = backend
        .store
        .db(move |c| store::delete_bucket(c, &b))
        .await?;
    for u in uploads {
        backend.store.remove_upload_dir(&u);
    }
    Ok(S3Response::new(DeleteBucketOutput {}))
}

pub(super) async fn get_bucket_location(
    backend: &Backend,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    backend.count(|c| &c.bucket);
    backend.require_bucket(&req.input.bucket).await?;
    // S3 reports us-east-1 as an empty location constraint.
    let location_constraint = (backend.region != "us-east-1")
        .then(|| BucketLocationConstraint::from(backend.region.clone()));
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint,
    }))
}

pub(super) async fn get_bucket_versioning(
    backend: &Backend,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    backend.count(|c| &c.bucket);
    backend.require_bucket(&req.input.bucket).await?;
    // Buckets are never versioned: no Status element, as for a bucket that never had it.
    Ok(S3Response::new(GetBucketVersioningOutput::default()))
}
