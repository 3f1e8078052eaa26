//! TLS material is validated before use, reloaded without a restart (a
//! Secret volume's symlink swap included), refuses bad client certificates,
//! and a CA rotates in three overlapping steps with no failed handshake.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cairn_tls::authority::{Authority, CertRequest, Issued, write_file};
use cairn_tls::{Alpn, NodeIdentity, TlsContext, TlsError, TlsMetrics, TlsPaths};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower_service::Service;

fn node_req(id: u64) -> CertRequest {
    CertRequest::node(
        &NodeIdentity {
            cluster: "test".into(),
            node_id: id,
        },
        &["127.0.0.1".into(), "localhost".into()],
        30,
    )
}

fn paths(dir: &Path, name: &str) -> TlsPaths {
    TlsPaths {
        ca: dir.join("ca.pem"),
        cert: Some(dir.join(format!("{name}.pem"))),
        key: Some(dir.join(format!("{name}.key"))),
        crl: None,
    }
}

fn write(dir: &Path, ca_pem: &str, name: &str, issued: &Issued) -> TlsPaths {
    std::fs::create_dir_all(dir).unwrap();
    write_file(&dir.join("ca.pem"), ca_pem.as_bytes(), 0o644).unwrap();
    write_file(
        &dir.join(format!("{name}.pem")),
        issued.cert_pem.as_bytes(),
        0o644,
    )
    .unwrap();
    write_file(
        &dir.join(format!("{name}.key")),
        issued.key_pem.as_bytes(),
        0o600,
    )
    .unwrap();
    paths(dir, name)
}

fn ctx(p: &TlsPaths) -> Arc<TlsContext> {
    TlsContext::load(p.clone(), TlsMetrics::new().unwrap()).unwrap()
}

