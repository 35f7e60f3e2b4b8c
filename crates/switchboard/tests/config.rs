//! Configuration layering (defaults < file < environment < flags) and validation, with the
//! environment injected as a map: no test touches the process environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use switchboard::config::{Config, Flags, Listen, LogFormat};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const FILE: &str = r#"
[grpc]
addr = "127.0.0.1:7501"
max_request_bytes = 1000
concurrency_per_connection = 8

[metrics]
addr = "127.0.0.1:9501"

[store]
data_dir = "/from/file"
snapshot_every = 5

[log]
filter = "debug"
"#;

#[test]
fn nothing_given_means_the_documented_defaults() {
    let config = Config::load(&Flags::default(), env(&[])).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.grpc.addr, addr("127.0.0.1:7400"));
    assert_eq!(config.metrics.addr, Listen::On(addr("127.0.0.1:9400")));
    assert_eq!(config.store.data_dir, PathBuf::from("./switchboard-data"));
    assert_eq!(config.store.snapshot_every, 10_000);
    assert_eq!(config.grpc.max_request_bytes, 65_536);
    assert_eq!(config.grpc.concurrency_per_connection, 256);
    assert_eq!(config.log.filter, "info");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.shutdown.drain_seconds, 20);
}

#[test]
fn file_overrides_defaults_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "sb.toml", "[grpc]\naddr = \"127.0.0.1:7501\"\n");
    let flags = Flags { config: Some(path), ..Flags::default() };
    let config = Config::load(&flags, env(&[])).unwrap();
    assert_eq!(config.grpc.addr, addr("127.0.0.1:7501"));
    assert_eq!(config.grpc.max_request_bytes, 65_536);
    assert_eq!(config.metrics, Config::default().metrics);
}

#[test]
fn environment_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "sb.toml", FILE);
    let flags = Flags { config: Some(path), ..Flags::default() };
    let config = Config::load(
        &flags,
        env(&[
            ("SWITCHBOARD_GRPC__ADDR", "127.0.0.1:7602"),
            ("SWITCHBOARD_GRPC__MAX_REQUEST_BYTES", "2000"),
            ("SWITCHBOARD_METRICS__ADDR", "off"),
            ("SWITCHBOARD_STORE__DATA_DIR", "/from/env"),
            ("SWITCHBOARD_LOG__FORMAT", "json"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(config.grpc.addr, addr("127.0.0.1:7602"));
    assert_eq!(config.grpc.max_request_bytes, 2000);
    assert_eq!(config.grpc.concurrency_per_connection, 8, "from the file");
    assert_eq!(config.metrics.addr, Listen::Off);
    assert_eq!(config.store.data_dir, PathBuf::from("/from/env"));
    assert_eq!(config.store.snapshot_every, 5, "from the file");
    assert_eq!(config.log.filter, "debug", "from the file");
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn flags_override_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "sb.toml", FILE);
    let flags = Flags {
        config: Some(path),
        grpc_addr: Some(addr("127.0.0.1:7703")),
        metrics_addr: Some(Listen::On(addr("127.0.0.1:0"))),
        data_dir: Some(PathBuf::from("/from/flags")),
        log: Some("warn,switchboard_node=trace".to_owned()),
        log_format: Some(LogFormat::Text),
        ..Flags::default()
    };
    let config = Config::load(
        &flags,
        env(&[
            ("SWITCHBOARD_GRPC__ADDR", "127.0.0.1:7602"),
            ("SWITCHBOARD_METRICS__ADDR", "off"),
            ("SWITCHBOARD_STORE__DATA_DIR", "/from/env"),
            ("SWITCHBOARD_LOG__FILTER", "error"),
            ("SWITCHBOARD_LOG__FORMAT", "json"),
            ("SWITCHBOARD_STORE__SNAPSHOT_EVERY", "77"),
        ]),
    )
    .unwrap();
    assert_eq!(config.grpc.addr, addr("127.0.0.1:7703"));
    assert_eq!(config.metrics.addr, Listen::On(addr("127.0.0.1:0")));
    assert_eq!(config.store.data_dir, PathBuf::from("/from/flags"));
    assert_eq!(config.log.filter, "warn,switchboard_node=trace");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.store.snapshot_every, 77, "no flag: the environment wins over the file");
    assert_eq!(config.grpc.max_request_bytes, 1000, "no flag, no variable: the file");
}

#[test]
fn the_file_can_be_named_by_the_environment_and_the_flag_wins() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = write(dir.path(), "env.toml", "[store]\nsnapshot_every = 11\n");
    let from_flag = write(dir.path(), "flag.toml", "[store]\nsnapshot_every = 22\n");
    let vars = env(&[("SWITCHBOARD_CONFIG", from_env.to_str().unwrap())]);

    let config = Config::load(&Flags::default(), vars.clone()).unwrap();
    assert_eq!(config.store.snapshot_every, 11);

    let flags = Flags { config: Some(from_flag), ..Flags::default() };
    let config = Config::load(&flags, vars).unwrap();
    assert_eq!(config.store.snapshot_every, 22);
}

