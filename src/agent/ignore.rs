//! Local-only paths: `.s3shimignore` in the workspace root, in gitignore syntax (e.g.
//! `node_modules/`, `target/`, `*.log`). A matching path stays on this machine: it is
//! never uploaded, never deleted in S3, and a same-named object in S3 is not brought
//! into the cache (listings and the remote-change check skip it). The file itself is an
//! ordinary synced file, so every machine on the prefix shares the rules.
//!
//! `S3SHIM_LOCAL_ONLY` (comma-separated rules in the same syntax) adds rules of this
//! agent's own, not shared: `code-server-s3` keeps code-server's logs, caches and SQLite
//! journals local this way in its stateless mode.

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use parking_lot::Mutex;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{info, warn};

/// Name of the rules file in the workspace root.
pub const IGNORE_FILE: &str = ".s3shimignore";

/// Rules from the environment, added to the file's.
pub const LOCAL_ONLY_ENV: &str = "S3SHIM_LOCAL_ONLY";

/// What the rules file looked like when it was read: any edit changes one of these.
type Stamp = Option<(u64, u64, i64, i64)>;

/// The rules of the workspace, re-read whenever the file changes.
pub struct LocalOnly {
    file: PathBuf,
    /// Rules given by the environment ([`LOCAL_ONLY_ENV`]).
    extra: Vec<String>,
    loaded: Mutex<(Stamp, Arc<Gitignore>)>,
}

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((
        m.ino(),
        m.size(),
        m.mtime_nsec() + m.mtime() * 1_000_000_000,
        m.ctime(),
    ))
}

impl LocalOnly {
    pub fn new(tree: &Path) -> LocalOnly {
        let extra = std::env::var(LOCAL_ONLY_ENV).unwrap_or_default();
        LocalOnly::with_extra(tree, &extra)
    }

    /// `extra`: comma-separated rules in addition to the file's.
    pub fn with_extra(tree: &Path, extra: &str) -> LocalOnly {
        let mut lo = LocalOnly {
            file: tree.join(IGNORE_FILE),
            extra: extra
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(String::from)
                .collect(),
            loaded: Mutex::new((None, Arc::new(Gitignore::empty()))),
        };
        if !lo.extra.is_empty() {
            info!("{LOCAL_ONLY_ENV}: {}", lo.extra.join(", "));
        }
        let rules = lo.build(None);
        lo.loaded = Mutex::new((None, Arc::new(rules)));
        lo
    }

    fn build(&self, now: Stamp) -> Gitignore {
        let root = self.file.parent().unwrap_or(Path::new("/"));
        let mut b = GitignoreBuilder::new(root);
        for rule in &self.extra {
            if let Err(e) = b.add_line(None, rule) {
                warn!("{LOCAL_ONLY_ENV}: {rule:?}: {e}; the other rules apply");
            }
        }
        if now.is_some() {
            if let Some(e) = b.add(&self.file) {
                warn!("{IGNORE_FILE}: {e}; the other rules apply");
            }
        }
        b.build().unwrap_or_else(|e| {
            warn!("{IGNORE_FILE}: {e}; no path is kept local");
            Gitignore::empty()
        })
    }

    fn rules(&self) -> Arc<Gitignore> {
        let now = stamp(&self.file);
        let mut loaded = self.loaded.lock();
        if loaded.0 != now {
            let rules = self.build(now);
            if now.is_some() {
                info!(
                    "{IGNORE_FILE}: {} rules",
                    rules.num_ignores() + rules.num_whitelists()
                );
            }
            *loaded = (now, Arc::new(rules));
        }
        loaded.1.clone()
    }

    /// Whether `rel` (or a directory above it) matches the rules. The rules file itself
    /// and the root never do.
    pub fn matches(&self, rel: &str, is_dir: bool) -> bool {
        if rel.is_empty() || rel == IGNORE_FILE {
            return false;
        }
        self.rules()
            .matched_path_or_any_parents(rel, is_dir)
            .is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_from_the_environment_apply_with_and_without_the_file() {
        let d = tempfile::tempdir().unwrap();
        let lo = LocalOnly::with_extra(d.path(), "/.ide/logs/, /.ide/**/*-journal ,");
        assert!(lo.matches(".ide/logs", true));
        assert!(lo.matches(".ide/logs/1/main.log", false));
        assert!(lo.matches(".ide/user/state.vscdb-journal", false));
        assert!(!lo.matches(".ide/user/state.vscdb", false));
        assert!(!lo.matches("logs", true), "anchored at the root");
        std::fs::write(d.path().join(IGNORE_FILE), "*.tmp\n").unwrap();
        assert!(lo.matches("a.tmp", false), "the file's rules too");
        assert!(
            lo.matches(".ide/logs/x", false),
            "and still the environment's"
        );
    }

    #[test]
    fn gitignore_rules_apply_to_paths_and_everything_below() {
        let d = tempfile::tempdir().unwrap();
        let lo = LocalOnly::new(d.path());
        assert!(!lo.matches("node_modules", true), "no file, no rules");
        std::fs::write(
            d.path().join(IGNORE_FILE),
            "node_modules/\n/target/\n*.log\n!keep.log\n",
        )
        .unwrap();
        assert!(lo.matches("node_modules", true));
        assert!(lo.matches("node_modules/a/b.js", false));
        assert!(lo.matches("web/node_modules/x", false));
        assert!(
            !lo.matches("node_modules", false),
            "a file named so is not a directory"
        );
        assert!(lo.matches("target/debug/x", false));
        assert!(!lo.matches("sub/target/x", false), "anchored to the root");
        assert!(lo.matches("a/b.log", false));
        assert!(!lo.matches("keep.log", false));
        assert!(!lo.matches("src/main.rs", false));
        assert!(!lo.matches(IGNORE_FILE, false));
        // Edits are picked up.
        std::fs::write(d.path().join(IGNORE_FILE), "src/\n").unwrap();
        assert!(lo.matches("src/main.rs", false));
        assert!(!lo.matches("node_modules", true));
    }
}
