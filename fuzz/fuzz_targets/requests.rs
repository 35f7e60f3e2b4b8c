//! Request validation: whatever bytes arrive, the node must answer, never crash, and a
//! refused request must change nothing.
//!
//! - Resource names: `names::{tenant, child, conversation, check_id}` on arbitrary text; a
//!   name that parses must print back to exactly the input.
//! - Commands: each input is a sequence of length-prefixed protobuf `Command`s (the log
//!   record carrying any mutating request of the public API) decoded and applied to a tenant
//!   with a skill group, two agents and a conversation: proto decoding, the proto → core
//!   conversion and every handler's validation. After each: the routing core's invariants
//!   hold, and a refusal left the tenant's state byte for byte as it was.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use switchboard_node::apply::apply;
use switchboard_node::names;
use switchboard_node::state::TenantState;
use switchboard_proto::internal::v1::{Command, command::Op};
use switchboard_proto::v1 as pb;

const T0: u64 = 1_700_000_000_000;

fn fixture() -> &'static TenantState {
    static STATE: OnceLock<TenantState> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut state = TenantState::default();
        let mut at = T0;
        let mut run = |op: Op| {
            at += 1_000;
            apply(&mut state, &Command { at_ms: at, op: Some(op), ..Default::default() }).expect("fixture command");
        };
        run(Op::CreateTenant(pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        }));
        run(Op::PutGroup(pb::PutGroupRequest {
            name: "tenants/acme/groups/support".into(),
            policy: Some(pb::RoutingPolicy {
                offer_mode: pb::OfferMode::AutoAccept as i32,
                ..Default::default()
            }),
            ..Default::default()
        }));
        for agent in ["alice", "boss"] {
            run(Op::PutAgent(pb::PutAgentRequest {
                name: format!("tenants/acme/agents/{agent}"),
                capacity: 3,
                groups: vec!["tenants/acme/groups/support".into()],
                supervisor: agent == "boss",
                ..Default::default()
            }));
            run(Op::SetStatus(pb::SetStatusRequest {
                agent: format!("tenants/acme/agents/{agent}"),
                status: pb::AgentStatus::Online as i32,
                ..Default::default()
            }));
        }
        run(Op::PostMessage(pb::PostMessageRequest {
            customer: "tenants/acme/customers/carol".into(),
            channel: pb::Channel::Web as i32,
            text: "hello".into(),
            group: "tenants/acme/groups/support".into(),
            ..Default::default()
        }));
        state
    })
}

fn check_names(text: &str) {
    let _ = names::check_id("id", text);
    if let Ok(t) = names::tenant("name", text) {
        assert_eq!(names::tenant_name(&t), text);
    }
    for kind in ["agents", "groups", "customers"] {
        if let Ok((t, id)) = names::child("name", text, kind) {
            assert_eq!(names::child_name(&t, kind, &id), text);
        }
    }
    if let Ok((t, n)) = names::conversation("name", text) {
        // A number may be written with leading zeros or a plus sign; it names the same one.
        assert!(text.starts_with(&format!("tenants/{t}/conversations/")));
        assert_eq!(text.rsplit('/').next().and_then(|s| s.parse().ok()), Some(n));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_names(text);
    }
    let mut state = fixture().clone();
    let mut at = T0 + 60_000;
    let mut u = Unstructured::new(data);
    for _ in 0..16 {
        let Ok(len) = u.int_in_range(0..=512usize) else { break };
        let Ok(bytes) = u.bytes(len.min(u.len())) else { break };
        let Ok(mut cmd) = Command::decode(bytes) else { continue };
        // The node's clock never runs backwards within a tenant.
        at += cmd.at_ms % 86_400_000;
        cmd.at_ms = at;
        let before = rmp_serde::to_vec_named(&state).expect("snapshot");
        if apply(&mut state, &cmd).is_err() {
            let after = rmp_serde::to_vec_named(&state).expect("snapshot");
            assert!(before == after, "a refused command changed the state: {cmd:?}");
        }
        if let Err(why) = state.engine.router().check_invariants() {
            panic!("invariant broken after {cmd:?}: {why}");
        }
    }
});
