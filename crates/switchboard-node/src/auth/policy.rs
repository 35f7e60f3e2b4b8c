//! The per-method policy: which roles may call each public method, whether an agent must be
//! acting as itself, and which calls change state (those of supervisors, administrators and
//! operators are audited). One table; `SECURITY.md` describes it and a test checks that every
//! method of the public API has a row.

use serde::{Deserialize, Serialize};

use super::Caller;

/// The roles a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A channel gateway or integration of one tenant: posts customer messages, reads the
    /// outbound and event streams and its tenant's conversations, keeps customer profiles.
    Integrator,
    /// One agent's desktop: acts only as the agent its token names; sees only its own
    /// conversations (SPEC §8 "see own").
    Agent,
    /// An agent with rights over others: everything an agent does (as itself), plus the
    /// supervisor service, boards and read access to the tenant's configuration ("see all";
    /// the agent must also carry the supervisor flag, which the apply layer checks).
    Supervisor,
    /// A tenant's administrator: configures its tenant (groups, agents, customers, settings,
    /// quick replies) and reads its boards and events.
    Admin,
    /// The operator of the cluster: creates and lists tenants and may administer any tenant.
    /// Not an agent: never acts on an agent's behalf.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Integrator => "integrator",
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One method's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub roles: &'static [Role],
    /// The request names an acting agent (`agent`, `supervisor`) that an agent or supervisor
    /// token must be for.
    pub as_self: bool,
    /// Changes state: audited when a supervisor, administrator or operator calls it.
    pub mutates: bool,
}

use Role::{Admin, Agent, Integrator, Operator, Supervisor};

const GATEWAY: &[Role] = &[Integrator];
const CONVERSATION_READ: &[Role] = &[Integrator, Supervisor, Admin, Operator];
const DESKTOP: &[Role] = &[Agent, Supervisor];
const SUPERVISING: &[Role] = &[Supervisor];
const BOARDS: &[Role] = &[Supervisor, Admin, Operator];
const CONFIG_READ: &[Role] = &[Supervisor, Admin, Operator];
const CONFIG: &[Role] = &[Admin, Operator];
const CUSTOMERS: &[Role] = &[Integrator, Admin, Operator];
const CUSTOMER_READ: &[Role] = &[Integrator, Supervisor, Admin, Operator];
const EVENTS: &[Role] = &[Integrator, Admin, Operator];
const OPERATOR: &[Role] = &[Operator];

const fn r(roles: &'static [Role], as_self: bool, mutates: bool) -> Rule {
    Rule { roles, as_self, mutates }
}
const READ: bool = false;
const WRITE: bool = true;
const SELF: bool = true;
const ANY: bool = false;

