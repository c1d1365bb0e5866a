//! Settings shared by every subcommand: where the workspace lives in S3, where programs
//! see it, and where its cache is. Flags win over `S3SHIM_*` variables, which win over
//! defaults; endpoint, region and credentials come from the standard AWS variables.

use anyhow::{bail, Context, Result};
use s3shim_protocol::{layout, names};
use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};

/// Bucket used by the embedded server when nothing else is configured.
pub const EMBEDDED_BUCKET: &str = "workspace";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct WorkspaceArgs {
    /// Bucket holding the workspace. With neither a bucket nor an endpoint, an embedded
    /// S3 server on loopback is used.
    #[arg(long, env = "S3SHIM_BUCKET")]
    pub bucket: Option<String>,

    /// Key prefix inside the bucket (e.g. `team/ws/`); empty means the whole bucket.
    #[arg(long, env = "S3SHIM_KEY_PREFIX", default_value = "")]
    pub key_prefix: String,

    /// Path programs use for the workspace; it need not exist and nothing is mounted.
    #[arg(long, env = "S3SHIM_MOUNT", default_value = "/workspace")]
    pub mount: PathBuf,

    /// Local staging cache (default: under $XDG_CACHE_HOME/s3shim/, one per workspace).
    #[arg(long, env = "S3SHIM_CACHE")]
    pub cache: Option<PathBuf>,

    /// S3 endpoint URL (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS).
    #[arg(long)]
    pub endpoint: Option<String>,

    /// Data directory of the embedded S3 server (default: $XDG_DATA_HOME/s3shim/embedded).
    #[arg(long, env = "S3SHIM_EMBEDDED_DATA")]
    pub embedded_data: Option<PathBuf>,

    /// Allow plain http:// to an endpoint that is not on loopback.
    #[arg(long, env = "S3SHIM_ALLOW_HTTP", value_parser = clap::builder::FalseyValueParser::new())]
    pub allow_http: bool,

    /// Most bytes of fetched files the cache keeps (bytes, or e.g. `10G`); beyond it, clean
    /// files least recently fetched or read go back to placeholders. With or without it,
    /// the cache keeps 5 % of its file system (at most 4 GiB) free the same way.
    #[arg(long, env = "S3SHIM_CACHE_MAX_SIZE", value_parser = crate::agent::evict::parse_size)]
    pub cache_max_size: Option<u64>,

    /// Use a cache made for another workspace (another endpoint, bucket, prefix or
    /// embedded data directory) for this one: its tree is set aside in the cache
    /// directory, never uploaded anywhere, and this workspace starts from S3.
    #[arg(long, env = "S3SHIM_ADOPT_CACHE", value_parser = clap::builder::FalseyValueParser::new())]
    pub adopt_cache: bool,

    /// Seconds between checks for changes other writers made in S3 to directories
    /// already listed here (0 turns the check off).
    #[arg(long, env = "S3SHIM_POLL_INTERVAL", default_value_t = 5.0)]
    pub poll_interval: f64,

    /// Objects at least this large (bytes) are downloaded as parallel ranged GETs.
    #[arg(long, env = "S3SHIM_RANGED_GET_THRESHOLD", default_value_t = 32 << 20)]
    pub ranged_get_threshold: u64,

    /// Size (bytes) of each ranged GET.
    #[arg(long, env = "S3SHIM_RANGED_GET_PART", default_value_t = 8 << 20)]
    pub ranged_get_part: u64,

    /// Files up to this size (bytes) are fetched whole when their directory is listed, in
    /// the GET that replaces the HEAD for their metadata (0: every file is a placeholder
    /// until read).
    #[arg(long, env = "S3SHIM_EAGER_GET_MAX", default_value_t = 64 << 10)]
    pub eager_get_max: u64,
}

/// Where the objects are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// A configured endpoint (or AWS itself when `endpoint` is `None`).
    External {
        endpoint: Option<String>,
        bucket: String,
    },
    /// The embedded server, started by the agent over `data_dir`.
    Embedded { data_dir: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub remote: Remote,
    /// Normalised: empty, or ending in `/`.
    pub key_prefix: String,
    /// Absolute and lexically normalised.
    pub mount: PathBuf,
    /// Absolute.
    pub cache: PathBuf,
    pub allow_http: bool,
    /// The cache may be taken over from another workspace (`--adopt-cache`).
    pub adopt_cache: bool,
    /// Bytes of fetched files the cache keeps (`--cache-max-size`).
    pub cache_max_size: Option<u64>,
    /// `None`: remote changes are not looked for.
    pub poll_interval: Option<std::time::Duration>,
    pub downloads: Downloads,
}