/// A TLS echo server on 127.0.0.1; returns its address. Each connection
/// echoes what it reads, prefixed by nothing.
async fn echo_server(server: &Arc<TlsContext>) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let mut incoming = server.incoming(l, Alpn::H2);
    tokio::spawn(async move {
        while let Some(mut conn) = incoming.next().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Connects with `client`'s connector; returns the stream and the serial
/// of the certificate the server presented.
async fn dial(
    client: &Arc<TlsContext>,
    addr: std::net::SocketAddr,
) -> Result<
    (
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        String,
    ),
    String,
> {
    let uri: http::Uri = format!("http://{addr}").parse().unwrap();
    let io = client
        .connector()
        .call(uri)
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = io.into_inner();
    ping(&mut stream).await?;
    let serial = {
        let (_, conn) = stream.get_ref();
        let leaf = conn.peer_certificates().unwrap()[0].clone();
        use x509_parser::prelude::FromDer;
        let (_, c) = x509_parser::prelude::X509Certificate::from_der(leaf.as_ref()).unwrap();
        c.raw_serial_as_string()
    };
    Ok((stream, serial))
}

/// A client presenting `issued` whatever its validity, trusting `ca_pem`.
async fn dial_raw(ca_pem: &str, issued: &Issued, addr: std::net::SocketAddr) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(cairn_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    ping(&mut stream).await?;
    Ok(())
}

/// One round trip through the echo server. A refused client certificate
/// surfaces here, on the first read (TLS 1.3), not in the handshake.
async fn ping(stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin)) -> Result<(), String> {
    stream.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn hex(serial: u64) -> String {
    // x509-parser prints the serial's DER bytes as colon-separated hex.
    let bytes = serial.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    let mut v = bytes[first..].to_vec();
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    v.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn invalid_material_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("test CA").unwrap();
    let other = Authority::new("other CA").unwrap();
    let metrics = || TlsMetrics::new().unwrap();

    let load = |name: &str, ca_pem: &str, issued: &Issued| {
        TlsContext::load(
            write(&dir.path().join(name), ca_pem, "n", issued),
            metrics(),
        )
    };
    let refusal = |name: &str, req: &CertRequest| {
        load(name, ca.ca_pem(), &ca.issue(req).unwrap()).unwrap_err()
    };
    let mut expired = node_req(1);
    expired.not_before = SystemTime::now() - Duration::from_secs(10 * 86_400);
    expired.not_after = SystemTime::now() - Duration::from_secs(86_400);
    assert!(matches!(
        refusal("expired", &expired),
        TlsError::Expired { .. }
    ));
    let mut future = node_req(1);
    future.not_before = SystemTime::now() + Duration::from_secs(86_400);
    assert!(matches!(
        refusal("future", &future),
        TlsError::NotYetValid { .. }
    ));

    let e = load("wrong-ca", ca.ca_pem(), &other.issue(&node_req(1)).unwrap()).unwrap_err();
    assert!(matches!(e, TlsError::Chain { .. }), "{e}");

    let a = ca.issue(&node_req(1)).unwrap();
    let b = ca.issue(&node_req(1)).unwrap();
    let mixed = Issued {
        cert_pem: a.cert_pem,
        key_pem: b.key_pem,
        serial: a.serial,
    };
    let e = load("mismatch", ca.ca_pem(), &mixed).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("n.key"), "{e}");

    let e = load("empty", "", &ca.issue(&node_req(1)).unwrap()).unwrap_err();
    assert!(e.to_string().contains("ca.pem"), "{e}");

    // A good one loads and names the node.
    let c = load("good", ca.ca_pem(), &ca.issue(&node_req(3)).unwrap()).unwrap();
    let id = c.bundle().identity.unwrap().node().unwrap();
    assert_eq!(id.node_id, 3);
    assert_eq!(id.cluster, "test");
}

#[tokio::test]
async fn bad_client_certificates_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("test CA").unwrap();
    let other = Authority::new("other CA").unwrap();
    let server_issued = ca.issue(&node_req(1)).unwrap();
    let server_paths = write(&dir.path().join("server"), ca.ca_pem(), "n", &server_issued);
    let revoked = ca.issue(&CertRequest::client("revoked", None, 30)).unwrap();
    let crl = dir.path().join("server/crl.pem");
    write_file(&crl, ca.crl(&[revoked.serial]).unwrap().as_bytes(), 0o644).unwrap();
    let server = ctx(&TlsPaths {
        crl: Some(crl),
        ..server_paths
    });
    let addr = echo_server(&server).await;

    // A client of the same CA, with and without a certificate, gets in.
    let good = ctx(&write(
        &dir.path().join("good"),
        ca.ca_pem(),
        "c",
        &ca.issue(&CertRequest::client("app", Some("spiffe://app"), 30))
            .unwrap(),
    ));
    assert_eq!(
        dial(&good, addr).await.unwrap().1,
        hex(server_issued.serial)
    );
    let anonymous = ctx(&TlsPaths {
        ca: dir.path().join("good/ca.pem"),
        cert: None,
        key: None,
        crl: None,
    });
    dial(&anonymous, addr).await.unwrap();

    // The client side refuses a server of another CA.
    let stranger = ctx(&TlsPaths {
        ca: {
            let p = dir.path().join("other-ca.pem");
            write_file(&p, other.ca_pem().as_bytes(), 0o644).unwrap();
            p
        },
        cert: None,
        key: None,
        crl: None,
    });
    let e = dial(&stranger, addr).await.unwrap_err();
    assert!(e.contains("UnknownIssuer") || e.contains("unknown"), "{e}");

    // Server side: certificates of another CA, expired, not yet valid,
    // revoked. (The loader refuses the first three for a process's own use,
    // so the test builds these clients by hand, as an attacker would.)
    let ca_pem = ca.ca_pem().to_owned();
    let refused = |issued: Issued| {
        let ca_pem = ca_pem.clone();
        async move { dial_raw(&ca_pem, &issued, addr).await }
    };
    assert!(
        refused(other.issue(&CertRequest::client("x", None, 30)).unwrap())
            .await
            .is_err()
    );
    let mut expired = CertRequest::client("x", None, 30);
    expired.not_before = SystemTime::now() - Duration::from_secs(10 * 86_400);
    expired.not_after = SystemTime::now() - Duration::from_secs(86_400);
    assert!(refused(ca.issue(&expired).unwrap()).await.is_err());
    let mut future = CertRequest::client("x", None, 30);
    future.not_before = SystemTime::now() + Duration::from_secs(86_400);
    assert!(refused(ca.issue(&future).unwrap()).await.is_err());
    assert!(refused(revoked).await.is_err());
    // The same hand-built client with a good certificate gets in.
    refused(ca.issue(&CertRequest::client("x", None, 30)).unwrap())
        .await
        .unwrap();
    let m = server.metrics();
    poll(|| m.handshake_failures("grpc", "unknown_ca") >= 1).await;
    poll(|| m.handshake_failures("grpc", "revoked") >= 1).await;
    poll(|| m.handshake_failures("grpc", "expired") >= 1).await;
    poll(|| m.handshake_failures("grpc", "not_yet_valid") >= 1).await;

    // A plaintext client is refused too.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let _ = tcp.read(&mut buf).await;
    poll(|| m.handshake_failures("grpc", "protocol") >= 1).await;
}

