//! `s3shim doctor`: checks everything a workspace needs, one line per check, each failure
//! with what to do about it. Checks that depend on a failed one are skipped, not failed,
//! so the first FAIL line is the diagnosis.

use crate::agent::{fsops, s3};
use crate::config::{Remote, Settings};
use aws_sdk_s3::error::SdkError;
use s3shim_protocol::layout;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one network check may take before it counts as "no answer".
const NET_TIMEOUT: Duration = Duration::from_secs(10);
/// Oldest glibc the shim is built and tested for (README: requirements).
const MIN_GLIBC: (u32, u32) = (2, 34);

enum Outcome {
    Pass(String),
    /// Works, with a weaker promise than the user may expect: said, not failed.
    Warn(String),
    Fail(String),
    Skip(String),
}

struct Report {
    failed: usize,
}

impl Report {
    fn line(&mut self, check: &str, outcome: Outcome) {
        let (tag, text) = match outcome {
            Outcome::Pass(t) => ("ok  ", t),
            Outcome::Warn(t) => ("warn", t),
            Outcome::Fail(t) => {
                self.failed += 1;
                ("FAIL", t)
            }
            Outcome::Skip(t) => ("skip", t),
        };
        // A closed stdout (`| head`) must not turn into a panic.
        let _ = writeln!(std::io::stdout(), "{tag}  {check:<12} {text}");
    }
}

/// Runs every check; returns the exit code (1 if any check failed).
pub fn doctor(settings: &Settings) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("s3shim: {e}");
            return 2;
        }
    };
    let mut r = Report { failed: 0 };
    rt.block_on(remote_checks(settings, &mut r));
    r.line("cache", cache_check(&settings.cache));
    r.line("private", private_check(&settings.cache));
    r.line(
        "io_uring",
        io_uring_check(
            std::env::var_os(layout::ENV_SOCKET).is_some(),
            std::env::var(layout::ENV_UV_IO_URING).ok().as_deref(),
        ),
    );
    r.line("glibc", glibc_check());
    // issue 15: how programs that bypass libc (static, Go) see the folder.
    r.line(
        "intercept",
        match crate::agent::intercept::mode() {
            Ok(t) => Outcome::Pass(t),
            Err(why) => Outcome::Skip(format!(
                "fallback: {why}; a static or Go program gets the folder it names made local before it starts, with a warning"
            )),
        },
    );
    r.line(
        "mount link",
        match crate::agent::intercept::mount_link_status(&settings.mount, &settings.tree()) {
            Ok(t) => Outcome::Pass(t),
            Err(t) => Outcome::Skip(t),
        },
    );
    let mut out = std::io::stdout();
    if r.failed > 0 {
        let _ = writeln!(
            out,
            "{} check(s) failed; fix the first FAIL line first (later ones often follow from it)",
            r.failed
        );
        1
    } else {
        let _ = writeln!(out, "all checks passed");
        0
    }
}

async fn remote_checks(settings: &Settings, r: &mut Report) {
    let mut creds_ok = true;
    let (endpoint, keys, _server) = match &settings.remote {
        Remote::External { endpoint, .. } => {
            let creds = credentials_check().await;
            creds_ok = matches!(creds, Outcome::Pass(_));
            r.line("credentials", creds);
            (endpoint.clone(), None, None)
        }
        Remote::Embedded { data_dir } => match crate::agent::start_embedded(data_dir).await {
            Ok((server, keys)) => {
                r.line(
                    "credentials",
                    Outcome::Pass(format!(
                        "none needed: no bucket is configured, so the embedded S3 server is used (data in {})",
                        data_dir.display()
                    )),
                );
                (Some(server.endpoint()), Some(keys), Some(server))
            }
            Err(e) => {
                r.line(
                    "endpoint",
                    Outcome::Fail(format!(
                        "{e:#}; pass a writable --embedded-data, or configure a bucket with --bucket"
                    )),
                );
                return;
            }
        },
    };
    let s3 = s3::S3::new(endpoint.as_deref(), settings.bucket(), keys).await;
    let reach = endpoint_check(endpoint.as_deref(), s3.sdk()).await;
    let reachable = matches!(reach, Outcome::Pass(_));
    r.line("endpoint", reach);
    if !reachable || !creds_ok {
        let why = if reachable {
            "needs credentials"
        } else {
            "needs a reachable endpoint"
        };
        for c in ["bucket", "writable", "conditional"] {
            r.line(c, Outcome::Skip(why.into()));
        }
        return;
    }
    let bucket = match s3.check_bucket().await {
        Ok(()) => Outcome::Pass(format!(
            "s3://{}/{} exists and these credentials may read it",
            settings.bucket(),
            settings.key_prefix
        )),
        Err(sentence) => Outcome::Fail(sentence),
    };
    let bucket_ok = matches!(bucket, Outcome::Pass(_));
    r.line("bucket", bucket);
    if !bucket_ok {
        for c in ["writable", "conditional"] {
            r.line(c, Outcome::Skip("needs the bucket check to pass".into()));
        }
        return;
    }
    let (writable, conditional) = write_checks(&s3, &settings.key_prefix).await;
    r.line("writable", writable);
    r.line("conditional", conditional);
}