/// How large objects are downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloads {
    /// Objects at least this large are fetched as parallel ranged GETs.
    pub ranged_threshold: u64,
    pub part_size: u64,
    /// Files up to this size are fetched whole when their directory is listed.
    pub eager_max: u64,
}

impl Settings {
    pub fn resolve(args: &WorkspaceArgs) -> Result<Settings> {
        let key_prefix =
            names::normalize_key_prefix(&args.key_prefix).map_err(anyhow::Error::msg)?;
        let mount = normalize_mount(&args.mount)?;
        let endpoint = args
            .endpoint
            .clone()
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL"));
        if let Some(ep) = &endpoint {
            check_endpoint(ep, args.allow_http)?;
        }
        let remote = match (&args.bucket, endpoint) {
            (Some(bucket), endpoint) => {
                if bucket.is_empty() || bucket.contains('/') {
                    bail!(
                        "bucket name {bucket:?} is not valid; pass a plain bucket name to --bucket"
                    );
                }
                Remote::External {
                    endpoint,
                    bucket: bucket.clone(),
                }
            }
            (None, Some(ep)) => {
                bail!("an endpoint ({ep}) is set but no bucket; pass --bucket or set S3SHIM_BUCKET")
            }
            (None, None) => Remote::Embedded {
                data_dir: match &args.embedded_data {
                    Some(d) => absolute(d)?,
                    None => xdg_dir("XDG_DATA_HOME", ".local/share")?
                        .join("s3shim")
                        .join("embedded"),
                },
            },
        };
        let cache = match &args.cache {
            Some(c) => absolute(c)?,
            None => {
                let id = match &remote {
                    Remote::External { endpoint, bucket } => format!(
                        "{}|{bucket}|{key_prefix}",
                        endpoint.as_deref().unwrap_or("aws")
                    ),
                    Remote::Embedded { data_dir } => {
                        format!("embedded|{}|{key_prefix}", data_dir.display())
                    }
                };
                let digest = hex::encode(&Sha256::digest(id.as_bytes())[..8]);
                xdg_dir("XDG_CACHE_HOME", ".cache")?
                    .join("s3shim")
                    .join(digest)
            }
        };
        if cache.starts_with(&mount) || mount.starts_with(&cache) {
            bail!(
                "the cache {} and the mount path {} overlap; choose a cache outside the mount path",
                cache.display(),
                mount.display()
            );
        }
        let poll_interval = match args.poll_interval {
            i if i.is_finite() && i == 0.0 => None,
            i if i.is_finite() && i > 0.0 => Some(std::time::Duration::from_secs_f64(i)),
            i => {
                bail!("--poll-interval {i} is not a number of seconds; pass e.g. 5 (or 0 for off)")
            }
        };
        if args.ranged_get_part == 0 {
            bail!("--ranged-get-part must be at least 1 byte; pass e.g. 8388608");
        }
        Ok(Settings {
            remote,
            key_prefix,
            mount,
            cache,
            allow_http: args.allow_http,
            adopt_cache: args.adopt_cache,
            cache_max_size: args.cache_max_size,
            poll_interval,
            downloads: Downloads {
                ranged_threshold: args.ranged_get_threshold,
                part_size: args.ranged_get_part,
                eager_max: args.eager_get_max,
            },
        })
    }

    pub fn bucket(&self) -> &str {
        match &self.remote {
            Remote::External { bucket, .. } => bucket,
            Remote::Embedded { .. } => EMBEDDED_BUCKET,
        }
    }

    /// The workspace a cache serves, as recorded in it and shown to people: where the
    /// objects are (endpoint, or the embedded server's data directory), bucket, prefix.
    pub fn workspace_desc(&self) -> String {
        match &self.remote {
            Remote::External { endpoint, bucket } => {
                // Parsed and printed back, so `http://h:1` and `http://h:1/` are one.
                let at = endpoint.as_deref().map_or("AWS".to_string(), |e| {
                    url::Url::parse(e).map_or(e.to_string(), |u| u.to_string())
                });
                format!("s3://{bucket}/{} at {at}", self.key_prefix)
            }
            Remote::Embedded { data_dir } => format!(
                "s3://{EMBEDDED_BUCKET}/{} of the embedded server over {}",
                self.key_prefix,
                data_dir.display()
            ),
        }
    }