async fn poll(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lays out `dir` as the kubelet does a Secret volume: the files are
/// symlinks into `..data`, itself a symlink to a timestamped directory.
fn secret_volume(dir: &Path, version: &str, ca_pem: &str, issued: &Issued) {
    let data = dir.join(version);
    write(&data, ca_pem, "tls", issued);
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["ca.pem", "tls.pem", "tls.key"] {
        let link = dir.join(f);
        if !link.exists() {
            std::os::unix::fs::symlink(PathBuf::from("..data").join(f), &link).unwrap();
        }
    }
}

#[tokio::test]
async fn a_symlink_swapped_certificate_is_served_without_restart_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("secret");
    let ca = Authority::new("test CA").unwrap();
    let first = ca.issue(&node_req(1)).unwrap();
    secret_volume(&vol, "..v1", ca.ca_pem(), &first);
    let server = ctx(&paths(&vol, "tls"));
    let stop = Arc::new(tokio::sync::Notify::new());
    let s = stop.clone();
    let watcher =
        server.spawn_watcher(Duration::from_millis(50), async move { s.notified().await });
    let addr = echo_server(&server).await;
    let client = ctx(&TlsPaths {
        ca: vol.join("ca.pem"),
        cert: None,
        key: None,
        crl: None,
    });
    let (mut open, serial) = dial(&client, addr).await.unwrap();
    assert_eq!(serial, hex(first.serial));

    let second = ca.issue(&node_req(1)).unwrap();
    secret_volume(&vol, "..v2", ca.ca_pem(), &second);
    let m = server.metrics().clone();
    poll(|| m.reloads("success") >= 1).await;
    assert_eq!(dial(&client, addr).await.unwrap().1, hex(second.serial));
    // The connection opened before the swap still works.
    open.write_all(b"more").await.unwrap();
    let mut buf = [0u8; 4];
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"more");

    // A broken update (key of another certificate) is refused; the second
    // certificate stays in use.
    let third = ca.issue(&node_req(1)).unwrap();
    let broken = Issued {
        cert_pem: third.cert_pem,
        key_pem: first.key_pem,
        serial: third.serial,
    };
    secret_volume(&vol, "..v3", ca.ca_pem(), &broken);
    poll(|| m.reloads("failure") >= 1).await;
    assert_eq!(dial(&client, addr).await.unwrap().1, hex(second.serial));
    assert_eq!(server.bundle().serial, Some(hex(second.serial)));
    stop.notify_one();
    watcher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotates_in_three_steps_with_no_failed_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let old = Authority::new("old CA").unwrap();
    let new = Authority::new("new CA").unwrap();
    let server_dir = dir.path().join("server");
    let client_dir = dir.path().join("client");
    let server_paths = write(
        &server_dir,
        old.ca_pem(),
        "n",
        &old.issue(&node_req(1)).unwrap(),
    );
    let client_paths = write(
        &client_dir,
        old.ca_pem(),
        "c",
        &old.issue(&CertRequest::client("app", None, 30)).unwrap(),
    );
    let server = ctx(&server_paths);
    let client = ctx(&client_paths);
    let addr = echo_server(&server).await;

    let running = Arc::new(AtomicBool::new(true));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = {
        let (running, ok, failed, client) =
            (running.clone(), ok.clone(), failed.clone(), client.clone());
        tokio::spawn(async move {
            while running.load(Ordering::SeqCst) {
                match dial(&client, addr).await {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        failed.lock().unwrap().push(e);
                        0
                    }
                };
            }
        })
    };
    let both = format!("{}{}", old.ca_pem(), new.ca_pem());
    let step = |f: &dyn Fn()| {
        f();
        assert_eq!(server.reload().unwrap(), cairn_tls::ReloadOutcome::Reloaded);
        assert_eq!(client.reload().unwrap(), cairn_tls::ReloadOutcome::Reloaded);
    };
    let settle = || async {
        let seen = ok.load(Ordering::SeqCst);
        poll(|| ok.load(Ordering::SeqCst) >= seen + 20).await;
    };
    settle().await;
    // 1. Both sides trust old and new.
    step(&|| {
        write_file(&server_dir.join("ca.pem"), both.as_bytes(), 0o644).unwrap();
        write_file(&client_dir.join("ca.pem"), both.as_bytes(), 0o644).unwrap();
    });
    settle().await;
    // 2. Both re-issued by the new CA.
    step(&|| {
        let s = new.issue(&node_req(1)).unwrap();
        write_file(&server_dir.join("n.pem"), s.cert_pem.as_bytes(), 0o644).unwrap();
        write_file(&server_dir.join("n.key"), s.key_pem.as_bytes(), 0o600).unwrap();
        let c = new.issue(&CertRequest::client("app", None, 30)).unwrap();
        write_file(&client_dir.join("c.pem"), c.cert_pem.as_bytes(), 0o644).unwrap();
        write_file(&client_dir.join("c.key"), c.key_pem.as_bytes(), 0o600).unwrap();
    });
    settle().await;
    // 3. The old CA is dropped.
    step(&|| {
        write_file(&server_dir.join("ca.pem"), new.ca_pem().as_bytes(), 0o644).unwrap();
        write_file(&client_dir.join("ca.pem"), new.ca_pem().as_bytes(), 0o644).unwrap();
    });
    settle().await;
    running.store(false, Ordering::SeqCst);
    load.await.unwrap();
    assert_eq!(server.bundle().ca_count, 1);
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} handshakes failed during the rotation: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok.load(Ordering::SeqCst) >= 80);
}
