//! Security end to end, against real `switchboard serve` processes over real gRPC: every role
//! against every public method (allowed or refused as designed), tenant isolation for every
//! method, missing, expired and forged tokens, agents acting only as themselves, the rate and
//! stream limits, a node that refuses to start beyond loopback without authentication, and
//! TLS with node-to-node mutual TLS. Tokens are minted here with fixed expiry times (far in
//! the future, or long past), so nothing depends on the clock.

mod support;

use support::auth::{FUTURE, PAST, SECRET, authed, mint, mint_with, start_authenticated, write};
use support::{Node, rid};
use switchboard_proto::v1 as pb;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_types::StatusExt;

async fn connect(url: &str) -> Channel {
    Channel::from_shared(url.to_owned()).expect("uri").connect().await.expect("connect")
}

/// Any request message: every public request's field 1 is the resource or acting name it
/// works on (`ListTenants` takes none), so one shape reaches every method's authorization.
#[derive(Clone, PartialEq, prost::Message)]
struct Named {
    #[prost(string, tag = "1")]
    name: String,
}

/// Any response message (fields skipped).
#[derive(Clone, PartialEq, prost::Message)]
struct Anything {}

/// A PostMessages message: field 1 as [`Named`], and the request id (field 8) it requires.
#[derive(Clone, PartialEq, prost::Message)]
struct NamedMessage {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "8")]
    request_id: String,
}

/// A PostMessages answer: only its refusal's code read (`MessageError.code`).
#[derive(Clone, PartialEq, prost::Message)]
struct StreamAnswer {
    #[prost(message, optional, tag = "3")]
    error: Option<Refusal>,
}

/// A DeskCommands message: an Accept (field 1) of `AgentConversationRequest` shape, field 1
/// (the acting agent) named, with its request id (field 3).
#[derive(Clone, PartialEq, prost::Message)]
struct NamedCommand {
    #[prost(message, optional, tag = "1")]
    accept: Option<NamedAgentCall>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NamedAgentCall {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "3")]
    request_id: String,
}

/// A DeskCommands answer: only its refusal's code read.
#[derive(Clone, PartialEq, prost::Message)]
struct CommandAnswer {
    #[prost(message, optional, tag = "4")]
    error: Option<Refusal>,
}

