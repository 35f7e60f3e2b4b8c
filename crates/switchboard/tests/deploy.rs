//! Operations checks (issue 5): what `deploy/` and `helm/` reference — metric names, PromQL,
//! rules, manifests — is checked here with the real tools, never skipped. promtool comes from
//! Debian's `prometheus`; helm, kubectl, kubernetes-validate and hadolint from `scripts/setup`,
//! which puts them in `target/tools/bin`. A missing tool fails the test with the command to
//! run.
//!
//! The live-node check starts a real `switchboard serve` on ephemeral loopback ports, drives a
//! little traffic through every path the dashboards show, and stops it by PID.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::Node;

/// The Kubernetes version the manifests are validated against (kubectl and helm from the
/// pinned layer speak 1.35).
const KUBERNETES_VERSION: &str = "1.35.0";

/// Custom resources kubernetes-validate has no schema for; `deploy/check.py rendered` checks
/// them instead: against prometheus-operator's CRD schemas (`deploy/crds.mjs`, which allow
/// unknown fields), PrometheusRule through promtool, ServiceMonitor against a strict schema.
const CRD_KINDS: &[&str] = &["ServiceMonitor", "PrometheusRule"];

/// Metrics the dashboards read that a single node without etcd does not export: etcd request
/// times exist only in cluster mode (`tests/tests/cluster_metrics.rs` checks them on real
/// cluster nodes). Their names are constants in `switchboard-node/src/metrics.rs` (checked
/// below).
const CLUSTER_ONLY: &[&str] = &["switchboard_etcd_request_seconds_bucket"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// A tool `scripts/setup` installs into target/tools/bin.
fn tool(name: &str) -> Command {
    let path = root().join("target/tools/bin").join(name);
    assert!(path.exists(), "{} is missing: run scripts/setup", path.display());
    let mut c = Command::new(path);
    c.current_dir(root());
    c
}

fn promtool() -> Command {
    let mut c = Command::new("promtool");
    c.current_dir(root());
    c
}

/// `deploy/check.py` with PyYAML and jsonschema from target/tools/python.
fn check_py() -> Command {
    let python = root().join("target/tools/python");
    assert!(python.exists(), "{} is missing: run scripts/setup", python.display());
    let mut c = Command::new("python3");
    c.current_dir(root()).arg("deploy/check.py").env("PYTHONPATH", python);
    c
}

/// Runs a command that must succeed; returns its stdout.
fn run(c: &mut Command) -> String {
    let shown = format!("{c:?}");
    let out: Output = c.output().unwrap_or_else(|e| panic!("{shown}: {e} (run scripts/setup)"));
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{shown} failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout.into_owned()
}

/// Runs a command that must fail; returns stdout and stderr.
fn run_fails(c: &mut Command) -> String {
    let shown = format!("{c:?}");
    let out = c.output().unwrap_or_else(|e| panic!("{shown}: {e} (run scripts/setup)"));
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{shown} should have failed:\n{text}");
    text
}

/// kubernetes-validate --strict on rendered manifests: every built-in kind against its
/// schema (unknown fields refused); the only kinds it may not know are `CRD_KINDS`, which
/// `check.py rendered` checks instead, together with the deployment's own rules; it writes
/// each node's launch (TOML, arguments, environment) into `launch`.
fn validate_manifests(rendered: &Path, launch: &Path) -> String {
    let out =
        run(tool("kubernetes-validate").args(["--strict", "-k", KUBERNETES_VERSION]).arg(rendered));
    for line in out.lines().filter(|l| !l.starts_with("INFO")) {
        assert!(
            line.starts_with("WARN")
                && line.contains("Couldn't find schema for kind")
                && CRD_KINDS.iter().any(|k| line.contains(&format!("kind {k} "))),
            "kubernetes-validate: {line}"
        );
    }
    let passed = out.lines().filter(|l| l.starts_with("INFO") && l.contains("passed")).count();
    assert!(passed > 0, "kubernetes-validate validated nothing:\n{out}");
    run(check_py().env("TOML_OUT", launch).arg("rendered").arg(rendered))
}

/// Rendered manifests, then the node exactly as pod 0 of each StatefulSet would start it
/// (arguments, environment with sample Secret values, the rendered TOML) run by the real
/// binary with `--dump-config`, which validates every setting and exits.
fn validate_and_launch(rendered: &Path, dir: &Path) -> String {
    let launch = dir.join(format!("launch-{}", rendered.file_stem().unwrap().to_string_lossy()));
    std::fs::create_dir(&launch).unwrap();
    let out = validate_manifests(rendered, &launch);
    let mut launched = 0;
    for entry in std::fs::read_dir(&launch).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "args") {
            continue;
        }
        let read = |ext: &str| std::fs::read_to_string(path.with_extension(ext)).unwrap();
        let config = launch.join(format!("{}.toml", read("config")));
        let mut node = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        node.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for line in read("env").lines() {
            let (k, v) = line.split_once('=').expect("NAME=value");
            node.env(k, v);
        }
        for arg in read("args").lines() {
            node.arg(if arg == "{config}" { config.as_os_str() } else { arg.as_ref() });
        }
        let dumped = run(node.arg("--dump-config"));
        assert!(dumped.contains("[grpc]"), "{dumped}");
        launched += 1;
    }
    assert!(launched > 0, "no StatefulSet of switchboard in {}", rendered.display());
    out
}