/// Where the credentials come from, judged from the environment and confirmed by
/// resolving them through the same chain the agent uses.
async fn credentials_check() -> Outcome {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let Some(provider) = conf.credentials_provider() else {
        return Outcome::Fail(no_credentials());
    };
    use aws_sdk_s3::config::ProvideCredentials;
    let creds = match tokio::time::timeout(NET_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(c)) => c,
        Ok(Err(_)) | Err(_) => return Outcome::Fail(no_credentials()),
    };
    let env_key = std::env::var("AWS_ACCESS_KEY_ID").ok();
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let source = if env_key.as_deref() == Some(creds.access_key_id()) {
        "the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)".to_string()
    } else if let Some(p) = var("AWS_PROFILE") {
        format!("profile '{p}' (AWS_PROFILE; ~/.aws/credentials or ~/.aws/config)")
    } else if var("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
        "a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)".to_string()
    } else if var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
        || var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
    {
        "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*)".to_string()
    } else {
        "the default profile or the instance metadata service".to_string()
    };
    let key = creds.access_key_id();
    let shown: String = key.chars().take(4).collect();
    Outcome::Pass(format!("access key {shown}… from {source}"))
}

fn no_credentials() -> String {
    "no AWS credentials were found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        .into()
}

/// A TCP connection to the endpoint's host and port (AWS: the regional S3 host).
async fn endpoint_check(endpoint: Option<&str>, client: &aws_sdk_s3::Client) -> Outcome {
    let (host, port, shown) = match endpoint {
        Some(ep) => match host_port(ep) {
            Some((h, p)) => (h, p, ep.to_string()),
            None => return Outcome::Fail(format!("cannot parse the endpoint URL {ep:?}")),
        },
        None => {
            let region = client
                .config()
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into());
            let h = format!("s3.{region}.amazonaws.com");
            (h.clone(), 443, format!("AWS ({h})"))
        }
    };
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(NET_TIMEOUT, connect).await {
        Ok(Ok(_)) => Outcome::Pass(format!("{shown} accepts connections")),
        Ok(Err(e)) => Outcome::Fail(format!(
            "cannot connect to {host}:{port} ({e}); check --endpoint / AWS_ENDPOINT_URL and that the server is running"
        )),
        Err(_) => Outcome::Fail(format!(
            "{host}:{port} did not answer within {NET_TIMEOUT:?}; check --endpoint / AWS_ENDPOINT_URL, proxies and firewalls"
        )),
    }
}

/// `(host, port)` of an http(s) URL.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (default_port, rest) = if let Some(r) = url.strip_prefix("https://") {
        (443, r)
    } else {
        (80, url.strip_prefix("http://")?)
    };
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
    .filter(|(h, _)| !h.is_empty())
}

