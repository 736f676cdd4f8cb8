//! TLS and authentication against a real `nats-server` started with a TLS
//! certificate (generated here with rcgen, never committed) and an
//! `authorization` block, or in operator (JWT) mode for a credentials file: the
//! right credentials connect and a JetStream round trip works; a wrong token, a wrong password, an unknown nkey, a client
//! without the server's CA (the plaintext client of a TLS-required server), a
//! wrong CA, a missing client certificate and a missing credentials file are
//! each refused with an error naming the reason, logged at `warn` naming the
//! server and the reason (never the secret) and counted in
//! `weir_nats_connections_refused_total`. Certificates that do not parse, a key
//! that is not the client certificate's and missing files are named before
//! connecting. A test fails, never skips, when `nats-server` is missing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use weir_nats::{
    Bytes, ConsumerSettings, JetStreamSource, Nats, NatsError, NatsFlowExt, NatsOptions, Refusal,
    TestServer, TestServerOptions,
};
use weir_operators::FlowExt;
use weir_testkit::logs::{Level, Logs};

/// PEM files of a CA, a server certificate for 127.0.0.1 and a client
/// certificate, all signed by the CA, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            ),
            ("client", vec!["client".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(
                dir.path().join(format!("{name}-key.pem")),
                key.serialize_pem(),
            )
            .unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_tls(&self) -> TestServerOptions {
        TestServerOptions::new().tls(self.path("server.pem"), self.path("server-key.pem"))
    }

    /// Options trusting this CA.
    fn client(&self) -> NatsOptions {
        NatsOptions::new()
            .ca_file(self.path("ca.pem"))
            .connection_timeout(Duration::from_secs(3))
    }
}

fn start(options: TestServerOptions) -> TestServer {
    TestServer::start_with(options).unwrap_or_else(|e| panic!("{e}"))
}

/// Publishes three messages to a work queue and reads them back through a
/// JetStreamSource, each acknowledged.
fn round_trip(nats: &Nats, name: &str) {
    nats.work_queue(name, &[&format!("{name}.>")]).unwrap();
    let js = nats.jetstream().clone();
    let subject = format!("{name}.x");
    nats.block_on(async move {
        for p in ["a", "b", "c"] {
            js.publish(subject.clone(), Bytes::from(p))
                .await
                .unwrap()
                .await
                .unwrap();
        }
    })
    .unwrap();
    let consumer = nats
        .durable_consumer(name, &ConsumerSettings::new("w"))
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let rt = weir_runtime::Runtime::builder()
        .arbiters(1)
        .build()
        .unwrap();
    let done = JetStreamSource::new(nats.clone(), consumer)
        .end_after_idle(Duration::from_millis(300))
        .flow()
        .map(|d| d.map(|b| String::from_utf8(b.to_vec()).unwrap()))
        .commit(move |d| {
            log.lock().unwrap().push(d.payload.clone());
            async { Ok(()) }
        })
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(*seen.lock().unwrap(), ["a", "b", "c"]);
    assert_eq!(nats.ack_stats().acked, 3);
    nats.flush().unwrap();
}

fn refused(url: &str, options: NatsOptions) -> String {
    let error = Nats::connect_with(url, options).unwrap_err();
    assert!(matches!(error, NatsError::Connect { .. }), "{error:?}");
    error.to_string()
}

#[test]
fn token_over_tls_connects_and_a_wrong_or_missing_token_is_refused() {
    let pki = Pki::new();
    let server = start(pki.server_tls().token("s3cret-token"));
    let nats = Nats::connect_with(&server.url(), pki.client().token("s3cret-token")).unwrap();
    round_trip(&nats, "token");

    let error = refused(&server.url(), pki.client().token("guess"));
    assert!(error.contains("refused the credentials"), "{error}");
    assert!(error.contains("authorization violation"), "{error}");
    assert!(!error.contains("guess"), "{error}");
    let error = refused(&server.url(), pki.client());
    assert!(error.contains("refused the credentials"), "{error}");
}

#[test]
fn user_and_password_connect_and_a_wrong_password_is_refused() {
    let pki = Pki::new();
    let server = start(
        pki.server_tls()
            .user("billing", "correct horse")
            .user("audit", "battery staple"),
    );
    let nats = Nats::connect_with(
        &server.url(),
        pki.client().user_and_password("billing", "correct horse"),
    )
    .unwrap();
    round_trip(&nats, "users");
    let error = refused(
        &server.url(),
        pki.client().user_and_password("billing", "battery staple"),
    );
    assert!(error.contains("refused the credentials"), "{error}");
    let error = refused(
        &server.url(),
        pki.client().user_and_password("nobody", "correct horse"),
    );
    assert!(error.contains("refused the credentials"), "{error}");
}

#[test]
fn an_nkey_seed_connects_and_an_unknown_nkey_is_refused() {
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let server = start(TestServerOptions::new().nkey_user(user.public_key()));
    let options = NatsOptions::new().nkey_seed(user.seed().unwrap());
    let nats = Nats::connect_with(&server.url(), options).unwrap();
    round_trip(&nats, "nkey");
    let error = refused(
        &server.url(),
        NatsOptions::new().nkey_seed(stranger.seed().unwrap()),
    );
    assert!(error.contains("refused the credentials"), "{error}");
}

#[test]
fn a_tls_server_refuses_clients_that_cannot_verify_it() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = start(pki.server_tls());
    // The plaintext client: no CA given. The server requires TLS, the client
    // upgrades and cannot verify the certificate against the system's roots.
    let error = refused(
        &server.url(),
        NatsOptions::new().connection_timeout(Duration::from_secs(3)),
    );
    assert!(error.contains("TLS failed"), "{error}");
    // A CA that did not sign the server's certificate.
    let error = refused(&server.url(), other.client());
    assert!(error.contains("TLS failed"), "{error}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    // The right CA.
    let nats = Nats::connect_with(&server.url(), pki.client()).unwrap();
    round_trip(&nats, "tls");
}

#[test]
fn require_tls_refuses_a_plain_server() {
    let server = start(TestServerOptions::new());
    let error = refused(
        &server.url(),
        NatsOptions::new()
            .require_tls(true)
            .connection_timeout(Duration::from_secs(3)),
    );
    assert!(error.contains("TLS"), "{error}");
    // Without the requirement the same server is fine.
    Nats::connect_with(&server.url(), NatsOptions::new()).unwrap();
}

#[test]
fn mutual_tls_needs_a_client_certificate_signed_by_the_ca() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = start(pki.server_tls().verify_clients(pki.path("ca.pem")));
    let with_cert = |pki: &Pki, certs: &Pki| {
        pki.client()
            .client_cert(certs.path("client.pem"), certs.path("client-key.pem"))
    };
    let nats = Nats::connect_with(&server.url(), with_cert(&pki, &pki)).unwrap();
    round_trip(&nats, "mtls");
    // No client certificate, or one of another CA: the server refuses it.
    for options in [pki.client(), with_cert(&pki, &other)] {
        let error = refused(&server.url(), options);
        assert!(error.contains("TLS failed"), "{error}");
    }
}

