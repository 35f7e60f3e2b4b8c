//! The webhook client: one POST over a fresh HTTP/1.1 connection (plain or TLS), answered
//! by its status line. Webhook traffic is one request per event and endpoint in flight, so
//! a connection pool would buy little.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::Options;

/// Where a webhook's URL points, parsed once.
#[derive(Debug, Clone)]
pub struct Target {
    uri: Uri,
    tls: bool,
    host: String,
    port: u16,
}

/// Checks a webhook URL: `http://` or `https://`, a host, no user info or fragment.
pub fn parse(url: &str) -> Result<Target, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{url:?}: the scheme must be http or https")),
    };
    let authority = uri.authority().ok_or_else(|| format!("{url:?} names no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{url:?}: user info in the URL is not supported; use the secret"));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok(Target { uri, tls, host, port })
}

/// What an attempt got: the endpoint's status, or why there was none.
pub type Outcome = Result<u16, String>;

/// The TLS client of https webhooks, built on first use from `ca_file`.
#[derive(Default)]
pub struct Client {
    tls: OnceLock<Result<tokio_rustls::TlsConnector, String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    fn tls(&self, options: &Options) -> Result<tokio_rustls::TlsConnector, String> {
        self.tls
            .get_or_init(|| {
                let path = &options.ca_file;
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("CA bundle {}: {e}", path.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("CA bundle {}: {e}", path.display()))?;
                    // A bundle may hold certificates rustls cannot use; the rest still count.
                    let _ = roots.add(cert);
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
            })
            .clone()
    }

    /// POSTs `body` with `headers`; the whole attempt is bounded by `options.timeout`.
    pub async fn post(
        &self,
        target: &Target,
        headers: &[(&str, String)],
        body: Vec<u8>,
        options: &Options,
    ) -> Outcome {
        let path = target.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = Request::post(path)
            .header(header::HOST, target.uri.authority().map_or("", |a| a.as_str()))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("switchboard/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
        let attempt = async {
            let tcp = TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|e| format!("connect {}:{}: {e}", target.host, target.port))?;
            let _ = tcp.set_nodelay(true);
            if target.tls {
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|e| format!("{}: {e}", target.host))?;
                let tls = self.tls(options)?;
                let stream =
                    tls.connect(name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
                send(TokioIo::new(stream), request).await
            } else {
                send(TokioIo::new(tcp), request).await
            }
        };
        match tokio::time::timeout(options.timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {}", display(options.timeout))),
        }
    }
}

async fn send<I>(io: I, request: Request<Full<Bytes>>) -> Outcome
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let outcome = sender.send_request(request).await;
    driver.abort();
    outcome.map(|r| r.status().as_u16()).map_err(|e| format!("HTTP: {e}"))
}

fn display(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        let t = parse("https://hooks.example.com/in?x=1").unwrap();
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.port), ("hooks.example.com", 443));
        let t = parse("http://127.0.0.1:8080/h").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("127.0.0.1", 8080, false));
        assert!(parse("ftp://x/").unwrap_err().contains("scheme"));
        assert!(parse("hooks.example.com").is_err());
        assert!(parse("https://user:pw@x/").unwrap_err().contains("user info"));
    }
}
