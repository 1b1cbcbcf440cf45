//! What carries the control protocol: the control WebSocket here, a WebRTC
//! data channel in `webrtc.rs`, the agent's own WebSocket in `agent_url.rs`.

use axum::extract::ws::{close_code, Message, Utf8Bytes, WebSocket};

/// A frame from the agent, whatever carries it.
#[derive(Debug)]
pub enum AgentFrame {
    Text(String),
    Binary,
    /// The agent closed the socket; `normal`: with code 1000.
    Closed { normal: bool },
    /// Anything else (pings): nothing to do.
    Other,
}

/// A frame to the agent.
#[derive(Debug)]
pub enum AgentMessage {
    Text(String),
    Binary(Vec<u8>),
}

/// The agent is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// `recv` answers `None` once the agent is gone.
pub trait ControlTransport: Send {
    fn recv(&mut self) -> impl std::future::Future<Output = Option<AgentFrame>> + Send;
    fn send(&mut self, message: AgentMessage) -> impl std::future::Future<Output = Result<(), Gone>> + Send;
    fn close(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

impl ControlTransport for WebSocket {
    async fn recv(&mut self) -> Option<AgentFrame> {
        match WebSocket::recv(self).await {
            Some(Ok(Message::Text(text))) => Some(AgentFrame::Text(text.as_str().to_owned())),
            Some(Ok(Message::Binary(_))) => Some(AgentFrame::Binary),
            Some(Ok(Message::Close(frame))) => Some(AgentFrame::Closed { normal: frame.is_some_and(|f| f.code == close_code::NORMAL) }),
            None | Some(Err(_)) => None,
            Some(Ok(_)) => Some(AgentFrame::Other),
        }
    }

    async fn send(&mut self, message: AgentMessage) -> Result<(), Gone> {
        let message = match message {
            AgentMessage::Text(text) => Message::Text(Utf8Bytes::from(text)),
            AgentMessage::Binary(bytes) => Message::Binary(bytes.into()),
        };
        WebSocket::send(self, message).await.map_err(|_| Gone)
    }

    async fn close(&mut self) {
        let _ = WebSocket::send(self, Message::Close(None)).await;
    }
}
