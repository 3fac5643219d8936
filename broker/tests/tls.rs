//! amqps: moss connects to RabbitMQ over TLS, trusting a private CA named by
//! `MOSS_AMQP_CA_FILE` (here `moss_broker::trust_amqp_ca_pem`). The shared RabbitMQ is not
//! reconfigured: the test makes a CA and a server certificate for `localhost`, and puts a
//! TLS-terminating TCP proxy in front of 127.0.0.1:5672. Only TLS reaches the proxy, so a
//! message that goes through it went over TLS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use moss_broker::{
    Broker, BrokerError, Headers, OutgoingMessage, Persistence, Topology, TopologyPrefix,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

fn upstream() -> String {
    // The plain AMQP port of the shared broker (host:port of MOSS_AMQP_URL when set).
    std::env::var("MOSS_AMQP_URL")
        .ok()
        .and_then(|url| {
            let rest = url.split_once("://")?.1;
            let host_port = rest.split('@').next_back()?.split('/').next()?;
            Some(if host_port.contains(':') {
                host_port.to_owned()
            } else {
                format!("{host_port}:5672")
            })
        })
        .unwrap_or_else(|| "127.0.0.1:5672".to_owned())
}

/// A CA made for this test and a server certificate it signed for `localhost`.
struct Pki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

fn make_pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "moss test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_pem = ca_cert.pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = rcgen::KeyPair::generate().unwrap();
    let mut server_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    Pki {
        ca_pem,
        server_chain: vec![server_cert.der().clone()],
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    }
}

/// Counts of what the proxy saw.
#[derive(Default)]
struct Seen {
    handshakes: AtomicUsize,
    refused: AtomicUsize,
}

/// Accepts TLS on a free port and pipes the clear stream to RabbitMQ.
async fn start_proxy(pki: &Pki) -> (u16, Arc<Seen>) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let counts = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    counts.refused.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                counts.handshakes.fetch_add(1, Ordering::SeqCst);
                let Ok(mut server) = TcpStream::connect(upstream()).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_works_against_a_private_ca_and_an_unknown_ca_is_refused() {
    let pki = make_pki();
    let (port, seen) = start_proxy(&pki).await;
    let url = format!("amqps://guest:guest@localhost:{port}/%2f");

    // Without the CA the broker's certificate is not trusted: no connection.
    let refused = Broker::connect_with_timeout(&url, "moss-tls-test", Duration::from_secs(5)).await;
    assert!(
        refused.is_err(),
        "a certificate from an unknown CA is accepted"
    );
    let error = refused.unwrap_err().to_string();
    assert!(
        !error.contains("guest:guest"),
        "the error shows the password: {error}"
    );
    assert!(
        seen.refused.load(Ordering::SeqCst) >= 1,
        "the client refused the handshake"
    );
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 0);

    // A file that holds no certificate is refused by name.
    let dir = tempfile_dir();
    let not_pem = dir.join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    match moss_broker::trust_amqp_ca_file(&not_pem) {
        Err(BrokerError::InvalidArgument { field, reason }) => {
            assert_eq!(field, "MOSS_AMQP_CA_FILE");
            assert!(reason.contains("no PEM certificate"), "{reason}");
        }
        other => panic!("a file without a certificate is accepted: {other:?}"),
    }
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    moss_broker::trust_amqp_ca_file(&ca_file).unwrap();

    let broker = Broker::connect_with_timeout(&url, "moss-tls-test", Duration::from_secs(15))
        .await
        .expect("amqps with the test CA connects");
    assert!(seen.handshakes.load(Ordering::SeqCst) >= 1);
    let prefix =
        TopologyPrefix::parse(&format!("moss-test-{}", uuid::Uuid::new_v4().simple())).unwrap();
    let topology = Topology::new(prefix, 2).unwrap();
    broker.declare(&topology).await.unwrap();
    let publisher = broker.publisher().await.unwrap();
    let body = b"{\"over\":\"tls\"}".to_vec();
    publisher
        .publish(OutgoingMessage {
            exchange: topology.events_exchange(),
            routing_key: topology.partition_routing_key(1),
            message_id: "tls-1".to_owned(),
            body: body.clone(),
            content_type: "application/json".to_owned(),
            headers: Headers::new().with_text("moss-attempt-note", "tls"),
            persistence: Persistence::Persistent,
        })
        .await
        .expect("a confirmed publish over TLS");
    let mut consumer = broker
        .consume(&topology.partition_queue(1), 1, "moss-tls-test")
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("the message comes back")
        .unwrap()
        .unwrap();
    assert_eq!(delivery.body, body);
    assert_eq!(delivery.message_id.as_deref(), Some("tls-1"));
    delivery.ack().await.unwrap();
    consumer.shutdown().await.unwrap();
    broker.delete_topology(&topology).await.unwrap();
    broker.close().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("moss-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
