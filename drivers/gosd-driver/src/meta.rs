//! An instance's metadata and status, and their compact stored form.
//!
//! The stored form is `<status>[,<key>=<value>]*`, keys sorted, e.g.
//! `up,version=2.1.0,zone=eu-1`; an instance that is up and has no
//! metadata stores nothing at all (the empty string), so that an entry
//! written by Go gosd and one written by gosd without metadata read the
//! same. Keys and values are limited to characters that need no escaping
//! (see [`Meta::check_key`], [`Meta::check_value`]), so the form has no
//! spaces and a pushed change can carry it as one word.

use std::fmt;

/// Whether an instance takes new requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Takes new requests: the default, and what every entry without
    /// metadata (Go gosd's) is.
    #[default]
    Up,
    /// Keeps its lease and finishes what it has, but takes no new
    /// requests: a deploy without deregistration.
    Draining,
    /// Alive (it heartbeats) but unfit to serve, e.g. its health check
    /// failed.
    Down,
}

impl Status {
    /// `up`, `draining` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Draining => "draining",
            Self::Down => "down",
        }
    }

    /// The inverse of [`Status::as_str`].
    ///
    /// ```
    /// use gosd_driver::Status;
    /// assert_eq!(Status::parse("draining"), Some(Status::Draining));
    /// assert_eq!(Status::parse("Up"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "up" => Some(Self::Up),
            "draining" => Some(Self::Draining),
            "down" => Some(Self::Down),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most pairs an instance may carry.
pub const MAX_PAIRS: usize = 32;
/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 64;
/// The longest value, in bytes.
pub const MAX_VALUE_LEN: usize = 256;
/// The longest stored form, in bytes.
pub const MAX_ENCODED_LEN: usize = 4096;

/// An instance's status and string key/value metadata.
///
/// ```
/// use gosd_driver::{Meta, Status};
/// let mut m = Meta::default();
/// assert_eq!(m.encode(), "", "up with no metadata stores nothing");
/// m.insert("zone", "eu-1").unwrap();
/// m.insert("version", "2.1.0").unwrap();
/// m.status = Status::Draining;
/// assert_eq!(m.encode(), "draining,version=2.1.0,zone=eu-1");
/// assert_eq!(Meta::decode(&m.encode()), m);
/// assert_eq!(m.get("zone"), Some("eu-1"));
/// assert!(m.insert("bad key", "x").is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Whether the instance takes new requests.
    pub status: Status,
    /// Sorted by key, keys unique, each checked.
    pairs: Vec<(String, String)>,
}

impl Meta {
    /// Why `key` cannot be a metadata key, or `Ok`: 1 to 64 of
    /// `A-Z a-z 0-9 _ . -`.
    pub fn check_key(key: &str) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(format!(
                "a key is 1 to {MAX_KEY_LEN} characters, not {}",
                key.len()
            ));
        }
        match key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            Some(c) => Err(format!(
                "{c:?} is not allowed in a key (letters, digits, _ . - are)"
            )),
            None => Ok(()),
        }
    }

    /// Why `value` cannot be a metadata value, or `Ok`: up to 256 of
    /// `A-Z a-z 0-9 _ . - : / @ + ~ %`.
    pub fn check_value(value: &str) -> Result<(), String> {
        if value.len() > MAX_VALUE_LEN {
            return Err(format!(
                "a value is at most {MAX_VALUE_LEN} characters, not {}",
                value.len()
            ));
        }
        match value.chars().find(|c| {
            !(c.is_ascii_alphanumeric()
                || matches!(c, '_' | '.' | '-' | ':' | '/' | '@' | '+' | '~' | '%'))
        }) {
            Some(c) => Err(format!(
                "{c:?} is not allowed in a value (letters, digits, _ . - : / @ + ~ % are)"
            )),
            None => Ok(()),
        }
    }

    /// Sets `key` to `value`, replacing any value it had. `Err` with the
    /// reason when the key or value is not allowed, or when the metadata
    /// would exceed 32 pairs or 4 KiB stored; nothing changes then.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), String> {
        Self::check_key(key)?;
        Self::check_value(value)?;
        let mut next = self.clone();
        match next.pairs.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => next.pairs[i].1 = value.to_owned(),
            Err(i) => next.pairs.insert(i, (key.to_owned(), value.to_owned())),
        }
        if next.pairs.len() > MAX_PAIRS {
            return Err(format!("at most {MAX_PAIRS} pairs are allowed"));
        }
        let len = next.encode().len();
        if len > MAX_ENCODED_LEN {
            return Err(format!(
                "the metadata would take {len} bytes, more than {MAX_ENCODED_LEN}"
            ));
        }
        *self = next;
        Ok(())
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.pairs[i].1.as_str())
    }

    /// Every pair, sorted by key.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether this is what an entry without metadata reads as: up, no pairs.
    pub fn is_default(&self) -> bool {
        self.status == Status::Up && self.pairs.is_empty()
    }

    /// The stored form (see the module docs); `""` for [`Meta::default`].
    pub fn encode(&self) -> String {
        if self.is_default() {
            return String::new();
        }
        let mut out = String::from(self.status.as_str());
        for (k, v) in &self.pairs {
            out.push(',');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }

    /// Reads a stored form leniently, since anyone may have written it: a
    /// status it does not know reads as `down` (it cannot vouch for the
    /// instance, and picks fail open anyway), and pairs that are malformed
    /// or not allowed are skipped.
    pub fn decode(stored: &str) -> Self {
        let mut parts = stored.split(',');
        let status = match parts.next() {
            None | Some("") => Status::Up,
            Some(s) => Status::parse(s).unwrap_or(Status::Down),
        };
        let mut meta = Meta {
            status,
            pairs: Vec::new(),
        };
        for pair in parts {
            if let Some((k, v)) = pair.split_once('=') {
                let _ = meta.insert(k, v);
            }
        }
        meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_is_lenient_and_encode_round_trips() {
        assert_eq!(Meta::decode(""), Meta::default());
        assert_eq!(Meta::decode("up"), Meta::default());
        assert_eq!(Meta::decode("weird").status, Status::Down);
        let m = Meta::decode("down,a=1,broken,b c=2,=3,c=");
        assert_eq!(m.status, Status::Down);
        assert_eq!(m.pairs().collect::<Vec<_>>(), [("a", "1"), ("c", "")]);
        assert_eq!(Meta::decode(&m.encode()), m);
    }

    #[test]
    fn limits_hold() {
        let mut m = Meta::default();
        for i in 0..MAX_PAIRS {
            m.insert(&format!("k{i}"), "v").unwrap();
        }
        assert!(m.insert("one-more", "v").unwrap_err().contains("32"));
        m.insert("k0", "replaced").unwrap();
        assert!(Meta::check_key(&"k".repeat(65)).is_err());
        assert!(Meta::check_value(&"v".repeat(257)).is_err());
        let mut big = Meta::default();
        let long = "v".repeat(MAX_VALUE_LEN);
        let err = (0..20)
            .find_map(|i| big.insert(&format!("key{i}"), &long).err())
            .unwrap();
        assert!(err.contains("4096"), "{err}");
    }
}
