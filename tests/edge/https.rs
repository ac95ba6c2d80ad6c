//! A real TLS client (tokio-rustls) and HTTP/1.1 or HTTP/2 over it (hyper's connection API),
//! so the tests see what a client sees: the negotiated protocol and the server's certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::pki::Leaf;

/// How a test client connects.
pub struct ClientTls {
    pub ca_pem: String,
    /// ALPN protocols offered, most wanted first.
    pub alpn: Vec<Vec<u8>>,
    pub identity: Option<(String, String)>,
    /// Only TLS 1.2 (else 1.3 and 1.2).
    pub tls12_only: bool,
}

impl ClientTls {
    pub fn new(ca_pem: &str) -> ClientTls {
        ClientTls {
            ca_pem: ca_pem.to_owned(),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            identity: None,
            tls12_only: false,
        }
    }

    pub fn http1_only(mut self) -> Self {
        self.alpn = vec![b"http/1.1".to_vec()];
        self
    }

    pub fn with_identity(mut self, leaf: &Leaf) -> Self {
        self.identity = Some((leaf.cert_pem.clone(), leaf.key_pem.clone()));
        self
    }

    pub fn tls12(mut self) -> Self {
        self.tls12_only = true;
        self
    }

    fn config(&self) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client cert");
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client identity")
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        config
    }

    /// Connect and finish the handshake.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = TlsConnector::from(Arc::new(self.config()));
        let name = ServerName::try_from("localhost").expect("name");
        connector.connect(name, tcp).await
    }

    /// Connect, then one GET of `path` as `TOKEN_A`'s holder: the handshake's error or the answer.
    pub async fn get_once(&self, addr: SocketAddr, path: &str) -> std::io::Result<Answer> {
        let mut conn = Conn::open(self.connect(addr).await?).await;
        let auth = crate::common::bearer(crate::common::TOKEN_A);
        conn.get(path, &[("authorization", &auth)])
            .await
            .map_err(std::io::Error::other)
    }
}

/// The certificate the server presented.
pub fn server_cert(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server certificate")
        .clone()
        .into_owned()
}

/// The ALPN protocol agreed.
pub fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

pub struct Answer {
    pub status: StatusCode,
    pub version: Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// One HTTP connection over TLS: HTTP/2 when ALPN chose `h2`, else HTTP/1.1. Requests
/// sent through it reuse the connection.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Conn {
    pub async fn open(stream: TlsStream<TcpStream>) -> Conn {
        let h2 = alpn(&stream).as_deref() == Some(b"h2".as_slice());
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            Conn::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("http/1.1 handshake");
            tokio::spawn(conn);
            Conn::H1(send)
        }
    }

    /// GET `path` with `headers`.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> hyper::Result<Answer> {
        let mut req = Request::get(format!("https://localhost{path}"));
        if matches!(self, Conn::H1(_)) {
            req = req.uri(path).header("host", "localhost");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::new()).expect("request");
        let res = match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Conn::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }
}