/// A NATS JWT (v2): `claims` signed by `issuer`, about `subject`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("{name}{iat}"),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let payload = b64.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = b64.encode(issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

#[test]
fn a_credentials_file_connects_to_an_operator_mode_server() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "weir-test",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "billing",
        serde_json::json!({"limits": unlimited, "type": "account", "version": 2}),
    );
    let creds_for = |user: &nkeys::KeyPair, signer: &nkeys::KeyPair| {
        let user_jwt = jwt(
            signer,
            &user.public_key(),
            "worker",
            serde_json::json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2,
            }),
        );
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        )
    };
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    let server = start(
        TestServerOptions::new()
            .operator(operator_jwt)
            .account(account.public_key(), account_jwt)
            .account(system.public_key(), system_jwt)
            .system_account(system.public_key()),
    );
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("worker.creds");
    std::fs::write(&creds, creds_for(&user, &account)).unwrap();
    let nats = Nats::connect_with(&server.url(), NatsOptions::new().credentials_file(&creds))
        .unwrap_or_else(|e| panic!("{e}"));
    round_trip(&nats, "creds");

    // A user JWT signed by an account the server does not know: refused.
    let stranger = dir.path().join("stranger.creds");
    std::fs::write(&stranger, creds_for(&user, &nkeys::KeyPair::new_account())).unwrap();
    let error = refused(
        &server.url(),
        NatsOptions::new().credentials_file(&stranger),
    );
    assert!(error.contains("refused the credentials"), "{error}");
    // No credentials at all: refused.
    let error = refused(&server.url(), NatsOptions::new());
    assert!(error.contains("refused the credentials"), "{error}");
}

