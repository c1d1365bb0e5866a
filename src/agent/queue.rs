//! Paths that changed locally and still have to be reconciled with S3.
//!
//! Every mark gets a sequence number. A flush takes a barrier (the next number) and is
//! complete when no path marked before it is still pending or in flight; paths marked
//! while it waits do not hold it up, so a busy writer cannot stall `s3shim flush`.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// A path waiting for its upload: the sequence number of its earliest unhandled mark,
/// and when it was first and last marked (for the per-file debounce).
struct Pending {
    seq: u64,
    first: Instant,
    last: Instant,
    /// Due at once (a retry, or a path a batch with deletes must take along).
    due: bool,
}

/// A failed attempt: its mark, the problem, and whether it is worth retrying by itself
/// (the endpoint was unreachable or overloaded, as opposed to e.g. access denied).
struct Failure {
    seq: u64,
    problem: String,
    transient: bool,
}

/// A conflict resolved by keeping both versions (see `sync`).
#[derive(Debug, Clone)]
pub struct Conflict {
    pub path: String,
    pub saved_as: String,
    pub at: std::time::SystemTime,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    pending: HashMap<String, Pending>,
    in_flight: HashMap<String, u64>,
    failed: BTreeMap<String, Failure>,
    /// Entries that cannot be synced as they are (a name that is not UTF-8): reported,
    /// never retried, forgotten once the entry is gone from the cache.
    unsyncable: BTreeMap<PathBuf, (u64, String, String)>,
    /// A whole-tree reconcile was requested (start-up, inotify overflow).
    scan: Option<u64>,
    /// A reconcile handed to the worker that has not yet put what it found in flight: a
    /// flush must wait for it as for a requested one.
    scanning: Option<u64>,
    /// Someone waits for a flush: skip the debounce.
    urgent: usize,
    /// The latest mark of any path (see [`BURST_QUIET`]).
    last_mark: Option<Instant>,
    /// Path -> transient failures in a row while the endpoint answered.
    requeued: HashMap<String, u32>,
    /// Uploads are paused since this time: the endpoint did not answer (last error).
    paused: Option<(std::time::SystemTime, String)>,
    conflicts: Vec<Conflict>,
    /// The most recent problem (when, what), for `status`.
    last_error: Option<(std::time::SystemTime, String)>,
}

/// Uploads also wait until the whole tree has been quiet this long (or the debounce's
/// `quiet`, if shorter): during a burst of writes (`git add`, an extract, a build) the
/// uploads, and the S3 requests they cost, start when the burst ends instead of
/// competing with it for the CPU. Saves seconds apart still go up on their own schedule,
/// and `max_wait` still bounds every path's wait.
pub const BURST_QUIET: Duration = Duration::from_millis(200);

/// Transient failures in a row (each after the S3 client's own retries) before a path
/// is reported as failed although the endpoint answers.
const REQUEUES: u32 = 3;

