//! Paths that changed locally and still have to be reconciled with S3.
//!
//! Every mark gets a sequence number. A flush takes a barrier (the next number) and is
//! complete when no path marked before it is still pending or in flight; paths marked
//! while it waits do not hold it up, so a busy writer cannot stall `s3shim flush`.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;
use tokio::sync::{watch, Notify};

#[derive(Default)]
struct State {
    next_seq: u64,
    /// Path → the earliest mark not yet handled.
    pending: HashMap<String, u64>,
    in_flight: HashMap<String, u64>,
    /// Path → (seq, problem) for the last failed attempt.
    failed: BTreeMap<String, (u64, String)>,
    /// Entries that cannot be synced as they are (a name that is not UTF-8): reported,
    /// never retried, forgotten once the entry is gone from the cache.
    unsyncable: BTreeMap<PathBuf, (u64, String, String)>,
    /// A whole-tree reconcile was requested (start-up, inotify overflow).
    scan: Option<u64>,
    last_mark: Option<Instant>,
    /// Someone waits for a flush: skip the debounce.
    urgent: usize,
    /// The most recent problem (when, what), for `status`.
    last_error: Option<(std::time::SystemTime, String)>,
}

pub struct Queue {
    state: Mutex<State>,
    work: Notify,
    progress: watch::Sender<u64>,
}

/// A batch handed to the sync worker.
pub struct Batch {
    pub paths: Vec<(String, u64)>,
    pub scan: Option<u64>,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            state: Mutex::default(),
            work: Notify::new(),
            progress: watch::channel(0).0,
        }
    }
}

impl Queue {
    /// Records that `rel` changed now.
    pub fn mark(&self, rel: String) {
        let mut s = self.state.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.pending.entry(rel).or_insert(seq);
        s.last_mark = Some(Instant::now());
        drop(s);
        self.work.notify_one();
    }

    pub fn request_scan(&self) {
        let mut s = self.state.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.scan.get_or_insert(seq);
        drop(s);
        self.work.notify_one();
    }

    /// Records an entry that cannot be synced as it is (e.g. a name that is not UTF-8):
    /// `local` is its path in the cache, `shown` how to name it to the user.
    pub fn unsyncable(&self, local: PathBuf, shown: String, problem: String) {
        let mut s = self.state.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.last_error = Some((std::time::SystemTime::now(), format!("{shown}: {problem}")));
        s.unsyncable.entry(local).or_insert((seq, shown, problem));
    }

    /// Records a problem that is not an upload's (a failed download), for `status`.
    pub fn note_error(&self, problem: String) {
        self.state.lock().last_error = Some((std::time::SystemTime::now(), problem));
    }

    /// Waits until there is work, then until writes have been quiet for `quiet`
    /// (unless a flush is waiting or `max_wait` passed since the work appeared).
    pub async fn next_batch(
        &self,
        quiet: std::time::Duration,
        max_wait: std::time::Duration,
    ) -> Batch {
        loop {
            let notified = self.work.notified();
            {
                let s = self.state.lock();
                if !s.pending.is_empty() || s.scan.is_some() {
                    break;
                }
            }
            notified.await;
        }
        let started = Instant::now();
        loop {
            let wait = {
                let s = self.state.lock();
                if s.urgent > 0 {
                    None
                } else {
                    let since = s.last_mark.map(|t| t.elapsed()).unwrap_or(quiet);
                    let left_quiet = quiet.saturating_sub(since);
                    let left_max = max_wait.saturating_sub(started.elapsed());
                    let w = left_quiet.min(left_max);
                    (!w.is_zero()).then_some(w)
                }
            };
            match wait {
                None => break,
                Some(w) => {
                    // A flush arriving during the wait cuts it short.
                    let _ = tokio::time::timeout(w, self.work.notified()).await;
                }
            }
        }
        let mut s = self.state.lock();
        let paths: Vec<(String, u64)> = s.pending.drain().collect();
        for (p, seq) in &paths {
            let e = s.in_flight.entry(p.clone()).or_insert(*seq);
            *e = (*e).min(*seq);
        }
        Batch {
            paths,
            scan: s.scan.take(),
        }
    }

    /// Adds a path discovered while handling a batch (it is in flight at once).
    pub fn add_in_flight(&self, rel: &str, seq: u64) {
        let mut s = self.state.lock();
        let e = s.in_flight.entry(rel.to_string()).or_insert(seq);
        *e = (*e).min(seq);
    }

    /// Marks a path of the current batch done (`Ok`) or failed.
    pub fn finish(&self, rel: &str, result: Result<(), String>) {
        let mut s = self.state.lock();
        let seq = s.in_flight.remove(rel).unwrap_or(u64::MAX);
        match result {
            Ok(()) => {
                s.failed.remove(rel);
            }
            Err(problem) => {
                s.last_error = Some((std::time::SystemTime::now(), format!("{rel}: {problem}")));
                s.failed.insert(rel.to_string(), (seq, problem));
            }
        }
        drop(s);
        self.progress.send_modify(|n| *n += 1);
    }

    /// A scan of the whole tree finished.
    pub fn scan_done(&self) {
        self.progress.send_modify(|n| *n += 1);
    }

    /// The barrier for a flush: every mark before it must be handled.
    pub fn barrier(&self) -> u64 {
        let mut s = self.state.lock();
        let b = s.next_seq;
        s.next_seq += 1;
        b
    }

