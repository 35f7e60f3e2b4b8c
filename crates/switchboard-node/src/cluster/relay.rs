//! Relays: a command stream's messages for other nodes, on one stream of the same method per
//! node, instead of one forwarded call each.
//!
//! A gateway's `PostMessages` stream (a desk's `DeskCommands`) lands on one node and carries
//! messages whose actors other nodes serve. Forwarded one by one, each is a unary call between
//! the nodes: HEADERS both ways, an HTTP/2 stream set up and torn down, a request task and the
//! receiver's layers, its token checked again. A relay is, per command stream and node, one
//! stream of the same method to that node, opened with the command stream's metadata (the
//! caller's token) and `x-switchboard-hop`; it carries every message of the command stream
//! that node serves. The node applies each as the call it stands for, served there (a hopped
//! message is never passed on again), and answers it on the relay by its request id.
//!
//! A message the relay does not answer goes the forwarding way, which retries: the relay could
//! not be opened or ended, the node answered UNAVAILABLE (it no longer serves the message's
//! key, or it is shutting down), no answer came within the forwarding timeout, or the shard
//! moved away from the node while the message waited. Resending is safe, as a forwarded retry
//! is: the owner answers a request id it has applied with the same answer, and a deposed
//! owner's writes are fenced.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::forward::{ForwardLayer, HOP, Placed, Remote, UNARY_TIMEOUT};

/// An answer on a relay.
pub trait Answer: Send + 'static {
    /// The request id of the message it answers.
    fn request_id(&self) -> &str;
    /// Its code: OK, or the refusal's. A refusal with UNAVAILABLE is not taken: the message
    /// goes the forwarding way.
    fn code(&self) -> tonic::Code;
}

/// A relay's stream, being opened.
pub type Opened<A> =
    Pin<Box<dyn Future<Output = Result<tonic::Response<Streaming<A>>, Status>> + Send>>;
/// The messages a relay's stream sends.
pub type Messages<R> = UnboundedReceiverStream<R>;
/// Opens the stream of a relay's method on a node's channel.
type Open<R, A> = Arc<dyn Fn(Channel, tonic::Request<Messages<R>>) -> Opened<A> + Send + Sync>;

/// A command stream's relays, one per node, opened on a message's first need for it.
pub struct Relays<R, A> {
    /// Where each message goes, as the forward layer would send it.
    forward: ForwardLayer,
    open: Open<R, A>,
    /// The command stream's metadata, and the hop mark.
    metadata: MetadataMap,
    links: Arc<Mutex<HashMap<String, Link<R, A>>>>,
}

impl<R, A> Clone for Relays<R, A> {
    fn clone(&self) -> Self {
        Relays {
            forward: self.forward.clone(),
            open: self.open.clone(),
            metadata: self.metadata.clone(),
            links: self.links.clone(),
        }
    }
}

impl<R, A> std::fmt::Debug for Relays<R, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = lock(&self.links).keys().cloned().collect();
        f.debug_struct("Relays").field("nodes", &nodes).finish_non_exhaustive()
    }
}

/// One relay: where its messages go in, and who waits for which answer.
struct Link<R, A> {
    messages: mpsc::UnboundedSender<R>,
    waiting: Arc<Mutex<Waiting<A>>>,
}

struct Waiting<A> {
    /// False once the relay's stream ended: nothing more is answered on it.
    open: bool,
    by_id: HashMap<String, oneshot::Sender<A>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<R: Send + 'static, A: Answer> Relays<R, A> {
    /// Relays for a command stream whose metadata is `metadata`, placing its messages with
    /// `forward` and opened by `open`.
    pub fn new<F>(forward: ForwardLayer, mut metadata: MetadataMap, open: F) -> Relays<R, A>
    where
        F: Fn(Channel, tonic::Request<Messages<R>>) -> Opened<A> + Send + Sync + 'static,
    {
        metadata.insert(HOP, MetadataValue::from_static("1"));
        Relays { forward, open: Arc::new(open), metadata, links: Arc::default() }
    }

    /// Where a call of `path` whose framed request is `frame` goes now.
    pub async fn place(&self, path: &str, frame: &[u8]) -> Placed {
        self.forward.place(path, frame).await
    }

    /// Sends `msg` (whose request id is `request_id`) to the node `remote` names and waits
    /// for its answer. `None`: the relay did not answer it (see the module's comment); the
    /// caller forwards it.
    pub async fn relay(&self, remote: &Remote, request_id: &str, msg: R) -> Option<A> {
        let (tx, rx) = oneshot::channel();
        let waiting = {
            let mut links = lock(&self.links);
            let link = match links.get(&remote.addr) {
                Some(link) if lock(&link.waiting).open => link,
                _ => {
                    let link = self.start(remote.channel().ok()?);
                    links.insert(remote.addr.clone(), link);
                    links.get(&remote.addr)?
                }
            };
            {
                let mut waiting = lock(&link.waiting);
                // A request id already waiting on this relay (a client that reused one
                // across keys) would take the other's answer: it is forwarded instead.
                if !waiting.open || waiting.by_id.contains_key(request_id) {
                    return None;
                }
                waiting.by_id.insert(request_id.to_owned(), tx);
            }
            if link.messages.send(msg).is_err() {
                lock(&link.waiting).by_id.remove(request_id);
                return None;
            }
            link.waiting.clone()
        };
        let answer = tokio::select! {
            answered = tokio::time::timeout(UNARY_TIMEOUT, rx) => answered.ok().and_then(Result::ok),
            () = remote.moved() => None,
        };
        if answer.is_none() {
            lock(&waiting).by_id.remove(request_id);
        }
        answer.filter(|a| a.code() != tonic::Code::Unavailable)
    }

    /// Opens a relay on `channel`: a task reads its answers and hands each to its waiter.
    fn start(&self, channel: Channel) -> Link<R, A> {
        let (messages, rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(Waiting { open: true, by_id: HashMap::new() }));
        let request = tonic::Request::from_parts(
            self.metadata.clone(),
            tonic::Extensions::default(),
            UnboundedReceiverStream::new(rx),
        );
        let opened = (self.open)(channel, request);
        let reading = waiting.clone();
        tokio::spawn(async move {
            if let Ok(answers) = opened.await {
                let mut answers = answers.into_inner();
                while let Ok(Some(answer)) = answers.message().await {
                    let waiter = lock(&reading).by_id.remove(answer.request_id());
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(answer);
                    }
                }
            }
            // Its waiters hear nothing (their senders dropped) and go the forwarding way.
            let mut ended = lock(&reading);
            ended.open = false;
            ended.by_id.clear();
        });
        Link { messages, waiting }
    }
}