#[test]
fn variables_that_only_share_the_prefix_are_ignored() {
    // ctl's address, and what Kubernetes injects for a Service named `switchboard`.
    let config = Config::load(
        &Flags::default(),
        env(&[
            ("SWITCHBOARD_ADDR", "http://127.0.0.1:7400"),
            ("SWITCHBOARD_SERVICE_HOST", "10.0.0.1"),
            ("SWITCHBOARD_PORT", "tcp://10.0.0.1:7400"),
            ("SWITCHBOARD_PORT_7400_TCP_ADDR", "10.0.0.1"),
        ]),
    )
    .unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn a_missing_config_file_is_an_error() {
    let flags =
        Flags { config: Some(PathBuf::from("/nonexistent/switchboard.toml")), ..Flags::default() };
    let err = Config::load(&flags, env(&[])).unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/switchboard.toml"), "{err:#}");
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "sb.toml", "[grpc]\nadress = \"127.0.0.1:1\"\n");
    let flags = Flags { config: Some(path), ..Flags::default() };
    let err = format!("{:#}", Config::load(&flags, env(&[])).unwrap_err());
    assert!(err.contains("adress"), "{err}");

    let err = Config::load(&Flags::default(), env(&[("SWITCHBOARD_GRPC__ADRESS", "127.0.0.1:1")]))
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("adress"), "{err}");
}

#[test]
fn malformed_values_are_refused() {
    let err = Config::load(&Flags::default(), env(&[("SWITCHBOARD_GRPC__ADDR", "localhost")]))
        .unwrap_err();
    assert!(format!("{err:#}").contains("SWITCHBOARD_GRPC__ADDR"), "{err:#}");
    let err = Config::load(&Flags::default(), env(&[("SWITCHBOARD_METRICS__ADDR", "nowhere")]))
        .unwrap_err();
    assert!(format!("{err:#}").contains("off"), "{err:#}");
}

#[test]
fn zero_sizes_are_refused_naming_the_key() {
    for (var, key) in [
        ("SWITCHBOARD_GRPC__MAX_REQUEST_BYTES", "grpc.max_request_bytes"),
        ("SWITCHBOARD_GRPC__CONCURRENCY_PER_CONNECTION", "grpc.concurrency_per_connection"),
        ("SWITCHBOARD_STORE__SNAPSHOT_EVERY", "store.snapshot_every"),
        ("SWITCHBOARD_SHUTDOWN__DRAIN_SECONDS", "shutdown.drain_seconds"),
    ] {
        let err = Config::load(&Flags::default(), env(&[(var, "0")])).unwrap_err();
        assert!(format!("{err:#}").contains(key), "{var}: {err:#}");
    }
}

#[test]
fn other_invalid_settings_are_refused() {
    let flags = Flags { data_dir: Some(PathBuf::new()), ..Flags::default() };
    let err = Config::load(&flags, env(&[])).unwrap_err();
    assert!(format!("{err:#}").contains("store.data_dir"), "{err:#}");

    let flags = Flags { log: Some("info,=[".to_owned()), ..Flags::default() };
    let err = Config::load(&flags, env(&[])).unwrap_err();
    assert!(format!("{err:#}").contains("log.filter"), "{err:#}");

    let flags = Flags {
        grpc_addr: Some(addr("127.0.0.1:7400")),
        metrics_addr: Some(Listen::On(addr("127.0.0.1:7400"))),
        ..Flags::default()
    };
    let err = Config::load(&flags, env(&[])).unwrap_err();
    assert!(format!("{err:#}").contains("metrics.addr"), "{err:#}");
}

#[test]
fn port_zero_for_both_listeners_is_allowed() {
    let flags = Flags {
        grpc_addr: Some(addr("127.0.0.1:0")),
        metrics_addr: Some(Listen::On(addr("127.0.0.1:0"))),
        ..Flags::default()
    };
    Config::load(&flags, env(&[])).unwrap();
}