    fn done_before(s: &State, barrier: u64, only: Option<&str>) -> bool {
        let before = |(p, seq): (&String, &u64)| *seq < barrier && only.is_none_or(|o| o == p);
        !s.pending.iter().any(before)
            && !s.in_flight.iter().any(before)
            && s.scan.is_none_or(|seq| seq >= barrier)
    }

    /// Waits until every change marked before `barrier` (for `only`, if given) is
    /// handled, retrying earlier failures once; returns what still failed.
    pub async fn wait(&self, barrier: u64, only: Option<&str>) -> Vec<(String, String)> {
        {
            let mut s = self.state.lock();
            let retry: Vec<(String, u64)> = s
                .failed
                .iter()
                .filter(|(p, (seq, _))| *seq < barrier && only.is_none_or(|o| o == p.as_str()))
                .map(|(p, (seq, _))| (p.clone(), *seq))
                .collect();
            for (p, seq) in retry {
                let e = s.pending.entry(p).or_insert(seq);
                *e = (*e).min(seq);
            }
            s.urgent += 1;
        }
        self.work.notify_one();
        let mut rx = self.progress.subscribe();
        loop {
            if Self::done_before(&self.state.lock(), barrier, only) {
                break;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
        let mut s = self.state.lock();
        s.urgent -= 1;
        s.unsyncable
            .retain(|local, _| std::fs::symlink_metadata(local).is_ok());
        let mut out: Vec<(String, String)> = s
            .failed
            .iter()
            .filter(|(p, (seq, _))| *seq < barrier && only.is_none_or(|o| o == p.as_str()))
            .map(|(p, (_, why))| (p.clone(), why.clone()))
            .collect();
        if only.is_none() {
            out.extend(
                s.unsyncable
                    .values()
                    .filter(|(seq, _, _)| *seq < barrier)
                    .map(|(_, shown, why)| (shown.clone(), why.clone())),
            );
        }
        out
    }

    /// (pending, in flight, failed) counts, for `status`.
    pub fn counts(&self) -> (usize, usize, Vec<(String, String)>) {
        let s = self.state.lock();
        let failed = s
            .failed
            .iter()
            .map(|(p, (_, w))| (p.clone(), w.clone()))
            .chain(
                s.unsyncable
                    .values()
                    .map(|(_, p, w)| (p.clone(), w.clone())),
            )
            .collect();
        (s.pending.len(), s.in_flight.len(), failed)
    }

    /// Local paths of every change not in S3 yet (pending, in flight, failed,
    /// unsyncable), relative to the tree except unsyncable ones, which are absolute.
    pub fn not_in_s3(&self) -> Vec<PathBuf> {
        let s = self.state.lock();
        let mut rel: std::collections::BTreeSet<&String> = s.pending.keys().collect();
        rel.extend(s.in_flight.keys());
        rel.extend(s.failed.keys());
        rel.into_iter()
            .map(PathBuf::from)
            .chain(s.unsyncable.keys().cloned())
            .collect()
    }

    pub fn last_error(&self) -> Option<(std::time::SystemTime, String)> {
        self.state.lock().last_error.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn flush_waits_for_earlier_marks_only() {
        let q = Arc::new(Queue::default());
        q.mark("a".into());
        let barrier = q.barrier();
        q.mark("b".into());
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.wait(barrier, None).await })
        };
        let batch = q
            .next_batch(Duration::from_secs(60), Duration::from_secs(60))
            .await;
        let mut names: Vec<_> = batch.paths.iter().map(|(p, _)| p.clone()).collect();
        names.sort();
        assert_eq!(names, ["a", "b"], "a waiting flush must skip the debounce");
        q.finish("b", Ok(()));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "a is still in flight");
        q.finish("a", Err("denied".into()));
        let failed = waiter.await.unwrap();
        assert_eq!(failed, vec![("a".to_string(), "denied".to_string())]);
    }

    #[tokio::test]
    async fn later_marks_do_not_block_a_flush() {
        let q = Queue::default();
        let barrier = q.barrier();
        q.mark("late".into());
        let failed = tokio::time::timeout(Duration::from_secs(5), q.wait(barrier, None))
            .await
            .expect("flush must not wait for marks after its barrier");
        assert!(failed.is_empty());
    }

    #[tokio::test]
    async fn unsyncable_entries_are_reported_until_they_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "x").unwrap();
        let q = Queue::default();
        q.unsyncable(bad.clone(), "bad?".into(), "not UTF-8".into());
        let failed = q.wait(q.barrier(), None).await;
        assert_eq!(failed, vec![("bad?".to_string(), "not UTF-8".to_string())]);
        let again = q.wait(q.barrier(), None).await;
        assert_eq!(again.len(), 1, "never retried away while it exists");
        std::fs::remove_file(&bad).unwrap();
        assert!(q.wait(q.barrier(), None).await.is_empty());
    }

    #[tokio::test]
    async fn failures_are_retried_by_the_next_flush() {
        let q = Arc::new(Queue::default());
        q.mark("x".into());
        let b = q.next_batch(Duration::ZERO, Duration::ZERO).await;
        assert_eq!(b.paths.len(), 1);
        q.finish("x", Err("boom".into()));
        let barrier = q.barrier();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.wait(barrier, None).await })
        };
        let b = q
            .next_batch(Duration::from_secs(60), Duration::from_secs(60))
            .await;
        assert_eq!(b.paths[0].0, "x", "the failed path is tried again");
        q.finish("x", Ok(()));
        assert!(waiter.await.unwrap().is_empty());
    }
}
