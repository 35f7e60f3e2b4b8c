//! Command streams: a client's calls on one long-lived stream (issue 11: the transport is a
//! third of a command's node CPU, and most of it is per call). `ChannelService.PostMessages`
//! carries a gateway's customer messages ([`Posts`]), `AgentService.DeskCommands` a desk's
//! conversation commands ([`Desk`]).
//!
//! Each message is applied by the handler of the call it stands for, given the stream's
//! caller as that call's ([`Call::as_method`]): the same checks, the same rate budget,
//! policy and audit, the same answer, applied once per request id. What the stream saves is
//! the per-call work in front of the handler: HEADERS both ways, an HTTP/2 stream's set-up
//! and tear-down, a request task and the tower layers.
//!
//! - **Order.** Messages with the same key (a customer; a conversation) run one at a time,
//!   in the order sent: a later one waits in `waiting` until the one before is answered, so
//!   a customer's second message never overtakes the opening of the conversation it belongs
//!   to. Messages with different keys run concurrently.
//! - **Flow control.** At most [`MAX_UNANSWERED`] messages are read and not yet answered;
//!   past that the stream is not read, and HTTP/2 flow control holds the client back.
//! - **Cluster.** With a forward layer (cluster mode), a message whose key another node
//!   serves goes to that node on a relay (`cluster::relay`): one stream of the same method
//!   per command stream and node, with the stream's metadata (its token), where it is
//!   applied as on its own node and answered. One the relay does not answer, and every other
//!   message, goes through the forward layer as its call, made in this process: served here
//!   if this node serves its key, else forwarded to the node that does and retried as a
//!   forwarded call is. A relayed stream (it carries `x-switchboard-hop`), and a single
//!   node, call each message's handler directly.
//! - **Ends.** A message without a request id ends the stream with INVALID_ARGUMENT (its
//!   answer could not be matched to it); a refused message is answered with its status and
//!   the stream goes on. When the node shuts down it stops reading, answers what it has read,
//!   and ends the stream (OK): the client reconnects, to another node in a cluster.

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use futures_util::FutureExt as _;
use futures_util::stream::FuturesUnordered;
use metrics::{Counter, counter};
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::agent_service_client::AgentServiceClient;
use switchboard_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use switchboard_proto::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::v1::channel_service_server::{ChannelService, ChannelServiceServer};
use tokio::sync::mpsc;
use tonic::metadata::MetadataMap;
use tonic::{Status, Streaming};
use tower_layer::Layer as _;

use super::ItemStream;
use super::agent::Agents;
use super::channel::Channel;
use crate::auth::Call;
use crate::cluster::forward::{Forward, ForwardLayer, HOP, Placed, framed};
use crate::cluster::relay::{self, Relays};
use crate::hub::Hub;
use crate::metrics as m;
use crate::registry::MOVED;
use tonic::transport::Channel as PeerChannel;

/// Messages read from one stream and not yet answered, at most.
pub const MAX_UNANSWERED: usize = 256;

/// What a command stream carries and how each message is applied.
pub(super) trait Commands: Clone + Send + Sync + 'static {
    type In: Send + 'static;
    type Out: Send + 'static;
    /// The message's order key and request id; `Err`: it cannot be taken (the stream ends).
    fn read(&self, msg: &Self::In) -> Result<(String, String), Status>;
    /// Applies one message, whose request id `read` gave: its answer.
    fn apply(self, request_id: String, msg: Self::In) -> impl Future<Output = Self::Out> + Send;
    /// The answer to a message whose handler failed (panicked).
    fn failed(request_id: String) -> Self::Out;
}

