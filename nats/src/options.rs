//! [`NatsOptions`]: how [`Nats::connect_with`](crate::Nats::connect_with)
//! secures and authenticates its connection (TLS, token, user and password,
//! nkey, credentials file).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weir_net::tls::{Pem, TlsError, check_ca, check_identity};

use crate::NatsError;

/// How the client proves who it is to the server.
#[derive(Clone, Default, PartialEq, Eq)]
enum Auth {
    #[default]
    None,
    Token(String),
    UserPassword(String, String),
    NKey(String),
    Credentials(PathBuf),
}

/// The security options of a NATS connection: TLS (trusted CA, client
/// certificate, TLS required) and one way to authenticate (token, user and
/// password, nkey seed, or a credentials file with a user JWT and its seed).
///
/// Files are read and checked by [`Nats::connect_with`](crate::Nats::connect_with)
/// before it connects, with the checks of weir-net's TLS configurations
/// ([`weir_net::tls::check_ca`], [`weir_net::tls::check_identity`]): a
/// missing or unreadable file, PEM or a certificate that does not parse as
/// X.509, a client key that is not the client certificate's, a credentials
/// file that does not parse is a [`NatsError::File`] naming the file and the
/// reason. Secrets are never printed (`Debug` shows `***`).
///
/// A server that requires TLS is always spoken to over TLS (the client
/// upgrades when the server's `INFO` says so), verifying its certificate
/// against [`ca_file`](Self::ca_file) if given, else the system's roots;
/// [`require_tls`](Self::require_tls) makes the client refuse a server that
/// does not offer TLS.
///
/// # Examples
///
/// ```no_run
/// use weir_nats::{Nats, NatsOptions};
///
/// let options = NatsOptions::new()
///     .require_tls(true)
///     .ca_file("/etc/weir/nats-ca.pem")
///     .client_cert("/etc/weir/client.pem", "/etc/weir/client-key.pem")
///     .credentials_file("/etc/weir/billing.creds");
/// let nats = Nats::connect_with("tls://nats.internal:4222", options)?;
/// # Ok::<(), weir_nats::NatsError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct NatsOptions {
    require_tls: bool,
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    auth: Auth,
    connection_timeout: Option<Duration>,
}

impl NatsOptions {
    /// No TLS requirement, no CA beyond the system's, no authentication, the
    /// client's default connection timeout (5 s).
    pub fn new() -> Self {
        NatsOptions::default()
    }

    /// Refuses to connect unless the connection is TLS (also implied by a
    /// `tls://` URL).
    pub fn require_tls(mut self, required: bool) -> Self {
        self.require_tls = required;
        self
    }

    /// Verifies the server's certificate against the CA certificates in this
    /// PEM file (instead of the system's roots). One file; a later call
    /// replaces it.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents this client certificate (PEM) and key, for a server whose
    /// `tls` block sets `verify: true`.
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Authenticates with a token (the server's `authorization { token }`).
    /// Replaces any other authentication set before.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Token(token.into());
        self
    }

    /// Authenticates with a user and password. Replaces any other
    /// authentication set before.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.auth = Auth::UserPassword(user.into(), password.into());
        self
    }

    /// Authenticates with an nkey: the user's seed (`SU…`) signs the server's
    /// nonce; the server knows only the public key. Replaces any other
    /// authentication set before.
    pub fn nkey_seed(mut self, seed: impl Into<String>) -> Self {
        self.auth = Auth::NKey(seed.into());
        self
    }

    /// Authenticates with a credentials file (`.creds`: a user JWT and its
    /// nkey seed, as `nsc` writes them), for servers in operator (JWT) mode.
    /// Replaces any other authentication set before.
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth = Auth::Credentials(path.into());
        self
    }

    /// How long connecting (TCP, TLS and the server's answer) may take.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = Some(timeout);
        self
    }

    /// Reads and checks the files, and makes the client's options.
    pub(crate) fn to_connect_options(&self) -> Result<async_nats::ConnectOptions, NatsError> {
        let mut options = async_nats::ConnectOptions::new().require_tls(self.require_tls);
        if let Some(timeout) = self.connection_timeout {
            options = options.connection_timeout(timeout);
        }
        // The files are checked by weir-net's TLS code, the one its own
        // connectors and the HTTP servers build with, and handed to async-nats
        // by path: it reads them again when it connects.
        if let Some(ca) = &self.ca_file {
            check_ca(&Pem::file(ca)).map_err(|error| tls_file(error, "CA certificates", ca))?;
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            check_identity(&Pem::file(cert), &Pem::file(key)).map_err(|error| {
                let (what, path) = match &error {
                    TlsError::Read { what, .. }
                    | TlsError::Parse { what, .. }
                    | TlsError::Missing { what, .. }
                        if *what == "private key" =>
                    {
                        ("client key", key)
                    }
                    TlsError::KeyMismatch { .. } => ("client key", key),
                    _ => ("client certificate", cert),
                };
                tls_file(error, what, path)
            })?;
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        options = match &self.auth {
            Auth::None => options,
            Auth::Token(token) => options.token(token.clone()),
            Auth::UserPassword(user, password) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Auth::NKey(seed) => {
                // Checked here, so that a bad seed is not a failed handshake;
                // the seed itself is never part of the error.
                nkeys::KeyPair::from_seed(seed).map_err(|error| {
                    NatsError::InvalidOptions(format!("the nkey seed is not valid: {error}"))
                })?;
                options.nkey(seed.clone())
            }
            Auth::Credentials(path) => {
                let creds = read("credentials", path)?;
                options
                    .credentials(&creds)
                    .map_err(|error| invalid("credentials", path, error.to_string()))?
            }
        };
        Ok(options)
    }
}

