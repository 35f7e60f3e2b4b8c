//! `switchboard ctl simulate` against a real node: the configuration is read over the API
//! (groups, their policies, agents and their status) and the what-if prints sane figures per
//! group. Bounds only, no timing.

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::Node;
use support::traffic::{Clients, put_agent, put_group, rid, set_status};
use switchboard_proto::v1 as pb;

fn ctl(node: &Node, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["ctl", "--addr", &node.grpc])
        .args(args)
        .env_remove("SWITCHBOARD_TOKEN")
        .output()
        .expect("the switchboard binary runs")
}

/// Tenant `acme`: `sales` (auto-accept) with a1, a2 (capacity 2, online) and a3 (offline);
/// `support` (offer mode) with b1 (capacity 1, online) and b2 (busy); c1 in both (capacity 3,
/// online).
async fn center(node: &Node) {
    let channel = tonic::transport::Channel::from_shared(node.grpc.clone())
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut c = Clients::new(channel);
    c.admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            display_name: "Acme".into(),
            settings: None,
            request_id: rid("tenant"),
            routing: Default::default(),
        })
        .await
        .expect("create tenant");
    put_group(&mut c, "acme", "sales", pb::OfferMode::AutoAccept).await;
    put_group(&mut c, "acme", "support", pb::OfferMode::Offer).await;
    for a in ["a1", "a2", "a3"] {
        put_agent(&mut c, "acme", a, "sales", 2, false).await;
    }
    for b in ["b1", "b2"] {
        put_agent(&mut c, "acme", b, "support", 1, false).await;
    }
    c.admin
        .put_agent(pb::PutAgentRequest {
            name: "tenants/acme/agents/c1".into(),
            nickname: "c1".into(),
            capacity: 3,
            groups: vec!["tenants/acme/groups/sales".into(), "tenants/acme/groups/support".into()],
            replies: None,
            supervisor: false,
            request_id: rid("agent"),
            update_mask: None,
            proficiencies: Vec::new(),
        })
        .await
        .expect("put c1");
    for a in ["a1", "a2", "b1", "c1"] {
        set_status(&mut c, "acme", a, pb::AgentStatus::Online).await;
    }
    set_status(&mut c, "acme", "b2", pb::AgentStatus::Busy).await;
}

fn figure(row: &Value, name: &str) -> f64 {
    row[name]["value"].as_f64().unwrap_or_else(|| panic!("{name} in {row}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn simulate_reads_the_live_configuration_and_predicts_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    center(&node).await;

    let args = [
        "simulate",
        "acme",
        "--arrivals",
        "sales=40/h,support=15/h",
        "--handle",
        "sales=300,support=240",
        "--patience",
        "180",
        "--hours",
        "1",
        "--seed",
        "7",
    ];
    let out = ctl(&node, &args);
    assert_eq!(out.stdout.iter().filter(|b| **b == b'\n').count(), 1, "one JSON line");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("simulating"), "no progress bar when stderr is not a terminal");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    eprintln!("{report:#}");

    assert_eq!(report["agents"], 6);
    assert_eq!(report["agents_on_shift"], 5, "a3 is offline; b2 busy counts as on shift");
    assert_eq!(report["sl_target_s"], 20.0);
    let groups = report["groups"].as_array().expect("groups");
    let names: Vec<&str> = groups.iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(names, ["sales", "support"]);
    // sales: a1, a2 (2 slots each) and c1 (3); support: b1, b2 (1 each) and c1.
    assert_eq!((groups[0]["agents"].as_u64(), groups[0]["slots"].as_u64()), (Some(3), Some(7)));
    assert_eq!((groups[1]["agents"].as_u64(), groups[1]["slots"].as_u64()), (Some(3), Some(5)));
    for row in groups.iter().chain([&report["all"]]) {
        assert!(row["offered"].as_u64().unwrap() > 0, "{row}");
        let sl = figure(row, "service_level");
        let abandonment = figure(row, "abandonment");
        let occupancy = figure(row, "occupancy");
        assert!((0.0..=1.0).contains(&sl), "{row}");
        assert!((0.0..=1.0).contains(&abandonment), "{row}");
        assert!(occupancy > 0.0 && occupancy <= 1.0, "{row}");
        assert!(figure(row, "asa_s") >= 0.0, "{row}");
        assert!(row["service_level"]["se"].as_f64().is_some(), "standard errors: {row}");
    }
    let assumptions = report["assumptions"].to_string();
    assert!(assumptions.contains("no shifts"), "{assumptions}");

    // JSON above is ctl's default; the same as a table.
    let table = ctl(&node, &[&args[..], &["-o", "table"]].concat());
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    let text = String::from_utf8(table.stdout).unwrap();
    eprintln!("{text}");
    for want in ["sales", "support", "all", "SL = answered within 20 s", "5 of 6 agents on shift"] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    // A what-if on staffing: two more support agents of capacity 2 on top of the live ones.
    let out = ctl(&node, &[&args[..], &["--add-agents", "support=2x2"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let more: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(
        (more["agents_on_shift"].as_u64(), more["agents_added"].as_u64()),
        (Some(7), Some(2))
    );
    let support = &more["groups"][1];
    assert_eq!((support["agents"].as_u64(), support["slots"].as_u64()), (Some(5), Some(9)));

    // Refusals name what to fix.
    let out = ctl(
        &node,
        &[
            "simulate",
            "acme",
            "--arrivals",
            "billing=5/h",
            "--handle",
            "billing=60",
            "--hours",
            "1",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--arrivals") && stderr.contains("billing"), "{stderr}");
    let out = ctl(
        &node,
        &["simulate", "nobody", "--arrivals", "a=5/h", "--handle", "a=60", "--hours", "1"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("NotFound"), "{stderr}");
}
