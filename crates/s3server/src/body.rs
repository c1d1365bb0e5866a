//! Request bodies to temp files (with MD5 and integrity checks) and files to response bodies.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hyper::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
use s3s::dto::StreamingBlob;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{s3_error, S3Error, S3Result, TrailingHeaders};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use crate::store::{internal, Store};

const CHUNK: usize = 256 * 1024;

/// A file in `tmp/` that is removed when dropped unless it was renamed into place.
pub(crate) struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    pub fn new(path: PathBuf) -> TempFile {
        TempFile { path, armed: true }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn persist(mut self, dest: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, dest)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub(crate) struct Received {
    pub tmp: TempFile,
    pub size: u64,
    pub md5: [u8; 16],
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        let idx = |shift: u32| char::from(T[usize::try_from((n >> shift) & 63).unwrap_or(0)]);
        s.push(idx(18));
        s.push(idx(12));
        s.push(if c.len() > 1 { idx(6) } else { '=' });
        s.push(if c.len() > 2 { idx(0) } else { '=' });
    }
    s
}

const ALGOS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/// Hashers for the checksums the client declared, in a header or as a trailer.
fn checksum_plan(headers: &HeaderMap) -> ChecksumHasher {
    let trailer = headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let wanted = |algo: &str| {
        let name = format!("x-amz-checksum-{algo}");
        headers.contains_key(name.as_str()) || trailer.split(',').any(|t| t.trim() == name)
    };
    let mut h = ChecksumHasher::default();
    for algo in ALGOS {
        if wanted(algo) {
            match algo {
                "crc32" => h.crc32 = Some(Crc32::new()),
                "crc32c" => h.crc32c = Some(Crc32c::new()),
                "crc64nvme" => h.crc64nvme = Some(Crc64Nvme::new()),
                "sha1" => h.sha1 = Some(Sha1::new()),
                _ => h.sha256 = Some(Sha256::new()),
            }
        }
    }
    h
}

fn bad_digest(what: &str) -> S3Error {
    s3_error!(
        BadDigest,
        "The {what} you specified did not match the calculated checksum."
    )
}

fn verify(
    headers: &HeaderMap,
    trailers: Option<&TrailingHeaders>,
    hasher: ChecksumHasher,
    md5: &[u8; 16],
) -> S3Result<()> {
    if let Some(v) = headers.get("content-md5") {
        if v.as_bytes() != base64(md5).as_bytes() {
            return Err(bad_digest("Content-MD5"));
        }
    }
    let got = hasher.finalize();
    let trailer_map = trailers.and_then(TrailingHeaders::take);
    for (algo, computed) in [
        ("crc32", &got.checksum_crc32),
        ("crc32c", &got.checksum_crc32c),
        ("crc64nvme", &got.checksum_crc64nvme),
        ("sha1", &got.checksum_sha1),
        ("sha256", &got.checksum_sha256),
    ] {
        let Some(computed) = computed else { continue };
        let name = format!("x-amz-checksum-{algo}");
        let sent = headers
            .get(name.as_str())
            .or_else(|| trailer_map.as_ref().and_then(|m| m.get(name.as_str())));
        match sent {
            Some(v) if v.as_bytes() == computed.as_bytes() => {}
            Some(_) => return Err(bad_digest(&algo.to_ascii_uppercase())),
            // Declared as a trailer that never came.
            None => {
                return Err(s3_error!(
                    InvalidRequest,
                    "missing trailing checksum {name}"
                ))
            }
        }
    }
    Ok(())
}

fn body_error(e: s3s::StdError) -> S3Error {
    match e.downcast::<S3Error>() {
        Ok(e) => *e,
        Err(e) => S3Error::with_message(
            s3s::S3ErrorCode::IncompleteBody,
            format!("request body: {e}"),
        ),
    }
}