/// Every public method and its rule.
pub const POLICY: &[(&str, Rule)] = &[
    ("/switchboard.v1.ChannelService/PostMessage", r(GATEWAY, ANY, WRITE)),
    ("/switchboard.v1.ChannelService/PostMessages", r(GATEWAY, ANY, WRITE)),
    ("/switchboard.v1.ChannelService/OpenService", r(GATEWAY, ANY, WRITE)),
    ("/switchboard.v1.ChannelService/RequestHuman", r(GATEWAY, ANY, WRITE)),
    ("/switchboard.v1.ChannelService/CloseConversation", r(GATEWAY, ANY, WRITE)),
    ("/switchboard.v1.ChannelService/RateConversation", r(GATEWAY, ANY, WRITE)),
    ("/switchboard.v1.ChannelService/GetConversation", r(CONVERSATION_READ, ANY, READ)),
    ("/switchboard.v1.ChannelService/StreamOutbound", r(GATEWAY, ANY, READ)),
    ("/switchboard.v1.AgentService/SetStatus", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/StreamEvents", r(DESKTOP, SELF, READ)),
    ("/switchboard.v1.AgentService/Accept", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/Decline", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/Pick", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/ListUnaccepted", r(DESKTOP, SELF, READ)),
    ("/switchboard.v1.AgentService/ListAssigned", r(DESKTOP, SELF, READ)),
    ("/switchboard.v1.AgentService/SendMessage", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/DeskCommands", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/MarkRead", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/Transfer", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/EndConversation", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/EndWrapUp", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/SetBotHosting", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/InviteRating", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/GetHistory", r(DESKTOP, SELF, READ)),
    ("/switchboard.v1.AgentService/UpdateConversation", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/UpdateCustomerProfile", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/ListQuickReplies", r(DESKTOP, SELF, READ)),
    ("/switchboard.v1.AgentService/PutPersonalQuickReplies", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/GetCustomerProfile", r(DESKTOP, SELF, READ)),
    ("/switchboard.v1.AgentService/UpdateAgentReplies", r(DESKTOP, SELF, WRITE)),
    ("/switchboard.v1.AgentService/SearchConversations", r(DESKTOP, SELF, READ)),
    ("/switchboard.v1.AgentService/SearchCustomers", r(DESKTOP, SELF, READ)),
    ("/switchboard.v1.SupervisorService/Whisper", r(SUPERVISING, SELF, WRITE)),
    ("/switchboard.v1.SupervisorService/SetAgentStatus", r(SUPERVISING, SELF, WRITE)),
    ("/switchboard.v1.SupervisorService/ReassignBatch", r(SUPERVISING, SELF, WRITE)),
    ("/switchboard.v1.SupervisorService/EndBatch", r(SUPERVISING, SELF, WRITE)),
    ("/switchboard.v1.SupervisorService/EndConversation", r(SUPERVISING, SELF, WRITE)),
    ("/switchboard.v1.SupervisorService/SetBotHosting", r(SUPERVISING, SELF, WRITE)),
    ("/switchboard.v1.SupervisorService/GetLiveBoard", r(BOARDS, ANY, READ)),
    ("/switchboard.v1.SupervisorService/GetQueueStats", r(BOARDS, ANY, READ)),
    ("/switchboard.v1.SupervisorService/GetAgentBoard", r(BOARDS, ANY, READ)),
    ("/switchboard.v1.SupervisorService/ListConversations", r(CONVERSATION_READ, ANY, READ)),
    ("/switchboard.v1.SupervisorService/ExplainConversation", r(BOARDS, ANY, READ)),
    ("/switchboard.v1.SupervisorService/ExplainAgent", r(BOARDS, ANY, READ)),
    ("/switchboard.v1.AdminService/CreateTenant", r(OPERATOR, ANY, WRITE)),
    ("/switchboard.v1.AdminService/ListTenants", r(OPERATOR, ANY, READ)),
    ("/switchboard.v1.AdminService/GetTenant", r(CONFIG_READ, ANY, READ)),
    ("/switchboard.v1.AdminService/UpdateTenant", r(CONFIG, ANY, WRITE)),
    ("/switchboard.v1.AdminService/PutGroup", r(CONFIG, ANY, WRITE)),
    ("/switchboard.v1.AdminService/GetGroup", r(CONFIG_READ, ANY, READ)),
    ("/switchboard.v1.AdminService/ListGroups", r(CONFIG_READ, ANY, READ)),
    ("/switchboard.v1.AdminService/DeleteGroup", r(CONFIG, ANY, WRITE)),
    ("/switchboard.v1.AdminService/PutAgent", r(CONFIG, ANY, WRITE)),
    ("/switchboard.v1.AdminService/GetAgent", r(CONFIG_READ, ANY, READ)),
    ("/switchboard.v1.AdminService/ListAgents", r(CONFIG_READ, ANY, READ)),
    ("/switchboard.v1.AdminService/DeleteAgent", r(CONFIG, ANY, WRITE)),
    ("/switchboard.v1.AdminService/PutCustomer", r(CUSTOMERS, ANY, WRITE)),
    ("/switchboard.v1.AdminService/GetCustomer", r(CUSTOMER_READ, ANY, READ)),
    ("/switchboard.v1.AdminService/ListCustomers", r(CUSTOMER_READ, ANY, READ)),
    ("/switchboard.v1.AdminService/PutSharedQuickReplies", r(CONFIG, ANY, WRITE)),
    ("/switchboard.v1.AdminService/PutWebhook", r(CONFIG, ANY, WRITE)),
    ("/switchboard.v1.AdminService/GetWebhook", r(CONFIG, ANY, READ)),
    ("/switchboard.v1.AdminService/ListWebhooks", r(CONFIG, ANY, READ)),
    ("/switchboard.v1.AdminService/DeleteWebhook", r(CONFIG, ANY, WRITE)),
    ("/switchboard.v1.AdminService/ListWebhookDeadLetters", r(CONFIG, ANY, READ)),
    ("/switchboard.v1.EventService/StreamEvents", r(EVENTS, ANY, READ)),
];

/// The rule of a gRPC path, if the method is public.
pub fn rule(method: &str) -> Option<&'static Rule> {
    POLICY.iter().find(|(m, _)| *m == method).map(|(_, rule)| rule)
}

/// Whether `caller` may call a method with `rule` on `tenant` (`""`: on no tenant) acting as
/// `agent`; why not otherwise.
pub fn decide(
    rule: &Rule,
    caller: &Caller,
    tenant: &str,
    agent: Option<&str>,
) -> Result<(), String> {
    let claims = match caller {
        Caller::Unauthenticated => return Ok(()),
        Caller::Token(c) => c,
    };
    if !rule.roles.contains(&claims.role) {
        return Err(format!("the {} role may not call this method", claims.role));
    }
    if claims.role != Role::Operator && claims.tenant != tenant {
        return Err(format!(
            "the token is for tenant {:?}; this call is on {}",
            claims.tenant,
            if tenant.is_empty() { "no single tenant".to_owned() } else { format!("{tenant:?}") }
        ));
    }
    if rule.as_self
        && matches!(claims.role, Role::Agent | Role::Supervisor)
        && agent != Some(claims.agent.as_str())
    {
        return Err(format!(
            "the token acts as agent {:?}; an agent acts only as itself, not as {:?}",
            claims.agent,
            agent.unwrap_or("")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message as _;

    use super::*;
    use crate::auth::Claims;

    /// Every method of every public service has exactly one rule, and no rule names a method
    /// that does not exist.
    #[test]
    fn every_public_method_has_one_rule() {
        let set =
            prost_types::FileDescriptorSet::decode(switchboard_proto::v1::FILE_DESCRIPTOR_SET)
                .unwrap();
        let mut methods = Vec::new();
        for file in &set.file {
            if file.package() != "switchboard.v1" {
                continue;
            }
            for service in &file.service {
                for m in &service.method {
                    methods.push(format!("/switchboard.v1.{}/{}", service.name(), m.name()));
                }
            }
        }
        methods.sort();
        let mut table: Vec<String> = POLICY.iter().map(|(m, _)| (*m).to_owned()).collect();
        table.sort();
        assert_eq!(methods, table);
    }

    fn token(role: Role, tenant: &str, agent: &str) -> Caller {
        Caller::Token(Arc::new(Claims {
            sub: "t".into(),
            role,
            tenant: tenant.into(),
            agent: agent.into(),
            exp: 0,
        }))
    }

    #[test]
    fn roles_tenants_and_acting_as_oneself() {
        let accept = rule("/switchboard.v1.AgentService/Accept").unwrap();
        let alice = token(Role::Agent, "acme", "alice");
        assert!(decide(accept, &alice, "acme", Some("alice")).is_ok());
        assert!(decide(accept, &alice, "acme", Some("bob")).unwrap_err().contains("itself"));
        assert!(decide(accept, &alice, "globex", Some("alice")).unwrap_err().contains("tenant"));
        let admin = token(Role::Admin, "acme", "");
        assert!(decide(accept, &admin, "acme", Some("alice")).unwrap_err().contains("role"));
        let create = rule("/switchboard.v1.AdminService/CreateTenant").unwrap();
        assert!(decide(create, &admin, "new", None).is_err());
        assert!(decide(create, &token(Role::Operator, "", ""), "new", None).is_ok());
        let put = rule("/switchboard.v1.AdminService/PutGroup").unwrap();
        assert!(decide(put, &token(Role::Operator, "", ""), "acme", None).is_ok());
        assert!(decide(put, &Caller::Unauthenticated, "acme", None).is_ok());
    }
}
