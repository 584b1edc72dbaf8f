//! SSNTP over any byte stream (TLS in production): reading and writing frames, and the
//! CONNECT / CONNECTED handshake of both sides (reference/ssntp.md §4).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

use crate::frame::{
    command, error, kind, status, ConnectFrame, ConnectedFrame, Encoder, Frame, FrameDecoder,
    FrameDefinitions, Incoming,
};
use crate::gob::{split_message, GobError, DEFAULT_MAX_MESSAGE};

/// How long the server waits for CONNECT, as the Go scheduler (`readTimeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes a client may send before its CONNECT is complete. A Go client sends 148 (the
/// ConnectFrame definition and value, Source and Destination of 16 bytes each); the cap keeps
/// a pending, unauthenticated connection from making the server buffer more.
pub const MAX_CONNECT_BYTES: usize = 4096;

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("ssntp: i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("ssntp: {0}")]
    Gob(#[from] GobError),
    #[error("ssntp: the peer closed the connection")]
    Closed,
    #[error("ssntp: no CONNECT within {0:?}")]
    Timeout(Duration),
    /// The server answered CONNECT with an ERROR frame (2 = retry later, 4 = role refused).
    #[error("ssntp: connection refused by the server (error {0})")]
    Refused(u8),
    #[error("ssntp: protocol violation: {0}")]
    Protocol(String),
    /// The server refused the CONNECT (the ERROR frame `code` was sent) for `reason`.
    #[error("ssntp: connection refused (error {code}): {reason}")]
    RefusedPeer { code: u8, reason: String },
}

/// Reads SSNTP messages from one direction of a connection.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    decoder: FrameDecoder,
    limit: usize,
    /// Bytes that may still be read, while an input budget is set.
    budget: Option<usize>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(4096),
            decoder: FrameDecoder::new(),
            limit: DEFAULT_MAX_MESSAGE,
            budget: None,
        }
    }

    /// Caps what may be read from now on at `bytes` in total (and each message at that size),
    /// until [`FrameReader::unlimit`]; more is a [`GobError::TooLarge`].
    pub fn limit_input(&mut self, bytes: usize) {
        self.limit = bytes;
        self.budget = Some(bytes.saturating_sub(self.buf.len()));
    }

    /// Back to the default per-message limit and no total budget.
    pub fn unlimit(&mut self) {
        self.limit = DEFAULT_MAX_MESSAGE;
        self.budget = None;
    }

    /// The next frame; `Ok(None)` when the peer closed the stream between messages.
    pub async fn next(&mut self) -> Result<Option<Incoming>, ConnError> {
        loop {
            while let Some((prefix, size)) = split_message(&self.buf, self.limit)? {
                let end = prefix + size;
                if self.buf.len() < end {
                    break;
                }
                let decoded = self.decoder.decode(&self.buf[prefix..end]);
                self.buf.drain(..end);
                if let Some(frame) = decoded? {
                    return Ok(Some(frame));
                }
            }
            // Read into the buffer itself: no per-connection 8 KiB array kept across the await.
            self.buf.reserve(8192);
            let n = self.inner.read_buf(&mut self.buf).await?;
            if let Some(left) = self.budget {
                self.budget = Some(left.checked_sub(n).ok_or(GobError::TooLarge {
                    size: n as u64,
                    limit: self.limit,
                })?);
            }
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnError::Closed)
                };
            }
        }
    }

    /// Reads and throws away up to `max` bytes, until the peer closes or fails. Before closing
    /// a refused connection: a socket closed with unread input is reset, and the reset can
    /// destroy the refusal on its way to the peer.
    pub async fn discard(&mut self, max: usize) {
        self.buf = Vec::new();
        let mut scratch = [0u8; 4096];
        let mut left = max;
        while left > 0 {
            match self.inner.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    }

    /// The next frame after the handshake; anything but a Frame is a protocol violation.
    pub async fn frame(&mut self) -> Result<Option<Frame>, ConnError> {
        match self.next().await? {
            None => Ok(None),
            Some(Incoming::Frame(f)) => Ok(Some(f)),
            Some(other) => Err(ConnError::Protocol(format!(
                "handshake message after the handshake: {other:?}"
            ))),
        }
    }
}

/// Writes SSNTP messages in one direction; each call is one flushed write.
pub struct FrameWriter<W> {
    inner: W,
    encoder: Encoder,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            encoder: Encoder::new(FrameDefinitions::Go),
            buf: Vec::new(),
        }
    }

    async fn flush_buf(&mut self) -> Result<(), ConnError> {
        self.inner.write_all(&self.buf).await?;
        self.inner.flush().await?;
        self.buf.clear();
        Ok(())
    }

    pub async fn connect(&mut self, f: &ConnectFrame) -> Result<(), ConnError> {
        self.encoder.connect(&mut self.buf, f);
        self.flush_buf().await
    }

    pub async fn connected(&mut self, f: &ConnectedFrame) -> Result<(), ConnError> {
        self.encoder.connected(&mut self.buf, f);
        self.flush_buf().await
    }

    pub async fn frame(&mut self, f: &Frame) -> Result<(), ConnError> {
        self.encoder.frame(&mut self.buf, f);
        self.flush_buf().await
    }

    /// Encodes a frame without sending it; [`FrameWriter::flush`] sends all queued at once.
    pub fn queue(&mut self, f: &Frame) {
        self.encoder.frame(&mut self.buf, f);
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        self.flush_buf().await
    }

    /// Closes the sending direction (TLS close_notify, TCP FIN).
    pub async fn shutdown(&mut self) -> Result<(), ConnError> {
        Ok(self.inner.shutdown().await?)
    }
}

