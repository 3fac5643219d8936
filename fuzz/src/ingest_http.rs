//! The checks the `ingest_http` fuzz target runs on every input, against a real producer
//! started in this process (its HTTP handler, decoder, sealing and outbox; the relay points at
//! a closed port, so nothing leaves). Also compiled into `producer/tests/fuzz_corpus.rs`,
//! which replays the kept corpus in an ordinary `cargo test`.
//!
//! The first input byte picks the request's shape: the content type (single event, batch,
//! `application/json` with parameters, an unsupported type, none) and the credentials (the
//! right bearer token, a wrong one, none). The rest is the body. What must hold:
//! - the ingest always answers, with exactly the status the rules give: 401 without the right
//!   token, 415 for a type it does not take, else 202 when the decoder accepts the body and 400
//!   when it refuses it (never a 5xx, never a dropped connection);
//! - a 202 lists the accepted event ids in order, the same ids the decoder reads;
//! - a 400 is a problem document listing every violation the decoder finds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use moss_schemas::{Envelope, EventBatch, SealingKey};

/// The ingest token the fuzzed producer requires.
pub(crate) const TOKEN: &str = "fuzz-ingest-token-0123456789";
/// The body limit the fuzzed producer is started with.
pub(crate) const MAX_BODY: usize = 256 * 1024;

/// A producer running for the checks, stopped when dropped.
pub(crate) struct Ingest {
    pub(crate) addr: SocketAddr,
    pub(crate) key: SealingKey,
    runtime: tokio::runtime::Runtime,
    shutdown: tokio_util::sync::CancellationToken,
    _dir: tempfile::TempDir,
}

impl Ingest {
    pub(crate) fn start() -> Ingest {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let key = SealingKey::parse(&moss_schemas::generate_key_pair().public).expect("a key");
        let topology = moss_broker::Topology::new(
            moss_broker::TopologyPrefix::parse("moss-fuzz").expect("a prefix"),
            8,
        )
        .expect("a topology");
        let mut settings = moss_producer::ProducerSettings::new(
            dir.path().join("producer"),
            // A closed port: the relay keeps retrying in the background and publishes nothing.
            "amqp://guest:guest@127.0.0.1:9/%2f".to_owned(),
            topology,
            key.clone(),
        );
        settings.ingest_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.ingest_token = Some(secrecy::SecretString::from(TOKEN));
        settings.max_body_bytes = MAX_BODY;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = runtime
            .block_on(moss_producer::start(settings, shutdown.clone()))
            .expect("the producer starts");
        let addr = running.ingest_addr();
        // The producer runs until `shutdown` is cancelled; its handle is not needed.
        std::mem::drop(running);
        Ingest {
            addr,
            key,
            runtime,
            shutdown,
            _dir: dir,
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Let the producer's tasks see the cancellation before the runtime goes away.
        self.runtime
            .block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    }
}

const CONTENT_TYPES: [Option<&str>; 5] = [
    Some("application/cloudevents+json"),
    Some("application/cloudevents-batch+json"),
    Some("Application/JSON; charset=utf-8"),
    Some("text/plain"),
    None,
];

pub(crate) fn check(ingest: &Ingest, data: &[u8]) {
    let Some((&shape, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(shape % 5)];
    let credentials = match (shape / 5) % 3 {
        0 => Some(TOKEN),
        1 => Some("not-the-token-0123456789abc"),
        _ => None,
    };
    let (status, answer) = post(ingest.addr, content_type, credentials, body);
    let answer: Option<serde_json::Value> = serde_json::from_slice(&answer).ok();

    if credentials != Some(TOKEN) {
        assert_eq!(status, 401, "a request without the right token");
        return;
    }
    let batch = match content_type {
        Some("application/cloudevents-batch+json") => true,
        Some("application/cloudevents+json" | "Application/JSON; charset=utf-8") => false,
        _ => {
            assert_eq!(status, 415, "an unsupported content type {content_type:?}");
            return;
        }
    };
    if body.len() > MAX_BODY {
        assert_eq!(status, 413);
        return;
    }
    let decoded = if batch {
        EventBatch::from_ingest_json_slice(body, &ingest.key).map(|batch| batch.events)
    } else {
        Envelope::from_ingest_json_slice(body, &ingest.key).map(|event| vec![event])
    };
    let answer = answer.unwrap_or_else(|| panic!("status {status} without a JSON body"));
    match decoded {
        Ok(events) => {
            assert_eq!(status, 202, "the decoder accepts the body: {answer}");
            let ids: Vec<String> = events.iter().map(|event| event.id.to_string()).collect();
            let accepted: Vec<String> = answer["accepted"]
                .as_array()
                .expect("a 202 lists the accepted ids")
                .iter()
                .map(|id| id.as_str().expect("an id is text").to_owned())
                .collect();
            assert_eq!(accepted, ids, "the accepted ids");
        }
        Err(error) => {
            assert_eq!(status, 400, "the decoder refuses the body: {answer}");
            let errors = answer["errors"].as_array().expect("a 400 lists its errors");
            assert_eq!(errors.len(), error.violations.len(), "{answer}");
            for (listed, violation) in errors.iter().zip(&error.violations) {
                assert_eq!(listed["pointer"], violation.pointer.as_str());
                assert_eq!(listed["rule"], violation.rule.as_str());
            }
        }
    }
}

/// One HTTP/1.1 request on a fresh connection; the status and the body.
fn post(
    addr: SocketAddr,
    content_type: Option<&str>,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("the ingest accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a timeout");
    let mut request = format!(
        "POST /v1/events HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        request.push_str(&format!("content-type: {content_type}\r\n"));
    }
    if let Some(token) = token {
        request.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("the request is sent");
    // The ingest may answer (401, 413) before reading the whole body and close.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    // A reset after the answer (the body was not read) still leaves the answer here.
    if let Err(error) = stream.read_to_end(&mut response) {
        assert!(
            !response.is_empty(),
            "the ingest dropped the connection: {error}"
        );
    }
    let head_end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a complete HTTP response");
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let mut payload = response[head_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = unchunk(&payload);
    }
    (status, payload)
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|window| window == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}
