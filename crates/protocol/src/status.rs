//! The agent's reply to [`crate::wire::Op::Status`]: one `key\tvalue[\tvalue…]` line per
//! fact, so fields can be added without breaking a reader (the CLI shows a key it does
//! not know as it is). Values never hold a tab or a newline ([`field`] replaces them).

/// `s3://bucket/prefix`, endpoint.
pub const WORKSPACE: &str = "workspace";
/// The cache's tree directory.
pub const CACHE: &str = "cache";
/// Open `s3shim run` sessions.
pub const SESSIONS: &str = "sessions";
/// Entries the agent knows to be in S3.
pub const INDEXED: &str = "indexed";
/// Changes not in S3 yet: count, bytes of their local files.
pub const PENDING: &str = "pending";
/// Of those, uploads being made now: count.
pub const IN_FLIGHT: &str = "in_flight";
/// A change that could not be uploaded: path, problem (one line each).
pub const FAILED: &str = "failed";
/// The most recent problem: unix seconds, text.
pub const LAST_ERROR: &str = "last_error";
/// Files known to be in S3: bytes, count.
pub const REMOTE: &str = "remote";
/// Of those, the ones whose bytes are in the cache: bytes, count.
pub const HYDRATED: &str = "hydrated";
/// Objects downloaded since the agent started: count, bytes.
pub const DOWNLOADED: &str = "downloaded";

/// Agent restarts by the supervising `run`: count, unix seconds of the last, its cause.
pub const RESTARTS: &str = "restarts";

/// Uploads: `running`, or `paused`, unix seconds since, the error that paused them.
pub const UPLOADS: &str = "uploads";
/// A conflict kept both versions: path, the name the local version was saved as, unix
/// seconds (one line each).
pub const CONFLICT: &str = "conflict";

/// One reply line (with its newline), tabs and newlines in values replaced by spaces.
pub fn field(key: &str, values: &[&str]) -> String {
    let mut line = key.to_string();
    for v in values {
        line.push('\t');
        line.extend(
            v.chars()
                .map(|c| if c == '\t' || c == '\n' { ' ' } else { c }),
        );
    }
    line.push('\n');
    line
}

/// Splits a reply into (key, values) lines.
pub fn parse(reply: &str) -> impl Iterator<Item = (&str, Vec<&str>)> {
    reply.lines().filter(|l| !l.is_empty()).map(|l| {
        let mut it = l.split('\t');
        let key = it.next().unwrap_or("");
        (key, it.collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_stay_one_line() {
        let reply = field(PENDING, &["2", "10"]) + &field(FAILED, &["a\tb", "no\nway"]);
        let parsed: Vec<_> = parse(&reply).collect();
        assert_eq!(
            parsed,
            vec![(PENDING, vec!["2", "10"]), (FAILED, vec!["a b", "no way"])]
        );
    }
}
