//! Reading a listener's PEM files into what rustls needs: the certificate chain, the private
//! key, the client CAs. Every error names the configuration key whose file is at fault, so a
//! failed start or reload tells the operator which file to fix.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// Why a listener's TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`{key}`: cannot read {path}: {reason}")]
    File {
        key: String,
        path: String,
        reason: String,
    },
    #[error("`{key}`: {reason}")]
    Unusable { key: String, reason: String },
}

impl TlsError {
    /// The dotted key of the file at fault (`server.tls.cert_file`).
    pub fn key(&self) -> &str {
        match self {
            TlsError::File { key, .. } | TlsError::Unusable { key, .. } => key,
        }
    }

    pub(super) fn unusable(key: String, reason: impl std::fmt::Display) -> TlsError {
        TlsError::Unusable {
            key,
            reason: reason.to_string(),
        }
    }
}

fn file_error(key: &str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        key: key.to_owned(),
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Every certificate in the file, in order (leaf first); at least one.
pub(super) fn certificates(
    key: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(key, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, e))?;
    if certs.is_empty() {
        return Err(file_error(key, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The first private key in the file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub(super) fn private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(key, path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| file_error(key, path, e))
}

/// The CAs a client certificate must chain to.
pub(super) fn client_roots(key: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(key, path)? {
        roots.add(cert).map_err(|e| {
            TlsError::unusable(key.to_owned(), format!("not a CA certificate: {e}"))
        })?;
    }
    Ok(roots)
}
