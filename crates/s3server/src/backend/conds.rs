//! What a read's conditions select: `If-Match`, `If-None-Match`, `If-(Un)Modified-Since`
//! (on GET/HEAD and on a copy's source) and the byte range or part number of a GET.

use super::*;

pub(super) fn precondition_failed() -> S3Error {
    s3_error!(
        PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold"
    )
}

pub(super) fn secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

pub(super) struct ReadConds<'a> {
    pub(super) if_match: Option<&'a ETagCondition>,
    pub(super) if_none_match: Option<&'a ETagCondition>,
    pub(super) if_modified_since: Option<&'a Timestamp>,
    pub(super) if_unmodified_since: Option<&'a Timestamp>,
}

pub(super) enum CondResult {
    Ok,
    PreconditionFailed,
    NotModified,
}

/// RFC 9110 §13.2.2 order, which is also what S3 documents: If-Match (else
/// If-Unmodified-Since) can fail with 412; then If-None-Match (else If-Modified-Since)
/// can answer 304.
pub(super) fn eval_conds(row: &ObjectRow, c: &ReadConds<'_>) -> CondResult {
    let lm = row.last_modified_ms / 1000;
    if let Some(m) = c.if_match {
        if !etag_matches(m, &row.etag) {
            return CondResult::PreconditionFailed;
        }
    } else if let Some(t) = c.if_unmodified_since {
        if lm > secs(t) {
            return CondResult::PreconditionFailed;
        }
    }
    if let Some(m) = c.if_none_match {
        if etag_matches(m, &row.etag) {
            return CondResult::NotModified;
        }
    } else if let Some(t) = c.if_modified_since {
        if lm <= secs(t) {
            return CondResult::NotModified;
        }
    }
    CondResult::Ok
}

pub(super) fn check_read_conds(row: &ObjectRow, c: &ReadConds<'_>) -> S3Result<()> {
    match eval_conds(row, c) {
        CondResult::Ok => Ok(()),
        CondResult::PreconditionFailed => Err(precondition_failed()),
        CondResult::NotModified => {
            let mut e = s3_error!(NotModified);
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", row.etag)) {
                h.insert(ETAG, v);
            }
            if let Some(v) =
                http_date(&ts(row.last_modified_ms)).and_then(|d| HeaderValue::from_str(&d).ok())
            {
                h.insert(LAST_MODIFIED, v);
            }
            e.set_headers(h);
            Err(e)
        }
    }
}

/// For copies every failed source condition is a 412.
pub(super) fn check_copy_source_conds(row: &ObjectRow, c: &ReadConds<'_>) -> S3Result<()> {
    match eval_conds(row, c) {
        CondResult::Ok => Ok(()),
        _ => Err(precondition_failed()),
    }
}

pub(super) struct Slice {
    pub(super) start: u64,
    pub(super) len: u64,
    pub(super) content_range: Option<String>,
    pub(super) parts_count: Option<i32>,
}

pub(super) fn slice_of(
    row: &ObjectRow,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> S3Result<Slice> {
    let whole = Slice {
        start: 0,
        len: row.size,
        content_range: None,
        parts_count: None,
    };
    if let Some(pn) = part_number {
        if range.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            ));
        }
        let bad = || {
            custom_error(
                "InvalidPartNumber",
                hyper::StatusCode::RANGE_NOT_SATISFIABLE,
                "The requested partnumber is not satisfiable",
            )
        };
        let Some(sizes) = &row.parts else {
            return if pn == 1 { Ok(whole) } else { Err(bad()) };
        };
        let idx = usize::try_from(pn)
            .ok()
            .and_then(|p| p.checked_sub(1))
            .ok_or_else(bad)?;
        let len = *sizes.get(idx).ok_or_else(bad)?;
        let start: u64 = sizes[..idx].iter().sum();
        return Ok(Slice {
            start,
            len,
            content_range: Some(format!(
                "bytes {}-{}/{}",
                start,
                (start + len).saturating_sub(1),
                row.size
            )),
            parts_count: i32::try_from(sizes.len()).ok(),
        });
    }
    let Some(range) = range else { return Ok(whole) };
    match range.check(row.size) {
        Ok(r) => Ok(Slice {
            start: r.start,
            len: r.end - r.start,
            content_range: Some(format!("bytes {}-{}/{}", r.start, r.end - 1, row.size)),
            parts_count: None,
        }),
        Err(_) => {
            let mut e = s3_error!(InvalidRange, "The requested range is not satisfiable");
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", row.size)) {
                h.insert(CONTENT_RANGE, v);
            }
            e.set_headers(h);
            Err(e)
        }
    }
}
