//! SIP over TCP (RFC 3261 18): the listener beside the UDP socket, one task per connection
//! cutting its stream into messages ([`voxline_sip::StreamFramer`]), and the connection
//! table the SIP task writes through.
//!
//! * Every connection, accepted or opened by us, is keyed by its peer address. A response
//!   goes back on the connection its request came on (18.2.2); a request of ours to an
//!   address with a connection reuses it; otherwise a new connection is opened (and kept for
//!   the next message, e.g. every request of a trunk's calls).
//! * Keep-alives: a CRLFCRLF ping is answered with a CRLF pong (RFC 5626 3.5.1); on a
//!   connection we opened, we send one after [`KEEPALIVE_INTERVAL`] without traffic.
//! * A connection that breaks the framing (no Content-Length, a message over the size cap,
//!   not SIP) is closed; nothing else is affected. A request without a usable
//!   Content-Length is first answered `400` (RFC 3261 18.3). One a peer opened is closed
//!   after [`IDLE_TIMEOUT`] without traffic; ours stay open (a registrar sends calls on them).
//! * At most [`MAX_PER_IP`] connections per client address and [`MAX_CONNECTIONS`] in all:
//!   beyond them a new connection is closed at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use voxline_sip::{StreamError, StreamFramer, StreamItem, PONG};

use super::listener::PerIp;

/// How long a connection that broke the framing waits for the endpoint's answer (a
/// request's `400`) before it closes.
const ANSWER_GRACE: Duration = Duration::from_millis(500);
/// On a connection of ours (to a trunk or a registrar, which may send calls back on it), a
/// CRLFCRLF keep-alive goes out after this long without traffic (RFC 5626 4.4.1 suggests
/// 95-120 s for connection-oriented transports): it keeps NAT bindings open, and the
/// connection is not idle-closed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(120);
/// The keep-alive request (RFC 5626 3.5.1); the answer is [`PONG`].
const PING: &[u8] = b"\r\n\r\n";
/// A connection a peer opened with no message (or keep-alive) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Open connections per client address, at most.
pub const MAX_PER_IP: usize = 64;
/// Open connections in all, at most.
pub const MAX_CONNECTIONS: usize = 4096;
/// How long opening a connection of ours may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the connections tell the SIP task.
#[derive(Debug)]
pub enum TcpEvent {
    /// A connection was accepted: its writer joins the table.
    Opened { peer: SocketAddr, id: u64, writer: mpsc::UnboundedSender<Vec<u8>> },
    /// One whole message from `peer`.
    Message { peer: SocketAddr, data: Vec<u8> },
    /// The header section of a message from `peer` whose end cannot be found; the
    /// connection waits [`ANSWER_GRACE`] for the answer (a request's `400`), then closes.
    Unframed { peer: SocketAddr, head: Vec<u8>, error: StreamError },
    /// The connection `id` with `peer` is gone.
    Closed { peer: SocketAddr, id: u64 },
}

/// What a connection hands the endpoint.
#[derive(Debug)]
pub enum Inbound {
    /// One whole message, for [`voxline_sip::Endpoint::handle_message`].
    Message { peer: SocketAddr, data: Vec<u8> },
    /// A message that broke the framing, for [`voxline_sip::Endpoint::reject_unframed`].
    Unframed { peer: SocketAddr, head: Vec<u8>, error: StreamError },
}

/// The SIP task's side: the events of every connection and the table to write through.
pub struct SipTcp {
    pub events: mpsc::Receiver<TcpEvent>,
    events_tx: mpsc::Sender<TcpEvent>,
    table: HashMap<SocketAddr, (u64, mpsc::UnboundedSender<Vec<u8>>)>,
    shared: Arc<Shared>,
}

/// What the accept loop and the connections share.
struct Shared {
    max_message: usize,
    /// [`IDLE_TIMEOUT`] and [`KEEPALIVE_INTERVAL`] (shorter in tests).
    idle: Duration,
    keepalive: Duration,
    per_ip: Arc<PerIp>,
    total: Arc<Semaphore>,
    next_id: std::sync::atomic::AtomicU64,
}

impl SipTcp {
    /// Starts accepting on `listener`; messages are cut at `max_message` bytes.
    pub fn start(listener: TcpListener, max_message: usize) -> SipTcp {
        Self::with_timing(listener, max_message, IDLE_TIMEOUT, KEEPALIVE_INTERVAL)
    }

