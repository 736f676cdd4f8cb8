//! [`TestServer`]: a throwaway `nats-server` with JetStream, for tests, benches
//! and local demos.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::NatsError;

/// How to install the server, for the error when it is missing.
pub const INSTALL_HINT: &str = "nats-server not found: install it with `apt-get install -y nats-server` \
(Debian/Ubuntu; or run .ci/install-deps.sh), or put a nats-server binary on PATH or in $NATS_SERVER";

/// How long [`TestServer::start`] waits for the server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`TestServer`] secures its port: TLS with a certificate (and
/// optionally client-certificate verification), and an `authorization` block
/// (a token, or users with passwords or nkeys). Written into the server's
/// configuration file.
///
/// A token and users cannot be combined (nats-server refuses to start:
/// [`NatsError::ServerExited`]).
///
/// # Examples
///
/// ```no_run
/// use weir_nats::{Nats, NatsOptions, TestServer, TestServerOptions};
///
/// let server = TestServer::start_with(
///     TestServerOptions::new()
///         .tls("server.pem", "server-key.pem")
///         .user("billing", "s3cret"),
/// )?;
/// let options = NatsOptions::new().ca_file("ca.pem").user_and_password("billing", "s3cret");
/// let nats = Nats::connect_with(&server.url(), options)?;
/// # Ok::<(), weir_nats::NatsError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct TestServerOptions {
    tls: Option<(PathBuf, PathBuf)>,
    verify_clients: Option<PathBuf>,
    token: Option<String>,
    users: Vec<(String, String)>,
    nkeys: Vec<String>,
    operator: Option<String>,
    accounts: Vec<(String, String)>,
    system_account: Option<String>,
}

impl TestServerOptions {
    /// Plain TCP, no authorization (what [`TestServer::start`] runs).
    pub fn new() -> Self {
        TestServerOptions::default()
    }

    /// Requires TLS, presenting this certificate (PEM) and key.
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some((cert.into(), key.into()));
        self
    }

    /// With [`tls`](Self::tls): requires a client certificate signed by the
    /// CAs in this PEM file (`verify: true`).
    pub fn verify_clients(mut self, ca: impl Into<PathBuf>) -> Self {
        self.verify_clients = Some(ca.into());
        self
    }

    /// Requires this token (`authorization { token }`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Admits this user with this password (`authorization { users }`).
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push((user.into(), password.into()));
        self
    }

    /// Admits the holder of this nkey (the user's public key, `U…`).
    pub fn nkey_user(mut self, public_key: impl Into<String>) -> Self {
        self.nkeys.push(public_key.into());
        self
    }

    /// Runs in operator (JWT) mode: trusts this operator JWT, and resolves
    /// accounts from the JWTs given with [`account`](Self::account) (a memory
    /// resolver). Clients then authenticate with user JWTs signed by an
    /// account, such as a credentials file
    /// ([`NatsOptions::credentials_file`](crate::NatsOptions::credentials_file)).
    pub fn operator(mut self, operator_jwt: impl Into<String>) -> Self {
        self.operator = Some(operator_jwt.into());
        self
    }

    /// With [`operator`](Self::operator): an account the server knows, by its
    /// public key (`A…`) and JWT.
    pub fn account(mut self, public_key: impl Into<String>, jwt: impl Into<String>) -> Self {
        self.accounts.push((public_key.into(), jwt.into()));
        self
    }

    /// With [`operator`](Self::operator): the system account (one of the
    /// [`account`](Self::account)s, by its public key), which JetStream needs
    /// in operator mode.
    pub fn system_account(mut self, public_key: impl Into<String>) -> Self {
        self.system_account = Some(public_key.into());
        self
    }

    /// The configuration file's text.
    fn config(&self, port: u16, dir: &std::path::Path) -> String {
        let q = |s: &str| format!("{s:?}");
        let path = |p: &PathBuf| q(&p.display().to_string());
        let mut conf = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {} }}\n",
            path(&dir.to_path_buf())
        );
        if let Some((cert, key)) = &self.tls {
            let _ = write!(
                conf,
                "tls {{\n  cert_file: {}\n  key_file: {}\n  timeout: 2\n",
                path(cert),
                path(key)
            );
            if let Some(ca) = &self.verify_clients {
                let _ = write!(conf, "  ca_file: {}\n  verify: true\n", path(ca));
            }
            conf.push_str("}\n");
        }
        if let Some(token) = &self.token {
            let _ = writeln!(conf, "authorization {{ token: {} }}", q(token));
        }
        if !self.users.is_empty() || !self.nkeys.is_empty() {
            conf.push_str("authorization {\n  users: [\n");
            for (user, password) in &self.users {
                let _ = writeln!(
                    conf,
                    "    {{ user: {}, password: {} }}",
                    q(user),
                    q(password)
                );
            }
            for nkey in &self.nkeys {
                let _ = writeln!(conf, "    {{ nkey: {} }}", q(nkey));
            }
            conf.push_str("  ]\n}\n");
        }
        if let Some(operator) = &self.operator {
            let _ = writeln!(conf, "operator: {}\nresolver: MEMORY", q(operator));
            conf.push_str("resolver_preload: {\n");
            for (key, jwt) in &self.accounts {
                let _ = writeln!(conf, "  {key}: {}", q(jwt));
            }
            conf.push_str("}\n");
            if let Some(system) = &self.system_account {
                let _ = writeln!(conf, "system_account: {}", q(system));
            }
        }
        conf
    }
}

/// A `nats-server -js` on loopback, on a free port, with its store in a fresh
/// temporary directory; killed (and the directory removed) when dropped.
///
/// The binary is `$NATS_SERVER` if set, else `nats-server` on `PATH`, else
/// `/usr/sbin/nats-server` (where Debian puts it).
///
/// # Examples
///
/// ```no_run
/// let server = weir_nats::TestServer::start()?;
/// let nats = weir_nats::Nats::connect(&server.url())?;
/// # Ok::<(), weir_nats::NatsError>(())
/// ```
#[derive(Debug)]
pub struct TestServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl TestServer {
    /// Starts the server and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// The binary is missing (the message says how to install it), or the server
    /// did not start within 10 s.
    pub fn start() -> Result<TestServer, NatsError> {
        TestServer::start_with(TestServerOptions::new())
    }

    /// Starts the server with TLS and authorization as `options` say (from a
    /// configuration file in its directory) and waits until it accepts
    /// connections.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start); a configuration nats-server refuses (a
    /// missing certificate file, a token with users) is
    /// [`NatsError::ServerExited`].
    pub fn start_with(options: TestServerOptions) -> Result<TestServer, NatsError> {
        let binary = find_binary().ok_or(NatsError::ServerMissing)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(NatsError::io("finding a free port"))?
            .port();
        let dir = std::env::temp_dir().join(format!("weir-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(NatsError::io(format!("creating {}", dir.display())))?;
        let config = dir.join("server.conf");
        std::fs::write(&config, options.config(port, &dir))
            .map_err(NatsError::io(format!("writing {}", config.display())))?;
        // The server logs to stderr: kept in its directory, and printed if it
        // exits while starting (a configuration it refuses).
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path)
            .map_err(NatsError::io(format!("creating {}", log_path.display())))?;
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(NatsError::io(format!("starting {}", binary.display())))?;
        let mut server = TestServer { child, port, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                eprintln!("nats-server exited at start ({status}); its log:\n{log}");
                return Err(NatsError::ServerExited(status));
            }
            if Instant::now() > deadline {
                return Err(NatsError::ServerTimeout(START_TIMEOUT));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// The URL to connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/sbin/nats-server");
        debian.is_file().then_some(debian)
    })
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