#[test]
fn helm_chart_lints_renders_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let chart = "helm/switchboard";
    // The default values are what `helm install sb helm/switchboard` takes: one node, a token
    // key the chart generates.
    let values = ["", "ci/single-values.yaml", "ci/cluster-values.yaml", "ci/secrets-values.yaml"];
    for (i, values) in values.iter().enumerate() {
        let file = |c: &mut Command| {
            if !values.is_empty() {
                c.arg("-f").arg(Path::new(chart).join(values));
            }
        };
        let mut lint = tool("helm");
        lint.args(["lint", "--strict", chart]);
        file(&mut lint);
        let out = run(&mut lint);
        assert!(out.contains("0 chart(s) failed"), "{out}");

        let mut template = tool("helm");
        template.args(["template", "sb", chart, "--namespace", "switchboard"]);
        file(&mut template);
        let rendered = dir.path().join(format!("rendered-{i}.yaml"));
        std::fs::write(&rendered, run(&mut template)).unwrap();
        let out = validate_and_launch(&rendered, dir.path());
        assert!(out.contains("StatefulSet sb-switchboard: Parallel"), "{out}");
        // Without TLS the probes are gRPC health checks; with it and a cluster CA (both cluster
        // value sets), `switchboard ctl health` over TLS, which the kubelet can run.
        let probes = if i <= 1 { "gRPC probes" } else { "ctl health probes (TLS)" };
        assert!(out.contains(probes), "{values}: wanted {probes:?} in\n{out}");
        // `helm test`: ctl health against the Service and each node.
        let replicas = [1, 1, 3, 2][i];
        let tested = format!("helm test runs ctl health against {} addresses", replicas + 1);
        assert!(out.contains(&tested), "{values}: wanted {tested:?} in\n{out}");
        // Without a Secret named, the chart generates the token key and mounts it; with one,
        // it generates none.
        let generated = "Secret sb-switchboard-auth: hs256.key rendered (64 bytes), mounted";
        assert_eq!(out.contains(generated), values.is_empty(), "{values}:\n{out}");
        let text = std::fs::read_to_string(&rendered).unwrap();
        assert_eq!(text.contains("name: sb-switchboard-auth\n"), values.is_empty(), "{values}");
        if *values == "ci/cluster-values.yaml" {
            assert!(out.contains("PrometheusRule sb-switchboard: 19 rules pass promtool"), "{out}");
            assert!(out.contains("ServiceMonitor sb-switchboard: valid"), "{out}");
            assert!(out.contains("PrometheusRule sb-switchboard: valid against the prometheus-operator CRD schema"), "{out}");
            assert!(out.contains("contact-center.json matches deploy/grafana"), "{out}");
        }
    }

    // Packaged (files/ links resolved into the archive), it renders the same.
    run(tool("helm").args(["package", chart, "-d"]).arg(dir.path()));
    let packaged = run(tool("helm")
        .args(["template", "sb", "--namespace", "switchboard", "-f"])
        .arg(Path::new(chart).join("ci/single-values.yaml"))
        .arg(
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|x| x == "tgz"))
                .expect("helm package wrote the chart archive"),
        ));
    let from_dir = std::fs::read_to_string(dir.path().join("rendered-1.yaml")).unwrap();
    assert!(packaged == from_dir, "the packaged chart renders differently");

    // TLS without a cluster CA: ctl in a test Pod could not verify the node, so no test Pod.
    let tls_only = run(tool("helm")
        .args(["template", "sb", chart, "--set", "tls.existingSecret=t", "-f"])
        .arg(Path::new(chart).join("ci/single-values.yaml")));
    assert!(!tls_only.contains("helm.sh/hook: test"), "{tls_only}");

    // values.schema.json is strict, and the chart refuses what cannot work: each case changes
    // single-values.yaml (which renders) in one way.
    for (args, says) in [
        (&["--set", "bogus=1"][..], "additional properties 'bogus' not allowed"),
        (&["--set", "probes.readiness.timeout=3"][..], "additional properties 'timeout'"),
        (&["--set", "replicas=3"][..], "more than one replica needs cluster.etcd"),
        (
            &["--set", "replicas=3", "--set", "cluster.etcd.endpoints={etcd:2379}"][..],
            "more than one replica needs postgres",
        ),
        (
            &["--set", "shutdown.terminationGracePeriodSeconds=20"][..],
            "must be longer than preStopSleepSeconds + drainSeconds",
        ),
        (&["--set", "cluster.etcd.endpoints={not-an-endpoint}"][..], "does not match pattern"),
        // A node beyond loopback without token keys refuses to start: so does the chart.
        (&["--set", "auth.keys=null"][..], "missing property 'keys'"),
        (&["--set-json", "auth.keys=[]"][..], "minItems"),
        // The generated Secret holds one HS256 key; two (a rotation) need a Secret of one's own.
        (
            &["--set", "auth.existingSecret=", "--set", "auth.keys={a.key,b.key}"][..],
            "without auth.existingSecret the chart generates one HS256 secret",
        ),
        (&["--set", "auth.keys={../x}"][..], "does not match pattern"),
        // Cluster mode with token keys needs mutual TLS between the nodes.
        (
            &["--set", "cluster.etcd.endpoints={etcd:2379}"][..],
            "cluster.etcd needs mutual TLS between nodes",
        ),
        (
            &["--set", "cluster.etcd.endpoints={etcd:2379}", "--set", "tls.existingSecret=t"][..],
            "cluster.etcd needs mutual TLS between nodes",
        ),
        (
            &["--set", "tls.ca.existingSecret=c"][..],
            "tls.ca.existingSecret needs tls.existingSecret",
        ),
    ] {
        let out = run_fails(
            tool("helm")
                .args(["template", "sb", chart, "-f"])
                .arg(Path::new(chart).join("ci/single-values.yaml"))
                .args(args),
        );
        assert!(out.contains(says), "helm template {args:?}: wanted {says:?} in\n{out}");
    }
}

