//! Reading the scripts' replies and the pushed events: every shape Redis
//! may answer with is checked, and anything else is `None`/`Err`, never a
//! panic.

use super::*;

/// `{"same", ms until the earliest lease runs out, or ""}`: the fetch
/// script's answer when nothing changed.
pub(crate) fn parse_unchanged(v: &Value) -> Option<Fetched> {
    let Value::Array(parts) = v else { return None };
    match parts.as_slice() {
        [same, next] if bytes_ref(same) == Some(b"same") => Some(Fetched::Unchanged {
            next_expiry: expiry(next),
        }),
        _ => None,
    }
}

/// Milliseconds until the earliest lease runs out, from a fetch script's
/// answer; `None` (no lease) for `""`.
pub(crate) fn expiry(ms: &Value) -> Option<Duration> {
    number(ms).map(|ms| Duration::from_millis(ms.max(0.0) as u64))
}

/// `{"changes", ms until the earliest lease runs out or "", generation,
/// revision, length, the log's messages newest first}`. `None` for any
/// other reply, for a message that is not gosd's, and for several entries
/// changed at once: the caller then reads the whole registry.
pub(crate) fn parse_changes(v: &Value) -> Option<Fetched> {
    let Value::Array(parts) = v else { return None };
    let [tag, next, generation, revision, len, log @ ..] = parts.as_slice() else {
        return None;
    };
    if bytes_ref(tag) != Some(b"changes") {
        return None;
    }
    let mut events = log
        .iter()
        // Several entries at once (a large reap): only the table tells which.
        .map(|m| parse_event(bytes_ref(m)?).filter(|e| !matches!(e, Event::Changed { .. })))
        .collect::<Option<Vec<Event>>>()?;
    events.reverse();
    Some(Fetched::Changes {
        events,
        version: Version {
            generation: integer_or_zero(generation.clone()).ok()?,
            revision: integer_or_zero(revision.clone()).ok()?,
            entries: integer_or_zero(len.clone()).ok()?,
        },
        next_expiry: expiry(next),
    })
}

/// The reply of the read pipeline: generation, revision, length, the hash,
/// the metadata hash, the earliest lease (member and score), Redis's `TIME`. On a reply of the
/// wrong shape, returns the offending value.
pub(crate) fn parse_changed(v: Value) -> Result<Fetched, Value> {
    let Value::Array(parts) = v else {
        return Err(v);
    };
    let [generation, revision, len, fields, metas, earliest, time] =
        <[Value; 7]>::try_from(parts).map_err(Value::Array)?;
    let version = Version {
        // A registry that has not written its generation yet is generation 0.
        generation: integer_or_zero(generation)?,
        revision: integer_or_zero(revision)?,
        entries: integer_or_zero(len)?,
    };
    let now_ms = server_ms(&time).ok_or(time)?;
    let next_expiry = pairs(earliest)?
        .next()
        .and_then(|(_, score)| number(&score))
        .map(|expiry| Duration::from_millis((expiry - now_ms).max(0.0) as u64));
    // Metadata of fields that are gone (a Go gosd HDEL) is never read.
    let metas: std::collections::HashMap<String, String> = pairs(metas)?
        .filter_map(|(field, meta)| Some((text(field)?, text(meta)?)))
        .collect();
    let entries = pairs(fields)?
        .filter_map(|(field, url)| {
            let field = text(field)?;
            let meta = metas
                .get(&field)
                .map(|m| Meta::decode(m))
                .unwrap_or_default();
            Some(Entry {
                field,
                url: text(url)?,
                meta,
            })
        })
        .collect();
    Ok(Fetched::Changed(Snapshot {
        entries,
        version,
        next_expiry,
    }))
}

/// Redis's `TIME` reply (seconds, microseconds) in milliseconds.
pub(crate) fn server_ms(time: &Value) -> Option<f64> {
    match time {
        Value::Array(t) if t.len() == 2 => {
            Some(number(&t[0])? * 1000.0 + (number(&t[1])? / 1000.0).floor())
        }
        _ => None,
    }
}