/// The answers to the messages of a command stream's request, applied by the commands
/// `commands` makes of the stream's caller and metadata.
pub(super) fn serve<C: Commands>(
    req: tonic::Request<Streaming<C::In>>,
    commands: impl FnOnce(Call, MetadataMap) -> C,
    hub: &Hub,
) -> tonic::Response<ItemStream<C::Out>> {
    let metadata = req.metadata().clone();
    let (call, inbound) = Call::split(req);
    let (tx, rx) = mpsc::channel(MAX_UNANSWERED);
    tokio::spawn(run(commands(call, metadata), inbound, hub.closed(), tx));
    tonic::Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// Reads `inbound` and answers each message on `tx` (see the module's comment).
async fn run<C: Commands>(
    commands: C,
    mut inbound: impl tokio_stream::Stream<Item = Result<C::In, Status>> + Unpin,
    closed: impl Future<Output = ()>,
    tx: mpsc::Sender<Result<C::Out, Status>>,
) {
    use tokio_stream::StreamExt as _;
    tokio::pin!(closed);
    // Per key with a message running, the ones sent after it (request id, message), in order.
    let mut waiting: HashMap<String, VecDeque<(String, C::In)>> = HashMap::new();
    // The running messages, polled by this task rather than one task each (a task per
    // message cost about 3% of the node's CPU at 500 arrivals/s: its spawn, its wake-ups and
    // its join). Their handlers mostly wait on actors, which run on tasks of their own. One
    // whose handler panics is still answered, and its key's next message still runs.
    let mut running = FuturesUnordered::new();
    let (mut unanswered, mut reading) = (0usize, true);
    let start = |running: &mut FuturesUnordered<_>, key: String, id: String, msg| {
        let commands = commands.clone();
        running.push(async move {
            let applied = std::panic::AssertUnwindSafe(commands.apply(id.clone(), msg));
            (key, applied.catch_unwind().await.unwrap_or_else(|_| C::failed(id)))
        });
    };
    loop {
        tokio::select! {
            read = inbound.next(), if reading && unanswered < MAX_UNANSWERED => {
                let msg = match read {
                    Some(Ok(msg)) => msg,
                    // The client has sent everything: answer what was read, then end.
                    None => {
                        reading = false;
                        continue;
                    }
                    // The client went away or sent something undecodable: nobody reads the
                    // answers; what runs finishes (below).
                    Some(Err(status)) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let (key, request_id) = match commands.read(&msg) {
                    Ok(read) => read,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                unanswered += 1;
                match waiting.get_mut(&key) {
                    Some(queue) => queue.push_back((request_id, msg)),
                    None => {
                        waiting.insert(key.clone(), VecDeque::new());
                        start(&mut running, key, request_id, msg);
                    }
                }
            }
            Some((key, answer)) = running.next() => {
                unanswered -= 1;
                if tx.send(Ok(answer)).await.is_err() {
                    break; // nobody reads the answers any more
                }
                match waiting.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some((request_id, next)) => start(&mut running, key, request_id, next),
                    None => {
                        waiting.remove(&key);
                    }
                }
            }
            () = &mut closed, if reading => reading = false,
            else => break,
        }
    }
    // Messages handed to their handlers finish even though nobody will read their answers
    // (dropping them would cancel them mid-call); a resend by request id finds them.
    if !running.is_empty() {
        tokio::spawn(async move { while running.next().await.is_some() {} });
    }
}

/// A refused message's answer.
fn refusal(status: &Status) -> pb::MessageError {
    pb::MessageError { code: status.code() as i32, message: status.message().to_owned() }
}

/// The INTERNAL refusal of a message whose handler failed.
fn internal() -> pb::MessageError {
    refusal(&Status::internal("the command's handler failed; resend it with its request id"))
}

/// What each message of a stream is applied with: the stream's caller, and in a cluster its
/// metadata (a message passed to another node carries the stream's token).
#[derive(Clone)]
struct Via {
    call: Call,
    metadata: Option<MetadataMap>,
    /// Answered messages with code OK (the other codes are looked up when they happen).
    ok: Counter,
    method: &'static str,
    /// False on a relayed stream: its messages were counted where their stream landed.
    counted: bool,
}

impl Via {
    /// `metadata`: the stream's, kept in a cluster (`forwarding`) for the messages it passes on.
    fn new(call: Call, metadata: MetadataMap, forwarding: bool, method: &'static str) -> Via {
        let ok = counter!(m::STREAM_MESSAGES, "method" => method, "code" => "OK");
        let counted = !relayed(&metadata);
        Via { call, metadata: forwarding.then_some(metadata), ok, method, counted }
    }

    /// `msg` as a request of `method` (its gRPC path) by the stream's caller; with the
    /// stream's metadata when it may leave this node.
    fn request<T>(&self, msg: T, method: &str) -> tonic::Request<T> {
        let mut extensions = tonic::Extensions::new();
        extensions.insert(self.call.as_method(method));
        let metadata = self.metadata.clone().unwrap_or_default();
        tonic::Request::from_parts(metadata, extensions, msg)
    }

    /// Counts an answer.
    fn count<T>(&self, answered: &Result<tonic::Response<T>, Status>) {
        self.count_code(answered.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok));
    }

    /// Counts an answer by its code.
    fn count_code(&self, code: tonic::Code) {
        match (self.counted, code) {
            (false, _) => {}
            (true, tonic::Code::Ok) => self.ok.increment(1),
            (true, code) => {
                let code = crate::grpc_metrics::code_name(code);
                counter!(m::STREAM_MESSAGES, "method" => self.method, "code" => code).increment(1);
            }
        }
    }

    /// The relays of a stream in a cluster (`forward`); none for a relayed stream, which
    /// keeps no metadata (a message crosses at most one hop).
    fn relays<R: Send + 'static, A: relay::Answer>(
        &self,
        forward: Option<&ForwardLayer>,
        open: impl Fn(PeerChannel, tonic::Request<relay::Messages<R>>) -> relay::Opened<A>
        + Send
        + Sync
        + 'static,
    ) -> Option<Relays<R, A>> {
        Some(Relays::new(forward?.clone(), self.metadata.clone()?, open))
    }

    /// Which way `msg` goes: answered on a relay when another node serves it now (counted),
    /// to its handler here when this node does, else through the forward layer. `call` gives
    /// the call it stands for (gRPC path, request frame), only asked in a cluster.
    async fn way<R: Clone + Send + 'static, A: relay::Answer>(
        &self,
        relays: Option<&Relays<R, A>>,
        call: impl FnOnce() -> (&'static str, Vec<u8>),
        request_id: &str,
        msg: &R,
    ) -> Way<A> {
        let Some(relays) = relays else { return Way::Forward };
        let (path, frame) = call();
        match relays.place(path, &frame).await {
            Placed::Here => Way::Here,
            Placed::There(remote) => match relays.relay(&remote, request_id, msg.clone()).await {
                Some(answer) => {
                    counter!(m::FORWARDED, "outcome" => "relayed").increment(1);
                    self.count_code(answer.code());
                    Way::Answered(answer)
                }
                None => Way::Forward,
            },
            Placed::Unknown => Way::Forward,
        }
    }
}

