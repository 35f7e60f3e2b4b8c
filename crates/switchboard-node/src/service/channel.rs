//! ChannelService: what channel gateways call.

use switchboard_proto::internal::v1::{command::Op, stream_item::Item};
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::channel_service_server::ChannelService;
use tonic::{Request, Response, Status};

use super::on_actors::{Named, OnActors, served};
use super::{ItemStream, serve_shared_stream, serve_stream, variant};
use crate::auth::Call;
use crate::convert::views;
use crate::names;
use crate::registry::Registry;
use crate::state::OUTBOX;

#[derive(Debug, Clone)]
pub struct Channel {
    pub registry: Registry,
    /// The actors of tenants created with actor routing (the cut-over of issue 12).
    pub meshes: std::sync::Arc<crate::actors::meshes::Meshes>,
    /// In a cluster: how a PostMessages stream's message reaches the node that serves its
    /// customer (`command_stream`). `None` on a single node, which serves every customer.
    pub forward: Option<crate::cluster::forward::ForwardLayer>,
}

fn conversation_tenant(name: &str) -> Result<String, Status> {
    Ok(names::conversation("conversation", name)?.0)
}

impl Channel {
    async fn conversation_op(
        &self,
        call: &Call,
        name: &str,
        op: Op,
        request_id: &str,
    ) -> Result<pb::Conversation, Status> {
        let tenant = conversation_tenant(name)?;
        call.allow(&tenant, None)?;
        if let Some(mesh) = served(&self.meshes, &tenant).await? {
            let on = OnActors { meshes: &self.meshes, mesh };
            let which = match op {
                Op::RequestHuman(_) => Named::RequestHuman,
                Op::CloseConversation(_) => Named::Close,
                Op::RateConversation(r) => return Ok(on.rate(&r).await?),
                _ => return Err(Status::internal("not a conversation call of the channel API")),
            };
            return Ok(on.on_conversation("conversation", name, which, request_id).await?);
        }
        variant!(self.registry.command(&tenant, op, request_id).await?, Conversation)
    }

    /// A call on behalf of a customer, named `tenants/{t}/customers/{u}`.
    async fn post(
        &self,
        call: &Call,
        customer: &str,
        op: Op,
        request_id: &str,
    ) -> Result<pb::PostMessageResponse, Status> {
        let (tenant, _) = names::child_parts("customer", customer, "customers")?;
        call.allow(tenant, None)?;
        if let Some(mesh) = served(&self.meshes, tenant).await? {
            let on = OnActors { meshes: &self.meshes, mesh };
            return Ok(match &op {
                Op::PostMessage(r) => on.post_message(r).await?,
                Op::OpenService(r) => on.open_service(r).await?,
                _ => return Err(Status::internal("not a customer's call")),
            });
        }
        variant!(self.registry.command(tenant, op, request_id).await?, PostMessage)
    }
}

#[tonic::async_trait]
impl ChannelService for Channel {
    async fn post_message(
        &self,
        req: Request<pb::PostMessageRequest>,
    ) -> Result<Response<pb::PostMessageResponse>, Status> {
        let (call, r) = Call::split(req);
        let (customer, request_id) = (r.customer.clone(), r.request_id.clone());
        Ok(Response::new(self.post(&call, &customer, Op::PostMessage(r), &request_id).await?))
    }

    async fn open_service(
        &self,
        req: Request<pb::OpenServiceRequest>,
    ) -> Result<Response<pb::PostMessageResponse>, Status> {
        let (call, r) = Call::split(req);
        let (customer, request_id) = (r.customer.clone(), r.request_id.clone());
        Ok(Response::new(self.post(&call, &customer, Op::OpenService(r), &request_id).await?))
    }

    async fn request_human(
        &self,
        req: Request<pb::ConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(req);
        let (name, request_id) = (r.conversation.clone(), r.request_id.clone());
        Ok(Response::new(
            self.conversation_op(&call, &name, Op::RequestHuman(r), &request_id).await?,
        ))
    }

    async fn close_conversation(
        &self,
        req: Request<pb::ConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(req);
        let (name, request_id) = (r.conversation.clone(), r.request_id.clone());
        Ok(Response::new(
            self.conversation_op(&call, &name, Op::CloseConversation(r), &request_id).await?,
        ))
    }

    async fn rate_conversation(
        &self,
        req: Request<pb::RateConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(req);
        let (name, request_id) = (r.conversation.clone(), r.request_id.clone());
        Ok(Response::new(
            self.conversation_op(&call, &name, Op::RateConversation(r), &request_id).await?,
        ))
    }

    async fn get_conversation(
        &self,
        req: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(req);
        let (tenant, n) = names::conversation("conversation", &r.conversation)?;
        call.allow(&tenant, None)?;
        if let Some(mesh) = served(&self.meshes, &tenant).await? {
            let on = OnActors { meshes: &self.meshes, mesh };
            return Ok(Response::new(on.get(&r.conversation).await?));
        }
        let found = self
            .registry
            .with_conversation(&tenant, n, |state, c, extra, customer| {
                views::render(state, c, extra, customer)
            })
            .await?;
        Ok(Response::new(found))
    }

    type PostMessagesStream = ItemStream<pb::PostMessagesResult>;

    async fn post_messages(
        &self,
        req: Request<tonic::Streaming<pb::PostMessageRequest>>,
    ) -> Result<Response<Self::PostMessagesStream>, Status> {
        let posts =
            |call, metadata| super::command_stream::Posts::new(self.clone(), call, metadata);
        Ok(super::command_stream::serve(req, posts, self.registry.hub()))
    }

    type StreamOutboundStream = ItemStream<pb::OutboundMessage>;

    async fn stream_outbound(
        &self,
        req: Request<pb::StreamOutboundRequest>,
    ) -> Result<Response<Self::StreamOutboundStream>, Status> {
        let (call, r) = Call::split(req);
        let tenant = names::tenant("tenant", &r.tenant)?;
        call.allow(&tenant, None)?;
        self.registry.read(&tenant, |_| ()).await?; // the tenant exists
        let pick = |item: switchboard_proto::internal::v1::StreamItem| match item.item {
            Some(Item::Outbound(m)) => Some(m),
            _ => None,
        };
        // An actor tenant's `outbox` has many writers (its conversation actors, on any node):
        // a shared stream.
        let serve = match served(&self.meshes, &tenant).await? {
            Some(_) => serve_shared_stream,
            None => serve_stream,
        };
        Ok(Response::new(serve(&self.registry, tenant, OUTBOX.into(), r.after_cursor, pick)))
    }
}