pub struct Queue {
    state: Mutex<State>,
    work: Notify,
    progress: watch::Sender<u64>,
    /// The last session closed in order: paths found gone from now on are not deleted
    /// from S3 (see [`Queue::hold_deletes`]).
    deletes_held: std::sync::atomic::AtomicBool,
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
            deletes_held: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Queue {
    /// Once the last session has closed in order, the tree is no longer anyone's
    /// workspace: what disappears from it while the agent drains (typically the cache
    /// removed as soon as `run` returned) must not become deletes in S3. The next agent
    /// on this cache, if it is kept, compares the tree with the index and decides.
    pub fn hold_deletes(&self) {
        self.deletes_held
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn deletes_held(&self) -> bool {
        self.deletes_held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records that `rel` changed now.
    pub fn mark(&self, rel: String) {
        let mut s = self.state.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        let now = Instant::now();
        // The worker sleeps until the earliest due time of what is pending; a new mark
        // makes nothing due earlier than that (it waits its quiet time, and delays the
        // others' burst quiet), so the worker only needs waking when nothing was pending
        // or someone waits for a flush. A burst of writes then
        // costs the worker one wake-up, not one per inotify event.
        let wake = s.pending.is_empty() || s.urgent > 0;
        s.last_mark = Some(now);
        s.pending
            .entry(rel)
            .and_modify(|p| p.last = now)
            .or_insert(Pending {
                seq,
                first: now,
                last: now,
                due: false,
            });
        drop(s);
        if wake {
            self.work.notify_one();
        }
    }

    pub fn request_scan(&self) {
        let mut s = self.state.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.scan.get_or_insert(seq);
        drop(s);
        self.work.notify_one();
    }

    /// Asks again for the scan `seq` that failed: a flush waiting for that scan keeps
    /// waiting (it is still `scanning`) until one succeeds.
    pub fn retry_scan(&self, seq: u64) {
        let mut s = self.state.lock();
        s.scan = Some(s.scan.map_or(seq, |q| q.min(seq)));
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

    /// Waits until some path is due, and returns every due path. A path is due once it
    /// has been quiet for `quiet` since its last mark, or `max_wait` passed since its
    /// first (a file saved without pause still gets uploaded), or at once when a flush or
    /// fsync waits. So a burst of saves to one file uploads it once, while other files
    /// go on their own schedule; and no path is due while the tree as a whole is in a
    /// burst of writes (see [`BURST_QUIET`]).
    pub async fn next_batch(&self, quiet: Duration, max_wait: Duration) -> Batch {
        loop {
            let notified = self.work.notified();
            let wait = {
                let mut s = self.state.lock();
                let now = Instant::now();
                let all = s.urgent > 0 || s.scan.is_some();
                let tree_quiet = s.last_mark.map(|t| t + quiet.min(BURST_QUIET));
                let due_at = |p: &Pending| {
                    if all || p.due {
                        now
                    } else {
                        (p.last + quiet)
                            .max(tree_quiet.unwrap_or(now))
                            .min(p.first + max_wait)
                    }
                };
                let due: Vec<String> = s
                    .pending
                    .iter()
                    .filter(|(_, p)| due_at(p) <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                if !due.is_empty() || s.scan.is_some() {
                    let paths = Self::take(&mut s, due);
                    let scan = s.scan.take();
                    if scan.is_some() {
                        s.scanning = scan;
                    }
                    return Batch { paths, scan };
                }
                s.pending.values().map(|p| due_at(p) - now).min()
            };
            match wait {
                // A flush or a new mark may make something due sooner.
                Some(w) => {
                    let _ = tokio::time::timeout(w, notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// Moves `paths` from pending to in flight.
    fn take(s: &mut State, paths: Vec<String>) -> Vec<(String, u64)> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            if let Some(pending) = s.pending.remove(&p) {
                let e = s.in_flight.entry(p.clone()).or_insert(pending.seq);
                *e = (*e).min(pending.seq);
                out.push((p, pending.seq));
            }
        }
        out
    }

    /// Takes one pending path for reconciling outside the worker (an fsync waits on it);
    /// `None` when it is not pending (in flight in the worker, or done).
    pub fn take_pending(&self, rel: &str) -> Option<u64> {
        let mut s = self.state.lock();
        Self::take(&mut s, vec![rel.to_string()])
            .pop()
            .map(|(_, seq)| seq)
    }

    /// Queues a path due at once.
    pub fn mark_due(&self, rel: String, seq: u64) {
        Self::make_due(&mut self.state.lock(), rel, seq);
        self.work.notify_one();
    }

    /// Takes every pending path, due or not (a batch that deletes must first handle
    /// what may be the other end of a rename).
    pub fn take_all_pending(&self) -> Vec<(String, u64)> {
        let mut s = self.state.lock();
        let all: Vec<String> = s.pending.keys().cloned().collect();
        Self::take(&mut s, all)
    }

    /// Adds a path discovered while handling a batch (it is in flight at once).
    pub fn add_in_flight(&self, rel: &str, seq: u64) {
        let mut s = self.state.lock();
        let e = s.in_flight.entry(rel.to_string()).or_insert(seq);
        *e = (*e).min(seq);
    }

    /// Marks a path of the current batch done (`Ok`) or failed.
    pub fn finish(&self, rel: &str, result: Result<(), String>) {
        self.finish_as(rel, result, false)
    }

    /// Like [`Queue::finish`], for a failure worth retrying by itself (the endpoint
    /// was unreachable): retried by [`Queue::retry_transient`].
    pub fn finish_transient(&self, rel: &str, problem: String) {
        self.finish_as(rel, Err(problem), true)
    }

    fn finish_as(&self, rel: &str, result: Result<(), String>, transient: bool) {
        let mut s = self.state.lock();
        let seq = s.in_flight.remove(rel).unwrap_or(u64::MAX);
        match result {
            Ok(()) => {
                s.failed.remove(rel);
                s.requeued.remove(rel);
            }
            Err(problem) => {
                s.last_error = Some((std::time::SystemTime::now(), format!("{rel}: {problem}")));
                s.requeued.remove(rel);
                s.failed.insert(
                    rel.to_string(),
                    Failure {
                        seq,
                        problem,
                        transient,
                    },
                );
            }
        }
        drop(s);
        self.progress.send_modify(|n| *n += 1);
    }

    /// Hands a path of the current batch back to the queue, due at once (a transient
    /// failure while the endpoint answers: try again rather than report it). After
    /// [`REQUEUES`] in a row it is reported as failed instead, so that a flush cannot
    /// wait forever on a request that keeps timing out.
    pub fn requeue(&self, rel: &str, problem: String) {
        let mut s = self.state.lock();
        let n = s.requeued.entry(rel.to_string()).or_default();
        *n += 1;
        if *n > REQUEUES {
            drop(s);
            self.finish_as(rel, Err(problem), true);
            return;
        }
        let seq = s.in_flight.remove(rel).unwrap_or(u64::MAX);
        Self::make_due(&mut s, rel.to_string(), seq);
        drop(s);
        self.work.notify_one();
    }

    fn make_due(s: &mut State, rel: String, seq: u64) {
        let now = Instant::now();
        let p = s.pending.entry(rel).or_insert(Pending {
            seq,
            first: now,
            last: now,
            due: true,
        });
        p.seq = p.seq.min(seq);
        p.due = true;
    }

    /// Whether some path failed only because S3 did not answer (it is retried once S3
    /// answers again).
    pub fn has_transient_failures(&self) -> bool {
        self.state.lock().failed.values().any(|f| f.transient)
    }

    /// Queues every transient failure again; returns how many.
    pub fn retry_transient(&self) -> usize {
        let mut s = self.state.lock();
        let again: Vec<(String, u64)> = s
            .failed
            .iter()
            .filter(|(_, f)| f.transient)
            .map(|(p, f)| (p.clone(), f.seq))
            .collect();
        for (p, seq) in &again {
            s.failed.remove(p);
            Self::make_due(&mut s, p.clone(), *seq);
        }
        drop(s);
        if !again.is_empty() {
            self.work.notify_one();
        }
        again.len()
    }

    /// Uploads stop (the endpoint is unreachable: `why`) or go on (`None`).
    pub fn set_paused(&self, why: Option<String>) {
        let mut s = self.state.lock();
        match why {
            Some(w) => {
                let since = s.paused.as_ref().map(|p| p.0);
                s.paused = Some((since.unwrap_or_else(std::time::SystemTime::now), w));
            }
            None => s.paused = None,
        }
    }

    pub fn paused(&self) -> Option<(std::time::SystemTime, String)> {
        self.state.lock().paused.clone()
    }

    pub fn add_conflict(&self, c: Conflict) {
        self.state.lock().conflicts.push(c);
    }

    pub fn conflicts(&self) -> Vec<Conflict> {
        self.state.lock().conflicts.clone()
    }

    /// A scan of the whole tree finished.
    pub fn scan_done(&self) {
        self.state.lock().scanning = None;
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
        !s.pending.iter().any(|(p, e)| before((p, &e.seq)))
            && !s.in_flight.iter().any(before)
            && s.scan.is_none_or(|seq| seq >= barrier)
            && s.scanning.is_none_or(|seq| seq >= barrier)
    }

    /// Waits until every change marked before `barrier` (for `only`, if given) is
    /// handled, retrying earlier failures once; returns what still failed.
    pub async fn wait(&self, barrier: u64, only: Option<&str>) -> Vec<(String, String)> {
        {
            let mut s = self.state.lock();
            let retry: Vec<(String, u64)> = s
                .failed
                .iter()
                .filter(|(p, f)| f.seq < barrier && only.is_none_or(|o| o == p.as_str()))
                .map(|(p, f)| (p.clone(), f.seq))
                .collect();
            for (p, seq) in retry {
                Self::make_due(&mut s, p, seq);
            }
            // A whole flush skips every debounce; an fsync only its own file's.
            match only {
                None => s.urgent += 1,
                Some(o) => {
                    if let Some(p) = s.pending.get_mut(o) {
                        p.due = true;
                    }
                }
            }
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
        if only.is_none() {
            s.urgent -= 1;
        }
        s.unsyncable
            .retain(|local, _| std::fs::symlink_metadata(local).is_ok());
        let mut out: Vec<(String, String)> = s
            .failed
            .iter()
            .filter(|(p, f)| f.seq < barrier && only.is_none_or(|o| o == p.as_str()))
            .map(|(p, f)| (p.clone(), f.problem.clone()))
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
            .map(|(p, f)| (p.clone(), f.problem.clone()))
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
    async fn a_flush_waits_for_a_scan_in_progress() {
        let q = Arc::new(Queue::default());
        q.request_scan();
        let batch = q.next_batch(Duration::ZERO, Duration::ZERO).await;
        assert!(batch.scan.is_some());
        // The worker is scanning (nothing in flight yet) when the flush comes.
        let barrier = q.barrier();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.wait(barrier, None).await })
        };
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !waiter.is_finished(),
            "the scan's findings are not in flight yet"
        );
        q.add_in_flight("found", batch.scan.unwrap());
        q.scan_done();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !waiter.is_finished(),
            "what the scan found is still in flight"
        );
        q.finish("found", Ok(()));
        assert!(waiter.await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn each_file_waits_for_its_own_quiet_time() {
        let q = Queue::default();
        q.mark("old".into());
        tokio::time::sleep(Duration::from_millis(300)).await;
        q.mark("new".into());
        let b = q
            .next_batch(Duration::from_millis(250), Duration::from_secs(60))
            .await;
        let names: Vec<_> = b.paths.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["old"], "a path marked just now is not due yet");
        let b = q
            .next_batch(Duration::from_millis(250), Duration::from_secs(60))
            .await;
        assert_eq!(b.paths[0].0, "new");
    }

    #[tokio::test]
    async fn a_quiet_path_waits_while_the_tree_is_busy() {
        let q = Queue::default();
        let quiet = Duration::from_millis(100);
        q.mark("old".into());
        tokio::time::sleep(quiet * 3).await;
        // "old" has been quiet long enough, but another file was written just now.
        q.mark("busy".into());
        let t = Instant::now();
        let b = q.next_batch(quiet, Duration::from_secs(60)).await;
        assert!(
            t.elapsed() >= quiet.min(BURST_QUIET),
            "nothing is due while writes go on ({:?})",
            t.elapsed()
        );
        assert!(b.paths.iter().any(|(p, _)| p == "old"));
    }

    #[tokio::test]
    async fn an_fsync_makes_only_its_own_path_due() {
        let q = Arc::new(Queue::default());
        q.mark("saved".into());
        q.mark("other".into());
        let barrier = q.barrier();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.wait(barrier, Some("saved")).await })
        };
        let b = q
            .next_batch(Duration::from_secs(60), Duration::from_secs(60))
            .await;
        let names: Vec<_> = b.paths.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["saved"], "the other file keeps its debounce");
        q.finish("saved", Ok(()));
        assert!(waiter.await.unwrap().is_empty());
        assert_eq!(q.counts().0, 1, "the other file is still pending");
    }

    #[tokio::test]
    async fn a_path_taken_for_an_fsync_is_in_flight_until_finished() {
        let q = Queue::default();
        q.mark("f".into());
        let barrier = q.barrier();
        let seq = q.take_pending("f").expect("pending");
        assert!(q.take_pending("f").is_none(), "taken once");
        assert_eq!(q.counts().0 + q.counts().1, 1);
        assert!(!q.done_for_test(barrier));
        q.finish("f", Ok(()));
        assert!(q.done_for_test(barrier));
        assert!(seq < barrier);
    }

    #[tokio::test]
    async fn a_path_that_keeps_failing_is_reported_not_retried_forever() {
        let q = Queue::default();
        q.mark("slow".into());
        let barrier = q.barrier();
        for _ in 0..REQUEUES {
            let b = q.next_batch(Duration::ZERO, Duration::ZERO).await;
            assert_eq!(b.paths[0].0, "slow");
            q.requeue("slow", "timed out".into());
        }
        let b = q.next_batch(Duration::ZERO, Duration::ZERO).await;
        q.requeue("slow", "timed out".into());
        assert_eq!(b.paths.len(), 1);
        let (pending, in_flight, failed) = q.counts();
        assert_eq!((pending, in_flight), (0, 0));
        assert_eq!(failed, vec![("slow".to_string(), "timed out".to_string())]);
        assert!(q.done_for_test(barrier), "a flush is not held up by it");
    }

    impl Queue {
        fn done_for_test(&self, barrier: u64) -> bool {
            Queue::done_before(&self.state.lock(), barrier, None)
        }
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