/// How a command stream's message goes (see [`Via::way`]).
enum Way<A> {
    Answered(A),
    /// This node serves its key: its handler, called directly (the forward layer would call
    /// it too, after encoding and decoding the message again). If its key moved away in the
    /// meantime (an answer marked moved), it goes through the forward layer, which retries.
    Here,
    Forward,
}

/// The handler refused a call because this node no longer serves its key.
fn moved<T>(answered: &Result<T, Status>) -> bool {
    answered.as_ref().is_err_and(|status| status.metadata().contains_key(MOVED))
}

/// A stream another node relays to this one: each of its messages is served here, by its
/// handler (as on a single node; the forward layer would serve it here too, after encoding
/// and decoding it again).
fn relayed(metadata: &MetadataMap) -> bool {
    metadata.contains_key(HOP)
}

impl relay::Answer for pb::PostMessagesResult {
    fn request_id(&self) -> &str {
        &self.request_id
    }

    fn code(&self) -> tonic::Code {
        match &self.result {
            Some(pb::post_messages_result::Result::Error(e)) => tonic::Code::from_i32(e.code),
            _ => tonic::Code::Ok,
        }
    }
}

impl relay::Answer for pb::DeskCommandResult {
    fn request_id(&self) -> &str {
        &self.request_id
    }

    fn code(&self) -> tonic::Code {
        match &self.result {
            Some(pb::desk_command_result::Result::Error(e)) => tonic::Code::from_i32(e.code),
            _ => tonic::Code::Ok,
        }
    }
}

fn required(request_id: &str, stream: &str) -> Result<(), Status> {
    match request_id.is_empty() {
        false => Ok(()),
        true => Err(Status::invalid_argument(format!(
            "request_id: required on {stream}, where it matches each answer to its message"
        ))),
    }
}

