//! Multipart uploads through aws-sdk-s3.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::*;

const MIB: usize = 1024 * 1024;

fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

async fn upload_part(s3: &aws_sdk_s3::Client, key: &str, id: &str, n: i32, body: &[u8]) -> String {
    s3.upload_part()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_part_upload_with_s3_etag() {
    let f = start().await;
    let s3 = &f.s3;
    let key = "big/file.bin";
    let parts = [data(5 * MIB, 1), data(5 * MIB + 7, 2), data(1234, 3)];

    let create = s3
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .content_type("application/octet-stream")
        .metadata("mode", "33188")
        .send()
        .await
        .unwrap();
    let id = create.upload_id().unwrap().to_owned();

    // Parts uploaded out of order, one uploaded twice (the second one counts).
    let e3 = upload_part(s3, key, &id, 3, &parts[2]).await;
    upload_part(s3, key, &id, 1, b"to be replaced").await;
    let e1 = upload_part(s3, key, &id, 1, &parts[0]).await;
    let e2 = upload_part(s3, key, &id, 2, &parts[1]).await;
    assert_eq!(e1, format!("\"{}\"", md5_hex(&parts[0])));

    let listed = s3
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let sizes: Vec<_> = listed
        .parts()
        .iter()
        .map(|p| (p.part_number(), p.size()))
        .collect();
    let (s1, s2, s3_) = (
        parts[0].len() as i64,
        parts[1].len() as i64,
        parts[2].len() as i64,
    );
    assert_eq!(
        sizes,
        [
            (Some(1), Some(s1)),
            (Some(2), Some(s2)),
            (Some(3), Some(s3_))
        ]
    );
    let uploads = s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1);
    assert_eq!(uploads.uploads()[0].key(), Some(key));
    // The object does not exist until completed.
    assert_eq!(
        failure(
            s3.head_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .unwrap_err()
        )
        .0,
        404
    );

    // A wrong ETag is InvalidPart; a list out of order is InvalidPartOrder.
    let e = s3
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .multipart_upload(completed(&[
            (1, &e1),
            (2, "\"00000000000000000000000000000000\""),
            (3, &e3),
        ]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (400, Some("InvalidPart".to_owned())));
    let e = s3
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .multipart_upload(completed(&[(2, &e2), (1, &e1), (3, &e3)]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (400, Some("InvalidPartOrder".to_owned())));

    let done = s3
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2), (3, &e3)]))
        .send()
        .await
        .unwrap();
    // ETag = MD5 of the concatenated binary part MD5s, then "-<parts>".
    let mut md5s = Vec::new();
    for p in &parts {
        let h = md5_hex(p);
        md5s.extend((0..16).map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap()));
    }
    let expected_etag = format!("\"{}-3\"", md5_hex(&md5s));
    assert_eq!(done.e_tag(), Some(expected_etag.as_str()));
    // An unversioned bucket gets no version id (rclone breaks on `null`).
    assert!(done.version_id().is_none());

    let whole: Vec<u8> = parts.concat();
    assert_eq!(get(s3, key).await, whole);
    let h = s3
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(h.content_length(), Some(whole.len() as i64));
    assert_eq!(h.e_tag(), Some(expected_etag.as_str()));
    assert_eq!(h.metadata().unwrap()["mode"], "33188");
    assert_eq!(h.content_type(), Some("application/octet-stream"));
    let listed = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("big/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents()[0].e_tag(), Some(expected_etag.as_str()));

    // GET ?partNumber=2 returns that part.
    let p2 = s3
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(p2.parts_count(), Some(3));
    assert_eq!(
        p2.body.collect().await.unwrap().into_bytes().to_vec(),
        parts[1]
    );

    // The upload is gone; its parts directory too.
    assert!(s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap()
        .uploads()
        .is_empty());
    let e = s3
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2), (3, &e3)]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (404, Some("NoSuchUpload".to_owned())));
    let left = std::fs::read_dir(f.dir.path().join("data/uploads"))
        .unwrap()
        .count();
    assert_eq!(left, 0);

    // A copy of a multipart object is a single-part object with an MD5 ETag.
    let c = s3
        .copy_object()
        .bucket(BUCKET)
        .key("copy.bin")
        .copy_source(copy_source(BUCKET, key))
        .send()
        .await
        .unwrap();
    let md5_etag = format!("\"{}\"", md5_hex(&whole));
    assert_eq!(
        c.copy_object_result().unwrap().e_tag(),
        Some(md5_etag.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_parts_abort_and_conditions() {
    let f = start().await;
    let s3 = &f.s3;
    let new_upload = |key: &'static str| async move {
        s3.create_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap()
            .upload_id
            .unwrap()
    };

    // Every part but the last must be at least 5 MiB.
    let id = new_upload("small").await;
    let a = upload_part(s3, "small", &id, 1, b"tiny").await;
    let b = upload_part(s3, "small", &id, 2, b"tiny too").await;
    let e = s3
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key("small")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &a), (2, &b)]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (400, Some("EntityTooSmall".to_owned())));
    // A single small part is fine.
    s3.complete_multipart_upload()
        .bucket(BUCKET)
        .key("small")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &a)]))
        .send()
        .await
        .unwrap();
    assert_eq!(get(s3, "small").await, b"tiny");

    // Abort: the upload and its parts are gone.
    let id = new_upload("aborted").await;
    upload_part(s3, "aborted", &id, 1, b"x").await;
    s3.abort_multipart_upload()
        .bucket(BUCKET)
        .key("aborted")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let e = s3
        .upload_part()
        .bucket(BUCKET)
        .key("aborted")
        .upload_id(&id)
        .part_number(2)
        .body(ByteStream::from_static(b"y"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (404, Some("NoSuchUpload".to_owned())));
    assert_eq!(
        failure(
            s3.head_object()
                .bucket(BUCKET)
                .key("aborted")
                .send()
                .await
                .unwrap_err()
        )
        .0,
        404
    );

    // CompleteMultipartUpload honours If-None-Match like PutObject.
    let id = new_upload("small").await;
    let a = upload_part(s3, "small", &id, 1, b"replacement").await;
    let e = s3
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key("small")
        .upload_id(&id)
        .if_none_match("*")
        .multipart_upload(completed(&[(1, &a)]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e), (412, Some("PreconditionFailed".to_owned())));
    assert_eq!(get(s3, "small").await, b"tiny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_part_copy_ranges() {
    let f = start().await;
    let s3 = &f.s3;
    let src = data(6 * MIB, 9);
    put(s3, "src", &src).await;
    let id = s3
        .create_multipart_upload()
        .bucket(BUCKET)
        .key("assembled")
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap();
    let copy = |n: i32, range: String| {
        s3.upload_part_copy()
            .bucket(BUCKET)
            .key("assembled")
            .upload_id(&id)
            .part_number(n)
            .copy_source(copy_source(BUCKET, "src"))
            .copy_source_range(range)
            .send()
    };
    let first = 5 * MIB;
    let e1 = copy(1, format!("bytes=0-{}", first - 1)).await.unwrap();
    let e2 = copy(2, format!("bytes={first}-{}", src.len() - 1))
        .await
        .unwrap();
    let e1 = e1.copy_part_result().unwrap().e_tag().unwrap().to_owned();
    let e2 = e2.copy_part_result().unwrap().e_tag().unwrap().to_owned();
    assert_eq!(e1, format!("\"{}\"", md5_hex(&src[..first])));
    s3.complete_multipart_upload()
        .bucket(BUCKET)
        .key("assembled")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    assert_eq!(get(s3, "assembled").await, src);
}
