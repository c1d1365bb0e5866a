//! The CLI's side of the agent socket (blocking; the shim has its own allocation-free
//! client).

use anyhow::{bail, Context, Result};
use s3shim_protocol::wire::{self, Op};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Sends one request and returns (errno, payload).
pub fn request(socket: &Path, op: Op, rel: &str) -> Result<(i32, String)> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("no agent is running for this cache ({})", socket.display()))?;
    send(&mut s, op, rel)?;
    read_reply(&mut s)
}

pub fn send(s: &mut UnixStream, op: Op, rel: &str) -> Result<()> {
    let mut buf = vec![0u8; wire::REQUEST_MAX];
    let Some(n) = wire::encode_request(op, rel.as_bytes(), &mut buf) else {
        bail!("path too long: {rel}");
    };
    s.write_all(&buf[..n])?;
    Ok(())
}

pub fn read_reply(s: &mut UnixStream) -> Result<(i32, String)> {
    let mut hdr = [0u8; 4];
    s.read_exact(&mut hdr)
        .context("the agent closed the connection")?;
    let len = wire::body_len(hdr);
    if len > wire::RESPONSE_BODY_MAX {
        bail!("oversized reply from the agent");
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let Some((errno, payload)) = wire::decode_response(&body) else {
        bail!("malformed reply from the agent");
    };
    Ok((errno, String::from_utf8_lossy(payload).into_owned()))
}

/// The agent's status reply as people read it: one line per field, known fields worded,
/// unknown ones (from a newer agent) shown as they are.
pub fn render_status(reply: &str) -> String {
    use s3shim_protocol::status as st;
    let mut out = String::new();
    let num = |v: &[&str], i: usize| v.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let mut failed = Vec::new();
    let mut conflicts = Vec::new();
    for (key, v) in st::parse(reply) {
        let line = match key {
            st::WORKSPACE => format!(
                "workspace:  {} via {}",
                v.first().unwrap_or(&""),
                v.get(1).unwrap_or(&"")
            ),
            st::CACHE => format!("cache:      {}", v.first().unwrap_or(&"")),
            st::SESSIONS => format!("sessions:   {}", num(&v, 0)),
            st::INDEXED => format!("indexed:    {} entries", num(&v, 0)),
            st::PENDING => format!(
                "not in S3:  {} change(s), {}",
                num(&v, 0),
                human_bytes(num(&v, 1))
            ),
            st::IN_FLIGHT => format!("uploading:  {}", num(&v, 0)),
            st::FAILED => {
                failed.push(format!(
                    "  {}: {}",
                    v.first().unwrap_or(&""),
                    v.get(1).unwrap_or(&"")
                ));
                continue;
            }
            st::RESTARTS => format!(
                "restarts:   {} (the agent died and was started again; last {}: {})",
                num(&v, 0),
                ago(num(&v, 1)),
                v.get(2).unwrap_or(&"")
            ),
            st::UPLOADS if v.first() == Some(&"paused") => format!(
                "uploads: paused since {}, S3 unreachable: {}",
                ago(num(&v, 1)),
                v.get(2).unwrap_or(&"")
            ),
            st::UPLOADS => "uploads: running".to_string(),
            st::CONFLICT => {
                conflicts.push(format!(
                    "  {}: changed in S3 by another writer ({}); the local version is {}",
                    v.first().unwrap_or(&""),
                    ago(num(&v, 2)),
                    v.get(1).unwrap_or(&"")
                ));
                continue;
            }
            st::LAST_ERROR => format!(
                "last error: {} ({})",
                v.get(1).unwrap_or(&""),
                ago(num(&v, 0))
            ),
            st::REMOTE => format!(
                "in S3:      {} in {} file(s) known so far",
                human_bytes(num(&v, 0)),
                num(&v, 1)
            ),
            st::HYDRATED => format!(
                "hydrated:   {} in {} file(s) of those are in the cache",
                human_bytes(num(&v, 0)),
                num(&v, 1)
            ),
            st::DOWNLOADED => format!(
                "downloaded: {} object(s), {} since the agent started",
                num(&v, 0),
                human_bytes(num(&v, 1))
            ),
            other => format!("{other}: {}", v.join("  ")),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("failed:     {}\n", failed.len()));
    for f in failed {
        out.push_str(&f);
        out.push('\n');
    }
    out.push_str(&format!("conflicts: {}\n", conflicts.len()));
    for c in conflicts {
        out.push_str(&c);
        out.push('\n');
    }
    out
}

/// Version of the `s3shim status --json` document; bumped only when a field changes
/// meaning or goes away (new fields may be added at any time).
pub const STATUS_SCHEMA: u64 = 1;

/// The agent's status reply as the JSON document of `s3shim status --json` (schema in
/// the README). `mount` is where programs see the workspace: paths in the document are
/// relative to it. Fields a newer agent sends that this one does not know go under
/// `other`, so nothing is dropped.
pub fn status_json(reply: &str, mount: &Path) -> serde_json::Value {
    use s3shim_protocol::status as st;
    use serde_json::{json, Map, Value};
    let num = |v: &[&str], i: usize| v.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let text = |v: &[&str], i: usize| v.get(i).copied().unwrap_or("").to_string();
    let mut doc = json!({
        "schema": STATUS_SCHEMA,
        "state": "in_s3",
        "mount": mount.display().to_string(),
        "pending": { "changes": 0, "bytes": 0, "in_flight": 0 },
        "uploads": { "paused": false, "since": null, "reason": null },
        "failed": [],
        "conflicts": [],
        "last_error": null,
    });
    let mut other = Map::new();
    for (key, v) in st::parse(reply) {
        match key {
            st::WORKSPACE => {
                doc["workspace"] = json!(text(&v, 0));
                doc["endpoint"] = json!(text(&v, 1));
            }
            st::CACHE => doc["cache"] = json!(text(&v, 0)),
            st::SESSIONS => doc["sessions"] = json!(num(&v, 0)),
            st::INDEXED => doc["indexed"] = json!(num(&v, 0)),
            st::PENDING => {
                doc["pending"]["changes"] = json!(num(&v, 0));
                doc["pending"]["bytes"] = json!(num(&v, 1));
            }
            st::IN_FLIGHT => doc["pending"]["in_flight"] = json!(num(&v, 0)),
            st::FAILED => push(
                &mut doc["failed"],
                json!({ "path": text(&v, 0), "reason": text(&v, 1) }),
            ),
            st::UPLOADS => {
                if v.first() == Some(&st::PAUSED) {
                    doc["uploads"] =
                        json!({ "paused": true, "since": num(&v, 1), "reason": text(&v, 2) });
                }
            }
            st::CONFLICT => push(
                &mut doc["conflicts"],
                json!({ "path": text(&v, 0), "copy": text(&v, 1), "at": num(&v, 2) }),
            ),
            st::LAST_ERROR => {
                doc["last_error"] = json!({ "at": num(&v, 0), "message": text(&v, 1) })
            }
            st::REMOTE => doc["remote"] = json!({ "bytes": num(&v, 0), "files": num(&v, 1) }),
            st::HYDRATED => doc["hydrated"] = json!({ "bytes": num(&v, 0), "files": num(&v, 1) }),
            st::DOWNLOADED => {
                doc["downloaded"] = json!({ "objects": num(&v, 0), "bytes": num(&v, 1) })
            }
            other_key => {
                other.insert(
                    other_key.to_string(),
                    Value::from(v.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                );
            }
        }
    }
    // One word for a status bar, the most pressing first: nothing goes up while paused;
    // a failure or a conflict needs the user; then work in progress.
    let has = |k: &str| doc[k].as_array().is_some_and(|a| !a.is_empty());
    let state = if doc["uploads"]["paused"] == json!(true) {
        "paused"
    } else if has("failed") {
        "failed"
    } else if has("conflicts") {
        "conflict"
    } else if doc["pending"]["changes"].as_u64().unwrap_or(0) > 0 {
        "uploading"
    } else {
        "in_s3"
    };
    doc["state"] = json!(state);
    if !other.is_empty() {
        doc["other"] = Value::Object(other);
    }
    doc
}

fn push(list: &mut serde_json::Value, item: serde_json::Value) {
    if let Some(a) = list.as_array_mut() {
        a.push(item);
    }
}

/// One line for the end of `run --summary`: downloads since the agent started and
/// changes not in S3.
pub fn summary_line(reply: &str) -> String {
    use s3shim_protocol::status as st;
    let (mut objects, mut bytes, mut waiting) = (0, 0, 0);
    for (key, v) in st::parse(reply) {
        let num = |i: usize| v.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        match key {
            st::DOWNLOADED => (objects, bytes) = (num(0), num(1)),
            st::PENDING => waiting = num(0),
            _ => {}
        }
    }
    format!("summary: downloaded {objects} object(s), {bytes} bytes; {waiting} change(s) not in S3")
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {} ({n} bytes)", UNITS[u])
}

fn ago(unix_secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{} s ago", now.saturating_sub(unix_secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3shim_protocol::status::{self as st, field};

    #[test]
    fn status_json_has_every_field_and_the_most_pressing_state() {
        let reply = field(st::PENDING, &["2", "2048"])
            + &field(st::IN_FLIGHT, &["1"])
            + &field(st::FAILED, &["bad", "access denied"])
            + &field(
                st::CONFLICT,
                &["a.txt", "a.conflict-h-20260101T000000Z.txt", "7"],
            )
            + &field(st::UPLOADS, &["running"])
            + &field("restarts", &["3"]);
        let doc = status_json(&reply, Path::new("/ws"));
        assert_eq!(doc["schema"], 1);
        assert_eq!(doc["mount"], "/ws");
        assert_eq!(doc["state"], "failed");
        assert_eq!(doc["pending"]["changes"], 2);
        assert_eq!(doc["pending"]["bytes"], 2048);
        assert_eq!(doc["pending"]["in_flight"], 1);
        assert_eq!(doc["failed"][0]["path"], "bad");
        assert_eq!(doc["failed"][0]["reason"], "access denied");
        assert_eq!(
            doc["conflicts"][0]["copy"],
            "a.conflict-h-20260101T000000Z.txt"
        );
        assert_eq!(doc["conflicts"][0]["at"], 7);
        assert_eq!(doc["uploads"]["paused"], false);
        assert_eq!(doc["other"]["restarts"][0], "3");
        let paused = status_json(
            &(reply + &field(st::UPLOADS, &["paused", "5", "connection refused"])),
            Path::new("/ws"),
        );
        assert_eq!(paused["state"], "paused");
        assert_eq!(paused["uploads"]["reason"], "connection refused");
        let idle = status_json(&field(st::PENDING, &["0", "0"]), Path::new("/ws"));
        assert_eq!(idle["state"], "in_s3");
        assert_eq!(idle["last_error"], serde_json::Value::Null);
        let busy = status_json(&field(st::PENDING, &["1", "5"]), Path::new("/ws"));
        assert_eq!(busy["state"], "uploading");
    }

    #[test]
    fn status_reply_reads_as_text_and_keeps_unknown_fields() {
        let reply = field(st::PENDING, &["2", "2048"])
            + &field(st::FAILED, &["bad\u{fffd}", "not UTF-8"])
            + &field(st::HYDRATED, &["1000", "1"])
            + &field("conflicts", &["a.txt", "a.conflict.txt"]);
        let text = render_status(&reply);
        assert!(
            text.contains("not in S3:  2 change(s), 2.0 KiB (2048 bytes)"),
            "{text}"
        );
        assert!(
            text.contains("hydrated:   1000 bytes in 1 file(s)"),
            "{text}"
        );
        assert!(text.contains("conflicts: a.txt  a.conflict.txt"), "{text}");
        assert!(
            text.contains("failed:     1\n  bad\u{fffd}: not UTF-8\n"),
            "{text}"
        );
    }
}