fn read(what: &'static str, path: &Path) -> Result<String, NatsError> {
    std::fs::read_to_string(path).map_err(|source| NatsError::File {
        what,
        path: path.display().to_string(),
        reason: source.to_string(),
        source: Some(Arc::new(source)),
    })
}

fn invalid(what: &'static str, path: &Path, reason: String) -> NatsError {
    NatsError::File {
        what,
        path: path.display().to_string(),
        reason,
        source: None,
    }
}

/// The [`NatsError::File`] of a file weir-net's TLS check refused: `what` it
/// was to hold, in the options' words, and weir-net's reason.
fn tls_file(error: TlsError, what: &'static str, path: &Path) -> NatsError {
    let reason = match &error {
        TlsError::Read { source, .. } => {
            return NatsError::File {
                what,
                path: path.display().to_string(),
                reason: source.to_string(),
                source: Some(Arc::clone(source)),
            };
        }
        TlsError::Parse { reason, .. } => format!("does not parse: {reason}"),
        TlsError::Missing { what, .. } => format!("no {what} in it"),
        TlsError::KeyMismatch { cert, reason, .. } => {
            format!("not the key of the client certificate {cert}: {reason}")
        }
        other => other.to_string(),
    };
    invalid(what, path, reason)
}

impl fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none".to_owned(),
            Auth::Token(_) => "token ***".to_owned(),
            Auth::UserPassword(user, _) => format!("user {user:?}, password ***"),
            Auth::NKey(_) => "nkey seed ***".to_owned(),
            Auth::Credentials(path) => format!("credentials file {}", path.display()),
        };
        f.debug_struct("NatsOptions")
            .field("require_tls", &self.require_tls)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("auth", &auth)
            .field("connection_timeout", &self.connection_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_printed() {
        let options = NatsOptions::new()
            .user_and_password("billing", "hunter2")
            .connection_timeout(Duration::from_secs(1));
        let printed = format!("{options:?}");
        assert!(
            printed.contains("billing") && !printed.contains("hunter2"),
            "{printed}"
        );
        let printed = format!("{:?}", NatsOptions::new().token("s3cret"));
        assert!(!printed.contains("s3cret"), "{printed}");
        let printed = format!("{:?}", NatsOptions::new().nkey_seed("SUAseed"));
        assert!(!printed.contains("SUAseed"), "{printed}");
    }

    #[test]
    fn bad_files_and_seeds_are_named_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("billing.creds");
        let err = NatsOptions::new()
            .credentials_file(&missing)
            .to_connect_options()
            .unwrap_err();
        assert!(
            matches!(
                err,
                NatsError::File {
                    what: "credentials",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("billing.creds"), "{err}");
        assert!(std::error::Error::source(&err).is_some());

        let garbage = dir.path().join("garbage.creds");
        std::fs::write(&garbage, "not a credentials file").unwrap();
        let err = NatsOptions::new()
            .credentials_file(&garbage)
            .to_connect_options()
            .unwrap_err();
        assert!(err.to_string().contains("garbage.creds"), "{err}");

        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let err = NatsOptions::new()
            .ca_file(&not_pem)
            .to_connect_options()
            .unwrap_err();
        assert!(
            err.to_string().contains("ca.pem") && err.to_string().contains("CA certificates"),
            "{err}"
        );
        let err = NatsOptions::new()
            .client_cert(dir.path().join("nope.pem"), &not_pem)
            .to_connect_options()
            .unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");

        let err = NatsOptions::new()
            .nkey_seed("SUNOTASEED")
            .to_connect_options()
            .unwrap_err();
        assert!(matches!(err, NatsError::InvalidOptions(_)), "{err:?}");
        assert!(!err.to_string().contains("SUNOTASEED"), "{err}");
    }
}
