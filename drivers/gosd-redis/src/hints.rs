//! Hints that turn a failure a setting explains (TLS, an ACL user's
//! permissions) into an error that says what to fix.

use std::fmt;

use redis::RedisError;

use crate::RedisOptions;

/// A failed connection with a hint on which setting to fix, when the
/// failure is one TLS settings explain.
#[derive(Debug)]
pub(crate) struct Explained {
    hint: String,
    source: RedisError,
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.hint, self.source)
    }
}

impl std::error::Error for Explained {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `e` as the source of an error, with a hint when the settings in
/// `options` (TLS, Sentinel) explain it.
pub(crate) fn explain(
    e: RedisError,
    options: &RedisOptions,
) -> Box<dyn std::error::Error + Send + Sync> {
    let hint = match &options.sentinel {
        Some(s) => crate::sentinel::hint(&e, &s.master),
        None => None,
    }
    .or_else(|| {
        options
            .cluster
            .as_ref()
            .and_then(|_| crate::cluster::hint(&e))
    })
    .or_else(|| hint(&e, options.is_tls()).map(str::to_owned));
    match hint {
        Some(hint) => Box::new(Explained { hint, source: e }),
        None => Box::new(e),
    }
}

fn hint(e: &RedisError, tls: bool) -> Option<&'static str> {
    let text = format!("{e:?} {e}");
    if !tls {
        // A TLS port answers plain text by resetting the connection; a
        // server that died closes it (or refuses the next one) instead.
        let reset = text.contains("ConnectionReset") || text.contains("reset by peer");
        return reset.then_some(
            "the server reset the connection: if this port speaks TLS, \
             use a rediss:// URL (GOSD_REDIS_URL)",
        );
    }
    let is = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if is(&["InvalidContentType", "corrupt message", "InvalidMessage"]) {
        Some(
            "the server does not speak TLS on this port: use redis://, or its TLS port (GOSD_REDIS_URL)",
        )
    } else if e.is_timeout() {
        // A plain-text port reads a TLS hello as the start of a command and
        // waits for the rest: a handshake that gets no answer.
        Some(
            "no answer in time; a port that does not speak TLS answers a TLS handshake with silence: if so, use redis:// (GOSD_REDIS_URL)",
        )
    } else if is(&[
        "UnknownIssuer",
        "BadSignature",
        "invalid peer certificate: Other",
    ]) {
        Some(
            "the server's certificate does not verify against the trusted CAs: set GOSD_REDIS_CA to the CA that signed it",
        )
    } else if is(&["NotValidForName", "certificate not valid for name"]) {
        Some("the server's certificate is not for the host in GOSD_REDIS_URL")
    } else if is(&["Expired", "NotValidYet"]) {
        Some("the server's certificate is outside its validity dates")
    } else if is(&["CertificateRequired", "HandshakeFailure"]) {
        Some("the server wants a client certificate: set GOSD_REDIS_CERT and GOSD_REDIS_KEY")
    } else if is(&[
        "BadCertificate",
        "UnknownCA",
        "DecryptError",
        "AccessDenied",
    ]) {
        Some(
            "the server refused the client certificate (GOSD_REDIS_CERT, GOSD_REDIS_KEY): is it signed by a CA the server trusts?",
        )
    } else {
        None
    }
}

/// A Redis error reply, with a hint when it is an ACL refusal: Redis
/// names the command, key or channel; the hint says where the rule is.
pub(crate) fn reply(e: &RedisError, options: &RedisOptions) -> String {
    let text = e.to_string();
    if let Some(hint) = options
        .sentinel
        .as_ref()
        .and_then(|s| crate::sentinel::hint(e, &s.master))
        .or_else(|| {
            options
                .cluster
                .as_ref()
                .and_then(|_| crate::cluster::hint(e))
        })
    {
        return format!("{hint} ({text})");
    }
    let refused = e.code() == Some("NOPERM")
        || ["no permissions", "can't publish", "can't access", "NOPERM"]
            .iter()
            .any(|w| text.contains(w));
    match refused {
        true => format!(
            "{text} (the Redis ACL user lacks a permission gosd needs: see the README's ACL rule, under In production)"
        ),
        false => text,
    }
}
