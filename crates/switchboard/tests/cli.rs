//! The binary's command line without a running node: `--dump-config` and refusals.

use std::process::{Command, Output};

use switchboard::config::{Config, Listen};

/// Runs the binary with a clean environment plus `vars`.
fn switchboard(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .expect("the switchboard binary runs")
}

#[test]
fn dump_config_prints_toml_that_parses_back() {
    let out = switchboard(&["serve", "--dump-config"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let config: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config, Config::default());
}

#[test]
fn dump_config_shows_every_layer_applied() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sb.toml");
    std::fs::write(&file, "[store]\nsnapshot_every = 5\n[log]\nfilter = \"debug\"\n").unwrap();
    let out = switchboard(
        &[
            "serve",
            "--dump-config",
            "--metrics-addr",
            "off",
            "--grpc-addr",
            "127.0.0.1:0",
            "--log",
            "warn",
        ],
        &[
            ("SWITCHBOARD_CONFIG", file.to_str().unwrap()),
            ("SWITCHBOARD_STORE__SNAPSHOT_EVERY", "42"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: Config = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(config.metrics.addr, Listen::Off);
    assert_eq!(config.grpc.addr.port(), 0);
    assert_eq!(config.store.snapshot_every, 42);
    assert_eq!(config.log.filter, "warn");
}

#[test]
fn an_invalid_setting_fails_naming_the_key() {
    let out =
        switchboard(&["serve", "--dump-config"], &[("SWITCHBOARD_GRPC__MAX_REQUEST_BYTES", "0")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("grpc.max_request_bytes"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn ctl_without_a_node_fails() {
    // Port 1 on loopback: nothing listens there.
    let out =
        switchboard(&["ctl", "--addr", "http://127.0.0.1:1", "tenant", "create", "acme"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}
