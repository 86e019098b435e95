//! TLS for alarm delivery: which certificates are trusted, and the client configurations built
//! from them for SMTP (lettre) and `https://` webhooks (hyper-rustls).
//!
//! One stack: rustls with the `ring` provider (the same for both transports, chosen explicitly
//! so no process-wide default is needed). Trusted: the system's root certificates (the
//! platform's store, read once when delivery starts) plus every certificate in the optional
//! `alarms.ca_file` (PEM). A server whose certificate does not chain to one of them, has
//! expired, or does not name the host we connected to fails the attempt; the reason (rustls'
//! error, e.g. `invalid peer certificate: UnknownIssuer`) goes into the notification log like
//! any other delivery error. There is no setting to skip verification.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the trusted certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CA file could not be read.
    #[error("alarms.ca_file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file is not PEM, or a certificate in it is unusable as a trust anchor.
    #[error("alarms.ca_file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the configuration (no usable protocol version).
    #[error("tls: {0}")]
    Config(String),
}

/// The largest `alarms.ca_file` read, bytes.
pub const MAX_CA_FILE: u64 = 4 << 20;

/// Reads the certificates of a PEM file (at least one; each must be usable as a trust anchor).
pub fn ca_file_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let invalid = |message: String| Error::Invalid {
        path: path.to_owned(),
        message,
    };
    let read = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    // Bounded: a CA bundle is a few hundred KiB; a wrong path (a device, a huge file) must not
    // take the server's memory at start.
    let mut pem = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(path).map_err(read)?, MAX_CA_FILE + 1),
        &mut pem,
    )
    .map_err(read)?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(invalid(format!("larger than {MAX_CA_FILE} bytes")));
    }
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no CERTIFICATE block in it".into()));
    }
    let mut check = RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        check
            .add(c.clone())
            .map_err(|e| invalid(format!("certificate {}: {e}", i + 1)))?;
    }
    Ok(certs)
}

/// The certificates trusted for alarm delivery and the TLS client built on them.
#[derive(Clone)]
pub struct Trust {
    /// Every trust anchor, DER (lettre takes them one by one).
    roots: Arc<Vec<CertificateDer<'static>>>,
    /// The rustls client configuration for webhooks.
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("roots", &self.roots.len())
            .finish()
    }
}

/// rustls on *ring*. rustls 0.23.48 deprecates this provider because it has no post-quantum key
/// exchange (connections use X25519 / ECDHE, as most mail relays and webhook receivers do
/// today). The provider rustls prefers, aws-lc-rs, builds a large C library whose `aws-lc-sys`
/// carries the OpenSSL licence, which deny.toml does not allow; revisit when *ring* or a
/// RustCrypto provider offers ML-KEM.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Trust {
    /// The system's roots plus those of `ca_file`. Unreadable system certificates are logged and
    /// skipped (the platform store may hold a few); a bad `ca_file` is an error.
    pub fn load(ca_file: Option<&Path>) -> Result<Trust, Error> {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "alarm delivery: cannot read a system root certificate");
        }
        let mut store = RootCertStore::empty();
        let mut roots = Vec::with_capacity(native.certs.len());
        for c in native.certs {
            if store.add(c.clone()).is_ok() {
                roots.push(c);
            }
        }
        let system = roots.len();
        if let Some(path) = ca_file {
            for c in ca_file_certs(path)? {
                // ca_file_certs checked that each one is a usable anchor.
                store.add(c.clone()).map_err(|e| Error::Invalid {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
                roots.push(c);
            }
        }
        if roots.is_empty() {
            tracing::warn!(
                "alarm delivery: no trusted root certificate (no system roots, no alarms.ca_file); \
                 every TLS delivery will fail"
            );
        }
        tracing::debug!(system, total = roots.len(), "alarm delivery: trusted roots");
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Trust {
            roots: Arc::new(roots),
            config: Arc::new(config),
        })
    }

    /// How many certificates are trusted.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether no certificate is trusted.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// lettre's TLS parameters for a relay whose certificate must name `host`.
    pub fn smtp(
        &self,
        host: &str,
    ) -> Result<lettre::transport::smtp::client::TlsParameters, String> {
        use lettre::transport::smtp::client::{Certificate, CertificateStore, TlsParameters};
        let mut b = TlsParameters::builder(host.to_owned())
            // Only our anchors: the system's (read once, above) and the CA file's.
            .certificate_store(CertificateStore::None);
        for c in self.roots.iter() {
            let c = Certificate::from_der(c.to_vec()).map_err(|e| format!("tls: {e}"))?;
            b = b.add_root_certificate(c);
        }
        b.build_rustls().map_err(|e| format!("tls: {e}"))
    }

    /// A connector for webhooks: `https://` over TLS with these roots, `http://` plain.
    pub fn https(
        &self,
    ) -> hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector> {
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.config).clone())
            .https_or_http()
            .enable_http1()
            .build()
    }
}

/// An error and its causes on one line, `outer: cause: cause` (hyper's and lettre's errors keep
/// the interesting part, e.g. the certificate problem, in their sources). A cause whose text
/// the line already holds is skipped.
pub fn reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !s.is_empty() && !line.contains(&s) {
            line.push_str(": ");
            line.push_str(&s);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_must_hold_usable_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = ca_file_certs(&missing).unwrap_err();
        assert!(matches!(e, Error::Read { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let e = ca_file_certs(&empty).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = ca_file_certs(&garbage).unwrap_err().to_string();
        assert!(e.contains("certificate 1"), "{e}");

        let huge = dir.path().join("huge.pem");
        std::fs::write(&huge, vec![b'\n'; MAX_CA_FILE as usize + 1]).unwrap();
        let e = ca_file_certs(&huge).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        // A device never ends; the bound still does.
        let e = ca_file_certs(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than"), "{e}");

        let ca = super::super::tls_tests::Ca::new("tek test CA");
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.pem()).unwrap();
        assert_eq!(ca_file_certs(&good).unwrap().len(), 1);
        let with_system = Trust::load(None).unwrap().len();
        assert_eq!(Trust::load(Some(&good)).unwrap().len(), with_system + 1);
    }

    #[test]
    fn reason_keeps_every_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(
            reason(&e),
            "client error (Connect): invalid peer certificate: UnknownIssuer"
        );
    }
}
