//! Listings: the objects and sub-prefixes of one directory, every object of a subtree,
//! and a flat listing read a page at a time (the remote-change poller's).

use super::S3;
use crate::agent::error::Result;

/// One listing page merged: objects directly under the prefix and sub-prefixes.
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<ListedObject>,
    pub prefixes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ListedObject {
    pub key: String,
    /// As the listing says; compared with the index to trust a warm cache.
    pub etag: String,
    pub size: u64,
}

/// One object of a flat listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    pub key: String,
    pub etag: String,
    pub size: u64,
}

/// A flat listing read a page at a time: what a caller holds does not grow with the
/// bucket (a poll of 100,000 objects held them all at once, issue 6).
pub struct FlatListing<'a> {
    s3: &'a S3,
    prefix: &'a str,
    token: Option<String>,
    done: bool,
}

impl FlatListing<'_> {
    /// Whether every page has been read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next page in key order, `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<RemoteObject>>> {
        if self.done {
            return Ok(None);
        }
        let (page, next) = self
            .s3
            .list_page(self.prefix, None, self.token.take())
            .await?;
        self.done = next.is_none();
        self.token = next;
        Ok(Some(
            page.objects
                .into_iter()
                .map(|o| RemoteObject {
                    key: o.key,
                    etag: o.etag,
                    size: o.size,
                })
                .collect(),
        ))
    }
}
impl S3 {
    /// Lists the objects and sub-prefixes directly under `prefix` (delimiter `/`).
    pub async fn list_dir(&self, prefix: &str) -> Result<Listing> {
        self.list(prefix, Some("/")).await
    }

    /// Lists every object under `prefix`, at any depth.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<ListedObject>> {
        Ok(self.list(prefix, None).await?.objects)
    }

    async fn list(&self, prefix: &str, delimiter: Option<&str>) -> Result<Listing> {
        let mut out = Listing::default();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = self.list_page(prefix, delimiter, token).await?;
            out.objects.extend(page.objects);
            out.prefixes.extend(page.prefixes);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(out)
    }

    /// One page of a listing (at most 1,000 entries) and the token of the next one,
    /// `None` after the last.
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
    ) -> Result<(Listing, Option<String>)> {
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            // Keys may hold characters XML 1.0 cannot carry (a control character in
            // one key would make the whole listing unparseable).
            .encoding_type(aws_sdk_s3::types::EncodingType::Url);
        if let Some(d) = delimiter {
            req = req.delimiter(d);
        }
        let page = req
            .send()
            .await
            .map_err(|e| self.err("listing", prefix, e))?;
        let mut out = Listing::default();
        for o in page.contents() {
            if let Some(key) = o.key().and_then(|k| listed_key(k, prefix)) {
                out.objects.push(ListedObject {
                    key,
                    etag: o.e_tag().unwrap_or_default().to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        for p in page.common_prefixes() {
            if let Some(p) = p.prefix().and_then(|k| listed_key(k, prefix)) {
                out.prefixes.push(p);
            }
        }
        let next = match page.next_continuation_token() {
            Some(t) if page.is_truncated().unwrap_or(false) => Some(t.to_string()),
            _ => None,
        };
        Ok((out, next))
    }

    /// Every object under `prefix` at any depth, with ETag and size, a page at a time.
    pub fn list_flat<'a>(&'a self, prefix: &'a str) -> FlatListing<'a> {
        FlatListing {
            s3: self,
            prefix,
            token: None,
            done: false,
        }
    }
}

/// A key from a URL-encoded listing, decoded (`+` is a space, as S3 encodes it); `None`,
/// with a log line, for one that is not UTF-8 once decoded (S3 keys must be, so only a
/// misbehaving server sends one) — no local name could be made of it.
fn listed_key(encoded: &str, listed: &str) -> Option<String> {
    let plus_as_space = encoded.replace('+', " ");
    match percent_encoding::percent_decode_str(&plus_as_space).decode_utf8() {
        Ok(k) => Some(k.into_owned()),
        Err(_) => {
            tracing::warn!(
                "skipping key {encoded:?} (URL-encoded) while listing {listed:?}: not valid UTF-8 once decoded"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keys_are_decoded_and_invalid_utf8_is_skipped() {
        assert_eq!(listed_key("a%20b/c+d%2B", "").as_deref(), Some("a b/c d+"));
        assert_eq!(listed_key("ctl%01x", "").as_deref(), Some("ctl\u{1}x"));
        assert_eq!(listed_key("bad%FFname", ""), None);
        assert_eq!(listed_key("%C3%BC", "").as_deref(), Some("ü"));
    }
}