fn assert_names_file(error: &NatsError, path: &Path) {
    assert!(matches!(error, NatsError::File { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_missing_credentials_file_or_ca_file_is_named_before_connecting() {
    // No server is needed: the files are checked before connecting.
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("billing.creds");
    let error =
        Nats::connect_with("127.0.0.1:1", NatsOptions::new().credentials_file(&creds)).unwrap_err();
    assert_names_file(&error, &creds);
    assert!(error.to_string().contains("credentials"), "{error}");
    let ca = dir.path().join("ca.pem");
    let error = Nats::connect_with("127.0.0.1:1", NatsOptions::new().ca_file(&ca)).unwrap_err();
    assert_names_file(&error, &ca);
    std::fs::write(&creds, "-----BEGIN NATS USER JWT-----\nnot a jwt\n").unwrap();
    let error =
        Nats::connect_with("127.0.0.1:1", NatsOptions::new().credentials_file(&creds)).unwrap_err();
    assert_names_file(&error, &creds);
}

/// Connects to `url` with `options`, expecting a refusal for `reason`: the
/// error says so, the refusal is counted once (labels `url`, `reason`) and
/// logged at `warn` naming the server and the reason.
fn refused_and_counted(url: &str, options: NatsOptions, reason: Refusal) -> NatsError {
    let logs = Logs::capture();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let error =
        metrics::with_local_recorder(&recorder, || Nats::connect_with(url, options)).unwrap_err();
    assert_eq!(error.refusal(), Some(reason), "{error:?}");
    let counted: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, .., value)| {
            let labels: Vec<_> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (key.key().name().to_owned(), labels, value)
        })
        .collect();
    assert_eq!(
        counted,
        [(
            "weir_nats_connections_refused_total".to_owned(),
            vec![format!("url={url}"), format!("reason={}", reason.as_str())],
            DebugValue::Counter(1)
        )],
        "{error}"
    );
    let reason_field = format!("reason=\"{}\"", reason.as_str());
    assert!(
        logs.warned(&[
            "nats: connection refused",
            &format!("server={url} "),
            &reason_field
        ]),
        "{:?}",
        logs.events()
    );
    error
}

#[test]
fn refused_connections_are_counted_and_logged_without_the_secret() {
    let logs = Logs::capture();
    let pki = Pki::new();
    let server = start(pki.server_tls().token("s3cret-token"));
    let url = server.url();
    // Each refusal is the only event naming this server's port with its
    // reason: the tests beside this one use servers of their own.
    refused_and_counted(
        &url,
        pki.client().token("guessed-token"),
        Refusal::Credentials,
    );
    refused_and_counted(&url, pki.client(), Refusal::Credentials);
    // A client without the server's CA, and one with another CA.
    refused_and_counted(
        &url,
        NatsOptions::new().connection_timeout(Duration::from_secs(3)),
        Refusal::Tls,
    );
    refused_and_counted(&url, Pki::new().client(), Refusal::Tls);
    // Up to `debug`: async-nats traces its CONNECT message, token and
    // password included, at `trace` (docs/security.md says to keep its
    // target below that in production).
    for secret in ["s3cret-token", "guessed-token"] {
        assert!(
            !logs.shows_at(Level::DEBUG, secret),
            "{secret} logged: {:?}",
            logs.events()
        );
    }
    // The right token connects, and nothing more is counted.
    Nats::connect_with(&url, pki.client().token("s3cret-token")).unwrap();

    // A user and password in the URL are not shown by weir-nats either
    // (async-nats logs that URL whole at `debug`).
    let with_password = url.replace("nats://", "nats://billing:hunter2@");
    let error = Nats::connect_with(&with_password, pki.client()).unwrap_err();
    assert_eq!(error.refusal(), Some(Refusal::Credentials), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    let ours = logs.events();
    let ours: Vec<_> = ours
        .iter()
        .filter(|e| e.target.starts_with("weir"))
        .collect();
    assert!(
        !ours.iter().any(|e| e.fields.contains("hunter2")),
        "{ours:?}"
    );
    let redacted = url.replace("nats://", "nats://***@");
    assert!(
        logs.warned(&["nats: connection refused", &format!("server={redacted} ")]),
        "{:?}",
        logs.events()
    );
}

#[test]
fn an_unreachable_server_is_logged_but_not_counted_as_refused() {
    let logs = Logs::capture();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Port 1 on loopback: nothing listens.
    let error =
        metrics::with_local_recorder(&recorder, || Nats::connect("127.0.0.1:1")).unwrap_err();
    assert_eq!(error.refusal(), None, "{error:?}");
    assert!(snapshotter.snapshot().into_vec().is_empty());
    assert!(
        logs.warned(&["nats: cannot connect", "server=127.0.0.1:1 "]),
        "{:?}",
        logs.events()
    );
}

#[test]
fn bad_certificates_and_keys_and_missing_files_are_named_before_connecting() {
    // No server: every file is checked before connecting.
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    // Valid PEM and base64, not X.509.
    let not_x509 = write(
        "not-x509.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    );
    let no_key = write("no-key.pem", "nothing here\n");
    let missing = dir.path().join("missing.pem");
    let connect = |options: NatsOptions| Nats::connect_with("127.0.0.1:1", options).unwrap_err();
    let file = |error: &NatsError| match error {
        NatsError::File { what, path, .. } => (*what, path.clone()),
        other => panic!("not a file error: {other:?}"),
    };
    let shown = |p: &Path| p.display().to_string();

    let error = connect(NatsOptions::new().ca_file(&not_x509));
    assert_eq!(file(&error), ("CA certificates", shown(&not_x509)));
    assert!(error.to_string().contains("does not parse"), "{error}");

    let client = pki.path("client.pem");
    let client_key = pki.path("client-key.pem");
    let error = connect(NatsOptions::new().client_cert(&not_x509, &client_key));
    assert_eq!(file(&error), ("client certificate", shown(&not_x509)));
    assert!(error.to_string().contains("does not parse"), "{error}");

    // The server's key is not the client certificate's.
    let error = connect(NatsOptions::new().client_cert(&client, pki.path("server-key.pem")));
    assert_eq!(
        file(&error),
        ("client key", shown(&pki.path("server-key.pem")))
    );
    assert!(
        error
            .to_string()
            .contains("not the key of the client certificate")
            && error.to_string().contains(&shown(&client)),
        "{error}"
    );

    let error = connect(NatsOptions::new().client_cert(&client, &no_key));
    assert_eq!(file(&error), ("client key", shown(&no_key)));
    assert!(error.to_string().contains("no private key"), "{error}");

    for (options, what) in [
        (NatsOptions::new().ca_file(&missing), "CA certificates"),
        (
            NatsOptions::new().client_cert(&missing, &client_key),
            "client certificate",
        ),
        (
            NatsOptions::new().client_cert(&client, &missing),
            "client key",
        ),
        (NatsOptions::new().credentials_file(&missing), "credentials"),
    ] {
        let error = connect(options);
        assert_eq!(file(&error), (what, shown(&missing)));
        let source = std::error::Error::source(&error).expect("the I/O error");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
    }

    // The right files pass the check (nothing listens on port 1).
    let error = connect(
        pki.client()
            .client_cert(&client, &client_key)
            .connection_timeout(Duration::from_secs(1)),
    );
    assert!(matches!(error, NatsError::Connect { .. }), "{error:?}");
}
