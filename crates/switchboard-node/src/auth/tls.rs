//! TLS from certificate files (as Kubernetes mounts Secrets), reloaded when they change.
//!
//! The server side is our own acceptor rather than tonic's built-in TLS, so that the rustls
//! configuration can be swapped while the listener keeps running: every `reload_every` the
//! files' modification times and sizes are compared, and when they changed a new
//! `ServerConfig` is built and used for every later handshake (connections already open keep
//! the certificate they started with). A broken new file is logged and the old configuration
//! stays. Handshakes run concurrently, each bounded by [`HANDSHAKE_TIMEOUT`].
//!
//! Client certificates are optional at the TLS layer: when a cluster CA is configured, a
//! certificate a client presents must verify against it (or the handshake fails); clients
//! without one still connect and use bearer tokens. Internal calls then require one
//! ([`super::require_node`]). [`cluster_endpoint`] is the other side: a tonic `Endpoint` for
//! node-to-node calls that presents this node's certificate and verifies the peer against
//! the cluster CA.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::error::Error;

/// Longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server's certificate files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain this node presents (to clients and, as a client, to other nodes).
    pub cert: PathBuf,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle that other nodes' client certificates must chain to (the cluster CA);
    /// `None`: no client certificates are asked for and internal calls are refused.
    pub client_ca: Option<PathBuf>,
    /// How often the files are checked for changes.
    pub reload_every: Duration,
}

impl TlsFiles {
    /// This node's identity for dialing other nodes ([`cluster_endpoint`]): its own
    /// certificate and key, and the cluster CA; `None` without a cluster CA.
    pub fn cluster(&self) -> Option<ClusterTls> {
        let ca = self.client_ca.clone()?;
        Some(ClusterTls { ca, cert: self.cert.clone(), key: self.key.clone() })
    }
}

fn bad(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::FailedPrecondition(format!("tls file {}: {why}", path.display()))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(path, e))?;
    if certs.is_empty() {
        return Err(bad(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server configuration of `files`, as of now.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, Error> {
    let chain = certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(ca)? {
                roots.add(cert).map_err(|e| bad(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| bad(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| bad(&files.key, e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// What the reloader compares: each file's modification time and size.
fn stamp(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    let paths = [Some(&files.cert), Some(&files.key), files.client_ca.as_ref()];
    paths
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

/// Accepted connections after their TLS handshake, with the configuration reloaded from
/// `files` when they change. Fails at once if the files do not make a configuration now.
pub fn incoming(
    listener: TcpListener,
    files: TlsFiles,
) -> Result<impl Stream<Item = std::io::Result<TlsStream<TcpStream>>>, Error> {
    let current = Arc::new(RwLock::new(server_config(&files)?));
    let (tx, rx) = tokio::sync::mpsc::channel(64);

    let reloading = Arc::clone(&current);
    let watch_tx = tx.clone();
    tokio::spawn(async move {
        let mut seen = stamp(&files);
        let mut every = tokio::time::interval(files.reload_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = watch_tx.closed() => return,
            }
            let now = stamp(&files);
            if now == seen {
                continue;
            }
            match server_config(&files) {
                Ok(config) => {
                    *reloading.write().unwrap_or_else(|e| e.into_inner()) = config;
                    seen = now;
                    tracing::info!(cert = %files.cert.display(), "tls certificates reloaded");
                }
                // Perhaps half-written (a Secret update replaces files one by one): keep the
                // old configuration and try again next time.
                Err(e) => {
                    tracing::warn!(error = %e, "tls certificates changed but do not load; keeping the previous ones")
                }
            }
        }
    });

    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let config = Arc::clone(&current.read().unwrap_or_else(|e| e.into_inner()));
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = TlsAcceptor::from(config).accept(tcp);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                    Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                }
            });
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// This node's identity for calls to other nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// The cluster CA that peers' server certificates must chain to.
    pub ca: PathBuf,
    /// This node's certificate (presented as the client certificate) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A node-to-node endpoint over mutual TLS: `url` like `https://10.0.0.7:7400`; the peer's
/// certificate must chain to the cluster CA and name `domain` (default: the URL's host).
/// Reads the files on every call, so a connection made after a rotation uses the new ones.
pub fn cluster_endpoint(
    url: &str,
    tls: &ClusterTls,
    domain: Option<&str>,
) -> Result<Endpoint, Error> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| bad(p, e));
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
        .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
    if let Some(domain) = domain {
        config = config.domain_name(domain);
    }
    Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::field("url", e.to_string()))?
        .tls_config(config)
        .map_err(|e| Error::FailedPrecondition(format!("cluster tls: {e}")))
}