/// Puts a probe object, tries to overwrite it with `If-None-Match: *` (which must be
/// refused with 412: the agent's conflict detection relies on it), and deletes it.
async fn write_checks(s3: &s3::S3, prefix: &str) -> (Outcome, Outcome) {
    let key = format!(
        "{prefix}.s3shim-doctor-probe-{}",
        hex::encode(rand::random::<[u8; 6]>())
    );
    let c = s3.sdk();
    let put = c
        .put_object()
        .bucket(s3.bucket())
        .key(&key)
        .body(b"probe".to_vec().into())
        .send();
    if let Err(e) = timed(put).await {
        let why = match e {
            Some(e) => s3.explain(&e),
            None => format!("no answer within {NET_TIMEOUT:?}"),
        };
        return (
            Outcome::Fail(format!(
                "cannot write {key}: {why}; grant s3:PutObject and s3:DeleteObject on the prefix"
            )),
            Outcome::Skip("needs a writable bucket".into()),
        );
    }
    let again = c
        .put_object()
        .bucket(s3.bucket())
        .key(&key)
        .if_none_match("*")
        .body(b"probe again".to_vec().into())
        .send();
    let conditional = match timed(again).await {
        Err(Some(SdkError::ServiceError(se))) if se.raw().status().as_u16() == 412 => {
            Outcome::Pass("a PUT with If-None-Match: * on an existing key is refused (412)".into())
        }
        Err(Some(SdkError::ServiceError(se)))
            if se.raw().status().as_u16() == 501 || se.err().meta().code() == Some("NotImplemented") =>
        {
            Outcome::Warn(
                "the server does not implement conditional writes (501 NotImplemented): the agent checks each object with a HEAD before it uploads instead, which leaves a moment in which another writer's change can be overwritten; a server with conditional writes (AWS S3, MinIO, Ceph RGW, ours) closes it".into(),
            )
        }
        Ok(_) => Outcome::Fail(
            "the server ignored If-None-Match: * and overwrote an existing key, so two writers can lose each other's changes silently; use a server with conditional writes (AWS S3, MinIO, Ceph RGW 18+, ours)".into(),
        ),
        Err(Some(e)) => Outcome::Fail(format!(
            "a conditional PUT failed instead of giving 412: {}; use a server with conditional writes",
            s3.explain(&e)
        )),
        Err(None) => Outcome::Fail(format!(
            "a conditional PUT got no answer within {NET_TIMEOUT:?}"
        )),
    };
    let del = c.delete_object().bucket(s3.bucket()).key(&key).send();
    let writable = match timed(del).await {
        Ok(_) => Outcome::Pass(format!("put and deleted the probe {key}")),
        Err(e) => Outcome::Fail(format!(
            "wrote the probe {key} but cannot delete it ({}); grant s3:DeleteObject on the prefix, then delete the probe",
            e.map(|e| s3.explain(&e)).unwrap_or_else(|| "no answer".into())
        )),
    };
    (writable, conditional)
}

