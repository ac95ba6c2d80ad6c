//! Test certificates (rcgen): one CA, server leaves for `localhost`/127.0.0.1 and client
//! leaves signed by it, written as PEM files into a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(stem: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "pollgate-{stem}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// Write `contents` to `name` atomically (a rename, as certbot and editors do).
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).expect("write temp file");
        std::fs::rename(&tmp, &path).expect("rename into place");
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A leaf certificate and its key, PEM, and the certificate's DER (to recognise it).
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

pub struct Pki {
    ca: Certificate,
    ca_key: KeyPair,
    pub ca_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca.self_signed(&ca_key).expect("self-signed CA");
        let ca_pem = ca.pem();
        Pki { ca, ca_key, ca_pem }
    }

    fn leaf(&self, cn: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("leaf signed by CA");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1 (`cn` tells them apart).
    pub fn server(&self, cn: &str) -> Leaf {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        self.leaf(cn, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for mTLS.
    pub fn client(&self, cn: &str) -> Leaf {
        self.leaf(cn, vec![cn.to_owned()], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// Write `leaf`'s files as `cert.pem` and `key.pem` in `dir`.
pub fn install(dir: &TempDir, leaf: &Leaf) -> (PathBuf, PathBuf) {
    // Key first: a watcher that read between the two would see the old cert with the new key
    // (a mismatch it must survive); the test's checks wait for the new certificate anyway.
    let key = dir.write("key.pem", &leaf.key_pem);
    let cert = dir.write("cert.pem", &leaf.cert_pem);
    (cert, key)
}

pub fn toml_path(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}
