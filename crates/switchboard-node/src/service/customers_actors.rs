//! Customers of a tenant created with `TENANT_ROUTING_ACTORS`: what an administrator sets on
//! a customer (PutCustomer) and an agent's edit of its contact data
//! (UpdateCustomerProfile) are served by the customer's conversation actor (issue 12's
//! cut-over), which owns the customer's settings (the core's `ConversationSide`) and profile,
//! with the tenant actor's validation and response shapes (`apply::admin::customer_put`,
//! `apply::agent::profile_update`, `convert::resources::customer_named`: one copy of each
//! rule).
//!
//! - The customer's number comes from `Numbers::customer` (bound on first use), so its actor;
//!   the forwarder routes both calls by the customer's name (`cluster::forward`), so the
//!   actor runs on the node that serves the call.
//! - The actor applies the call in one step, under its request id (a retry is answered from
//!   the store, applied once), and writes the customer's `customers` row, the tenant actor's
//!   encoding keyed by the customer's name, in the step's own batch. So GetCustomer,
//!   ListCustomers and SearchCustomers read an actor tenant's customers from that table as
//!   they read a tenant actor's (`Registry::customer`, `search::customers`), and
//!   GetCustomerProfile here, without lagging the actor.
//! - A group or agent the request names that the mesh does not know makes it check the
//!   stored configuration version once before the actor resolves it (NOT_FOUND after that).

use prost::Message as _;
use switchboard_core::CustomerId;
use switchboard_proto::v1 as pb;

use super::on_actors::{OnActors, undecodable};
use crate::actors::conversation::{Answer, Answered, ConversationOp};
use crate::actors::effects::{Current, MeshNames};
use crate::convert::resources;
use crate::error::{Error, Result};
use crate::names;

impl OnActors<'_> {
    /// PutCustomer: as `apply::admin::put_customer`, on the customer's conversation actor.
    pub async fn put_customer(&self, r: &pb::PutCustomerRequest) -> Result<pb::Customer> {
        let tenant = self.tenant();
        let id = names::child_in("name", &r.name, "customers", tenant)?;
        // A group or agent created after the mesh loaded: one check of the stored version.
        let config = self.mesh.config();
        let unknown = |found: Result<()>| matches!(found, Err(Error::NotFound(_)));
        if (!r.group.is_empty() && unknown(config.group_ref(tenant, "group", &r.group).map(drop)))
            || (!r.dedicated_agent.is_empty()
                && unknown(
                    config.agent_ref(tenant, "dedicated_agent", &r.dedicated_agent).map(drop),
                ))
        {
            self.mesh.refresh_stored().await?;
        }
        let customer = self.number(&id).await?;
        let op = ConversationOp::PutCustomer(Box::new(r.clone()));
        self.customer_call(customer, id, op, &r.request_id).await
    }

    /// UpdateCustomerProfile: as `apply::agent::update_customer_profile` (the acting agent, a
    /// customer known to the tenant, in the agent's data scope), on the customer's
    /// conversation actor.
    pub async fn update_customer_profile(
        &self,
        r: &pb::UpdateCustomerProfileRequest,
    ) -> Result<pb::Customer> {
        let by = self.acting(&r.agent).await?;
        let id = names::child_in("customer", &r.customer, "customers", self.tenant())?;
        let customer = self.number(&id).await?;
        let op = ConversationOp::UpdateProfile { by, request: Box::new(r.clone()) };
        self.customer_call(customer, id, op, &r.request_id).await
    }

    /// GetCustomerProfile of the agent `agent` (its id): the customer's stored record (written
    /// in the step of every change, so it lags nothing), shown if it is in the agent's data
    /// scope (`scope::customer`'s rule; the customer's open conversation, which the record
    /// names, read from its actor only when nothing else puts the customer in scope).
    pub async fn customer_profile(
        &self,
        agent: &str,
        r: &pb::GetCustomerProfileRequest,
    ) -> Result<pb::Customer> {
        let tenant = self.tenant().to_owned();
        let id = names::child_in("customer", &r.customer, "customers", &tenant)?;
        let (store, t, key) = (self.mesh.inner().store.clone(), tenant.clone(), id.clone());
        let body = crate::actors::blocking(move || store.customer(&t, &key)).await?;
        let body = body
            .ok_or_else(|| Error::NotFound(format!("name: customer {id:?} of tenant {tenant}")))?;
        let record = crate::archive::decode_customer(&body)?;
        let a = self.acting(&names::child_name(&tenant, "agents", agent)).await?;
        let config = self.mesh.config();
        let groups = config.agents.get(&a).map(|s| s.groups.as_slice()).unwrap_or_default();
        let supervisor = config.supervisors.contains(&a);
        let c = &record.customer;
        let mut allowed = crate::scope::customer_in_scope(supervisor, groups, a, Some(c), None);
        if !allowed && let Some(open) = c.open {
            let held = super::calls::held(&self.mesh, open, CustomerId(record.num)).await?;
            let open = held.as_ref().map(|h| &h.conversation);
            allowed = crate::scope::customer_in_scope(supervisor, groups, a, Some(c), open);
        }
        let names = Current(MeshNames { tenant: &tenant, config: config.clone() });
        if !allowed {
            use crate::apply::Names as _;
            return Err(crate::scope::out_of_customer_scope(&r.customer, &names.agent_name(a)));
        }
        Ok(resources::customer_named(
            &names,
            &tenant,
            &record.id,
            Some(&record.customer),
            Some(&record.profile),
        ))
    }

    /// A call on the customer `id` (number `customer`), answered with the customer as its
    /// actor holds it after the step.
    async fn customer_call(
        &self,
        customer: CustomerId,
        id: String,
        op: ConversationOp,
        request_id: &str,
    ) -> Result<pb::Customer> {
        crate::registry::check_request_id(request_id)?;
        let who = self.named_customer(customer, Some(id.clone()));
        let (tenant, config) = (self.tenant().to_owned(), self.mesh.config().clone());
        let answer: Answer = std::sync::Arc::new(move |a: Answered<'_>| {
            let names = Current(MeshNames { tenant: &tenant, config: config.clone() });
            resources::customer_named(&names, &tenant, &id, Some(a.customer), Some(a.profile))
                .encode_to_vec()
        });
        let body = self.answered(self.call_on(&who, op, request_id, answer).await?)?;
        pb::Customer::decode(body.as_slice()).map_err(undecodable)
    }
}
