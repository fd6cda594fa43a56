//! Known-answer tests on ClientHellos captured from real clients (generator placeholder).

use std::sync::Arc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/captured");

/// One rustls ClientHello (ring provider, ALPN h2 + http/1.1, SNI localhost), as written to
/// the wire by `write_tls`.
fn rustls_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls to a Vec");
    }
    out
}

#[test]
#[ignore = "generator: writes tests/fixtures/captured/rustls.bin"]
fn generate_rustls_fixture() {
    std::fs::write(format!("{FIXTURES}/rustls.bin"), rustls_hello()).expect("write rustls.bin");
}
