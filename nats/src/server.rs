//! [`TestServer`]: a throwaway `nats-server` with JetStream, for tests, benches
//! and local demos.

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
        let binary = find_binary().ok_or(NatsError::ServerMissing)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(NatsError::io("finding a free port"))?
            .port();
        let dir = std::env::temp_dir().join(format!("weir-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(NatsError::io(format!("creating {}", dir.display())))?;
        let child = Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(NatsError::io(format!("starting {}", binary.display())))?;
        let mut server = TestServer { child, port, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
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
