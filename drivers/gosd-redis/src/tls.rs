//! TLS for `rediss://`: the PEM files, read and checked when they are set.

use std::fmt;
use std::path::{Path, PathBuf};

use redis::{ClientTlsConfig, TlsCertificates};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A PEM file's path (for `Debug` and errors) and its bytes.
#[derive(Clone)]
struct Pem {
    path: PathBuf,
    bytes: Vec<u8>,
}

/// The PEM files a `rediss://` connection uses besides the system's
/// roots: a private CA, and a client certificate with its key (mutual TLS).
#[derive(Clone, Default)]
pub(crate) struct TlsFiles {
    ca: Option<Pem>,
    client: Option<(Pem, Pem)>,
}

impl TlsFiles {
    pub(crate) fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client.is_none()
    }

    /// Reads `path` and checks that it holds at least one CA certificate.
    /// `Err` is the reason, for the setting `tls_ca`.
    pub(crate) fn set_ca(&mut self, path: &Path) -> Result<(), String> {
        let ca = read(path)?;
        let certs = certificates(&ca)?;
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("not a usable CA certificate ({e})"))?;
        }
        self.ca = Some(ca);
        Ok(())
    }

    /// Reads both files and checks that the key is the certificate's.
    /// `Err` names the setting (`tls_cert` or `tls_key`) and the reason.
    pub(crate) fn set_client(
        &mut self,
        cert: &Path,
        key: &Path,
    ) -> Result<(), (&'static str, String)> {
        let cert_pem = read(cert).map_err(|e| ("tls_cert", e))?;
        let key_pem = read(key).map_err(|e| ("tls_key", e))?;
        let chain = certificates(&cert_pem).map_err(|e| ("tls_cert", e))?;
        let private = PrivateKeyDer::from_pem_slice(&key_pem.bytes).map_err(|e| {
            let reason = format!(
                "no private key in PEM form ({e}); expected a `-----BEGIN PRIVATE KEY-----` block"
            );
            ("tls_key", reason)
        })?;
        CertifiedKey::from_der(chain, private, &provider()).map_err(|e| {
            let reason = format!(
                "the key does not go with the certificate in {} ({e})",
                cert.display()
            );
            ("tls_key", reason)
        })?;
        self.client = Some((cert_pem, key_pem));
        Ok(())
    }

    /// What redis-rs builds a TLS client from.
    pub(crate) fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.bytes.clone(),
                client_key: key.bytes.clone(),
            }),
            root_cert: self.ca.as_ref().map(|ca| ca.bytes.clone()),
        }
    }
}

impl fmt::Debug for TlsFiles {
    /// The paths only: a key's bytes never show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca.as_ref().map(|p| &p.path))
            .field("cert", &self.client.as_ref().map(|(c, _)| &c.path))
            .field("key", &self.client.as_ref().map(|(_, k)| &k.path))
            .finish()
    }
}

fn read(path: &Path) -> Result<Pem, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Pem {
        path: path.to_owned(),
        bytes,
    })
}

fn certificates(pem: &Pem) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(&pem.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file ({e})", pem.path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate; expected `-----BEGIN CERTIFICATE-----` blocks",
            pem.path.display()
        ));
    }
    Ok(certs)
}

/// ring, not rustls' default aws-lc-rs: that one builds a C library with
/// cmake, and `cargo run` of the quickstart must need no C toolchain extras.
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// redis-rs builds its rustls config with the process-wide provider. With
/// only ring compiled in, rustls would pick it by itself; installing it
/// explicitly keeps that true when another crate in the binary compiles
/// aws-lc-rs in too (rustls then refuses to guess). An application that
/// installed its own provider keeps it.
pub(crate) fn install_provider() {
    if CryptoProvider::get_default().is_none() {
        // Err: another thread installed one first, which is as good.
        let _ = provider().install_default();
    }
}
