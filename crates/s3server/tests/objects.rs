//! Object semantics the bucket layout relies on, driven through aws-sdk-s3.

mod common;

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{Delete, MetadataDirective, ObjectIdentifier};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dir_marker_beside_file_and_x_beside_x_slash_y() {
    let f = start().await;
    let s3 = &f.s3;
    put(s3, "d/", b"").await;
    put(s3, "d/file", b"in d").await;
    put(s3, "x", b"plain x").await;
    put(s3, "x/y", b"x slash y").await;
    put(s3, "x/", b"").await;

    // Each key is its own object.
    assert_eq!(get(s3, "x").await, b"plain x");
    assert_eq!(get(s3, "x/y").await, b"x slash y");
    assert_eq!(get(s3, "d/file").await, b"in d");
    assert_eq!(get(s3, "d/").await, b"");

    // HEAD d (absent) vs HEAD d/ (the marker).
    let e = s3
        .head_object()
        .bucket(BUCKET)
        .key("d")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e).0, 404);
    let h = s3
        .head_object()
        .bucket(BUCKET)
        .key("d/")
        .send()
        .await
        .unwrap();
    assert_eq!(h.content_length(), Some(0));
    let e = s3
        .get_object()
        .bucket(BUCKET)
        .key("d")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (404, Some("NoSuchKey".to_owned())));

    // Deleting the marker leaves the file, and the other way round.
    s3.delete_object()
        .bucket(BUCKET)
        .key("x/")
        .send()
        .await
        .unwrap();
    assert_eq!(get(s3, "x").await, b"plain x");
    assert_eq!(get(s3, "x/y").await, b"x slash y");
    assert_eq!(all_keys(s3, "").await, ["d/", "d/file", "x", "x/y"]);
    // Deleting a missing key is not an error (S3 answers 204).
    s3.delete_object()
        .bucket(BUCKET)
        .key("never-there")
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v2_delimiter_and_common_prefixes() {
    let f = start().await;
    let s3 = &f.s3;
    for k in [
        "a",
        "d/",
        "d/file",
        "d/sub/",
        "d/sub/deep",
        "dz",
        "x",
        "x/y",
        "x/z/w",
    ] {
        put(s3, k, k.as_bytes()).await;
    }

    let top = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = top.contents().iter().map(|o| o.key().unwrap()).collect();
    let cps: Vec<_> = top
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(keys, ["a", "dz", "x"]);
    assert_eq!(cps, ["d/", "x/"]);
    assert_eq!(top.key_count(), Some(5));
    assert_eq!(top.is_truncated(), Some(false));

    let d = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("d/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = d.contents().iter().map(|o| o.key().unwrap()).collect();
    let cps: Vec<_> = d
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["d/", "d/file"],
        "the marker is listed in its own directory"
    );
    assert_eq!(cps, ["d/sub/"]);
    let file = &d.contents()[1];
    assert_eq!(file.size(), Some(6));
    assert_eq!(
        file.e_tag(),
        Some(format!("\"{}\"", md5_hex(b"d/file")).as_str())
    );

    // Without a delimiter, and with an empty `delimiter=`, everything under the prefix.
    let all = all_keys(s3, "").await;
    assert_eq!(
        all,
        [
            "a",
            "d/",
            "d/file",
            "d/sub/",
            "d/sub/deep",
            "dz",
            "x",
            "x/y",
            "x/z/w"
        ]
    );
    let empty_delim = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .delimiter("")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = empty_delim
        .contents()
        .iter()
        .map(|o| o.key().unwrap())
        .collect();
    assert_eq!(keys, all);
    assert!(empty_delim.common_prefixes().is_empty());

    // start-after.
    let after = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .start_after("d/sub/deep")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = after.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, ["dz", "x", "x/y", "x/z/w"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v2_pagination_2500_keys() {
    let f = start().await;
    let s3 = &f.s3;
    let mut expected: Vec<String> = (0..2500).map(|i| format!("k/{:x}/{i}", i % 7)).collect();
    let puts = expected.iter().map(|k| {
        let s3 = s3.clone();
        let k = k.clone();
        async move { put(&s3, &k, k.as_bytes()).await }
    });
    futures::stream::iter(puts)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    expected.sort(); // byte order

    let mut pages = Vec::new();
    let mut got = Vec::new();
    let mut token = None;
    for _ in 0..MAX_PAGES {
        let out = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .max_keys(1000)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        pages.push(out.contents().len());
        got.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        if !out.is_truncated().unwrap() {
            assert!(out.next_continuation_token().is_none());
            break;
        }
        token = out.next_continuation_token.clone();
    }
    assert_eq!(pages, [1000, 1000, 500]);
    assert_eq!(got, expected);

    // Paging with a delimiter: each common prefix exactly once even when a page ends on one.
    let mut cps = Vec::new();
    let mut token = None;
    for _ in 0..MAX_PAGES {
        let out = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix("k/")
            .delimiter("/")
            .max_keys(3)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        assert!(out.contents().is_empty());
        cps.extend(
            out.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_owned()),
        );
        if !out.is_truncated().unwrap() {
            break;
        }
        token = out.next_continuation_token.clone();
    }
    assert_eq!(
        cps,
        ["k/0/", "k/1/", "k/2/", "k/3/", "k/4/", "k/5/", "k/6/"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v1_paging_with_markers() {
    let f = start().await;
    let s3 = &f.s3;
    let mut expected = Vec::new();
    for i in 0..250 {
        let k = format!("f{i:03}");
        put(s3, &k, b"1").await;
        expected.push(k);
    }
    for d in ["da/", "da/1", "db/2", "dc/"] {
        put(s3, d, b"").await;
    }

    let mut got = Vec::new();
    let mut marker: Option<String> = None;
    let mut requests = 0;
    for _ in 0..MAX_PAGES {
        let out = s3
            .list_objects()
            .bucket(BUCKET)
            .prefix("f")
            .max_keys(100)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        requests += 1;
        got.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        if !out.is_truncated().unwrap() {
            break;
        }
        let next = out
            .next_marker()
            .expect("NextMarker on a truncated v1 listing");
        assert_eq!(next, got.last().unwrap());
        marker = Some(next.to_owned());
    }
    assert_eq!(requests, 3);
    assert_eq!(got, expected);

    // With a delimiter, NextMarker can be a common prefix; resuming from it skips that prefix.
    let mut entries = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let out = s3
            .list_objects()
            .bucket(BUCKET)
            .prefix("d")
            .delimiter("/")
            .max_keys(1)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        entries.extend(
            out.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_owned()),
        );
        entries.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        if !out.is_truncated().unwrap() {
            break;
        }
        marker = out.next_marker().map(str::to_owned);
    }
    assert_eq!(entries, ["da/", "db/", "dc/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_metadata_round_trip() {
    let f = start().await;
    let s3 = &f.s3;
    s3.put_object()
        .bucket(BUCKET)
        .key("src/main.rs")
        .body(ByteStream::from_static(b"fn main() {}\n"))
        .content_type("text/x-rust")
        .metadata("mode", "33188")
        .metadata("mtime", "1700000000.123456789")
        .metadata("uid", "1000")
        .metadata("gid", "1000")
        .cache_control("no-cache")
        .send()
        .await
        .unwrap();

    let h = s3
        .head_object()
        .bucket(BUCKET)
        .key("src/main.rs")
        .send()
        .await
        .unwrap();
    let m = h.metadata().unwrap();
    assert_eq!(m.len(), 4);
    assert_eq!(m["mode"], "33188");
    assert_eq!(m["mtime"], "1700000000.123456789");
    assert_eq!(m["uid"], "1000");
    assert_eq!(m["gid"], "1000");
    assert_eq!(h.content_type(), Some("text/x-rust"));
    assert_eq!(h.cache_control(), Some("no-cache"));
    assert_eq!(h.content_length(), Some(13));
    assert_eq!(
        h.e_tag(),
        Some(format!("\"{}\"", md5_hex(b"fn main() {}\n")).as_str())
    );
    assert!(h.last_modified().is_some());
    assert!(h.version_id().is_none());

    let g = s3
        .get_object()
        .bucket(BUCKET)
        .key("src/main.rs")
        .send()
        .await
        .unwrap();
    assert_eq!(g.metadata().unwrap()["mode"], "33188");
    assert_eq!(g.content_type(), Some("text/x-rust"));

    // Overwriting replaces the metadata as a whole.
    put(s3, "src/main.rs", b"x").await;
    let h = s3
        .head_object()
        .bucket(BUCKET)
        .key("src/main.rs")
        .send()
        .await
        .unwrap();
    assert!(h.metadata().is_none_or(|m| m.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_object_copy_replace_and_self_copy() {
    let f = start().await;
    let s3 = &f.s3;
    let src_etag = s3
        .put_object()
        .bucket(BUCKET)
        .key("src")
        .body(ByteStream::from_static(b"payload"))
        .content_type("text/plain")
        .metadata("mode", "33188")
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap();

    // COPY (the default) keeps the source's metadata.
    let out = s3
        .copy_object()
        .bucket(BUCKET)
        .key("dst-copy")
        .copy_source(copy_source(BUCKET, "src"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.copy_object_result().unwrap().e_tag(),
        Some(src_etag.as_str())
    );
    let h = s3
        .head_object()
        .bucket(BUCKET)
        .key("dst-copy")
        .send()
        .await
        .unwrap();
    assert_eq!(h.metadata().unwrap()["mode"], "33188");
    assert_eq!(h.content_type(), Some("text/plain"));
    assert_eq!(get(s3, "dst-copy").await, b"payload");

    // REPLACE takes the request's metadata instead.
    s3.copy_object()
        .bucket(BUCKET)
        .key("dst-replace")
        .copy_source(copy_source(BUCKET, "src"))
        .metadata_directive(MetadataDirective::Replace)
        .metadata("mode", "33261")
        .content_type("application/x-sh")
        .send()
        .await
        .unwrap();
    let h = s3
        .head_object()
        .bucket(BUCKET)
        .key("dst-replace")
        .send()
        .await
        .unwrap();
    assert_eq!(h.metadata().unwrap()["mode"], "33261");
    assert_eq!(h.content_type(), Some("application/x-sh"));
    assert_eq!(get(s3, "dst-replace").await, b"payload");

    // Copying onto itself needs REPLACE ...
    let e = s3
        .copy_object()
        .bucket(BUCKET)
        .key("src")
        .copy_source(copy_source(BUCKET, "src"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (400, Some("InvalidRequest".to_owned())));
    // ... and then changes only the metadata (chmod on an S3 file).
    s3.copy_object()
        .bucket(BUCKET)
        .key("src")
        .copy_source(copy_source(BUCKET, "src"))
        .metadata_directive(MetadataDirective::Replace)
        .metadata("mode", "33216")
        .send()
        .await
        .unwrap();
    let h = s3
        .head_object()
        .bucket(BUCKET)
        .key("src")
        .send()
        .await
        .unwrap();
    assert_eq!(h.metadata().unwrap()["mode"], "33216");
    assert_eq!(h.e_tag(), Some(src_etag.as_str()));
    assert_eq!(get(s3, "src").await, b"payload");

    // x-amz-copy-source-if-match.
    let e = s3
        .copy_object()
        .bucket(BUCKET)
        .key("dst-cond")
        .copy_source(copy_source(BUCKET, "src"))
        .copy_source_if_match("\"0123456789abcdef0123456789abcdef\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (412, Some("PreconditionFailed".to_owned())));
    s3.copy_object()
        .bucket(BUCKET)
        .key("dst-cond")
        .copy_source(copy_source(BUCKET, "src"))
        .copy_source_if_match(src_etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(get(s3, "dst-cond").await, b"payload");

    // Missing source.
    let e = s3
        .copy_object()
        .bucket(BUCKET)
        .key("dst")
        .copy_source(copy_source(BUCKET, "nope"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (404, Some("NoSuchKey".to_owned())));

    // The copy is independent of the source.
    s3.delete_object()
        .bucket(BUCKET)
        .key("src")
        .send()
        .await
        .unwrap();
    assert_eq!(get(s3, "dst-copy").await, b"payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_put() {
    let f = start().await;
    let s3 = &f.s3;
    let cput = |key: &'static str, body: &'static [u8]| {
        s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from_static(body))
    };

    // Create-only: succeeds once.
    let e1 = cput("f", b"one")
        .if_none_match("*")
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap();
    let e = cput("f", b"two")
        .if_none_match("*")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (412, Some("PreconditionFailed".to_owned())));
    assert_eq!(get(s3, "f").await, b"one");

    // Update only if unchanged.
    let e = cput("f", b"two")
        .if_match("\"00000000000000000000000000000000\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (412, Some("PreconditionFailed".to_owned())));
    assert_eq!(get(s3, "f").await, b"one");
    let e2 = cput("f", b"two")
        .if_match(e1.clone())
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap();
    assert_eq!(get(s3, "f").await, b"two");
    // The old ETag no longer matches.
    let e = cput("f", b"three").if_match(e1).send().await.unwrap_err();
    assert_eq!(failure(e).0, 412);
    assert_eq!(e2, format!("\"{}\"", md5_hex(b"two")));

    // If-Match on a missing key: 404, as S3.
    let e = cput("missing", b"x").if_match(e2).send().await.unwrap_err();
    assert_eq!(failure(e), (404, Some("NoSuchKey".to_owned())));
    let e = s3
        .head_object()
        .bucket(BUCKET)
        .key("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e).0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_get_and_head() {
    let f = start().await;
    let s3 = &f.s3;
    let etag = put(s3, "c", b"content").await;
    let other = "\"ffffffffffffffffffffffffffffffff\"";
    let past = DateTime::from_secs(1_000_000_000);
    let future = DateTime::from_secs(4_000_000_000);

    let status = |r: Result<_, aws_sdk_s3::error::SdkError<_, _>>| match r {
        Ok(_) => 200,
        Err(e) => failure::<aws_sdk_s3::operation::get_object::GetObjectError>(e).0,
    };
    let g = || s3.get_object().bucket(BUCKET).key("c");
    assert_eq!(status(g().if_match(etag.clone()).send().await), 200);
    assert_eq!(status(g().if_match(other).send().await), 412);
    assert_eq!(status(g().if_none_match(etag.clone()).send().await), 304);
    assert_eq!(status(g().if_none_match(other).send().await), 200);
    assert_eq!(status(g().if_modified_since(past).send().await), 200);
    assert_eq!(status(g().if_modified_since(future).send().await), 304);
    assert_eq!(status(g().if_unmodified_since(past).send().await), 412);
    assert_eq!(status(g().if_unmodified_since(future).send().await), 200);
    // If-None-Match wins over If-Modified-Since, If-Match over If-Unmodified-Since.
    assert_eq!(
        status(
            g().if_none_match(other)
                .if_modified_since(future)
                .send()
                .await
        ),
        200
    );
    assert_eq!(
        status(
            g().if_match(etag.clone())
                .if_unmodified_since(past)
                .send()
                .await
        ),
        200
    );

    let hstatus = |r: Result<_, aws_sdk_s3::error::SdkError<_, _>>| match r {
        Ok(_) => 200,
        Err(e) => failure::<aws_sdk_s3::operation::head_object::HeadObjectError>(e).0,
    };
    let h = || s3.head_object().bucket(BUCKET).key("c");
    assert_eq!(hstatus(h().if_none_match(etag.clone()).send().await), 304);
    assert_eq!(hstatus(h().if_match(other).send().await), 412);
    assert_eq!(hstatus(h().if_match(etag).send().await), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_get() {
    let f = start().await;
    let s3 = &f.s3;
    let body = data(1_000_000, 7);
    put(s3, "r", &body).await;
    let range = |r: &'static str| async move {
        let out = s3
            .get_object()
            .bucket(BUCKET)
            .key("r")
            .range(r)
            .send()
            .await?;
        let cr = out.content_range().map(str::to_owned);
        let bytes = out.body.collect().await.unwrap().into_bytes().to_vec();
        Ok::<_, aws_sdk_s3::error::SdkError<_, _>>((cr, bytes))
    };
    let (cr, b) = range("bytes=2-5").await.unwrap();
    assert_eq!(cr.as_deref(), Some("bytes 2-5/1000000"));
    assert_eq!(b, &body[2..6]);
    let (cr, b) = range("bytes=-3").await.unwrap();
    assert_eq!(cr.as_deref(), Some("bytes 999997-999999/1000000"));
    assert_eq!(b, &body[999_997..]);
    let (_, b) = range("bytes=500000-").await.unwrap();
    assert_eq!(b, &body[500_000..]);
    let (cr, b) = range("bytes=999990-2000000").await.unwrap();
    assert_eq!(cr.as_deref(), Some("bytes 999990-999999/1000000"));
    assert_eq!(b, &body[999_990..]);
    let e = range("bytes=1000000-").await.unwrap_err();
    assert_eq!(failure(e), (416, Some("InvalidRange".to_owned())));
    // Whole object still intact.
    assert_eq!(get(s3, "r").await, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_batch() {
    let f = start().await;
    let s3 = &f.s3;
    for k in ["a", "b/", "b/c", "keep"] {
        put(s3, k, b"z").await;
    }
    let ids = ["a", "b/", "b/c", "not-there"]
        .iter()
        .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
        .collect();
    let out = s3
        .delete_objects()
        .bucket(BUCKET)
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await
        .unwrap();
    let mut deleted: Vec<_> = out.deleted().iter().map(|d| d.key().unwrap()).collect();
    deleted.sort();
    assert_eq!(deleted, ["a", "b/", "b/c", "not-there"]);
    assert!(out.errors().is_empty());
    assert_eq!(all_keys(s3, "").await, ["keep"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_rejected() {
    let f = start().await;
    put(&f.s3, "k", b"v").await;
    let before = f.server.stats();

    let bad_secret = client(&f.server.endpoint(), AK, "not-the-secret");
    let e = bad_secret
        .get_object()
        .bucket(BUCKET)
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (403, Some("SignatureDoesNotMatch".to_owned())));
    let e = bad_secret
        .put_object()
        .bucket(BUCKET)
        .key("k")
        .body(ByteStream::from_static(b"evil"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e).0, 403);

    let bad_key = client(&f.server.endpoint(), "someone-else", SK);
    let e = bad_key
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (403, Some("InvalidAccessKeyId".to_owned())));

    // Nothing reached the backend, and nothing changed.
    assert_eq!(f.server.stats(), before);
    assert_eq!(get(&f.s3, "k").await, b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_are_stored_verbatim() {
    let f = start().await;
    let s3 = &f.s3;
    let keys = [
        "../x",
        "../../outside",
        "/abs",
        "//double-leading",
        "a//b",
        "a/./b",
        "a/../b",
        "trailing/",
        "sp ace+plus%25pct&amp?q#h",
        "back\\slash",
        "unicode/é日本",
        "tab\there",
        ".",
        "..",
    ];
    for (i, k) in keys.iter().enumerate() {
        put(s3, k, format!("body {i}").as_bytes()).await;
    }
    let long_key = "k".repeat(1024);
    put(s3, &long_key, b"long").await;

    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            get(s3, k).await,
            format!("body {i}").as_bytes(),
            "key {k:?}"
        );
    }
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.push(long_key.clone());
    expected.sort();
    assert_eq!(all_keys(s3, "").await, expected);

    // Keys over 1024 bytes are refused.
    let e = s3
        .put_object()
        .bucket(BUCKET)
        .key("k".repeat(1025))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e).0, 400);

    // Nothing outside the data directory, and inside it nothing named after a key.
    let names: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["data"]);
    let data = f.dir.path().join("data");
    for e in std::fs::read_dir(&data).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            ["blobs", "uploads", "tmp"].contains(&name.as_str())
                || name.starts_with("index.sqlite3"),
            "unexpected entry {name:?} in the data directory"
        );
    }
    for e in std::fs::read_dir(data.join("blobs")).unwrap() {
        let e = e.unwrap();
        assert!(e.file_type().unwrap().is_file());
        let name = e.file_name().into_string().unwrap();
        assert!(
            name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "{name:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets() {
    let f = start().await;
    let s3 = &f.s3;
    s3.create_bucket().bucket("second").send().await.unwrap();
    let e = s3
        .create_bucket()
        .bucket("second")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(e),
        (409, Some("BucketAlreadyOwnedByYou".to_owned()))
    );
    let names: Vec<_> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .map(|b| b.name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["second", BUCKET]);

    s3.head_bucket().bucket("second").send().await.unwrap();
    let e = s3.head_bucket().bucket("missing").send().await.unwrap_err();
    assert_eq!(failure(e).0, 404);
    let e = s3
        .get_object()
        .bucket("missing")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (404, Some("NoSuchBucket".to_owned())));
    let e = s3
        .put_object()
        .bucket("missing")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (404, Some("NoSuchBucket".to_owned())));
    let e = s3
        .list_objects_v2()
        .bucket("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (404, Some("NoSuchBucket".to_owned())));

    // Same key in two buckets: independent.
    s3.put_object()
        .bucket("second")
        .key("k")
        .body(ByteStream::from_static(b"second"))
        .send()
        .await
        .unwrap();
    put(s3, "k", b"first").await;
    assert_eq!(get(s3, "k").await, b"first");

    let e = s3
        .delete_bucket()
        .bucket("second")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (409, Some("BucketNotEmpty".to_owned())));
    s3.delete_object()
        .bucket("second")
        .key("k")
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket("second").send().await.unwrap();
    let e = s3.head_bucket().bucket("second").send().await.unwrap_err();
    assert_eq!(failure(e).0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_requests_and_bytes() {
    let f = start().await;
    let s3 = &f.s3;
    let t0 = f.server.stats();
    put(s3, "a", &[1; 1000]).await;
    get(s3, "a").await;
    s3.get_object()
        .bucket(BUCKET)
        .key("a")
        .range("bytes=0-9")
        .send()
        .await
        .unwrap();
    s3.head_object()
        .bucket(BUCKET)
        .key("a")
        .send()
        .await
        .unwrap();
    s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    s3.copy_object()
        .bucket(BUCKET)
        .key("b")
        .copy_source(copy_source(BUCKET, "a"))
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket(BUCKET)
        .key("a")
        .send()
        .await
        .unwrap();
    let d = f.server.stats() - t0;
    assert_eq!(
        (d.put, d.get, d.head, d.list, d.copy, d.delete),
        (1, 2, 1, 1, 1, 1)
    );
    assert_eq!(d.put_bytes, 1000);
    assert_eq!(d.get_bytes, 1010);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = s3shim_s3server::Server::start(config(&data_dir))
        .await
        .unwrap();
    let s3 = client(&server.endpoint(), AK, SK);
    put(&s3, "persist/me", b"still here").await;
    put(&s3, "persist/", b"").await;
    server.shutdown().await;

    let server = s3shim_s3server::Server::start(config(&data_dir))
        .await
        .unwrap();
    let s3 = client(&server.endpoint(), AK, SK);
    assert_eq!(get(&s3, "persist/me").await, b"still here");
    assert_eq!(all_keys(&s3, "").await, ["persist/", "persist/me"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_file_upload_with_trailing_checksum() {
    // A body from a file is sent aws-chunked with the CRC32 as a trailer: the agent's path.
    let f = start().await;
    let s3 = &f.s3;
    let body = data(3 * 1024 * 1024 + 17, 11);
    let path = f.dir.path().join("upload.bin");
    std::fs::write(&path, &body).unwrap();
    let etag = s3
        .put_object()
        .bucket(BUCKET)
        .key("streamed")
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap();
    assert_eq!(etag, format!("\"{}\"", md5_hex(&body)));
    assert_eq!(get(s3, "streamed").await, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_uploads_are_refused() {
    let f = start().await;
    let s3 = &f.s3;
    put(s3, "k", b"original").await;
    // base64 MD5 of "other bytes", not of the body sent.
    let e = s3
        .put_object()
        .bucket(BUCKET)
        .key("k")
        .body(ByteStream::from_static(b"new bytes"))
        .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (400, Some("BadDigest".to_owned())));
    let e = s3
        .put_object()
        .bucket(BUCKET)
        .key("k")
        .body(ByteStream::from_static(b"new bytes"))
        .checksum_crc32("AAAAAA==")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (400, Some("BadDigest".to_owned())));
    assert_eq!(get(s3, "k").await, b"original");
    // Nothing half-written is left behind.
    let tmp = std::fs::read_dir(f.dir.path().join("data/tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp, 0);
    let blobs = std::fs::read_dir(f.dir.path().join("data/blobs"))
        .unwrap()
        .count();
    assert_eq!(blobs, 1);
}

use futures::StreamExt as _;
