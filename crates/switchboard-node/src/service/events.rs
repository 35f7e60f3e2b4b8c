//! EventService: the integrators' stream of SPEC §9.

use switchboard_proto::internal::v1::stream_item::Item;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::event_service_server::EventService;
use tonic::{Request, Response, Status};

use super::{ItemStream, serve_shared_stream, serve_stream};
use crate::auth::Call;
use crate::names;
use crate::registry::Registry;
use crate::state::EVENTS;

#[derive(Debug, Clone)]
pub struct Events {
    pub registry: Registry,
    /// The actors of tenants created with actor routing (the cut-over of issue 12).
    pub meshes: std::sync::Arc<crate::actors::meshes::Meshes>,
}

#[tonic::async_trait]
impl EventService for Events {
    type StreamEventsStream = ItemStream<pb::Event>;

    async fn stream_events(
        &self,
        req: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let (call, r) = Call::split(req);
        let tenant = names::tenant("tenant", &r.tenant)?;
        call.allow(&tenant, None)?;
        let pick = |item: switchboard_proto::internal::v1::StreamItem| match item.item {
            Some(Item::Event(e)) => Some(e),
            _ => None,
        };
        // An actor tenant's `events` has many writers (its actors, on any node): a shared
        // stream, positions assigned by the store, re-read while idle.
        if super::on_actors::served(&self.meshes, &tenant).await?.is_some() {
            let stream =
                serve_shared_stream(&self.registry, tenant, EVENTS.into(), r.after_cursor, pick);
            return Ok(Response::new(stream));
        }
        self.registry.read(&tenant, |_| ()).await?;
        Ok(Response::new(serve_stream(&self.registry, tenant, EVENTS.into(), r.after_cursor, pick)))
    }
}