/// Streams a request body into a new temp file, computing its MD5 and checking the
/// Content-MD5 / x-amz-checksum-* values the client sent (headers or trailers).
pub(crate) async fn receive(
    store: &Store,
    body: Option<StreamingBlob>,
    content_length: Option<i64>,
    headers: &HeaderMap,
    trailers: Option<&TrailingHeaders>,
) -> S3Result<Received> {
    let tmp = TempFile::new(store.tmp_path(&store.new_id()));
    let file = tokio::fs::File::create(tmp.path())
        .await
        .map_err(internal)?;
    let mut out = tokio::io::BufWriter::with_capacity(CHUNK, file);
    let mut md5 = Md5::new();
    let mut hasher = checksum_plan(headers);
    let mut size: u64 = 0;
    if let Some(mut body) = body {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(body_error)?;
            md5.update(&chunk);
            hasher.update(&chunk);
            size += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(internal)?;
        }
    }
    out.flush().await.map_err(internal)?;
    let file = out.into_inner();
    if store.fsync {
        file.sync_data().await.map_err(internal)?;
    }
    drop(file);
    if let Some(len) = content_length {
        if u64::try_from(len).ok() != Some(size) {
            return Err(s3_error!(
                IncompleteBody,
                "You did not provide the number of bytes specified by the Content-Length HTTP header."
            ));
        }
    }
    let md5 = md5.finalize();
    verify(headers, trailers, hasher, &md5)?;
    Ok(Received { tmp, size, md5 })
}

/// Copies `len` bytes at `offset` of `src` into a new temp file and returns its MD5.
/// Blocking: run on the blocking pool.
pub(crate) fn copy_range(
    store: &Store,
    src: Option<&Path>,
    offset: u64,
    len: u64,
) -> io::Result<Received> {
    let tmp = TempFile::new(store.tmp_path(&store.new_id()));
    let mut out = std::fs::File::create(tmp.path())?;
    let mut md5 = Md5::new();
    if let Some(src) = src {
        let mut f = std::fs::File::open(src)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut f = f.take(len);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
    }
    if store.fsync {
        out.sync_data()?;
    }
    let size = std::fs::metadata(tmp.path())?.len();
    if size != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "source shorter than its index row",
        ));
    }
    Ok(Received {
        tmp,
        size,
        md5: md5.finalize(),
    })
}

/// Concatenates files into a new temp file. Blocking.
pub(crate) fn concat(store: &Store, parts: &[PathBuf]) -> io::Result<(TempFile, u64)> {
    let tmp = TempFile::new(store.tmp_path(&store.new_id()));
    let mut out = std::fs::File::create(tmp.path())?;
    let mut size = 0;
    for p in parts {
        let mut f = std::fs::File::open(p)?;
        // std uses copy_file_range here where the filesystem supports it.
        size += io::copy(&mut f, &mut out)?;
    }
    if store.fsync {
        out.sync_data()?;
    }
    Ok((tmp, size))
}

/// MD5 of a whole file. Blocking.
pub(crate) fn md5_file(path: &Path) -> io::Result<[u8; 16]> {
    let mut f = std::fs::File::open(path)?;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(md5.finalize());
        }
        md5.update(&buf[..n]);
    }
}

/// A response body reading `remaining` bytes from an already opened (and positioned)
/// file. The file was opened before the response started, so a concurrent overwrite or
/// delete of the object (which unlinks the blob) cannot cut the body short.
pub(crate) struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Vec<u8>,
}

impl FileBody {
    pub fn new(file: tokio::fs::File, remaining: u64) -> FileBody {
        FileBody {
            file,
            remaining,
            buf: Vec::new(),
        }
    }
}

impl Stream for FileBody {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining).unwrap_or(CHUNK).min(CHUNK);
        this.buf.resize(want, 0);
        let mut rb = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    this.remaining = 0;
                    return Poll::Ready(Some(Err(Box::new(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob shorter than its index row",
                    )))));
                }
                this.remaining -= n as u64;
                Poll::Ready(Some(Ok(Bytes::copy_from_slice(rb.filled()))))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}

impl ByteStream for FileBody {
    fn remaining_length(&self) -> RemainingLength {
        match usize::try_from(self.remaining) {
            Ok(n) => RemainingLength::new_exact(n),
            Err(_) => RemainingLength::unknown(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