    fn with_timing(listener: TcpListener, max_message: usize, idle: Duration, keepalive: Duration) -> SipTcp {
        let (events_tx, events) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            max_message,
            idle,
            keepalive,
            per_ip: Arc::default(),
            total: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            next_id: 1.into(),
        });
        tokio::spawn(accept(listener, shared.clone(), events_tx.clone()));
        SipTcp { events, events_tx, table: HashMap::new(), shared }
    }

    /// Applies a connection's event to the table; what the endpoint must see comes back.
    pub fn on_event(&mut self, event: TcpEvent) -> Option<Inbound> {
        match event {
            TcpEvent::Opened { peer, id, writer } => {
                self.table.insert(peer, (id, writer));
                None
            }
            TcpEvent::Message { peer, data } => Some(Inbound::Message { peer, data }),
            TcpEvent::Unframed { peer, head, error } => Some(Inbound::Unframed { peer, head, error }),
            TcpEvent::Closed { peer, id } => {
                if self.table.get(&peer).is_some_and(|(open, _)| *open == id) {
                    self.table.remove(&peer);
                }
                None
            }
        }
    }

    /// Sends `payload` to `peer`: on its connection, or on a new one (kept for what follows).
    pub fn send(&mut self, peer: SocketAddr, payload: Vec<u8>) {
        if let Some((_, writer)) = self.table.get(&peer) {
            match writer.send(payload) {
                Ok(()) => return,
                Err(mpsc::error::SendError(payload)) => {
                    self.table.remove(&peer);
                    return self.send(peer, payload);
                }
            }
        }
        let id = self.shared.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (writer, queue) = mpsc::unbounded_channel();
        let _ = writer.send(payload);
        self.table.insert(peer, (id, writer));
        tokio::spawn(connect(peer, id, queue, self.shared.clone(), self.events_tx.clone()));
    }

    /// Open connections (the table's size).
    #[cfg(test)]
    fn open(&self) -> usize {
        self.table.len()
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, events: mpsc::Sender<TcpEvent>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "SIP TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = shared.per_ip.acquire(peer.ip(), MAX_PER_IP) else {
            tracing::info!(%peer, "SIP TCP connection over the per-address cap; closed");
            continue;
        };
        let Ok(permit) = shared.total.clone().try_acquire_owned() else {
            tracing::info!("SIP TCP connection over the total cap; closed");
            continue;
        };
        let id = shared.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (writer, queue) = mpsc::unbounded_channel();
        if events.send(TcpEvent::Opened { peer, id, writer }).await.is_err() {
            return; // the SIP task is gone
        }
        let (shared, events) = (shared.clone(), events.clone());
        tokio::spawn(async move {
            let _held = (slot, permit);
            serve(stream, peer, id, Side::Accepted, queue, &shared, &events).await;
        });
    }
}

/// Opens a connection of ours and serves it like an accepted one.
async fn connect(
    peer: SocketAddr,
    id: u64,
    queue: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
    events: mpsc::Sender<TcpEvent>,
) {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await {
        Ok(Ok(stream)) => {
            tracing::debug!(%peer, "SIP TCP connection opened");
            serve(stream, peer, id, Side::Ours, queue, &shared, &events).await;
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "SIP TCP connect failed");
            let _ = events.send(TcpEvent::Closed { peer, id }).await;
        }
        Err(_) => {
            tracing::info!(%peer, "SIP TCP connect timed out");
            let _ = events.send(TcpEvent::Closed { peer, id }).await;
        }
    }
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The peer: closed after [`IDLE_TIMEOUT`] without traffic.
    Accepted,
    /// We did: kept open with keep-alives every [`KEEPALIVE_INTERVAL`] without traffic.
    Ours,
}