#[test]
fn a_non_loopback_grpc_address_is_refused_without_authentication() {
    let flags = Flags { grpc_addr: Some(addr("0.0.0.0:7400")), ..Flags::default() };
    let refused = Config::load(&flags, env(&[])).unwrap_err().to_string();
    assert!(refused.contains("refusing to start"), "{refused}");
    let config =
        Config::load(&flags, env(&[("SWITCHBOARD_AUTH__TOKEN_KEYS", "[\"/run/jwt.key\"]")]))
            .unwrap();
    assert_eq!(config.auth.token_keys, vec![std::path::PathBuf::from("/run/jwt.key")]);
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("tls.cert_file"), "{warnings:?}");
}

#[test]
fn the_toml_dump_parses_back_to_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "sb.toml", FILE);
    for flags in [
        Flags::default(),
        Flags { config: Some(path), metrics_addr: Some(Listen::Off), ..Flags::default() },
    ] {
        let config = Config::load(&flags, env(&[])).unwrap();
        let text = config.to_toml().unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config, "{text}");
        // And loading the dump as a config file gives the same config again.
        let dumped = write(dir.path(), "dumped.toml", &text);
        let reloaded =
            Config::load(&Flags { config: Some(dumped), ..Flags::default() }, env(&[])).unwrap();
        assert_eq!(reloaded, config);
    }
}

#[test]
fn rust_log_is_the_log_filter_unless_switchboard_names_one() {
    let config = Config::load(&Flags::default(), env(&[("RUST_LOG", "warn")])).unwrap();
    assert_eq!(config.log.filter, "warn");
    let config = Config::load(
        &Flags::default(),
        env(&[("RUST_LOG", "warn"), ("SWITCHBOARD_LOG__FILTER", "debug")]),
    )
    .unwrap();
    assert_eq!(config.log.filter, "debug");
    let flags = Flags { log: Some("error".to_owned()), ..Flags::default() };
    let config = Config::load(&flags, env(&[("RUST_LOG", "warn")])).unwrap();
    assert_eq!(config.log.filter, "error");
}

#[test]
fn cluster_mode_needs_a_shared_store_and_sane_settings() {
    let flags = Flags { etcd: Some(vec!["127.0.0.1:2379".into()]), ..Flags::default() };
    let err = Config::load(&flags, env(&[])).unwrap_err().to_string();
    assert!(err.contains("store.url"), "{err}");
    let flags = Flags {
        etcd: Some(vec!["127.0.0.1:2379".into(), "127.0.0.2:2379".into()]),
        store: Some("postgres://sb@127.0.0.1/sb".into()),
        node_id: Some("node-a".into()),
        ..Flags::default()
    };
    let config =
        Config::load(&flags, env(&[("SWITCHBOARD_CLUSTER__LEASE_TTL_SECONDS", "4")])).unwrap();
    assert_eq!(config.cluster.etcd.len(), 2);
    assert_eq!(config.cluster.lease_ttl_seconds, 4);
    assert_eq!(config.cluster.shards, 1024);
    let node = config.node(addr("127.0.0.1:7400")).unwrap();
    let cluster = node.cluster.unwrap();
    assert_eq!(
        (cluster.node_id.as_str(), cluster.advertise_addr.as_str()),
        ("node-a", "127.0.0.1:7400")
    );
    assert_eq!(node.store_url.as_deref(), Some("postgres://sb@127.0.0.1/sb"));
    let err = Config::load(&flags, env(&[("SWITCHBOARD_CLUSTER__LEASE_TTL_SECONDS", "600")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lease_ttl_seconds"), "{err}");
    // Without etcd the node stays a single node on SQLite.
    assert!(
        Config::load(&Flags::default(), env(&[]))
            .unwrap()
            .node(addr("127.0.0.1:1"))
            .unwrap()
            .cluster
            .is_none()
    );
}

#[test]
fn the_postgresql_commit_linger_is_two_ms_settable_and_bounded() {
    let linger = |pairs: &[(&str, &str)]| {
        let config = Config::load(&Flags::default(), env(pairs))?;
        Ok::<_, anyhow::Error>(config.node(addr("127.0.0.1:1"))?.commit_linger)
    };
    assert_eq!(linger(&[]).unwrap(), std::time::Duration::from_millis(2));
    let set = [("SWITCHBOARD_STORE__POSTGRES_COMMIT_LINGER_US", "500")];
    assert_eq!(linger(&set).unwrap(), std::time::Duration::from_micros(500));
    let off = [("SWITCHBOARD_STORE__POSTGRES_COMMIT_LINGER_US", "0")];
    assert_eq!(linger(&off).unwrap(), std::time::Duration::ZERO);
    let long = [("SWITCHBOARD_STORE__POSTGRES_COMMIT_LINGER_US", "200000")];
    let err = linger(&long).unwrap_err().to_string();
    assert!(err.contains("store.postgres_commit_linger_us") && err.contains("100000"), "{err}");
}
