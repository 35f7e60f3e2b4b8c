//! `--gateway-stream` and `--desk-stream`: customer messages on PostMessages streams and
//! agents' commands on DeskCommands streams, instead of one call each, as a high-rate gateway
//! and desk send them. One stream per connection; a command is sent on its connection's
//! stream and waits for the answer carrying its request id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use switchboard_proto::v1::{
    self as pb, agent_service_client::AgentServiceClient,
    channel_service_client::ChannelServiceClient,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

/// An answer on a command stream.
pub trait Answer: Send + 'static {
    type Ok: Send + 'static;
    fn request_id(&self) -> &str;
    /// The answer, or why the command was refused.
    fn into_result(self) -> Result<Self::Ok, String>;
}

impl Answer for pb::PostMessagesResult {
    type Ok = pb::PostMessageResponse;

    fn request_id(&self) -> &str {
        &self.request_id
    }

    fn into_result(self) -> Result<pb::PostMessageResponse, String> {
        match self.result {
            Some(pb::post_messages_result::Result::Response(r)) => Ok(r),
            Some(pb::post_messages_result::Result::Error(e)) => Err(refused(&e)),
            None => Err("an answer without a result".to_owned()),
        }
    }
}

impl Answer for pb::DeskCommandResult {
    type Ok = ();

    fn request_id(&self) -> &str {
        &self.request_id
    }

    fn into_result(self) -> Result<(), String> {
        match self.result {
            Some(pb::desk_command_result::Result::Error(e)) => Err(refused(&e)),
            Some(_) => Ok(()),
            None => Err("an answer without a result".to_owned()),
        }
    }
}

fn refused(e: &pb::MessageError) -> String {
    format!("refused ({:?}): {}", tonic::Code::from_i32(e.code), e.message)
}

type Waiters<T> = Arc<Mutex<HashMap<String, oneshot::Sender<Result<T, String>>>>>;

/// One open command stream: requests `R`, answers `A`.
#[derive(Debug)]
pub struct CommandStream<R, A: Answer> {
    requests: mpsc::UnboundedSender<R>,
    waiting: Waiters<A::Ok>,
}

/// Customer messages on a PostMessages stream.
pub type GatewayStream = CommandStream<pb::PostMessageRequest, pb::PostMessagesResult>;
/// An agent's commands on a DeskCommands stream.
pub type DeskStream = CommandStream<pb::DeskCommand, pb::DeskCommandResult>;

impl GatewayStream {
    /// Opens a PostMessages stream on `channel`.
    pub async fn open(channel: Channel) -> anyhow::Result<GatewayStream> {
        let mut client = ChannelServiceClient::new(channel);
        CommandStream::opened(|requests| client.post_messages(requests), "open PostMessages").await
    }
}

impl DeskStream {
    /// Opens a DeskCommands stream on `channel`.
    pub async fn open(channel: Channel) -> anyhow::Result<DeskStream> {
        let mut client = AgentServiceClient::new(channel);
        CommandStream::opened(|requests| client.desk_commands(requests), "open DeskCommands").await
    }
}

impl<R, A: Answer> CommandStream<R, A> {
    /// The stream `open` opens with the requests it is given; `what` names it in errors.
    async fn opened<F>(
        open: impl FnOnce(UnboundedReceiverStream<R>) -> F,
        what: &'static str,
    ) -> anyhow::Result<CommandStream<R, A>>
    where
        F: std::future::Future<
                Output = Result<tonic::Response<tonic::Streaming<A>>, tonic::Status>,
            >,
    {
        let (requests, rx) = mpsc::unbounded_channel();
        let answers = open(UnboundedReceiverStream::new(rx)).await.context(what)?;
        Ok(CommandStream::reading(requests, answers.into_inner()))
    }

    /// The stream whose answers a task of its own reads from `answers`.
    fn reading(
        requests: mpsc::UnboundedSender<R>,
        mut answers: tonic::Streaming<A>,
    ) -> CommandStream<R, A> {
        let waiting: Waiters<A::Ok> = Arc::default();
        let reading = waiting.clone();
        tokio::spawn(async move {
            let ended = loop {
                match answers.message().await {
                    Ok(Some(answer)) => {
                        let waiter = reading
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(answer.request_id());
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(answer.into_result());
                        }
                    }
                    Ok(None) => break "the stream ended".to_owned(),
                    Err(status) => break format!("the stream failed: {status}"),
                }
            };
            // Every command still waiting hears why.
            let waiters =
                std::mem::take(&mut *reading.lock().unwrap_or_else(PoisonError::into_inner));
            for (_, waiter) in waiters {
                let _ = waiter.send(Err(ended.clone()));
            }
        });
        CommandStream { requests, waiting }
    }

    /// Sends `request`, whose request id is `request_id`, and waits for its answer.
    pub async fn send(&self, request_id: String, request: R) -> anyhow::Result<A::Ok> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).insert(request_id, tx);
        self.requests.send(request).map_err(|_| anyhow::anyhow!("the stream is closed"))?;
        match rx.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(why)) => Err(anyhow::anyhow!("{why}")),
            Err(_) => Err(anyhow::anyhow!("the stream's reader stopped")),
        }
    }
}

impl GatewayStream {
    /// Sends a customer message and waits for its answer.
    pub async fn post(
        &self,
        request: pb::PostMessageRequest,
    ) -> anyhow::Result<pb::PostMessageResponse> {
        self.send(request.request_id.clone(), request).await
    }
}