/// The generated token key survives upgrades: `helm template --dry-run=server` runs the
/// chart's real `lookup` against a stand-in API server (`support/kube_api.py`, no cluster
/// here) that holds the Secret an earlier install made, and the key comes back unchanged;
/// without it (plain `helm template`, or a first install) a new random key is made each time.
#[test]
fn the_generated_token_key_is_read_back_on_upgrade() {
    let chart = "helm/switchboard";
    let key_of = |rendered: &str| -> String {
        let doc = rendered
            .split("\n---")
            .find(|d| d.contains("kind: Secret") && d.contains("name: sb-switchboard-auth\n"))
            .unwrap_or_else(|| panic!("no generated Secret in\n{rendered}"));
        let line = doc.lines().find_map(|l| l.trim().strip_prefix("hs256.key: "));
        line.expect("hs256.key in the Secret").to_owned()
    };
    let fresh: Vec<String> = (0..2)
        .map(|_| key_of(&run(tool("helm").args(["template", "sb", chart, "-n", "switchboard"]))))
        .collect();
    assert_ne!(fresh[0], fresh[1], "with nothing to look up, each render makes a new key");

    let earlier = "UFJFVklPVVNMWUdFTkVSQVRFRFBSRVZJT1VTTFlHRU5FUkFURURQUkVWSU9VU0xZ";
    let existing = format!(
        r#"{{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {{"name": "sb-switchboard-auth", "namespace": "switchboard",
              "labels": {{"app.kubernetes.io/managed-by": "Helm"}},
              "annotations": {{"meta.helm.sh/release-name": "sb",
                               "meta.helm.sh/release-namespace": "switchboard"}}}},
            "data": {{"hs256.key": "{earlier}"}}}}"#
    );
    let script = root().join("crates/switchboard/tests/support/kube_api.py");
    let mut api = std::process::Command::new("python3")
        .arg(script)
        .arg(existing)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the stand-in API server");
    let port = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(api.stdout.take().unwrap()).read_line(&mut line).unwrap();
        line.trim().to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: c, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
             users: [{{name: u, user: {{}}}}]\n\
             contexts: [{{name: c, context: {{cluster: c, user: u, namespace: switchboard}}}}]\n"
        ),
    )
    .unwrap();
    let upgraded = tool("helm")
        .args(["template", "sb", chart, "-n", "switchboard", "--dry-run=server"])
        // The stand-in serves no OpenAPI documents; kubernetes-validate checks the schemas.
        .arg("--disable-openapi-validation")
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("run helm");
    let _ = api.kill();
    let _ = api.wait();
    let stdout = String::from_utf8_lossy(&upgraded.stdout);
    assert!(
        upgraded.status.success(),
        "helm template --dry-run=server:\n{stdout}\n{}",
        String::from_utf8_lossy(&upgraded.stderr)
    );
    assert_eq!(key_of(&stdout), earlier, "the key of the earlier install is kept");
}

