//! `s3shim prefetch [PATH]`: make a subtree local, bytes included, before programs the
//! shim cannot enter (static binaries, Go tools) or a trip offline. The subtree is
//! listed whole in one request, then every file is fetched (a complete file is a no-op
//! for the agent) by a few workers, with a progress bar on a terminal.

use crate::client;
use crate::config::Settings;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use s3shim_protocol::wire::Op;
use std::io::IsTerminal;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Fetches in flight at once (the agent bounds its own S3 concurrency too).
const WORKERS: usize = 8;

/// The path relative to the mount (`""` for the mount itself) that `arg` names:
/// absolute, or relative to the current directory; lexically normalised.
fn rel_in_mount(mount: &Path, arg: Option<&Path>) -> Result<String> {
    let abs = match arg {
        None => return Ok(String::new()),
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => std::env::current_dir()
            .context("the current directory is gone")?
            .join(p),
    };
    let mut norm = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                norm.pop();
            }
            Component::Normal(n) => norm.push(n),
            _ => {}
        }
    }
    let Ok(rel) = norm.strip_prefix(mount) else {
        bail!(
            "{} is not under the mount path {}",
            norm.display(),
            mount.display()
        );
    };
    rel.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not valid UTF-8", rel.display()))
}

/// Every regular file under `root` (a directory in the cache tree), as (rel, size).
fn files_under(tree: &Path, rel: &str) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut dirs = vec![rel.to_string()];
    while let Some(d) = dirs.pop() {
        let local = tree.join(&d);
        for e in
            std::fs::read_dir(&local).with_context(|| format!("reading {}", local.display()))?
        {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let child = if d.is_empty() {
                name
            } else {
                format!("{d}/{name}")
            };
            let ft = e.file_type()?;
            if ft.is_dir() {
                dirs.push(child);
            } else if ft.is_file() {
                out.push((child, e.metadata()?.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn prefetch(s: &Settings, path: Option<&Path>) -> Result<i32> {
    let rel = rel_in_mount(&s.mount, path)?;
    let shown = s.mount.join(&rel);
    let socket = s.socket();
    let ask = |op: Op| -> Result<()> {
        let (errno, text) = client::request(&socket, op, &rel)?;
        if errno != 0 {
            bail!(
                "cannot list {}: {} {text}",
                shown.display(),
                std::io::Error::from_raw_os_error(errno)
            );
        }
        Ok(())
    };
    let tree = s.tree();
    if !rel.is_empty() {
        // The path's ancestors may not be listed yet.
        ask(Op::Lookup)?;
    }
    let is_dir = tree.join(&rel).is_dir();
    if is_dir {
        ask(Op::ListTree)?;
    }
    let files = if is_dir {
        files_under(&tree, &rel)?
    } else {
        let len = std::fs::metadata(tree.join(&rel))
            .with_context(|| format!("{} does not exist", shown.display()))?
            .len();
        vec![(rel.clone(), len)]
    };
    let total: u64 = files.iter().map(|f| f.1).sum();
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {bytes}/{total_bytes} {msg} ({eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let done_bytes = AtomicU64::new(0);
    let done_files = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let last_tenth = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..WORKERS.min(files.len().max(1)) {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((f, size)) = files.get(i) else { break };
                match client::request(&socket, Op::Fetch, f) {
                    Ok((0, _)) => {}
                    Ok((e, text)) => failed.lock().unwrap().push(format!(
                        "{f}: {} {text}",
                        std::io::Error::from_raw_os_error(e)
                    )),
                    Err(e) => failed.lock().unwrap().push(format!("{f}: {e:#}")),
                }
                let bytes = done_bytes.fetch_add(*size, Ordering::Relaxed) + size;
                let n = done_files.fetch_add(1, Ordering::Relaxed) + 1;
                bar.set_position(bytes);
                bar.set_message(format!("{n}/{} files", files.len()));
                if !tty {
                    // Plain lines for logs: one per tenth of the files.
                    let tenth = n * 10 / files.len();
                    if last_tenth.fetch_max(tenth, Ordering::Relaxed) < tenth {
                        eprintln!(
                            "s3shim prefetch: {n}/{} files, {bytes}/{total} bytes",
                            files.len()
                        );
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let failed = failed.into_inner().unwrap_or_default();
    println!(
        "{} files ({total} bytes) under {} are local",
        files.len() - failed.len(),
        shown.display()
    );
    if failed.is_empty() {
        return Ok(0);
    }
    eprintln!("s3shim: these files could not be fetched:");
    for f in &failed {
        eprintln!("  {f}");
    }
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::rel_in_mount;
    use std::path::Path;

    #[test]
    fn paths_are_taken_relative_to_the_mount() {
        let m = Path::new("/workspace");
        assert_eq!(rel_in_mount(m, None).unwrap(), "");
        assert_eq!(rel_in_mount(m, Some(Path::new("/workspace"))).unwrap(), "");
        assert_eq!(
            rel_in_mount(m, Some(Path::new("/workspace/a/./b/../c/"))).unwrap(),
            "a/c"
        );
        assert!(rel_in_mount(m, Some(Path::new("/etc"))).is_err());
        assert!(rel_in_mount(m, Some(Path::new("/workspace/../etc"))).is_err());
    }
}