/// `ChannelService.PostMessages`: customer messages, in order per customer.
#[derive(Clone)]
pub(super) struct Posts {
    channel: Channel,
    /// In a cluster, the handlers behind the forward layer, called in process (built once
    /// per stream): a message is served here if this node serves its key, else passed on.
    forwarded: Option<ChannelServiceClient<Forward<ChannelServiceServer<Channel>>>>,
    /// In a cluster, the stream's relays to the other nodes.
    relays: Option<Relays<pb::PostMessageRequest, pb::PostMessagesResult>>,
    via: Via,
}

const POST_MESSAGE: &str = "/switchboard.v1.ChannelService/PostMessage";

impl Posts {
    pub fn new(channel: Channel, call: Call, metadata: MetadataMap) -> Posts {
        let forwarded = channel.forward.as_ref().filter(|_| !relayed(&metadata)).map(|forward| {
            let inner = ChannelServiceServer::new(Channel { forward: None, ..channel.clone() });
            ChannelServiceClient::new(forward.layer(inner))
        });
        let via = Via::new(call, metadata, forwarded.is_some(), "PostMessages");
        let relays = via.relays(channel.forward.as_ref(), |peer, messages| {
            Box::pin(async move { ChannelServiceClient::new(peer).post_messages(messages).await })
        });
        Posts { channel, forwarded, relays, via }
    }
}

impl Commands for Posts {
    type In = pb::PostMessageRequest;
    type Out = pb::PostMessagesResult;

    fn read(&self, msg: &pb::PostMessageRequest) -> Result<(String, String), Status> {
        required(&msg.request_id, "PostMessages")?;
        Ok((msg.customer.clone(), msg.request_id.clone()))
    }

    async fn apply(
        self,
        request_id: String,
        msg: pb::PostMessageRequest,
    ) -> pb::PostMessagesResult {
        let call = || (POST_MESSAGE, framed(&msg));
        let way = self.via.way(self.relays.as_ref(), call, &request_id, &msg).await;
        let answered = match (way, self.forwarded) {
            (Way::Answered(answer), _) => return answer,
            (Way::Here, Some(mut client)) => {
                let here = self.via.request(msg.clone(), POST_MESSAGE);
                match self.channel.post_message(here).await {
                    moved_away if moved(&moved_away) => {
                        client.post_message(self.via.request(msg, POST_MESSAGE)).await
                    }
                    answered => answered,
                }
            }
            (_, None) => self.channel.post_message(self.via.request(msg, POST_MESSAGE)).await,
            (_, Some(mut client)) => client.post_message(self.via.request(msg, POST_MESSAGE)).await,
        };
        self.via.count(&answered);
        let result = match answered {
            Ok(response) => pb::post_messages_result::Result::Response(response.into_inner()),
            Err(status) => pb::post_messages_result::Result::Error(refusal(&status)),
        };
        pb::PostMessagesResult { request_id, result: Some(result) }
    }

    fn failed(request_id: String) -> pb::PostMessagesResult {
        let result = Some(pb::post_messages_result::Result::Error(internal()));
        pb::PostMessagesResult { request_id, result }
    }
}

/// `AgentService.DeskCommands`: a desk's conversation commands, in order per conversation.
#[derive(Clone)]
pub(super) struct Desk {
    agents: Agents,
    /// In a cluster, as [`Posts::forwarded`].
    forwarded: Option<AgentServiceClient<Forward<AgentServiceServer<Agents>>>>,
    /// In a cluster, the stream's relays to the other nodes.
    relays: Option<Relays<pb::DeskCommand, pb::DeskCommandResult>>,
    via: Via,
}

impl Desk {
    pub fn new(agents: Agents, call: Call, metadata: MetadataMap) -> Desk {
        let forwarded = agents.forward.as_ref().filter(|_| !relayed(&metadata)).map(|forward| {
            let inner = AgentServiceServer::new(Agents { forward: None, ..agents.clone() });
            AgentServiceClient::new(forward.layer(inner))
        });
        let via = Via::new(call, metadata, forwarded.is_some(), "DeskCommands");
        let relays = via.relays(agents.forward.as_ref(), |peer, messages| {
            Box::pin(async move { AgentServiceClient::new(peer).desk_commands(messages).await })
        });
        Desk { agents, forwarded, relays, via }
    }
}

