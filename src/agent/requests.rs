//! The requests an agent answered, counted by kind: what [`super::Handle::requests`]
//! shows (tests assert on them instead of on a log of a fake agent).

use parking_lot::{Condvar, Mutex};
use s3shim_protocol::wire::Op;
use std::time::{Duration, Instant};

/// Requests answered, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub list_dir: u64,
    pub fetch: u64,
    pub lookup: u64,
    pub list_tree: u64,
    pub fetch_tree: u64,
    pub flush: u64,
    pub sync: u64,
    pub session: u64,
    pub status: u64,
    pub discard: u64,
    pub supervise: u64,
}

impl Requests {
    fn slot(&mut self, op: Op) -> &mut u64 {
        match op {
            Op::ListDir => &mut self.list_dir,
            Op::Fetch => &mut self.fetch,
            Op::Lookup => &mut self.lookup,
            Op::ListTree => &mut self.list_tree,
            Op::FetchTree => &mut self.fetch_tree,
            Op::Flush => &mut self.flush,
            Op::Sync => &mut self.sync,
            Op::Session => &mut self.session,
            Op::Status => &mut self.status,
            Op::Discard => &mut self.discard,
            Op::Supervise => &mut self.supervise,
        }
    }
}

impl std::ops::Sub for Requests {
    type Output = Requests;

    fn sub(self, o: Requests) -> Requests {
        Requests {
            list_dir: self.list_dir - o.list_dir,
            fetch: self.fetch - o.fetch,
            lookup: self.lookup - o.lookup,
            list_tree: self.list_tree - o.list_tree,
            fetch_tree: self.fetch_tree - o.fetch_tree,
            flush: self.flush - o.flush,
            sync: self.sync - o.sync,
            session: self.session - o.session,
            status: self.status - o.status,
            discard: self.discard - o.discard,
            supervise: self.supervise - o.supervise,
        }
    }
}

/// The counts, shared by the server (which counts) and the handle (which reads).
#[derive(Default)]
pub(crate) struct RequestLog {
    counts: Mutex<Requests>,
    changed: Condvar,
}

impl RequestLog {
    /// Counts a request the agent answered (before the answer is written, so a program
    /// that got it finds it counted).
    pub(crate) fn answered(&self, op: Op) {
        *self.counts.lock().slot(op) += 1;
        self.changed.notify_all();
    }

    pub(crate) fn snapshot(&self) -> Requests {
        *self.counts.lock()
    }

    /// Waits until `done` holds, at most `limit`; the last counts and whether it held.
    pub(crate) fn wait(
        &self,
        limit: Duration,
        done: impl Fn(&Requests) -> bool,
    ) -> (Requests, bool) {
        let deadline = Instant::now() + limit;
        let mut counts = self.counts.lock();
        while !done(&counts) {
            if self.changed.wait_until(&mut counts, deadline).timed_out() {
                return (*counts, done(&counts));
            }
        }
        (*counts, true)
    }
}
