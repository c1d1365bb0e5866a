//! The agent's log writer, which blanks out every credential the agent knows before a
//! line reaches the file. The SDK's own debug output, an error that quotes a request, a
//! future log line that prints the wrong field: none of them can put a secret in the log.

use parking_lot::RwLock;
use std::io::{self, Write};

/// What replaces a secret in the log.
pub const REDACTED: &str = "[redacted]";

/// Shorter values are not redacted: they cannot be secrets worth the name, and blanking
/// them would mangle ordinary text.
const MIN_SECRET_LEN: usize = 8;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds values to blank out of every later log line.
pub fn add_secrets(values: impl IntoIterator<Item = String>) {
    let mut s = SECRETS.write();
    for v in values {
        if v.len() >= MIN_SECRET_LEN && !s.contains(&v) {
            s.push(v);
        }
    }
}

/// Credential values in the agent's own environment.
pub fn env_secrets() -> Vec<String> {
    crate::run::CREDENTIAL_ENV
        .iter()
        .filter(|v| **v != "AWS_ACCESS_KEY_ID")
        .filter_map(|v| std::env::var(v).ok())
        .collect()
}

fn redact(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let secrets = SECRETS.read();
    let mut out = std::borrow::Cow::Borrowed(text);
    for s in secrets.iter() {
        let s = s.as_bytes();
        if out.windows(s.len()).any(|w| w == s) {
            let mut next = Vec::with_capacity(out.len());
            let mut rest: &[u8] = &out;
            while let Some(i) = rest.windows(s.len()).position(|w| w == s) {
                next.extend_from_slice(&rest[..i]);
                next.extend_from_slice(REDACTED.as_bytes());
                rest = &rest[i + s.len()..];
            }
            next.extend_from_slice(rest);
            out = std::borrow::Cow::Owned(next);
        }
    }
    out
}

/// The log file, shared by every event (opened for append: each event is one write).
pub struct LogFile(pub std::sync::Arc<std::fs::File>);

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes to the inner writer with secrets blanked. tracing-subscriber hands over each
/// event whole in one `write_all`, so a secret is never split across two calls.
pub struct Redacting<W>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&redact(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_are_blanked_and_short_values_ignored() {
        add_secrets(["s3cr3t-value-42".to_string(), "short".to_string()]);
        let mut out = Vec::new();
        Redacting(&mut out)
            .write_all(b"key s3cr3t-value-42 and s3cr3t-value-42; short stays\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "key [redacted] and [redacted]; short stays\n"
        );
    }
}