/// Reads messages from one connection and writes what the table queues for it, until
/// either side fails, the stream breaks the framing, or (a peer's) it stays idle too long.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    side: Side,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: &Shared,
    events: &mpsc::Sender<TcpEvent>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut framer = StreamFramer::new(shared.max_message);
    let mut buf = vec![0u8; 16 * 1024];
    let quiet = match side {
        Side::Accepted => shared.idle,
        Side::Ours => shared.keepalive,
    };
    let why = loop {
        tokio::select! {
            read = tokio::time::timeout(quiet, reader.read(&mut buf)) => {
                let n = match read {
                    Err(_) if side == Side::Ours => {
                        if let Err(e) = writer.write_all(PING).await {
                            break format!("keep-alive failed: {e}");
                        }
                        continue;
                    }
                    Err(_) => break "idle".to_string(),
                    Ok(Err(e)) => break format!("read failed: {e}"),
                    Ok(Ok(0)) => break "closed by the peer".to_string(),
                    Ok(Ok(n)) => n,
                };
                framer.push(&buf[..n]);
                let mut failed = None;
                let mut unframed = None;
                loop {
                    match framer.next() {
                        Ok(Some(StreamItem::Message(data))) => {
                            if events.send(TcpEvent::Message { peer, data }).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(StreamItem::Ping)) => {
                            if let Err(e) = writer.write_all(PONG).await {
                                failed = Some(format!("write failed: {e}"));
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            failed = Some(e.to_string());
                            unframed = framer.take_rejected().map(|head| (head, e));
                            break;
                        }
                    }
                }
                if let Some((head, error)) = unframed {
                    if events.send(TcpEvent::Unframed { peer, head, error }).await.is_ok() {
                        if let Ok(Some(payload)) = tokio::time::timeout(ANSWER_GRACE, queue.recv()).await {
                            crate::metrics::metrics().sip_sent(&payload);
                            let _ = writer.write_all(&payload).await;
                        }
                    }
                }
                if let Some(why) = failed {
                    break why;
                }
            }
            next = queue.recv() => match next {
                Some(payload) => {
                    crate::metrics::metrics().sip_sent(&payload);
                    if let Err(e) = writer.write_all(&payload).await {
                        break format!("write failed: {e}");
                    }
                }
                None => break "dropped from the table".to_string(),
            },
        }
    };
    tracing::debug!(%peer, why, "SIP TCP connection closed");
    let _ = writer.shutdown().await;
    let _ = events.send(TcpEvent::Closed { peer, id }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_some(stream: &mut TcpStream) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("data within 5 s").unwrap();
        buf.truncate(n);
        buf
    }

    /// A listening `SipTcp` (with these timings) and a client connected to it.
    async fn listening(idle: Duration, keepalive: Duration) -> (SipTcp, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = SipTcp::with_timing(listener, 4096, idle, keepalive);
        (tcp, TcpStream::connect(addr).await.unwrap())
    }

    /// Applies the connections' events until none comes for a second; true if one closed.
    async fn settle(tcp: &mut SipTcp) -> bool {
        let mut closed = false;
        while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(1), tcp.events.recv()).await {
            closed |= matches!(event, TcpEvent::Closed { .. });
            tcp.on_event(event);
        }
        closed
    }

    #[tokio::test]
    async fn a_connection_of_ours_sends_keep_alives_and_outlives_the_idle_timeout() {
        let (idle, keepalive) = (Duration::from_millis(300), Duration::from_millis(100));
        let registrar = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut tcp = SipTcp::with_timing(TcpListener::bind("127.0.0.1:0").await.unwrap(), 4096, idle, keepalive);
        tcp.send(registrar.local_addr().unwrap(), b"REGISTER sip:r SIP/2.0\r\nContent-Length: 0\r\n\r\n".to_vec());
        let (mut conn, _) = registrar.accept().await.unwrap();
        assert!(read_some(&mut conn).await.starts_with(b"REGISTER"));
        let start = tokio::time::Instant::now();
        let mut pings = 0;
        while start.elapsed() < 3 * idle {
            assert_eq!(read_some(&mut conn).await, PING, "a keep-alive (not a close) after {:?}", start.elapsed());
            pings += 1;
        }
        assert!(pings >= 5, "{pings} keep-alives");
        assert_eq!(tcp.open(), 1, "still in the table");
    }

    #[tokio::test]
    async fn a_connection_a_peer_opened_closes_when_idle() {
        let idle = Duration::from_millis(300);
        let (_tcp, mut client) = listening(idle, Duration::from_millis(100)).await;
        let start = tokio::time::Instant::now();
        assert_eq!(read_some(&mut client).await, b"", "closed, no keep-alive sent");
        assert!(start.elapsed() >= idle, "closed after {:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_ping_gets_a_pong_and_messages_reach_the_sip_task_and_replies_go_back() {
        let (mut tcp, mut client) = listening(IDLE_TIMEOUT, KEEPALIVE_INTERVAL).await;
        client.write_all(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nhi").await.unwrap();
        assert_eq!(read_some(&mut client).await, PONG);
        let opened = tcp.events.recv().await.unwrap();
        assert!(tcp.on_event(opened).is_none());
        let message = tcp.events.recv().await.unwrap();
        let Some(Inbound::Message { peer, data }) = tcp.on_event(message) else { panic!("no message") };
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(data.ends_with(b"hi"));
        tcp.send(peer, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec());
        assert!(read_some(&mut client).await.starts_with(b"SIP/2.0 200 OK"));
        assert_eq!(tcp.open(), 1);
    }

    #[tokio::test]
    async fn a_stream_without_content_length_hands_its_head_over_writes_the_answer_and_closes() {
        let (mut tcp, mut client) = listening(IDLE_TIMEOUT, KEEPALIVE_INTERVAL).await;
        let head = b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n";
        client.write_all(head).await.unwrap();
        let mut unframed = None;
        while unframed.is_none() {
            let event = tokio::time::timeout(Duration::from_secs(5), tcp.events.recv()).await.expect("an event").unwrap();
            if let Some(Inbound::Unframed { peer, head, error }) = tcp.on_event(event) {
                unframed = Some((peer, head, error));
            }
        }
        let (peer, got, error) = unframed.unwrap();
        assert_eq!(got, head);
        assert_eq!(error, StreamError::MissingContentLength);
        tcp.send(peer, b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec());
        assert!(read_some(&mut client).await.starts_with(b"SIP/2.0 400"), "the answer is written");
        assert_eq!(read_some(&mut client).await, b"", "then the server closes the connection");
        assert!(settle(&mut tcp).await, "a Closed event");
        assert_eq!(tcp.open(), 0);
    }

    #[tokio::test]
    async fn unanswered_the_broken_stream_still_closes() {
        let (mut tcp, mut client) = listening(IDLE_TIMEOUT, KEEPALIVE_INTERVAL).await;
        client.write_all(b"hello there\r\nwho: me\r\n\r\n").await.unwrap();
        assert_eq!(read_some(&mut client).await, b"", "closed after the grace period");
        settle(&mut tcp).await;
        assert_eq!(tcp.open(), 0);
    }
}
