//! ListObjects (v1 and v2) on top of `list.rs`'s paging: limits, continuation tokens and
//! URL encoding of names.

use super::*;

pub(super) fn parse_max(v: Option<i32>, what: &str) -> S3Result<usize> {
    match v {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(
            InvalidArgument,
            "{what} must be a non-negative integer"
        )),
        Some(n) => Ok(usize::try_from(n).unwrap_or(1000).min(1000)),
    }
}

/// Whether keys in a listing are to be URL-encoded (`encoding-type=url`, which aws-cli
/// always sends).
pub(super) fn url_encoding(e: Option<&EncodingType>) -> S3Result<bool> {
    match e.map(EncodingType::as_str) {
        None => Ok(false),
        Some(s) if s.eq_ignore_ascii_case("url") => Ok(true),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request"
        )),
    }
}

pub(super) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn enc(s: &str, on: bool) -> String {
    if on {
        url_encode(s)
    } else {
        s.to_owned()
    }
}

pub(super) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

pub(super) fn decode_token(t: &str) -> S3Result<String> {
    unhex(t)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

pub(super) fn listed_object(row: ObjectRow, encode: bool, with_owner: bool) -> Object {
    Object {
        key: Some(enc(&row.key, encode)),
        last_modified: Some(ts(row.last_modified_ms)),
        e_tag: Some(etag(&row.etag)),
        size: i64::try_from(row.size).ok(),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        owner: with_owner.then(owner),
        ..Default::default()
    }
}

pub(super) fn split_page(
    page: Page,
    encode: bool,
    with_owner: bool,
) -> (Vec<Object>, Vec<CommonPrefix>) {
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    for e in page.entries {
        match e {
            Entry::Object(o) => objects.push(listed_object(*o, encode, with_owner)),
            Entry::Prefix(p) => prefixes.push(CommonPrefix {
                prefix: Some(enc(&p, encode)),
            }),
        }
    }
    (objects, prefixes)
}

pub(super) async fn list_objects_v2(
    backend: &Backend,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    backend.count(|c| &c.list);
    let input = req.input;
    let max = parse_max(input.max_keys, "max-keys")?;
    let encode = url_encoding(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    // An empty `delimiter=` means no delimiter.
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let after = match &input.continuation_token {
        Some(t) => Some(decode_token(t)?),
        None => input.start_after.clone().filter(|s| !s.is_empty()),
    };
    let (b, p, d) = (
        input.bucket.clone(),
        prefix.clone(),
        delimiter.clone().unwrap_or_default(),
    );
    let page = backend
        .store
        .db(move |c| {
            store::require_bucket(c, &b)?;
            list_page(c, &b, &p, &d, after.as_deref(), max)
        })
        .await?;
    let truncated = page.truncated;
    let next = truncated
        .then(|| page.last().map(|l| hex(l.as_bytes())))
        .flatten();
    let (objects, prefixes) = split_page(page, encode, false);
    let key_count = i32::try_from(objects.len() + prefixes.len()).unwrap_or(i32::MAX);
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(enc(&prefix, encode)),
        delimiter: delimiter.map(|d| enc(&d, encode)),
        max_keys: i32::try_from(max).ok(),
        key_count: Some(key_count),
        continuation_token: input.continuation_token,
        start_after: input.start_after.map(|s| enc(&s, encode)),
        is_truncated: Some(truncated),
        next_continuation_token: next,
        contents: Some(objects),
        common_prefixes: Some(prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

pub(super) async fn list_objects(
    backend: &Backend,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    backend.count(|c| &c.list);
    let input = req.input;
    let max = parse_max(input.max_keys, "max-keys")?;
    let encode = url_encoding(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let after = input.marker.clone().filter(|s| !s.is_empty());
    let (b, p, d) = (
        input.bucket.clone(),
        prefix.clone(),
        delimiter.clone().unwrap_or_default(),
    );
    let page = backend
        .store
        .db(move |c| {
            store::require_bucket(c, &b)?;
            list_page(c, &b, &p, &d, after.as_deref(), max)
        })
        .await?;
    let truncated = page.truncated;
    // S3 sends NextMarker only with a delimiter; sending it always is allowed and saves
    // clients that rely on it from re-deriving it.
    let next_marker = truncated
        .then(|| page.last().map(|l| enc(l, encode)))
        .flatten();
    let (objects, prefixes) = split_page(page, encode, true);
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(enc(&prefix, encode)),
        delimiter: delimiter.map(|d| enc(&d, encode)),
        marker: Some(input.marker.map(|m| enc(&m, encode)).unwrap_or_default()),
        max_keys: i32::try_from(max).ok(),
        is_truncated: Some(truncated),
        next_marker,
        contents: Some(objects),
        common_prefixes: Some(prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}