    pub fn tree(&self) -> PathBuf {
        self.cache.join(layout::TREE_DIR)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.cache.join(layout::STATE_DIR)
    }

    pub fn socket(&self) -> PathBuf {
        socket_path_for(&self.cache)
    }

    /// The arguments that make `s3shim agent` (or another subcommand) resolve the same
    /// settings, whatever the environment of the child says.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "--key-prefix".to_string(),
            self.key_prefix.clone(),
            "--mount".into(),
            self.mount.display().to_string(),
            "--cache".into(),
            self.cache.display().to_string(),
            "--poll-interval".into(),
            self.poll_interval
                .map_or(0.0, |d| d.as_secs_f64())
                .to_string(),
            "--ranged-get-threshold".into(),
            self.downloads.ranged_threshold.to_string(),
            "--ranged-get-part".into(),
            self.downloads.part_size.to_string(),
            "--eager-get-max".into(),
            self.downloads.eager_max.to_string(),
        ];
        if self.allow_http {
            a.push("--allow-http".into());
        }
        if self.adopt_cache {
            a.push("--adopt-cache".into());
        }
        if let Some(max) = self.cache_max_size {
            a.push("--cache-max-size".into());
            a.push(max.to_string());
        }
        match &self.remote {
            Remote::External { endpoint, bucket } => {
                a.push("--bucket".into());
                a.push(bucket.clone());
                if let Some(ep) = endpoint {
                    a.push("--endpoint".into());
                    a.push(ep.clone());
                }
            }
            Remote::Embedded { data_dir } => {
                a.push("--embedded-data".into());
                a.push(data_dir.display().to_string());
            }
        }
        a
    }
}

/// Makes `cache` a directory no other user can enter: created 0700 (parents too, when
/// missing), and an existing one that lets others in is tightened to 0700. The tree's own
/// modes stay as programs set them; the cache root is the door. `Ok(Some(sentence))` says
/// that an existing cache was tightened; a cache owned by another user is refused.
pub fn make_private(cache: &Path) -> Result<Option<String>> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let md = match std::fs::symlink_metadata(cache) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(cache)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot create {} ({e}); pass a writable --cache or fix its permissions",
                        cache.display()
                    )
                })?;
            // A cache made by a concurrent `run` may have beaten us to it: check it too.
            std::fs::symlink_metadata(cache)?
        }
        Err(e) => bail!(
            "cannot create {} ({e}); pass a writable --cache or fix its permissions",
            cache.display()
        ),
    };
    if !md.is_dir() {
        bail!(
            "the cache {} is not a directory; pass a directory (or a path to create) to --cache",
            cache.display()
        );
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if md.uid() != me {
        bail!(
            "the cache {} belongs to uid {}, not to you (uid {me}); pass a --cache of your own",
            cache.display(),
            md.uid()
        );
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(cache, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        anyhow::anyhow!(
            "the cache {} is open to other users (mode {mode:04o}) and cannot be made private ({e}); pass another --cache",
            cache.display()
        )
    })?;
    Ok(Some(format!(
        "the cache {} was open to other users (mode {mode:04o}); made it 0700 so only you can read the workspace through it",
        cache.display()
    )))
}

/// The agent socket of a cache: inside the cache when the path fits in a `sockaddr_un`,
/// else a per-user directory under /tmp named by a hash of the cache path.
pub fn socket_path_for(cache: &Path) -> PathBuf {
    let inside = cache.join(layout::STATE_DIR).join(layout::SOCKET_NAME);
    if inside.as_os_str().len() <= layout::SOCKET_PATH_MAX {
        return inside;
    }
    let digest = hex::encode(&Sha256::digest(cache.as_os_str().as_encoded_bytes())[..8]);
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/s3shim-{uid}/{digest}.sock"))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn xdg_dir(var: &str, fallback: &str) -> Result<PathBuf> {
    if let Some(d) = env_nonempty(var) {
        return absolute(Path::new(&d));
    }
    let home = env_nonempty("HOME").context("neither $HOME nor $XDG_* is set; pass --cache")?;
    Ok(PathBuf::from(home).join(fallback))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(p)
    };
    Ok(lexical_normalize(&p))
}