#[test]
fn kustomize_manifests_build_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("kustomize.yaml");
    std::fs::write(&rendered, run(tool("kubectl").args(["kustomize", "deploy/kubernetes"])))
        .unwrap();
    let out = validate_and_launch(&rendered, dir.path());
    assert!(out.contains("StatefulSet switchboard: Parallel"), "{out}");
    assert!(out.contains("ctl health probes (TLS)"), "{out}");
    let text = std::fs::read_to_string(&rendered).unwrap();
    assert!(text.contains("name: etcd") && text.contains("kind: StatefulSet"), "example etcd");

    // check.py refuses what would not work in a cluster even though the launch replay (which
    // reads no key file) passes: a gRPC probe against the TLS-only port, and a key file the
    // TOML names that no mounted Secret provides.
    for (from, to, says) in [
        (
            "httpGet:\n            path: /metrics\n            port: 9400",
            "grpc:\n            port: 7400",
            "is a gRPC probe, but the grpc port speaks TLS",
        ),
        (
            "mountPath: /etc/switchboard/auth\n",
            "mountPath: /etc/switchboard/elsewhere\n",
            "/etc/switchboard/auth/hs256.key (in its TOML) is not a file of a mounted Secret",
        ),
    ] {
        assert!(text.contains(from), "{from:?} in the kustomize output");
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, text.replace(from, to)).unwrap();
        let out = run_fails(check_py().arg("rendered").arg(&broken));
        assert!(out.contains(says), "wanted {says:?} in\n{out}");
    }
}

/// No Docker daemon is assumed: hadolint lints the Dockerfile and its structure is checked.
#[test]
fn dockerfile_is_multi_stage_and_runs_as_non_root() {
    run(tool("hadolint").arg("deploy/docker/Dockerfile"));
    let text = std::fs::read_to_string(root().join("deploy/docker/Dockerfile")).unwrap();
    // One instruction a line: continuation lines joined, comments dropped.
    let joined = text.replace("\\\n", " ");
    let instructions: Vec<(String, String)> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(i, _)| i.chars().all(|c| c.is_ascii_uppercase()))
        .map(|(i, rest)| (i.to_owned(), rest.trim().to_owned()))
        .collect();
    let stages: Vec<usize> =
        instructions.iter().enumerate().filter(|(_, (i, _))| i == "FROM").map(|(n, _)| n).collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let (build, last) =
        (&instructions[stages[0]..stages[1]], &instructions[*stages.last().unwrap()..]);
    assert!(instructions[stages[0]].1.ends_with(" AS build"), "first stage is named build");
    assert!(
        build.iter().any(|(i, r)| i == "RUN" && r.contains("protobuf-compiler")),
        "protoc in the build stage"
    );
    // The shipped profile, steered by a profile of the contact-center load.
    assert!(text.contains("scripts/build-pgo /out/switchboard"), "builds with scripts/build-pgo");
    let pgo = std::fs::read_to_string(root().join("scripts/build-pgo")).unwrap();
    assert!(
        pgo.contains("--profile production") && pgo.contains("--locked"),
        "scripts/build-pgo builds the shipped profile from the lock file"
    );
    // Not run here (three production builds); parsed.
    run(Command::new("bash").arg("-n").arg(root().join("scripts/build-pgo")));
    assert!(
        last.iter().any(|(i, r)| i == "COPY" && r.starts_with("--from=build")),
        "the runtime stage takes the binary from the build stage"
    );
    let user = last.iter().rev().find(|(i, _)| i == "USER").map(|(_, u)| u.as_str());
    let user = user.expect("the runtime stage sets USER");
    let name = user.split(':').next().unwrap();
    assert!(name != "root" && name != "0", "non-root USER, got {user}");
    let expose = last.iter().find(|(i, _)| i == "EXPOSE").map(|(_, p)| p.as_str());
    assert_eq!(expose, Some("7400 9400"), "the gRPC and metrics ports");
}

