//! The agent's reply to [`crate::wire::Op::Status`]: one `key\tvalue[\tvalue…]` line per
//! fact, so fields can be added without breaking a reader (the CLI shows a key it does
//! not know as it is). Values never hold a tab or a newline ([`field`] replaces them).

// The keys are shared with the shim, which has no standard library.
pub use s3shim_protocol_core::status::*;

/// The request payload that asks for the sync state only (pending, failed, uploads,
/// conflicts, last error): no walk over every known file, so it is cheap to poll.
pub const SYNC_ONLY: &str = "sync";

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