fn lexical_normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn normalize_mount(m: &Path) -> Result<PathBuf> {
    if !m.is_absolute() {
        bail!(
            "the mount path {} is not absolute; pass an absolute path such as /workspace",
            m.display()
        );
    }
    let n = lexical_normalize(m);
    if n == Path::new("/") {
        bail!("the mount path cannot be /; pass a folder such as /workspace");
    }
    Ok(n)
}

/// Refuses plain HTTP to anything but loopback unless allowed: credentials and data would
/// cross the network unencrypted. The host is what a URL parser says it is (so
/// `http://127.0.0.1:1@evil.example/` is `evil.example`).
fn check_endpoint(ep: &str, allow_http: bool) -> Result<()> {
    let url = url::Url::parse(ep).map_err(|e| {
        anyhow::anyhow!("the endpoint {ep:?} is not a URL ({e}); pass e.g. https://s3.example.com")
    })?;
    match url.scheme() {
        "https" => return Ok(()),
        "http" if allow_http => return Ok(()),
        "http" => {}
        _ => bail!("the endpoint {ep:?} is not an http:// or https:// URL"),
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !loopback {
        bail!(
            "refusing plain http to {}: data and credentials would cross the network unencrypted; use https, or pass --allow-http (S3SHIM_ALLOW_HTTP=1) if the network is trusted",
            url.host_str().unwrap_or("?")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_policy() {
        assert!(check_endpoint("http://127.0.0.1:9000", false).is_ok());
        assert!(check_endpoint("http://localhost:9000/", false).is_ok());
        assert!(check_endpoint("http://[::1]:9000", false).is_ok());
        assert!(check_endpoint("https://s3.example.com", false).is_ok());
        assert!(check_endpoint("http://s3.example.com", false).is_err());
        assert!(check_endpoint("http://s3.example.com", true).is_ok());
        assert!(check_endpoint("ftp://x", true).is_err());
        assert!(check_endpoint("HTTP://127.0.0.1:9000", false).is_ok());
        // Userinfo is not the host.
        assert!(check_endpoint("http://127.0.0.1:9000@evil.example/", false).is_err());
        assert!(check_endpoint("http://localhost.evil.example", false).is_err());
        assert!(check_endpoint("http://127.1.2.3:9000", false).is_ok());
        assert!(check_endpoint("not a url", false).is_err());
    }

    #[test]
    fn mount_rules() {
        assert_eq!(
            normalize_mount(Path::new("/workspace/")).unwrap(),
            PathBuf::from("/workspace")
        );
        assert_eq!(
            normalize_mount(Path::new("/a/./b/../c")).unwrap(),
            PathBuf::from("/a/c")
        );
        assert!(normalize_mount(Path::new("/")).is_err());
        assert!(normalize_mount(Path::new("ws")).is_err());
    }

    #[test]
    fn long_cache_paths_get_a_short_socket() {
        let short = socket_path_for(Path::new("/tmp/c"));
        assert_eq!(short, PathBuf::from("/tmp/c/.s3shim/agent.sock"));
        let long = socket_path_for(&PathBuf::from(format!("/tmp/{}", "x".repeat(120))));
        assert!(long.as_os_str().len() <= layout::SOCKET_PATH_MAX);
        assert!(long.starts_with("/tmp"));
    }

    #[test]
    fn caches_are_made_private_and_loose_ones_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b/cache");
        assert_eq!(make_private(&fresh).unwrap(), None);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&fresh), 0o700);
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let said = make_private(&fresh).unwrap().unwrap();
        assert!(
            said.contains("mode 0755") && said.contains("0700"),
            "{said}"
        );
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(make_private(&fresh).unwrap(), None);
        std::fs::write(dir.path().join("f"), "").unwrap();
        assert!(make_private(&dir.path().join("f")).is_err());
    }

    #[test]
    fn overlapping_cache_and_mount_are_refused() {
        let args = WorkspaceArgs {
            bucket: Some("b".into()),
            endpoint: Some("http://127.0.0.1:1".into()),
            mount: "/workspace".into(),
            cache: Some("/workspace/.cache".into()),
            ..Default::default()
        };
        assert!(Settings::resolve(&args).is_err());
    }
}
