//! Multipart uploads: create, upload a part (or copy one), complete, abort, list parts and
//! uploads.

use super::*;

/// S3's minimum size of every part but the last.
pub(super) const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

pub(super) const MAX_PART_NUMBER: i32 = 10_000;

pub(super) fn check_part_number(pn: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&pn) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

impl Backend {
    /// Renames a received part into the upload's directory and records it.
    pub(super) async fn store_part(
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

pub(super) async fn create_multipart_upload(
    backend: &Backend,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    backend.count(|c| &c.multipart);
    let input = req.input;
    let up = UploadRow {
        upload_id: backend.store.new_id(),
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
    std::fs::create_dir_all(backend.store.upload_dir(&up.upload_id)).map_err(internal)?;
    let upload_id = up.upload_id.clone();
    let result = backend
        .store
        .db(move |c| store::create_upload(c, &up))
        .await;
    if let Err(e) = result {
        backend.store.remove_upload_dir(&upload_id);
        return Err(e);
    }
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        ..Default::default()
    }))
}

pub(super) async fn upload_part(
    backend: &Backend,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    backend.count(|c| &c.multipart);
    let headers = req.headers;
    let trailers = req.trailing_headers;
    let input = req.input;
    check_part_number(input.part_number)?;
    let (b, k, u) = (
        input.bucket.clone(),
        input.key.clone(),
        input.upload_id.clone(),
    );
    backend
        .store
        .db(move |c| store::get_upload(c, &b, &k, &u).map(drop))
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
    let md5 = hex(&rec.md5);
    backend
        .store_part(
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

pub(super) async fn upload_part_copy(
    backend: &Backend,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    backend.count(|c| &c.copy);
    let input = req.input;
    check_part_number(input.part_number)?;
    let (b, k, u) = (
        input.bucket.clone(),
        input.key.clone(),
        input.upload_id.clone(),
    );
    backend
        .store
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
        let src = backend.lookup(&src_bucket, &src_key).await?;
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
        let store = Arc::clone(&backend.store);
        let path = src.blob.as_ref().map(|b| backend.store.blob_path(b));
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
    backend
        .store_part(
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

pub(super) async fn complete_multipart_upload(
    backend: &Backend,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    backend.count(|c| &c.multipart);
    let input = req.input;
    backend.refuse_unsupported_cond(&WriteCond {
        if_match: input.if_match.clone(),
        if_none_match: input.if_none_match.clone(),
    })?;
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
    let (up, parts) = backend
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
        .map(|p| backend.store.part_path(&input.upload_id, &p.file))
        .collect();
    let store = Arc::clone(&backend.store);
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
    let blob = backend.persist_blob(body::Received {
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
    backend
        .commit(&input.bucket, row, cond, Some(input.upload_id.clone()))
        .await?;
    backend.store.remove_upload_dir(&input.upload_id);
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

pub(super) async fn abort_multipart_upload(
    backend: &Backend,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    backend.count(|c| &c.multipart);
    let input = req.input;
    let (b, k, u) = (input.bucket, input.key, input.upload_id.clone());
    backend
        .store
        .db(move |c| store::abort_upload(c, &b, &k, &u))
        .await?;
    backend.store.remove_upload_dir(&input.upload_id);
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub(super) async fn list_parts(
    backend: &Backend,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    backend.count(|c| &c.multipart);
    let input = req.input;
    let max = parse_max(input.max_parts, "max-parts")?;
    let marker = input.part_number_marker.unwrap_or(0);
    let (b, k, u) = (
        input.bucket.clone(),
        input.key.clone(),
        input.upload_id.clone(),
    );
    let mut parts = backend
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

pub(super) async fn list_multipart_uploads(
    backend: &Backend,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    backend.count(|c| &c.multipart);
    let input = req.input;
    let max = parse_max(input.max_uploads, "max-uploads")?;
    let encode = url_encoding(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let (b, p) = (input.bucket.clone(), prefix.clone());
    let (km, um) = (input.key_marker.clone(), input.upload_id_marker.clone());
    let mut uploads = backend
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