/// The call a desk command stands for: its gRPC path and its request as a frame.
fn desk_call(command: &pb::desk_command::Command) -> (&'static str, Vec<u8>) {
    use pb::desk_command::Command as C;
    match command {
        C::SendMessage(r) => ("/switchboard.v1.AgentService/SendMessage", framed(r)),
        C::Accept(r) => ("/switchboard.v1.AgentService/Accept", framed(r)),
        C::Decline(r) => ("/switchboard.v1.AgentService/Decline", framed(r)),
        C::Pick(r) => ("/switchboard.v1.AgentService/Pick", framed(r)),
        C::MarkRead(r) => ("/switchboard.v1.AgentService/MarkRead", framed(r)),
        C::EndConversation(r) => ("/switchboard.v1.AgentService/EndConversation", framed(r)),
    }
}

/// A desk command's answer: the conversation, or the sent message.
enum DeskAnswer {
    Conversation(pb::Conversation),
    Sent(pb::SendMessageResponse),
}

impl Commands for Desk {
    type In = pb::DeskCommand;
    type Out = pb::DeskCommandResult;

    fn read(&self, msg: &pb::DeskCommand) -> Result<(String, String), Status> {
        use pb::desk_command::Command as C;
        let (conversation, request_id) = match &msg.command {
            None => {
                return Err(Status::invalid_argument(
                    "command: none set on a DeskCommands message; set one of accept, decline, \
                     pick, send_message, mark_read, end_conversation",
                ));
            }
            Some(C::SendMessage(r)) => (&r.conversation, &r.request_id),
            Some(
                C::Accept(r) | C::Decline(r) | C::Pick(r) | C::MarkRead(r) | C::EndConversation(r),
            ) => (&r.conversation, &r.request_id),
        };
        required(request_id, "DeskCommands")?;
        Ok((conversation.clone(), request_id.clone()))
    }

    async fn apply(self, request_id: String, msg: pb::DeskCommand) -> pb::DeskCommandResult {
        let Some(command) = &msg.command else {
            return Self::failed(request_id); // refused by `read`: never run
        };
        let call = || desk_call(command);
        let way = self.via.way(self.relays.as_ref(), call, &request_id, &msg).await;
        let Some(command) = msg.command else { return Self::failed(request_id) };
        let answered = match (way, self.forwarded.clone()) {
            (Way::Answered(answer), _) => return answer,
            (Way::Here, Some(client)) => match self.here(command.clone()).await {
                moved_away if moved(&moved_away) => self.through(client, command).await,
                answered => answered,
            },
            (_, None) => self.here(command).await,
            (_, Some(client)) => self.through(client, command).await,
        };
        let result = match answered {
            Ok(DeskAnswer::Conversation(c)) => pb::desk_command_result::Result::Conversation(c),
            Ok(DeskAnswer::Sent(s)) => pb::desk_command_result::Result::Sent(s),
            Err(status) => pb::desk_command_result::Result::Error(refusal(&status)),
        };
        pb::DeskCommandResult { request_id, result: Some(result) }
    }

    fn failed(request_id: String) -> pb::DeskCommandResult {
        let result = Some(pb::desk_command_result::Result::Error(internal()));
        pb::DeskCommandResult { request_id, result }
    }
}

/// A desk command applied by `$target`'s method of the same name (the handler itself, or a
/// client through the forward layer), counted; returns from the enclosing function.
macro_rules! dispatch {
    ($target:expr, $command:expr, $via:expr) => {{
        use pb::desk_command::Command as C;
        let v = $via;
        let conversation = match $command {
            C::SendMessage(r) => {
                let sent = $target
                    .send_message(v.request(r, "/switchboard.v1.AgentService/SendMessage"))
                    .await;
                v.count(&sent);
                return sent.map(|s| DeskAnswer::Sent(s.into_inner()));
            }
            C::Accept(r) => {
                $target.accept(v.request(r, "/switchboard.v1.AgentService/Accept")).await
            }
            C::Decline(r) => {
                $target.decline(v.request(r, "/switchboard.v1.AgentService/Decline")).await
            }
            C::Pick(r) => $target.pick(v.request(r, "/switchboard.v1.AgentService/Pick")).await,
            C::MarkRead(r) => {
                $target.mark_read(v.request(r, "/switchboard.v1.AgentService/MarkRead")).await
            }
            C::EndConversation(r) => {
                $target
                    .end_conversation(v.request(r, "/switchboard.v1.AgentService/EndConversation"))
                    .await
            }
        };
        v.count(&conversation);
        conversation.map(|c| DeskAnswer::Conversation(c.into_inner()))
    }};
}