#[test]
fn prometheus_rules_pass_promtool_and_their_unit_tests() {
    run(promtool().args([
        "check",
        "rules",
        "deploy/prometheus/recording.rules.yml",
        "deploy/prometheus/alerts.rules.yml",
    ]));
    let out = run(promtool().args(["test", "rules", "deploy/prometheus/rules.test.yml"]));
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn dashboards_are_generated_and_every_expression_parses() {
    run(Command::new("python3")
        .current_dir(root())
        .args(["deploy/grafana/generate.py", "--check"]));
    let dir = tempfile::tempdir().unwrap();
    run(check_py().arg("promql").arg(dir.path()));
    let out = run(promtool().args(["check", "rules"]).arg(dir.path().join("dashboards.rules.yml")));
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Sample names in a Prometheus text exposition (`name{...} value` or `name value`).
fn sample_names(scrape: &str) -> BTreeSet<String> {
    let body = scrape.split_once("\r\n\r\n").map_or(scrape, |(_, b)| b);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The metrics the dashboards and alerts read, by name (minus those only a cluster has).
fn read_by_deploy() -> BTreeSet<String> {
    let out = tempfile::tempdir().unwrap();
    let used = run(check_py().arg("promql").arg(out.path()));
    used.lines().filter(|n| !CLUSTER_ONLY.contains(n)).map(str::to_owned).collect()
}

/// Which of `used` a live node does not export; gauges are sampled on an interval, so this
/// polls (bounded) until every series is there.
async fn unexported(node: &Node, used: &BTreeSet<String>) -> BTreeSet<String> {
    let mut missing = BTreeSet::new();
    for _ in 0..60 {
        let names = sample_names(&support::scrape(&node.metrics));
        missing = used
            .iter()
            .filter(|n| !names.contains(*n) && !CLUSTER_ONLY.contains(&n.as_str()))
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    missing
}

/// An actor tenant (conversation, agent and router actors) feeds the same series as a
/// tenant actor: on a node whose only tenant is one, driven down every path, every metric
/// the dashboards and alerts read is exported, and the business counters carry its tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_tenant_feeds_every_metric_the_dashboards_read() {
    let dir = tempfile::tempdir().unwrap();
    let used = read_by_deploy();
    let node = Node::start_with_env(dir.path(), &[("SWITCHBOARD_STORE__SNAPSHOT_EVERY", "5")]);
    let channel = tonic::transport::Channel::from_shared(node.grpc.clone()).unwrap();
    let routing = switchboard_proto::v1::TenantRouting::Actors;
    support::traffic::drive_every_path_on(channel.connect().await.unwrap(), "acts", routing).await;
    let missing = unexported(&node, &used).await;
    assert!(missing.is_empty(), "read by deploy/ but not exported for actors: {missing:?}");
    let scrape = support::scrape(&node.metrics);
    for counter in [
        "switchboard_conversations_opened_total",
        "switchboard_assignments_total",
        "switchboard_conversations_ended_total",
        "switchboard_offers_total",
        "switchboard_events_total",
        "switchboard_automatic_replies_total",
        "switchboard_commands_refused_total",
        "switchboard_first_response_seconds_count",
        "switchboard_queue_wait_seconds_count",
    ] {
        let ours = |l: &&str| l.starts_with(counter) && l.contains(r#"tenant="acts""#);
        assert!(scrape.lines().any(|l| ours(&l)), "{counter} for the actor tenant in\n{scrape}");
    }
    // The replies the mini-program's budget withheld count against its channel.
    let withheld = r#"switchboard_channel_budget_exhausted_total{tenant="acts",channel="mini_program",by="automatic"}"#;
    assert!(scrape.contains(withheld), "{withheld} in\n{scrape}");
    // Who moved a conversation, as the tenant actor labels it.
    for reason in ["agent_transfer", "supervisor"] {
        let moved = format!(
            r#"switchboard_reassignments_total{{tenant="acts",target="group",reason="{reason}"}}"#
        );
        assert!(scrape.contains(&moved), "{moved} in\n{scrape}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_and_alerts_read_is_on_a_live_node() {
    let dir = tempfile::tempdir().unwrap();
    let used = {
        let out = tempfile::tempdir().unwrap();
        run(check_py().arg("promql").arg(out.path()))
    };
    let used: BTreeSet<String> = used.lines().map(str::to_owned).collect();
    assert!(used.len() > 20, "the dashboards read metrics: {used:?}");
    let source = include_str!("../../switchboard-node/src/metrics.rs");
    for name in CLUSTER_ONLY {
        let base =
            ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(source.contains(&format!("\"{base}\"")), "{base} is not a metric constant");
    }

    // Snapshots every few commands, so the snapshot-size histogram has samples.
    let node = Node::start_with_env(dir.path(), &[("SWITCHBOARD_STORE__SNAPSHOT_EVERY", "5")]);
    let channel = tonic::transport::Channel::from_shared(node.grpc.clone()).unwrap();
    support::traffic::drive_every_path(channel.connect().await.unwrap(), "ops").await;

    let missing = unexported(&node, &used).await;
    assert!(missing.is_empty(), "read by deploy/ but not exported by a live node: {missing:?}");
    // The chart's probes ask the gRPC health service for "" (startup, readiness) and for
    // the liveness service of values.yaml: both answer SERVING on a running node.
    let values = std::fs::read_to_string(root().join("helm/switchboard/values.yaml")).unwrap();
    let liveness = values
        .split("liveness:")
        .nth(1)
        .and_then(|rest| rest.lines().find_map(|l| l.trim().strip_prefix("service: ")))
        .expect("probes.liveness.service in values.yaml");
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Channel::from_shared(node.grpc.clone()).unwrap().connect().await.unwrap(),
    );
    for service in ["", liveness] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"))
            .into_inner()
            .status;
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        assert_eq!(status, serving, "health of {service:?}");
    }

    // The outcomes the alerts and panels split by, with bounded labels.
    let scrape = support::scrape(&node.metrics);
    // Every histogram has explicit buckets (metrics::HISTOGRAMS); one left out would be
    // exported as a summary, which cannot be aggregated across pods.
    for line in scrape.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(!line.ends_with(" summary"), "a summary, not a histogram: {line}");
    }
    for want in [
        r#"switchboard_offers_total{tenant="ops",outcome="accepted"} 1"#,
        r#"switchboard_offers_total{tenant="ops",outcome="declined"} 1"#,
        r#"switchboard_queue_wait_seconds_count{tenant="ops",group="sales",outcome="assigned"} 1"#,
        r#"switchboard_queue_wait_seconds_count{tenant="ops",group="vip",outcome="abandoned"} 2"#,
        r#"switchboard_queue_wait_seconds_count{tenant="ops",group="sales",outcome="transferred"} 1"#,
        r#"switchboard_abandoned_total{tenant="ops",group="vip"} 2"#,
        r#"switchboard_reassignments_total{tenant="ops",target="group",reason="supervisor"} 1"#,
        r#"switchboard_reassignments_total{tenant="ops",target="group",reason="agent_transfer"} 1"#,
        r#"switchboard_reassignments_total{tenant="ops",target="group",reason="agent_offline"} 1"#,
        // Gauges are sampled on an interval: their series, not their values.
        r#"switchboard_queue_agents_online{tenant="ops",group="vip"} "#,
        r#"switchboard_queue_agents_online{tenant="ops",group="sales"} "#,
        r#"switchboard_automatic_replies_suppressed_total{tenant="ops",kind="message_received"}"#,
        r#"switchboard_channel_budget_exhausted_total{tenant="ops",channel="mini_program",by="automatic"}"#,
        r#"switchboard_channel_budget_exhausted_total{tenant="ops",channel="mini_program",by="agent"} 1"#,
        r#"switchboard_commands_refused_total{tenant="ops",kind="send_message",reason="REPLY_BUDGET_EXHAUSTED"} 1"#,
        r#"switchboard_queue_wait_seconds_bucket{tenant="ops",group="sales",outcome="assigned",le="20"} 1"#,
    ] {
        assert!(scrape.contains(want), "missing {want} in\n{scrape}");
    }
}
