//! Two servers on one data directory (as two `s3shim server` processes would be).

mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::*;
use s3shim_s3server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_data_dir_see_each_others_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let a = Server::start(config(&data_dir)).await.unwrap();
    let b = Server::start(config(&data_dir)).await.unwrap();
    assert_ne!(a.local_addr(), b.local_addr());
    let sa = client(&a.endpoint(), AK, SK);
    let sb = client(&b.endpoint(), AK, SK);

    put(&sa, "from-a", b"written via a").await;
    assert_eq!(get(&sb, "from-a").await, b"written via a");
    put(&sb, "from-b/", b"").await;
    put(&sb, "from-b/f", b"written via b").await;
    assert_eq!(all_keys(&sa, "").await, ["from-a", "from-b/", "from-b/f"]);

    // Overwrite through one, read through the other: the new version, whole.
    let big = data(3 * 1024 * 1024, 5);
    put(&sa, "from-b/f", &big).await;
    assert_eq!(get(&sb, "from-b/f").await, big);

    // Delete through b, gone for a.
    sb.delete_object()
        .bucket(BUCKET)
        .key("from-a")
        .send()
        .await
        .unwrap();
    let e = sa
        .head_object()
        .bucket(BUCKET)
        .key("from-a")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(e).0, 404);

    // Create-only writes racing through both servers: exactly one wins each round.
    for round in 0..20 {
        let key = format!("race/{round}");
        let put_if_absent = |s3: aws_sdk_s3::Client, key: String, body: &'static [u8]| async move {
            s3.put_object()
                .bucket(BUCKET)
                .key(key)
                .if_none_match("*")
                .body(ByteStream::from_static(body))
                .send()
                .await
        };
        let (ra, rb) = tokio::join!(
            put_if_absent(sa.clone(), key.clone(), b"a"),
            put_if_absent(sb.clone(), key.clone(), b"b")
        );
        let winner: &[u8] = match (ra, rb) {
            (Ok(_), Err(e)) => {
                assert_eq!(failure(e).0, 412);
                b"a"
            }
            (Err(e), Ok(_)) => {
                assert_eq!(failure(e).0, 412);
                b"b"
            }
            (ra, rb) => panic!(
                "round {round}: both or neither won: {:?} / {:?}",
                ra.is_ok(),
                rb.is_ok()
            ),
        };
        assert_eq!(get(&sa, &key).await, winner);
        assert_eq!(get(&sb, &key).await, winner);
    }

    // Buckets are shared too.
    sa.create_bucket().bucket("made-by-a").send().await.unwrap();
    sb.head_bucket().bucket("made-by-a").send().await.unwrap();

    a.shutdown().await;
    b.shutdown().await;
}
