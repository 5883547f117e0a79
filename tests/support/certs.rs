//! Certificates for TLS tests, made fresh in each test: a CA, a server
//! certificate for `localhost`/`127.0.0.1` and a client certificate it
//! signed, and a second CA that signed nothing here (a "wrong" CA).
#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        let ca = |cn: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert.pem(), Issuer::new(params, key))
        };
        let (ca_pem, issuer) = ca("gosd test CA");
        write("ca.pem", ca_pem);
        let (other_pem, other) = ca("some other CA");
        write("other-ca.pem", other_pem);
        let leaf = |names: &[&str], by: &Issuer<'_, KeyPair>, file: &str| {
            let params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, by).unwrap();
            write(&format!("{file}.pem"), cert.pem());
            write(&format!("{file}.key"), key.serialize_pem());
        };
        leaf(&["localhost", "127.0.0.1"], &issuer, "server");
        leaf(&["gosd-client"], &issuer, "client");
        leaf(&["gosd-client"], &other, "stranger");
        Self { dir }
    }

    /// A file of this set: `ca.pem`, `other-ca.pem`, `server.pem`/`.key`,
    /// `client.pem`/`.key` (signed by the CA), `stranger.pem`/`.key`
    /// (signed by the other CA).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// [`path`](Self::path) as a string, for environment variables.
    pub fn file(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }
}