/// `[ZRANGE leases WITHSCORES, TIME]` into time left per field; expired
/// leases (not reaped yet) are left out.
pub(crate) fn parse_leases(v: Value) -> Result<Vec<(String, Duration)>, Value> {
    let Value::Array(parts) = v else {
        return Err(v);
    };
    let [leases, time] = <[Value; 2]>::try_from(parts).map_err(Value::Array)?;
    let now_ms = server_ms(&time).ok_or(time)?;
    Ok(pairs(leases)?
        .filter_map(|(member, score)| {
            let left = number(&score)? - now_ms;
            let field = text(member)?;
            (left > 0.0).then(|| (field, Duration::from_millis(left as u64)))
        })
        .collect())
}

/// Parses `<gen> <rev> <len> put <field> <lease_ms> <url>`,
/// `<gen> <rev> <len> putm <field> <lease_ms> <meta> <url>`,
/// `<gen> <rev> <len> del <field>` or `<gen> <rev> <len> changed`. The URL
/// comes last so that it may contain spaces; the metadata has none.
pub(crate) fn parse_event(payload: &[u8]) -> Option<Event> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(5, ' ');
    let mut n = || parts.next()?.parse::<u64>().ok();
    let version = Version {
        generation: n()?,
        revision: n()?,
        entries: n()?,
    };
    let kind = parts.next()?;
    let rest = parts.next();
    let put = |field: &str, lease: &str, meta: Meta, url: &str| {
        Some(Event::Put {
            version,
            since: version.revision.checked_sub(1)?,
            entry: Entry {
                field: field.to_owned(),
                url: url.to_owned(),
                meta,
            },
            lease: Some(Duration::from_millis(lease.parse().ok()?)),
        })
    };
    let words =
        |n: usize| -> Vec<&str> { rest.map(|r| r.splitn(n, ' ').collect()).unwrap_or_default() };
    match kind {
        "put" => match words(3)[..] {
            [field, lease, url] => put(field, lease, Meta::default(), url),
            _ => None,
        },
        "putm" => match words(4)[..] {
            [field, lease, meta, url] => put(field, lease, Meta::decode(meta), url),
            _ => None,
        },
        _ => parse_removal(version, kind, rest),
    }
}

fn parse_removal(version: Version, kind: &str, rest: Option<&str>) -> Option<Event> {
    let mut words = rest.map(|r| r.split(' ')).into_iter().flatten();
    match (kind, words.next(), words.next(), words.next()) {
        ("del", Some(field), None, None) => Some(Event::Removed {
            version,
            since: version.revision.checked_sub(1)?,
            field: field.to_owned(),
        }),
        ("changed", None, None, None) => Some(Event::Changed { version }),
        _ => None,
    }
}

pub(crate) fn pairs(v: Value) -> Result<impl Iterator<Item = (Value, Value)>, Value> {
    let Value::Array(items) = v else {
        return Err(v);
    };
    let mut it = items.into_iter();
    Ok(std::iter::from_fn(move || Some((it.next()?, it.next()?))))
}

pub(crate) fn bytes_ref(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A reply as text, taking over its buffer: a refresh converts every field
/// and URL of the registry, and a copy of each was a fifth of its cost.
/// Bytes that are not UTF-8 are replaced, as `String::from_utf8_lossy` does.
pub(crate) fn text(v: Value) -> Option<String> {
    Some(
        String::from_utf8(bytes(v)?)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

pub(crate) fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

/// A counter as Redis returns it (integer or digits), `Nil` as 0. Parsed
/// as an integer, never through `f64`, which would round large values.
pub(crate) fn integer_or_zero(v: Value) -> Result<u64, Value> {
    let n = match &v {
        Value::Nil => Some(0),
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    };
    n.ok_or(v)
}

pub(crate) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        Value::Double(d) => Some(*d),
        _ => None,
    }
}
