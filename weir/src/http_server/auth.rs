//! The bearer token a server may require: one check for every server (the
//! console, the SSE endpoint, the HTTP ingest source, the WebSocket servers),
//! compared in constant time, each refusal logged.

use std::net::SocketAddr;

use hyper::Request;
use hyper::header::AUTHORIZATION;

/// Whether `req` may be served under `token` (`None`: every request may).
///
/// The token is taken from `Authorization: Bearer <token>` or, when `query`
/// names a parameter, from `?<query>=<token>` as sent (not percent-decoded):
/// browsers cannot set headers on an `EventSource` or a WebSocket (RFC 6750
/// section 2.3). Either carrying the token admits the request. A refusal is
/// logged at `warn` with `server`, the peer and the path (never the token); the
/// caller counts it and answers `401`.
pub(crate) fn admits<B>(
    req: &Request<B>,
    token: Option<&str>,
    query: Option<&str>,
    server: &'static str,
    peer: Option<SocketAddr>,
) -> bool {
    let Some(token) = token else {
        return true;
    };
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let in_query = query.and_then(|name| {
        req.uri().query().and_then(|q| {
            q.split('&').find_map(|pair| {
                pair.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('='))
            })
        })
    });
    let admitted = [header, in_query]
        .into_iter()
        .flatten()
        .any(|given| same(given.as_bytes(), token.as_bytes()));
    if !admitted {
        let reason = if header.is_none() && in_query.is_none() {
            "no bearer token"
        } else {
            "wrong bearer token"
        };
        tracing::warn!(
            server,
            peer = ?peer,
            path = req.uri().path(),
            reason,
            "request refused (401)"
        );
    }
    admitted
}

/// Compares two tokens in time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::{admits, same};

    fn request(uri: &str, authorization: Option<&str>) -> hyper::Request<()> {
        let mut req = hyper::Request::builder().uri(uri);
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        req.body(()).unwrap()
    }

    fn check(uri: &str, authorization: Option<&str>, query: Option<&str>) -> bool {
        admits(
            &request(uri, authorization),
            Some("s3cret"),
            query,
            "test",
            None,
        )
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn no_token_set_admits_everything() {
        assert!(admits(&request("/", None), None, None, "test", None));
    }

    #[test]
    fn the_header_carries_the_token() {
        assert!(check("/", Some("Bearer s3cret"), None));
        assert!(check("/", Some("Bearer  s3cret "), None));
        assert!(!check("/", Some("Bearer s3cre7"), None));
        assert!(!check("/", Some("Basic s3cret"), None));
        assert!(!check("/", None, None));
    }

    #[test]
    fn the_query_carries_it_only_where_named() {
        assert!(check("/?x=1&token=s3cret", None, Some("token")));
        assert!(!check("/?token=s3cret", None, None));
        assert!(!check("/?mytoken=s3cret", None, Some("token")));
        assert!(!check("/?token=s3cret2", None, Some("token")));
        // A wrong header does not hide a right query parameter, nor the reverse.
        assert!(check("/?token=s3cret", Some("Bearer no"), Some("token")));
        assert!(check("/?token=no", Some("Bearer s3cret"), Some("token")));
    }
}
