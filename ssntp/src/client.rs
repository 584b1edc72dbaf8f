//! Dialling a scheduler over TLS and doing the client handshake.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use uuid::Uuid;

use crate::conn::{client_handshake, ConnError, FrameReader, FrameWriter, ServerHello};

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
