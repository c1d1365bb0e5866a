//! Object requests: HEAD, GET, PUT, DELETE (one and many), COPY, and how an object's
//! stored metadata becomes response headers.

use super::*;

pub(super) fn http_date(t: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

pub(super) fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

pub(super) struct StdHeaders {
    pub(super) content_type: Option<String>,
    pub(super) cache_control: Option<String>,
    pub(super) content_disposition: Option<String>,
    pub(super) content_encoding: Option<String>,
    pub(super) content_language: Option<String>,
    pub(super) expires: Option<Timestamp>,
    pub(super) metadata: Option<Metadata>,
}

pub(super) fn meta_of(h: StdHeaders) -> Meta {
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

pub(super) fn user_metadata(meta: &Meta) -> Option<Metadata> {
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

pub(super) fn content_type(meta: &Meta) -> String {
    // What S3 reports for objects stored without a Content-Type.
    meta.content_type
        .clone()
        .unwrap_or_else(|| "binary/octet-stream".to_owned())
}

pub(super) fn source_of(cs: &CopySource) -> S3Result<(String, String)> {
    match cs {
        CopySource::Bucket { bucket, key, .. } => Ok((bucket.to_string(), key.to_string())),
        _ => Err(s3_error!(
            NotImplemented,
            "copy sources other than bucket/key are not supported"
        )),
    }
}

pub(super) fn empty_get(row: &ObjectRow, slice: Slice) -> S3Response<GetObjectOutput> {
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

pub(super) async fn head_object(
    backend: &Backend,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    backend.count(|c| &c.head);
    let input = req.input;
    let conds = ReadConds {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    };
    let row = backend.lookup(&input.bucket, &input.key).await?;
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

pub(super) async fn get_object(
    backend: &Backend,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    backend.count(|c| &c.get);
    let input = req.input;
    let conds = ReadConds {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    };
    let (row, file) = backend
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
    backend
        .stats
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

pub(super) async fn put_object(
    backend: &Backend,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    backend.count(|c| &c.put);
    let headers = req.headers;
    let trailers = req.trailing_headers;
    let input = req.input;
    let cond = WriteCond {
        if_match: input.if_match,
        if_none_match: input.if_none_match,
    };
    backend
        .precheck_write(&input.bucket, &input.key, &cond)
        .await?;
    let rec = body::receive(
        &backend.store,
        input.body,
        input.content_length,
        &headers,
        trailers.as_ref(),
    )
    .await?;
    backend
        .stats
        .put_bytes
        .fetch_add(rec.size, std::sync::atomic::Ordering::Relaxed);
    let size = rec.size;
    let md5 = hex(&rec.md5);
    let blob = backend.persist_blob(rec)?;
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
    backend.commit(&input.bucket, row, cond, None).await?;
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(etag(&md5)),
        ..Default::default()
    }))
}

pub(super) async fn delete_object(
    backend: &Backend,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    backend.count(|c| &c.delete);
    let input = req.input;
    let (b, k, m) = (input.bucket, input.key, input.if_match);
    let blobs = backend
        .store
        .db(move |c| store::delete_objects(c, &b, std::slice::from_ref(&k), m.as_ref()))
        .await?;
    for blob in blobs {
        backend.store.remove_blob(Some(&blob));
    }
    Ok(S3Response::new(DeleteObjectOutput::default()))
}

pub(super) async fn delete_objects(
    backend: &Backend,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    backend.count(|c| &c.delete);
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
    let blobs = backend
        .store
        .db(move |c| store::delete_objects(c, &b, &k, None))
        .await?;
    for blob in blobs {
        backend.store.remove_blob(Some(&blob));
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

pub(super) async fn copy_object(
    backend: &Backend,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    backend.count(|c| &c.copy);
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
    backend.require_bucket(&input.bucket).await?;
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
        let src = backend.lookup(&src_bucket, &src_key).await?;
        check_copy_source_conds(&src, &conds)?;
        let Some(src_blob) = src.blob.clone() else {
            copied = Some((src, None));
            break;
        };
        let id = backend.store.new_id();
        let from = backend.store.blob_path(&src_blob);
        let to = backend.store.blob_path(&id);
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
                let path = backend.store.blob_path(id);
                let sum = tokio::task::spawn_blocking(move || body::md5_file(&path))
                    .await
                    .map_err(internal)?;
                match sum {
                    Ok(s) => hex(&s),
                    Err(e) => {
                        backend.store.remove_blob(Some(id));
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
    backend
        .commit(&input.bucket, row, WriteCond::default(), None)
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