impl Desk {
    /// On this node: the call's handler.
    async fn here(&self, command: pb::desk_command::Command) -> Result<DeskAnswer, Status> {
        dispatch!(self.agents, command, &self.via)
    }

    /// In a cluster: the call, through the forward layer.
    async fn through(
        &self,
        mut client: AgentServiceClient<Forward<AgentServiceServer<Agents>>>,
        command: pb::desk_command::Command,
    ) -> Result<DeskAnswer, Status> {
        dispatch!(client, command, &self.via)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Messages `(key, request id)`; applying one yields once (so other keys' messages can
    /// run in between), records it, and panics on request id "boom".
    #[derive(Clone, Default)]
    struct Recorder {
        applied: Arc<Mutex<Vec<(String, String)>>>,
    }

    impl Commands for Recorder {
        type In = (String, String);
        type Out = (String, &'static str);

        fn read(&self, msg: &(String, String)) -> Result<(String, String), Status> {
            required(&msg.1, "the test stream")?;
            Ok(msg.clone())
        }

        async fn apply(self, request_id: String, msg: (String, String)) -> (String, &'static str) {
            tokio::task::yield_now().await;
            assert_ne!(request_id, "boom", "a handler that fails");
            self.applied.lock().unwrap().push(msg);
            (request_id, "ok")
        }

        fn failed(request_id: String) -> (String, &'static str) {
            (request_id, "failed")
        }
    }

    /// Runs `messages` through the runner; every answer, and what was applied in order.
    async fn answers(
        messages: &[(&str, &str)],
    ) -> (Vec<Result<(String, &'static str), Status>>, Vec<(String, String)>) {
        let recorder = Recorder::default();
        let inbound: Vec<Result<(String, String), Status>> =
            messages.iter().map(|(k, r)| Ok(((*k).to_owned(), (*r).to_owned()))).collect();
        let (tx, mut rx) = mpsc::channel(MAX_UNANSWERED);
        let never = std::future::pending::<()>();
        run(recorder.clone(), tokio_stream::iter(inbound), never, tx).await;
        let mut out = Vec::new();
        while let Some(answer) = rx.recv().await {
            out.push(answer);
        }
        let applied = recorder.applied.lock().unwrap().clone();
        (out, applied)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_keys_messages_apply_in_the_order_sent_and_every_one_is_answered() {
        let messages: Vec<(String, String)> =
            (0..40).map(|i| (format!("k{}", i % 4), format!("r{i}"))).collect();
        let refs: Vec<(&str, &str)> =
            messages.iter().map(|(k, r)| (k.as_str(), r.as_str())).collect();
        let (out, applied) = answers(&refs).await;
        assert_eq!(out.len(), 40);
        assert!(out.iter().all(|a| matches!(a, Ok((_, "ok")))));
        for key in ["k0", "k1", "k2", "k3"] {
            let sent: Vec<&String> = messages.iter().filter(|m| m.0 == key).map(|m| &m.1).collect();
            let done: Vec<&String> = applied.iter().filter(|m| m.0 == key).map(|m| &m.1).collect();
            assert_eq!(done, sent, "{key}'s messages in the order sent");
        }
    }

    #[tokio::test]
    async fn a_failed_handler_answers_its_message_and_its_keys_next_one_runs() {
        let (out, applied) = answers(&[("k", "a"), ("k", "boom"), ("k", "c")]).await;
        let answered: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            answered,
            [("a".to_owned(), "ok"), ("boom".to_owned(), "failed"), ("c".to_owned(), "ok")]
        );
        assert_eq!(applied.len(), 2);
    }

    #[tokio::test]
    async fn a_message_without_a_request_id_ends_the_stream() {
        let (out, _) = answers(&[("k", "a"), ("j", ""), ("k", "c")]).await;
        let last = out.last().expect("an answer");
        let status = last.as_ref().expect_err("the stream ends with an error");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(out.len() <= 2, "nothing after the message without a request id is read");
    }
}
