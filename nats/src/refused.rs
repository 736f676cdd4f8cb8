//! What a failed connection leaves behind besides its [`NatsError`]: a warning
//! naming the server and the reason, and for a refusal one more in the counter
//! `weir_nats_connections_refused_total`.

use std::sync::Arc;

use weir_runtime::observe::Tally;

use crate::NatsError;

/// The error of a connection to `url` that failed with `source`, logged and,
/// when the server refused it, counted (labels `url`, `reason`). Neither the
/// log nor the counter carries a secret: the options' token, password and
/// seed are never in the client's error, and a user and password in the URL
/// are replaced by `***`.
pub(crate) fn failed(url: String, source: async_nats::ConnectError) -> NatsError {
    let server = redacted(&url);
    let source = Arc::new(source);
    let error = NatsError::Connect {
        url,
        source: Arc::clone(&source),
    };
    match error.refusal() {
        Some(refusal) => {
            let labels = [
                ("url", server.clone()),
                ("reason", refusal.as_str().to_owned()),
            ];
            let _ = Tally::new("weir_nats_connections_refused_total", &labels).add(1);
            tracing::warn!(
                %server,
                reason = refusal.as_str(),
                error = %source,
                "nats: connection refused"
            );
        }
        None => tracing::warn!(%server, error = %source, "nats: cannot connect"),
    }
    error
}

/// `url` without the user and password it may carry (`nats://user:pass@host`
/// → `nats://***@host`), for logs, errors and metric labels; each server of a
/// comma-separated list alike.
pub(crate) fn redacted(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let start = server.find("://").map_or(0, |i| i + 3);
            let authority = &server[start..];
            let end = authority.find('/').unwrap_or(authority.len());
            match authority[..end].rfind('@') {
                Some(at) => format!("{}***{}", &server[..start], &authority[at..]),
                None => server.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn user_and_password_in_a_url_are_not_shown() {
        assert_eq!(redacted("127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(
            redacted("tls://nats.internal:4222"),
            "tls://nats.internal:4222"
        );
        assert_eq!(
            redacted("nats://billing:s3cret@nats.internal:4222"),
            "nats://***@nats.internal:4222"
        );
        assert_eq!(redacted("s3cret-token@10.0.0.1:4222"), "***@10.0.0.1:4222");
        assert_eq!(
            redacted("nats://a:b@h1:4222,nats://h2:4222"),
            "nats://***@h1:4222,nats://h2:4222"
        );
    }
}