/// An SDK call with the doctor's timeout; `Err(None)` on timeout.
async fn timed<T, E>(f: impl std::future::Future<Output = Result<T, E>>) -> Result<T, Option<E>> {
    match tokio::time::timeout(NET_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// The agent's own cache check (xattrs, renameat2 RENAME_NOREPLACE, writable) on the cache,
/// or on its nearest existing ancestor when it does not exist yet (nothing is created).
fn cache_check(cache: &Path) -> Outcome {
    let mut dir: PathBuf = cache.to_path_buf();
    while !dir.exists() {
        match dir.parent() {
            Some(p) => dir = p.to_path_buf(),
            None => break,
        }
    }
    match fsops::check_cache_fs(&dir) {
        Ok(()) if dir == cache => Outcome::Pass(format!(
            "{} is writable, keeps user xattrs and has renameat2(RENAME_NOREPLACE)",
            cache.display()
        )),
        Ok(()) => Outcome::Pass(format!(
            "{} does not exist yet; {} (where it will be made) is writable, keeps user xattrs and has renameat2(RENAME_NOREPLACE)",
            cache.display(),
            dir.display()
        )),
        Err(sentence) => Outcome::Fail(sentence),
    }
}

/// Whether other users can enter the cache (the workspace's bytes, `.env` files
/// included, are in it). Nothing is changed: `run` tightens it, doctor only says.
fn private_check(cache: &Path) -> Outcome {
    use std::os::unix::fs::MetadataExt;
    let md = match std::fs::metadata(cache) {
        Ok(md) => md,
        Err(_) => {
            return Outcome::Pass(format!(
                "{} does not exist yet; it will be made 0700 (yours alone)",
                cache.display()
            ))
        }
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mode = md.mode() & 0o7777;
    if md.uid() != me {
        Outcome::Fail(format!(
            "{} belongs to uid {}, not to you (uid {me}); pass a --cache of your own",
            cache.display(),
            md.uid()
        ))
    } else if mode & 0o077 != 0 {
        Outcome::Fail(format!(
            "{} is mode {mode:04o}: other users can read the workspace through it; run `chmod 700 {}` (s3shim run does it when it starts)",
            cache.display(),
            cache.display()
        ))
    } else {
        Outcome::Pass(format!(
            "{} is mode {mode:04o} and yours: no other user can read it",
            cache.display()
        ))
    }
}

/// libuv may submit file I/O through io_uring, which no preload library can see.
/// `s3shim run` sets UV_USE_IO_URING=0 for everything it starts; inside such a tree the
/// variable must still say so (a program may have changed it).
fn io_uring_check(inside_tree: bool, value: Option<&str>) -> Outcome {
    if !inside_tree {
        return Outcome::Pass(
            "`s3shim run` sets UV_USE_IO_URING=0 for every program it starts (node's libuv then never uses io_uring)".into(),
        );
    }
    match value {
        Some("0") => Outcome::Pass("UV_USE_IO_URING=0 in this process tree".into()),
        other => Outcome::Fail(format!(
            "UV_USE_IO_URING is {} in this process tree, so node may read and write through io_uring, bypassing the shim; export UV_USE_IO_URING=0 (s3shim run sets it)",
            other.map(|v| format!("{v:?}")).unwrap_or_else(|| "unset".into())
        )),
    }
}

fn glibc_check() -> Outcome {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let running = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) }
        .to_string_lossy()
        .into_owned();
    let Some(have) = parse_version(&running) else {
        return Outcome::Fail(format!("cannot parse the glibc version {running:?}"));
    };
    let lib = match crate::run::find_lib() {
        Ok(l) => l,
        Err(e) => return Outcome::Fail(format!("{e:#}")),
    };
    let needed = match glibc_needed(&lib) {
        Ok(v) => v.max(MIN_GLIBC),
        Err(e) => {
            return Outcome::Fail(format!(
                "cannot read the glibc versions {} needs: {e}",
                lib.display()
            ))
        }
    };
    let mut text = String::new();
    let _ = write!(
        text,
        "glibc {running}; {} needs {}.{} or newer",
        lib.display(),
        needed.0,
        needed.1
    );
    if have >= needed {
        Outcome::Pass(text)
    } else {
        Outcome::Fail(format!(
            "{text}; run on a system with a newer glibc (Debian 12, Ubuntu 22.04 or later)"
        ))
    }
}

extern "C" {
    fn gnu_get_libc_version() -> *const libc::c_char;
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.trim_end_matches(|c: char| !c.is_ascii_digit());
    Some((major, minor.parse().ok()?))
}

/// The highest `GLIBC_x.y` version the ELF file's symbol version needs name.
fn glibc_needed(path: &Path) -> Result<(u32, u32), String> {
    use object::read::elf::{FileHeader, SectionHeader};
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&*data)
        .map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let sections = header.sections(endian, &*data).map_err(|e| e.to_string())?;
    let mut best = (0, 0);
    for section in sections.iter() {
        let Some((mut needs, link)) = section
            .gnu_verneed(endian, &*data)
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        let strings = sections
            .strings(endian, &*data, link)
            .map_err(|e| e.to_string())?;
        while let Some((_, mut aux)) = needs.next().map_err(|e| e.to_string())? {
            while let Some(a) = aux.next().map_err(|e| e.to_string())? {
                let name = a.name(endian, strings).map_err(|e| e.to_string())?;
                if let Some(v) = std::str::from_utf8(name)
                    .ok()
                    .and_then(|n| n.strip_prefix("GLIBC_"))
                    .and_then(parse_version)
                {
                    best = best.max(v);
                }
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_give_host_and_port() {
        assert_eq!(
            host_port("http://127.0.0.1:9000"),
            Some(("127.0.0.1".into(), 9000))
        );
        assert_eq!(
            host_port("https://s3.example.com/path"),
            Some(("s3.example.com".into(), 443))
        );
        assert_eq!(host_port("http://[::1]:81/"), Some(("::1".into(), 81)));
        assert_eq!(host_port("http://[::1]"), Some(("::1".into(), 80)));
        assert_eq!(host_port("ftp://x"), None);
        assert_eq!(host_port("http://:80"), None);
    }

    #[test]
    fn io_uring_must_be_off_inside_a_tree() {
        assert!(matches!(io_uring_check(false, None), Outcome::Pass(_)));
        assert!(matches!(io_uring_check(true, Some("0")), Outcome::Pass(_)));
        assert!(matches!(io_uring_check(true, Some("1")), Outcome::Fail(_)));
        assert!(matches!(io_uring_check(true, None), Outcome::Fail(_)));
    }

    #[test]
    fn glibc_versions_parse_and_compare() {
        assert_eq!(parse_version("2.36"), Some((2, 36)));
        assert_eq!(parse_version("2.2.5"), Some((2, 2)));
        assert_eq!(parse_version("2.39+"), Some((2, 39)));
        assert_eq!(parse_version("x"), None);
        assert!((2, 36) > (2, 34) && (2, 9) < (2, 34));
    }

    #[test]
    fn this_binary_needs_a_glibc_it_runs_with() {
        // The test binary is itself linked against glibc: its needs are readable and
        // satisfied by the glibc running it.
        let exe = std::env::current_exe().unwrap();
        let needed = glibc_needed(&exe).unwrap();
        assert!(needed >= (2, 2), "{needed:?}");
        // SAFETY: glibc returns a pointer to a static NUL-terminated version string.
        let running = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) }
            .to_string_lossy()
            .into_owned();
        assert!(parse_version(&running).unwrap() >= needed);
    }
}
