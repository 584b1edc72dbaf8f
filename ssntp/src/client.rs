//! Dialling a scheduler over TLS and doing the client handshake.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use uuid::Uuid;

use crate::conn::{client_handshake, ConnError, FrameReader, FrameWriter, ServerHello};
use crate::frame::Frame;

/// The two directions of a connected session.
pub struct Session {
    pub reader: FrameReader<ReadHalf<TlsStream<TcpStream>>>,
    pub writer: FrameWriter<WriteHalf<TlsStream<TcpStream>>>,
    pub server: ServerHello,
}

/// Connects to `addr` (`host:port`), verifies the server as `server_name`, and sends CONNECT
/// with `role` (which must be a subset of this client's certificate roles).
pub async fn dial(
    addr: &str,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
    uuid: Uuid,
    role: u32,
) -> Result<Session, ConnError> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| ConnError::Protocol(format!("server name {server_name:?}: {e}")))?;
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let server_roles = crate::tls::peer_roles(tls.get_ref().1);
    let (r, w) = tokio::io::split(tls);
    let (mut reader, mut writer) = (FrameReader::new(r), FrameWriter::new(w));
    let server = client_handshake(&mut reader, &mut writer, uuid, role, server_roles).await?;
    Ok(Session {
        reader,
        writer,
        server,
    })
}

/// The host part of a `host:port` address (brackets of an IPv6 literal removed): the default
/// name to verify the scheduler's certificate against.
pub fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    host.trim_matches(['[', ']']).to_string()
}

/// What a long-lived client reports to its owner.
#[derive(Debug)]
pub enum ClientEvent {
    /// A session is up (after the first connect and after every reconnect): the moment to
    /// (re-)announce oneself, e.g. a CNCI's ConcentratorInstanceAdded.
    Connected(ServerHello),
    /// A frame from the scheduler.
    Frame(Frame),
    /// The session ended; the client is reconnecting.
    Disconnected(String),
}

/// How a long-lived client connects.
#[derive(Clone)]
pub struct ClientConfig {
    pub addr: String,
    pub server_name: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub uuid: Uuid,
    pub role: u32,
    /// Longest pause between connection attempts.
    pub max_backoff: std::time::Duration,
}

/// Sends frames through a [`Client`]; frames wait (bounded) while it is reconnecting.
#[derive(Clone)]
pub struct ClientHandle {
    tx: tokio::sync::mpsc::Sender<Frame>,
}

impl ClientHandle {
    /// Queues a frame for the current or next session; waits when the queue is full.
    pub async fn send(&self, frame: Frame) -> Result<(), ConnError> {
        self.tx.send(frame).await.map_err(|_| ConnError::Closed)
    }
}

/// Jittered exponential back-off: 0.5 s doubling up to `max`, each between 50 % and 100 %.
fn backoff(attempt: u32, max: std::time::Duration) -> std::time::Duration {
    let base = std::time::Duration::from_millis(500u64 << attempt.min(8)).min(max);
    let jitter = (Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    base.mul_f64(0.5 + jitter / 2.0)
}

/// A client that stays connected: it reconnects forever with jittered back-off, closes the old
/// session before dialling a new one (the scheduler must never see two live sessions with one
/// UUID), and hands every event to its owner.
pub struct Client;

impl Client {
    /// Starts the client on the current tokio runtime.
    pub fn spawn(cfg: ClientConfig) -> (ClientHandle, tokio::sync::mpsc::Receiver<ClientEvent>) {
        let (tx, mut outgoing) = tokio::sync::mpsc::channel::<Frame>(256);
        let (events, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let mut attempt = 0u32;
            let mut pending: Option<Frame> = None;
            loop {
                let session = dial(
                    &cfg.addr,
                    &cfg.server_name,
                    cfg.tls.clone(),
                    cfg.uuid,
                    cfg.role,
                )
                .await;
                let Session {
                    mut reader,
                    mut writer,
                    server,
                } = match session {
                    Ok(s) => s,
                    Err(e) => {
                        if events
                            .send(ClientEvent::Disconnected(e.to_string()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        tokio::time::sleep(backoff(attempt, cfg.max_backoff)).await;
                        attempt = attempt.saturating_add(1);
                        continue;
                    }
                };
                attempt = 0;
                if events.send(ClientEvent::Connected(server)).await.is_err() {
                    return;
                }
                let reason = loop {
                    // A frame that failed to go out on the previous session goes first.
                    if let Some(frame) = pending.take() {
                        if let Err(e) = writer.frame(&frame).await {
                            pending = Some(frame);
                            break e.to_string();
                        }
                    }
                    tokio::select! {
                        incoming = reader.frame() => match incoming {
                            Ok(Some(frame)) => {
                                if events.send(ClientEvent::Frame(frame)).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break "the scheduler closed the session".to_string(),
                            Err(e) => break e.to_string(),
                        },
                        out = outgoing.recv() => match out {
                            Some(frame) => pending = Some(frame),
                            None => {
                                let _ = writer.shutdown().await;
                                return;
                            }
                        },
                    }
                };
                // Close this session explicitly before the next dial.
                let _ = writer.shutdown().await;
                drop(reader);
                if events
                    .send(ClientEvent::Disconnected(reason))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(backoff(0, cfg.max_backoff)).await;
            }
        });
        (ClientHandle { tx }, rx)
    }
}