/// What the client learns from CONNECTED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    pub uuid: Uuid,
    pub role: u32,
    /// The cluster configuration YAML (`configure:`), possibly empty.
    pub configuration: Vec<u8>,
}

/// What the server learns from CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub uuid: Uuid,
    pub role: u32,
}

/// The client side: sends CONNECT, waits for CONNECTED (never pipelining: the Go server
/// swallows bytes sent behind CONNECT), and checks the server's claimed role against
/// `server_cert_roles` (the role OIDs of its certificate).
pub async fn client_handshake<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    uuid: Uuid,
    role: u32,
    server_cert_roles: u32,
) -> Result<ServerHello, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer
        .connect(&ConnectFrame {
            major: 0,
            minor: 1,
            kind: kind::COMMAND,
            operand: command::CONNECT,
            role,
            source: uuid.as_bytes().to_vec(),
            destination: vec![0; 16],
        })
        .await?;
    match reader.next().await? {
        Some(Incoming::Connected(c)) => {
            if c.kind != kind::STATUS || c.operand != status::CONNECTED {
                return Err(ConnError::Protocol(format!(
                    "expected CONNECTED, got type {} operand {}",
                    c.kind, c.operand
                )));
            }
            if c.role & server_cert_roles != c.role {
                return Err(ConnError::Protocol(format!(
                    "server claims role {:#x} its certificate does not carry ({:#x})",
                    c.role, server_cert_roles
                )));
            }
            let uuid = c
                .source
                .get(..16)
                .and_then(|s| Uuid::from_slice(s).ok())
                .ok_or_else(|| ConnError::Protocol("CONNECTED without a 16-byte source".into()))?;
            Ok(ServerHello {
                uuid,
                role: c.role,
                configuration: c.payload,
            })
        }
        Some(Incoming::Frame(f)) if f.kind == kind::ERROR => Err(ConnError::Refused(f.operand)),
        Some(other) => Err(ConnError::Protocol(format!(
            "expected CONNECTED, got {other:?}"
        ))),
        None => Err(ConnError::Closed),
    }
}

/// An ERROR frame as the Go server sends it on a refused connection: zero Origin, no payload.
fn refusal(code: u8) -> Frame {
    Frame {
        minor: 1,
        kind: kind::ERROR,
        operand: code,
        ..Frame::default()
    }
}

/// The server side: waits up to `timeout` for CONNECT, checks that the claimed role is a subset
/// of `client_cert_roles`, and answers CONNECTED; on failure it sends the ERROR frame the Go
/// scheduler sends (ConnectionFailure or ConnectionAborted) and returns the error.
pub async fn server_handshake<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    client_cert_roles: u32,
    server: &ServerHello,
    timeout: Duration,
) -> Result<ClientHello, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let client = read_connect(reader, writer, client_cert_roles, timeout).await?;
    send_connected(writer, server, client.uuid).await?;
    Ok(client)
}

/// Sends `refusal(code)` (best effort) and returns the matching error.
pub async fn refuse<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    code: u8,
    reason: String,
) -> ConnError {
    let _ = writer.frame(&refusal(code)).await;
    ConnError::RefusedPeer { code, reason }
}

/// The first half of the server side: waits up to `timeout` for CONNECT (at most
/// [`MAX_CONNECT_BYTES`] of input), checks the frame, its 16-byte Source and the claimed role
/// against `client_cert_roles`. On failure it sends the ERROR frame the Go scheduler sends
/// (ConnectionFailure for a bad or missing CONNECT, ConnectionAborted for a role the
/// certificate lacks) and returns the error.
pub async fn read_connect<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    client_cert_roles: u32,
    timeout: Duration,
) -> Result<ClientHello, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    reader.limit_input(MAX_CONNECT_BYTES);
    let first = match tokio::time::timeout(timeout, reader.next()).await {
        Err(_) => Err(ConnError::Timeout(timeout)),
        Ok(r) => r,
    };
    reader.unlimit();
    let connect = match first {
        Ok(Some(Incoming::Connect(c)))
            if c.kind == kind::COMMAND && c.operand == command::CONNECT && c.source.len() == 16 =>
        {
            c
        }
        other => {
            let _ = writer.frame(&refusal(error::CONNECTION_FAILURE)).await;
            return Err(match other {
                Err(e) => e,
                Ok(None) => ConnError::Closed,
                Ok(Some(Incoming::Connect(c))) if c.source.len() != 16 => {
                    ConnError::Protocol(format!(
                        "CONNECT Source of {} bytes, not a 16-byte UUID",
                        c.source.len()
                    ))
                }
                Ok(Some(m)) => ConnError::Protocol(format!("expected CONNECT, got {m:?}")),
            });
        }
    };
    if connect.role & client_cert_roles != connect.role || connect.role == 0 {
        let _ = writer.frame(&refusal(error::CONNECTION_ABORTED)).await;
        return Err(ConnError::Protocol(format!(
            "client claims role {:#x}, its certificate carries {:#x}",
            connect.role, client_cert_roles
        )));
    }
    let uuid = Uuid::from_slice(&connect.source)
        .map_err(|e| ConnError::Protocol(format!("client UUID: {e}")))?;
    Ok(ClientHello {
        uuid,
        role: connect.role,
    })
}

/// The second half of the server side: CONNECTED, carrying the cluster configuration.
pub async fn send_connected<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    server: &ServerHello,
    client: Uuid,
) -> Result<(), ConnError> {
    writer
        .connected(&ConnectedFrame {
            major: 0,
            minor: 1,
            kind: kind::STATUS,
            operand: status::CONNECTED,
            role: server.role,
            source: server.uuid.as_bytes().to_vec(),
            destination: client.as_bytes().to_vec(),
            payload_length: server.configuration.len() as u32,
            payload: server.configuration.clone(),
        })
        .await
}
