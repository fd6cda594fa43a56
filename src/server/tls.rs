//! TLS server configuration: certificate and key from PEM files (or the bundled development
//! pair), protocol versions 1.2 and 1.3, and the configured ALPN list.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// The bundled development certificate (CN=localhost, SAN localhost, 127.0.0.1, ::1).
/// Regenerate with `certs/regen.sh`. Never use it outside development.
pub const DEV_CERT_PEM: &[u8] = include_bytes!("../../certs/dev-cert.pem");
/// The key of [`DEV_CERT_PEM`].
pub const DEV_KEY_PEM: &[u8] = include_bytes!("../../certs/dev-key.pem");

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("tls.cert {path}: {message}")]
    Cert { path: String, message: String },
    #[error("tls.key {path}: {message}")]
    Key { path: String, message: String },
    #[error("tls: certificate and key do not form a usable pair: {0}")]
    Pair(rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| e.to_string())
}

/// Builds the rustls server configuration from the `[tls]` table.
pub fn server_config(cfg: &Config) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let (cert_pem, key_pem, cert_name, key_name) = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(c), Some(k)) => {
            let (c, k) = (cfg.resolve(c), cfg.resolve(k));
            let cert_pem = read(&c).map_err(|message| TlsSetupError::Cert {
                path: c.display().to_string(),
                message,
            })?;
            let key_pem = read(&k).map_err(|message| TlsSetupError::Key {
                path: k.display().to_string(),
                message,
            })?;
            (
                cert_pem,
                key_pem,
                c.display().to_string(),
                k.display().to_string(),
            )
        }
        _ => (
            DEV_CERT_PEM.to_vec(),
            DEV_KEY_PEM.to_vec(),
            "<bundled dev cert>".to_string(),
            "<bundled dev key>".to_string(),
        ),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsSetupError::Cert {
            path: cert_name.clone(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Cert {
            path: cert_name,
            message: "no CERTIFICATE block found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsSetupError::Key {
        path: key_name,
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsSetupError::Pair)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsSetupError::Pair)?;
    sc.alpn_protocols = cfg.tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(sc))
}
