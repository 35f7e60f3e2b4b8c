//! TLS and node-to-node mutual TLS against a real `switchboard serve` process. Certificates
//! are made at test time with rcgen (nothing secret is committed): a cluster CA, the node's
//! certificate signed by it, and a rogue CA with a client certificate of its own.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde::Serialize;
use support::Node;
use switchboard_node::auth::tls::cluster_endpoint;
use switchboard_proto::v1 as pb;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const SECRET: &str = "test-only-secret-0123456789abcdef0123456789";

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// (certificate PEM, key PEM) for `localhost` and 127.0.0.1, signed by `ca`.
fn leaf(ca: &Ca) -> (String, String) {
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[derive(Serialize)]
struct Claims {
    sub: &'static str,
    role: &'static str,
    exp: u64,
}

fn operator_token() -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims { sub: "test", role: "operator", exp: 4_000_000_000 },
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn https(node: &Node) -> String {
    node.grpc.replace("http://", "https://")
}

/// A call as one node forwards it to another: a public method, the caller's token, and the
/// hop mark (`x-switchboard-hop`), which only a verified node may send.
async fn call_forwarded(channel: Channel) -> Code {
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel);
    let mut req = tonic::Request::new(pb::ListTenantsRequest { page: None });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {}", operator_token()).parse().unwrap());
    req.metadata_mut().insert(switchboard_node::cluster::forward::HOP, "1".parse().unwrap());
    match admin.list_tenants(req).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

async fn tls_channel(url: &str, ca_pem: &str, identity: Option<(&str, &str)>) -> Option<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(url.to_owned()).unwrap().tls_config(tls).unwrap().connect().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_use_tls_and_only_cluster_nodes_forward_calls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cluster = ca("cluster ca");
    let (node_cert, node_key) = leaf(&cluster);
    let rogue = ca("rogue ca");
    let (rogue_cert, rogue_key) = leaf(&rogue);
    let files = (
        write(d, "ca.pem", &cluster.pem),
        write(d, "node.pem", &node_cert),
        write(d, "node.key", &node_key),
        write(d, "jwt.key", SECRET),
    );
    let config = format!(
        "[auth]\ntoken_keys = [{:?}]\n[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nreload_seconds = 1\n",
        files.3.display().to_string(),
        files.1.display().to_string(),
        files.2.display().to_string(),
        files.0.display().to_string(),
    );
    let config = write(d, "sb.toml", &config);
    let node = Node::start_with(&d.join("data"), &["--config", config.to_str().unwrap()]);
    let url = https(&node);

    // A client over TLS, with a token, reaches the public API; health needs neither token
    // nor client certificate.
    let client = tls_channel(&url, &cluster.pem, None).await.expect("tls connection");
    let mut admin = pb::admin_service_client::AdminServiceClient::new(client.clone());
    let mut req = tonic::Request::new(pb::ListTenantsRequest { page: None });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {}", operator_token()).parse().unwrap());
    admin.list_tenants(req).await.expect("a public call over tls");
    let mut health = tonic_health::pb::health_client::HealthClient::new(client.clone());
    health.check(tonic_health::pb::HealthCheckRequest::default()).await.expect("health");

    // The exec probe of a TLS deployment: `ctl health` over TLS, dialing 127.0.0.1 and
    // checking the certificate's name.
    let probe = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["ctl", "--addr", &url.replace("localhost", "127.0.0.1"), "--ca-file"])
        .arg(&files.0)
        .args(["--tls-server-name", "localhost", "health"])
        .output()
        .unwrap();
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), r#"{"status":"SERVING"}"#);

    // Plain text to the TLS port gets nowhere.
    let plain = Endpoint::from_shared(node.grpc.clone()).unwrap().connect().await;
    if let Ok(plain) = plain {
        let mut admin = pb::admin_service_client::AdminServiceClient::new(plain);
        assert!(admin.list_tenants(pb::ListTenantsRequest { page: None }).await.is_err());
    }

    // Node-to-node (forwarded) calls: refused without a client certificate, even with a
    // valid token ...
    assert_eq!(call_forwarded(client).await, Code::Unauthenticated);
    // ... refused at the handshake with a certificate from another CA ...
    let rogue_client = tls_channel(&url, &cluster.pem, Some((&rogue_cert, &rogue_key))).await;
    if let Some(rogue_client) = rogue_client {
        let code = call_forwarded(rogue_client).await;
        assert_ne!(code, Code::Ok, "rogue certificate got through");
    }
    // ... and let through with the node's certificate, through the endpoint builder nodes use
    // for each other.
    let own = switchboard_node::auth::tls::TlsFiles {
        cert: files.1.clone(),
        key: files.2.clone(),
        client_ca: Some(files.0.clone()),
        reload_every: Duration::from_secs(1),
    }
    .cluster()
    .expect("a cluster CA is configured");
    let endpoint = cluster_endpoint(&url, &own, Some("localhost")).expect("cluster endpoint");
    let peer = endpoint.connect().await.expect("mutual tls connection");
    assert_eq!(call_forwarded(peer).await, Code::Ok);

    // Certificates are reloaded when the files change: a node certificate from a new CA is
    // served to new connections without a restart. Bounded wait for the 1 s reload poll.
    let renewed = ca("renewed ca");
    let (new_cert, new_key) = leaf(&renewed);
    write(d, "node.key", &new_key);
    write(d, "node.pem", &new_cert);
    let mut reloaded = false;
    for _ in 0..120 {
        if let Some(ch) = tls_channel(&url, &renewed.pem, None).await {
            let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
            if health.check(tonic_health::pb::HealthCheckRequest::default()).await.is_ok() {
                reloaded = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(reloaded, "the renewed certificate was never served");
    // The old CA no longer verifies the node.
    let old = tls_channel(&url, &cluster.pem, None).await;
    if let Some(old) = old {
        let mut health = tonic_health::pb::health_client::HealthClient::new(old);
        assert!(health.check(tonic_health::pb::HealthCheckRequest::default()).await.is_err());
    }
}