/// One message on a command stream (PostMessages, DeskCommands): its answer's code.
async fn stream_call<M, A>(
    grpc: &mut tonic::client::Grpc<Channel>,
    path: PathAndQuery,
    message: M,
    token: Option<&str>,
    refused: impl Fn(A) -> Option<i32>,
) -> Code
where
    M: prost::Message + Send + Sync + 'static,
    A: prost::Message + Default + Send + Sync + 'static,
{
    let messages = tokio_stream::iter([message]);
    let req = match token {
        Some(t) => authed(messages, t),
        None => tonic::Request::new(messages),
    };
    let codec = tonic_prost::ProstCodec::<M, A>::default();
    let answered = match grpc.streaming(req, path, codec).await {
        Ok(answers) => answers.into_inner().message().await,
        Err(status) => Err(status),
    };
    match answered {
        Ok(Some(answer)) => refused(answer).map_or(Code::Ok, Code::from_i32),
        Ok(None) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct Refusal {
    #[prost(int32, tag = "1")]
    code: i32,
}

/// Calls `/switchboard.v1.{method}` with field 1 set to `name`; the status code (OK on
/// success, or for a stream that opened). On PostMessages, one message is sent and the code
/// is its answer's.
async fn raw_call(channel: &Channel, method: &str, name: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let path = PathAndQuery::try_from(format!("/switchboard.v1.{method}")).expect("path");
    if method == "ChannelService/PostMessages" {
        let message = NamedMessage { name: name.to_owned(), request_id: rid("raw") };
        let refused = |a: StreamAnswer| a.error.map(|e| e.code);
        return stream_call(&mut grpc, path, message, token, refused).await;
    }
    if method == "AgentService/DeskCommands" {
        let accept = NamedAgentCall { name: name.to_owned(), request_id: rid("raw") };
        let message = NamedCommand { accept: Some(accept) };
        let refused = |a: CommandAnswer| a.error.map(|e| e.code);
        return stream_call(&mut grpc, path, message, token, refused).await;
    }
    let message = Named { name: name.to_owned() };
    let req = match token {
        Some(t) => authed(message, t),
        None => tonic::Request::new(message),
    };
    let codec = tonic_prost::ProstCodec::<Named, Anything>::default();
    let result = if method.contains("/Stream") {
        grpc.server_streaming(req, path, codec).await.map(drop)
    } else {
        grpc.unary(req, path, codec).await.map(drop)
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// What a method's field 1 names, in tenant `t`, for a caller acting as `me`.
#[derive(Clone, Copy)]
enum Name {
    Tenant,
    NewTenant,
    Nothing,
    /// The acting agent (or supervisor): the caller's own agent.
    Me,
    Conversation,
    Group,
    Agent,
    Customer,
    /// An agent (or group) that does not exist (deletes must not disturb the fixture).
    Ghost,
    GhostGroup,
    /// A webhook (none exists: a put is refused for its missing URL, a read is not found).
    Webhook,
}

/// `conversation`: the name of the fixture's conversation in `t`.
fn name(kind: Name, t: &str, me: &str, role: &str, conversation: &str) -> String {
    let me = if me.is_empty() { "alice" } else { me };
    match kind {
        Name::Tenant => format!("tenants/{t}"),
        Name::NewTenant => format!("new-{role}-{t}"),
        Name::Nothing => String::new(),
        Name::Me => format!("tenants/{t}/agents/{me}"),
        Name::Conversation => conversation.to_owned(),
        Name::Group => format!("tenants/{t}/groups/support"),
        Name::Agent => format!("tenants/{t}/agents/alice"),
        Name::Customer => format!("tenants/{t}/customers/carol"),
        Name::Ghost => format!("tenants/{t}/agents/ghost"),
        Name::GhostGroup => format!("tenants/{t}/groups/ghost"),
        Name::Webhook => format!("tenants/{t}/webhooks/crm"),
    }
}

/// Every public method, what field 1 names, and the roles allowed (i integrator, a agent,
/// s supervisor, d tenant administrator, o operator). Written out here independently of the
/// node's policy table, so a change to either shows up.
const METHODS: &[(&str, Name, &str)] = &[
    ("ChannelService/PostMessage", Name::Customer, "i"),
    ("ChannelService/PostMessages", Name::Customer, "i"),
    ("ChannelService/OpenService", Name::Customer, "i"),
    ("ChannelService/RequestHuman", Name::Conversation, "i"),
    ("ChannelService/RateConversation", Name::Conversation, "i"),
    ("ChannelService/GetConversation", Name::Conversation, "isdo"),
    ("ChannelService/StreamOutbound", Name::Tenant, "i"),
    ("EventService/StreamEvents", Name::Tenant, "ido"),
    ("AgentService/SetStatus", Name::Me, "as"),
    ("AgentService/StreamEvents", Name::Me, "as"),
    ("AgentService/Accept", Name::Me, "as"),
    ("AgentService/Decline", Name::Me, "as"),
    ("AgentService/Pick", Name::Me, "as"),
    ("AgentService/ListUnaccepted", Name::Me, "as"),
    ("AgentService/ListAssigned", Name::Me, "as"),
    ("AgentService/SendMessage", Name::Me, "as"),
    ("AgentService/DeskCommands", Name::Me, "as"),
    ("AgentService/MarkRead", Name::Me, "as"),
    ("AgentService/Transfer", Name::Me, "as"),
    ("AgentService/SetBotHosting", Name::Me, "as"),
    ("AgentService/InviteRating", Name::Me, "as"),
    ("AgentService/GetHistory", Name::Me, "as"),
    ("AgentService/UpdateConversation", Name::Me, "as"),
    ("AgentService/UpdateCustomerProfile", Name::Me, "as"),
    ("AgentService/ListQuickReplies", Name::Me, "as"),
    ("AgentService/PutPersonalQuickReplies", Name::Me, "as"),
    ("AgentService/GetCustomerProfile", Name::Me, "as"),
    ("AgentService/UpdateAgentReplies", Name::Me, "as"),
    ("AgentService/EndConversation", Name::Me, "as"),
    ("AgentService/EndWrapUp", Name::Me, "as"),
    ("AgentService/SearchConversations", Name::Me, "as"),
    ("AgentService/SearchCustomers", Name::Me, "as"),
    ("SupervisorService/Whisper", Name::Me, "s"),
    ("SupervisorService/SetAgentStatus", Name::Me, "s"),
    ("SupervisorService/ReassignBatch", Name::Me, "s"),
    ("SupervisorService/EndBatch", Name::Me, "s"),
    ("SupervisorService/EndConversation", Name::Me, "s"),
    ("SupervisorService/SetBotHosting", Name::Me, "s"),
    ("SupervisorService/GetLiveBoard", Name::Tenant, "sdo"),
    ("SupervisorService/GetQueueStats", Name::Tenant, "sdo"),
    ("SupervisorService/GetAgentBoard", Name::Tenant, "sdo"),
    ("SupervisorService/ListConversations", Name::Tenant, "isdo"),
    ("SupervisorService/ExplainConversation", Name::Conversation, "sdo"),
    ("SupervisorService/ExplainAgent", Name::Agent, "sdo"),
    ("AdminService/GetTenant", Name::Tenant, "sdo"),
    ("AdminService/ListTenants", Name::Nothing, "o"),
    ("AdminService/GetGroup", Name::Group, "sdo"),
    ("AdminService/ListGroups", Name::Tenant, "sdo"),
    ("AdminService/GetAgent", Name::Agent, "sdo"),
    ("AdminService/ListAgents", Name::Tenant, "sdo"),
    ("AdminService/GetCustomer", Name::Customer, "isdo"),
    ("AdminService/ListCustomers", Name::Tenant, "isdo"),
    ("AdminService/PutCustomer", Name::Customer, "ido"),
    ("AdminService/PutSharedQuickReplies", Name::Tenant, "do"),
    ("AdminService/UpdateTenant", Name::Tenant, "do"),
    ("AdminService/PutGroup", Name::Group, "do"),
    ("AdminService/PutAgent", Name::Ghost, "do"),
    ("AdminService/DeleteAgent", Name::Ghost, "do"),
    ("AdminService/DeleteGroup", Name::GhostGroup, "do"),
    ("AdminService/CreateTenant", Name::NewTenant, "o"),
    ("ChannelService/CloseConversation", Name::Conversation, "i"),
    ("AdminService/PutWebhook", Name::Webhook, "do"),
    ("AdminService/GetWebhook", Name::Webhook, "do"),
    ("AdminService/ListWebhooks", Name::Tenant, "do"),
    ("AdminService/DeleteWebhook", Name::Webhook, "do"),
    ("AdminService/ListWebhookDeadLetters", Name::Webhook, "do"),
];

/// Tenant `t`: group support, agent alice (serving carol's conversation, whose name it
/// returns), supervisor boss.
async fn fixture(channel: &Channel, operator: &str, t: &str) -> String {
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel.clone());
    admin
        .create_tenant(authed(
            pb::CreateTenantRequest {
                tenant_id: t.into(),
                display_name: t.into(),
                settings: None,
                request_id: rid("create"),
                routing: Default::default(),
            },
            operator,
        ))
        .await
        .expect("create tenant");
    admin
        .put_group(authed(
            pb::PutGroupRequest {
                name: format!("tenants/{t}/groups/support"),
                display_name: "Support".into(),
                policy: Some(pb::RoutingPolicy {
                    offer_mode: pb::OfferMode::AutoAccept as i32,
                    ..Default::default()
                }),
                replies: None,
                request_id: rid("group"),
                update_mask: None,
            },
            operator,
        ))
        .await
        .expect("put group");
    for (agent, supervisor) in [("alice", false), ("boss", true)] {
        admin
            .put_agent(authed(
                pb::PutAgentRequest {
                    name: format!("tenants/{t}/agents/{agent}"),
                    nickname: agent.into(),
                    capacity: 3,
                    groups: vec![format!("tenants/{t}/groups/support")],
                    replies: None,
                    supervisor,
                    request_id: rid("agent"),
                    update_mask: None,
                    proficiencies: Vec::new(),
                },
                operator,
            ))
            .await
            .expect("put agent");
    }
    let alice = mint("agent", t, "alice");
    pb::agent_service_client::AgentServiceClient::new(channel.clone())
        .set_status(authed(
            pb::SetStatusRequest {
                agent: format!("tenants/{t}/agents/alice"),
                status: pb::AgentStatus::Online as i32,
                request_id: rid("status"),
            },
            &alice,
        ))
        .await
        .expect("alice online");
    let integrator = mint("integrator", t, "");
    let posted = pb::channel_service_client::ChannelServiceClient::new(channel.clone())
        .post_message(authed(
            pb::PostMessageRequest {
                customer: format!("tenants/{t}/customers/carol"),
                channel: pb::Channel::Web as i32,
                text: "hello".into(),
                group: format!("tenants/{t}/groups/support"),
                request_id: rid("post"),
                ..Default::default()
            },
            &integrator,
        ))
        .await
        .expect("post a message")
        .into_inner();
    let conversation = posted.conversation.expect("a conversation");
    assert_eq!(conversation.agent, format!("tenants/{t}/agents/alice"), "{conversation:?}");
    conversation.name
}

/// (letter, role, agent) of the five kinds of caller.
const ROLES: &[(char, &str, &str)] = &[
    ('i', "integrator", ""),
    ('a', "agent", "alice"),
    ('s', "supervisor", "boss"),
    ('d', "admin", ""),
    ('o', "operator", ""),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_method_and_no_tenant_reaches_another() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_authenticated(dir.path(), "");
    let channel = connect(&node.grpc).await;
    let operator = mint("operator", "", "");
    let conversation = fixture(&channel, &operator, "acme").await;
    fixture(&channel, &operator, "globex").await;

    // The table covers every public method (and nothing else).
    let mut covered: Vec<&str> = METHODS.iter().map(|(m, _, _)| *m).collect();
    covered.sort_unstable();
    covered.dedup();
    assert_eq!(covered.len(), METHODS.len());
    assert_eq!(covered.len(), switchboard_node::auth::policy::POLICY.len());

    let mut failures = Vec::new();
    for (method, kind, allowed) in METHODS {
        for (letter, role, me) in ROLES {
            // Same tenant: allowed or refused as designed.
            let token = mint(role, if *role == "operator" { "" } else { "acme" }, me);
            let code = raw_call(
                &channel,
                method,
                &name(*kind, "acme", me, role, &conversation),
                Some(&token),
            )
            .await;
            let ok = if allowed.contains(*letter) {
                !matches!(code, Code::PermissionDenied | Code::Unauthenticated)
            } else {
                code == Code::PermissionDenied
            };
            if !ok {
                failures.push(format!("{role} of acme on acme: {method} gave {code:?}"));
            }
            // Another tenant's token never reaches acme's data, whatever its role. The
            // operator is the one role above tenants.
            if *role != "operator" && !matches!(kind, Name::Nothing | Name::NewTenant) {
                let token = mint(role, "globex", me);
                let code = raw_call(
                    &channel,
                    method,
                    &name(*kind, "acme", me, role, &conversation),
                    Some(&token),
                )
                .await;
                if code != Code::PermissionDenied {
                    failures.push(format!("{role} of globex on acme: {method} gave {code:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Tenant isolation also holds for the data: globex's conversation 1 and agents are intact
    // and distinct from acme's after everything above.
    let mut globex = pb::admin_service_client::AdminServiceClient::new(channel.clone());
    let agents = globex
        .list_agents(authed(
            pb::ListAgentsRequest { tenant: "tenants/globex".into(), page: None },
            &mint("admin", "globex", ""),
        ))
        .await
        .expect("globex's admin lists its agents")
        .into_inner();
    let names: Vec<_> = agents.agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["tenants/globex/agents/alice", "tenants/globex/agents/boss"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expired_forged_and_malformed_tokens_are_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_authenticated(dir.path(), "");
    let channel = connect(&node.grpc).await;
    let operator = mint("operator", "", "");
    fixture(&channel, &operator, "acme").await;
    let method = "AdminService/GetTenant";
    let tenant = "tenants/acme";

    assert_eq!(raw_call(&channel, method, tenant, Some(&operator)).await, Code::Ok);
    assert_eq!(raw_call(&channel, method, tenant, None).await, Code::Unauthenticated);
    let expired = mint_with(SECRET, "operator", "", "", PAST);
    assert_eq!(raw_call(&channel, method, tenant, Some(&expired)).await, Code::Unauthenticated);
    let forged = mint_with("another-secret-0123456789abcdef0123456789", "operator", "", "", FUTURE);
    assert_eq!(raw_call(&channel, method, tenant, Some(&forged)).await, Code::Unauthenticated);
    // A valid signature over claims that name no tenant for a tenant role.
    let tenantless = mint("admin", "", "");
    assert_eq!(raw_call(&channel, method, tenant, Some(&tenantless)).await, Code::Unauthenticated);
    assert_eq!(raw_call(&channel, method, tenant, Some("not.a.jwt")).await, Code::Unauthenticated);
    // Tampered claims: the operator's payload on an admin's signature.
    let admin = mint("admin", "acme", "");
    let op_payload = operator.split('.').nth(1).unwrap();
    let parts: Vec<&str> = admin.split('.').collect();
    let tampered = format!("{}.{op_payload}.{}", parts[0], parts[2]);
    assert_eq!(raw_call(&channel, method, tenant, Some(&tampered)).await, Code::Unauthenticated);
    // The unsigned algorithm is never accepted.
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{op_payload}.");
    assert_eq!(raw_call(&channel, method, tenant, Some(&none)).await, Code::Unauthenticated);

    // An agent acts only as itself, even within its tenant.
    let alice = mint("agent", "acme", "alice");
    assert_eq!(
        raw_call(&channel, "AgentService/ListAssigned", "tenants/acme/agents/boss", Some(&alice))
            .await,
        Code::PermissionDenied
    );

    // Health checking and reflection stay open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("health without a token");
    assert_eq!(serving.into_inner().status, 1);
}

#[test]
fn a_node_beyond_loopback_refuses_to_start_without_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--grpc-addr", "0.0.0.0:0", "--metrics-addr", "off", "--data-dir"])
        .arg(dir.path())
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .expect("run switchboard serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "it never listened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_is_told_when_to_retry_and_agents_have_a_stream_cap() {
    let dir = tempfile::tempdir().unwrap();
    let limits =
        "[limits]\ntenant_requests_per_second = 1\ntenant_burst = 20\nstreams_per_agent = 1\n";
    let node = start_authenticated(dir.path(), limits);
    let channel = connect(&node.grpc).await;
    let operator = mint("operator", "", "");
    fixture(&channel, &operator, "acme").await; // 6 of acme's 20

    // One live stream per agent: a second one of the same agent is refused, another
    // agent's is not.
    let mut agent = pb::agent_service_client::AgentServiceClient::new(channel.clone());
    let stream = |who: &str| {
        authed(
            pb::StreamAgentEventsRequest {
                agent: format!("tenants/acme/agents/{who}"),
                after_cursor: 0,
            },
            &mint(if who == "boss" { "supervisor" } else { "agent" }, "acme", who),
        )
    };
    let _first = agent.stream_events(stream("boss")).await.expect("a first stream");
    let refused = agent.stream_events(stream("boss")).await.expect_err("a second stream");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("streams"), "{}", refused.message());
    let _alice = agent.stream_events(stream("alice")).await.expect("another agent's stream");

    // acme keeps calling until its budget runs out: RESOURCE_EXHAUSTED with RetryInfo.
    let admin = mint("admin", "acme", "");
    let mut grpc = pb::admin_service_client::AdminServiceClient::new(channel.clone());
    let mut refusal = None;
    for _ in 0..200 {
        let asked = pb::GetTenantRequest { name: "tenants/acme".into() };
        if let Err(s) = grpc.get_tenant(authed(asked, &admin)).await {
            refusal = Some(s);
            break;
        }
    }
    let refusal = refusal.expect("a budget of 1/s with a burst of 20 runs out within 200 calls");
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    let retry = refusal.get_details_retry_info().expect("RetryInfo in the details");
    assert!(retry.retry_delay.is_some_and(|d| !d.is_zero()), "{retry:?}");
    assert_eq!(refusal.get_details_error_info().expect("ErrorInfo").reason, "RATE_LIMITED");

    // Other tenants are not slowed by acme.
    fixture(&channel, &operator, "globex").await;
}

#[test]
fn ctl_sends_the_token_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_authenticated(dir.path(), "");
    let ctl = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(["ctl", "--addr", &node.grpc, "tenant", "create", "acme"])
            .env_remove("SWITCHBOARD_TOKEN");
        if let Some(token) = token {
            cmd.env("SWITCHBOARD_TOKEN", token);
        }
        cmd.output().expect("run switchboard ctl")
    };
    let refused = ctl(None);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Unauthenticated"), "{stderr}");
    let created = ctl(Some(&mint("operator", "", "")));
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(String::from_utf8_lossy(&created.stdout).contains("tenants/acme"));
}

/// `switchboard token` signs with the node's own key file (as the Helm chart's NOTES tell an
/// operator to), and the node accepts what it signs; claims a node would refuse and keys it
/// would not verify with are refused before anything is signed.
#[test]
fn switchboard_token_mints_what_the_node_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_authenticated(dir.path(), "");
    let key = dir.path().join("jwt.key");
    let token = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("token")
            .arg("--key")
            .arg(&key)
            .args(args)
            .output()
            .expect("run switchboard token")
    };
    let minted = token(&["--role", "operator", "--ttl-seconds", "600"]);
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let operator = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["ctl", "--addr", &node.grpc, "--token", &operator, "tenant", "create", "acme"])
        .output()
        .expect("run switchboard ctl");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(String::from_utf8_lossy(&created.stdout).contains("tenants/acme"));

    for (args, says) in [
        (&["--role", "agent", "--tenant", "acme"][..], "must name the agent it acts as"),
        (&["--role", "operator", "--tenant", "acme"][..], "an operator token names no tenant"),
        (&["--role", "admin"][..], "must name a valid tenant"),
    ] {
        let out = token(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{args:?}: {stderr}");
    }
    write(dir.path(), "short.key", "too short");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["token", "--role", "operator", "--key"])
        .arg(dir.path().join("short.key"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("at least 32 bytes"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisors_and_administrators_changes_and_refusals_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let key = write(dir.path(), "jwt.key", SECRET);
    let config = format!("[auth]\ntoken_keys = [{:?}]\n", key.display().to_string());
    let config = write(dir.path(), "sb.toml", &config);
    let log = dir.path().join("node.log");
    // Flags, because the harness's RUST_LOG would override a filter in the file.
    let args = ["--config", config.to_str().unwrap(), "--log", "warn,audit=info"];
    let mut node = Node::start_logging_to(
        &dir.path().join("data"),
        &[&args[..], &["--log-format", "json"]].concat(),
        &log,
    );
    let channel = connect(&node.grpc).await;
    fixture(&channel, &mint("operator", "", ""), "acme").await;
    let boss = mint("supervisor", "acme", "boss");
    let code =
        raw_call(&channel, "SupervisorService/EndBatch", "tenants/acme/agents/boss", Some(&boss))
            .await;
    // Authorized (it then fails validation: no conversations named); the audit records the
    // authorized attempt.
    assert_eq!(code, Code::InvalidArgument);
    let alice = mint("agent", "acme", "alice");
    let code =
        raw_call(&channel, "AdminService/PutGroup", "tenants/acme/groups/support", Some(&alice))
            .await;
    assert_eq!(code, Code::PermissionDenied);
    // An agent's own work is not audited (it is in the command log).
    let code =
        raw_call(&channel, "AgentService/ListAssigned", "tenants/acme/agents/alice", Some(&alice))
            .await;
    assert_eq!(code, Code::Ok);
    assert!(node.terminate(), "clean shutdown");

    let text = std::fs::read_to_string(&log).unwrap();
    let audit: Vec<&str> = text.lines().filter(|l| l.contains("\"target\":\"audit\"")).collect();
    let has = |method: &str, what: &str| {
        audit.iter().any(|l| l.contains(method) && l.contains(&format!("\"message\":\"{what}\"")))
    };
    assert!(has("AdminService/CreateTenant", "allowed"), "{text}");
    assert!(has("SupervisorService/EndBatch", "allowed"), "{text}");
    assert!(audit.iter().any(|l| l.contains("EndBatch") && l.contains("\"role\":\"supervisor\"")));
    assert!(has("AdminService/PutGroup", "denied"), "{text}");
    assert!(!audit.iter().any(|l| l.contains("AgentService/ListAssigned")), "{text}");
    assert!(!audit.iter().any(|l| l.contains("AgentService/SetStatus")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_and_headers_are_refused_and_the_node_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_authenticated(dir.path(), "");
    let channel = connect(&node.grpc).await;
    let operator = mint("operator", "", "");
    fixture(&channel, &operator, "acme").await;
    let integrator = mint("integrator", "acme", "");
    let post = |text: String| pb::PostMessageRequest {
        customer: "tenants/acme/customers/dave".into(),
        channel: pb::Channel::Web as i32,
        text,
        group: "tenants/acme/groups/support".into(),
        request_id: rid("big"),
        ..Default::default()
    };
    let mut gateway = pb::channel_service_client::ChannelServiceClient::new(channel.clone());

    // Over grpc.max_request_bytes (64 KiB).
    let big = gateway.post_message(authed(post("x".repeat(100 * 1024)), &integrator)).await;
    let refused = big.expect_err("a 100 KiB message is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("grpc.max_request_bytes"), "{refused:?}");

    // A header list over 16 KiB never reaches a handler.
    let mut req = authed(post("hi".into()), &integrator);
    req.metadata_mut().insert("x-padding", "p".repeat(32 * 1024).parse().unwrap());
    let fresh = connect(&node.grpc).await;
    let mut padded = pb::channel_service_client::ChannelServiceClient::new(fresh);
    assert!(padded.post_message(req).await.is_err(), "a 32 KiB header is refused");

    // The node is unharmed.
    gateway.post_message(authed(post("hi".into()), &integrator)).await.expect("serves on");
    assert!(node.alive());
}

/// A gateway that writes each of thousands of small messages on one `PostMessages` stream in
/// its own DATA frame, faster than the node answers them, is held back by flow control; its
/// connection is not ended. h2 ends a connection ("too_many_data_frames", ENHANCE_YOUR_CALM)
/// once the small frames it holds unread cost more framing than half the connection window,
/// and the node stops reading a command stream that has 256 unanswered messages: the stream
/// window must be small enough that a full one of small frames stays under that budget
/// (`auth::limits::http2`). The answers are read as they come; nothing is timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_small_frames_waits_for_flow_control_and_keeps_its_connection() {
    use bytes::{Buf, Bytes, BytesMut};
    use prost::Message as _;

    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] = &[];
    support::desk::floor(&mut c, "flood", None, agents, &[]).await;

    let addr = node.grpc.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request =
        http::Request::post(format!("http://{addr}/switchboard.v1.ChannelService/PostMessages"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
    let (response, mut send) = client.send_request(request, false).expect("open the stream");

    const N: usize = 4_000;
    // The answers, read as they come (a gRPC message each, framed by length).
    let answers = tokio::spawn(async move {
        let mut body = response.await.expect("response headers").into_body();
        let (mut buf, mut answered) = (BytesMut::new(), 0);
        while answered < N {
            let Some(data) = body.data().await else { break };
            let data = data.expect("the connection stays up");
            let _ = body.flow_control().release_capacity(data.len());
            buf.extend_from_slice(&data);
            while buf.len() >= 5 {
                let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
                if buf.len() < 5 + len {
                    break;
                }
                buf.advance(5 + len);
                answered += 1;
            }
        }
        (answered, body)
    });
    for i in 0..N {
        let post = pb::PostMessageRequest {
            customer: format!("tenants/flood/customers/u{i}"),
            channel: pb::Channel::Web as i32,
            text: "hi".into(),
            group: "tenants/flood/groups/support".into(),
            request_id: format!("r{i}"),
            ..Default::default()
        };
        let encoded = post.encode_to_vec();
        let mut frame = Vec::with_capacity(5 + encoded.len());
        frame.push(0);
        frame.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        frame.extend_from_slice(&encoded);
        // One DATA frame each, sent once the window has room for it.
        send.reserve_capacity(frame.len());
        while send.capacity() < frame.len() {
            let granted = std::future::poll_fn(|cx| send.poll_capacity(cx)).await;
            granted.expect("capacity").expect("the stream stays open");
        }
        send.send_data(Bytes::from(frame), false).expect("send");
    }
    let (answered, mut body) = answers.await.unwrap();
    assert_eq!(answered, N, "every message answered on the same connection");
    send.send_data(Bytes::new(), true).expect("end the stream");
    let trailers = body.trailers().await.expect("trailers").expect("some");
    assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
    assert!(!connection.is_finished(), "the connection is still up");
}
