//! The scheduler's TLS listener: it must survive whoever connects. Every connection has one
//! deadline for the TLS handshake and CONNECT together; at most `max_pending` connections may
//! be in that phase, and one more drops the oldest of them (a client arriving behind a flood of
//! idle connections still gets through); accept errors (EMFILE...) are logged and backed off,
//! never fatal. Every refused or dropped connection is logged, rate-limited, with its peer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use crate::conn::{FrameReader, FrameWriter};
use crate::server::Scheduler;

/// First pause after a failed accept; it doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(200);

/// Time to write a refusal after the handshake deadline before the connection is cut anyway.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// Connections not yet authenticated, oldest first; removing one's sender cancels it.
struct Pending {
    cap: usize,
    state: Mutex<PendingState>,
}

#[derive(Default)]
struct PendingState {
    next: u64,
    conns: BTreeMap<u64, oneshot::Sender<&'static str>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection, dropping the oldest if the set is full.
    fn admit(&self) -> (u64, oneshot::Receiver<&'static str>) {
        let (tx, rx) = oneshot::channel();
        let mut s = self.lock();
        while s.conns.len() >= self.cap.max(1) {
            if let Some((_, oldest)) = s.conns.pop_first() {
                let _ = oldest.send(
                    "dropped as the oldest unauthenticated connection (--max-pending reached)",
                );
            }
        }
        s.next += 1;
        let id = s.next;
        s.conns.insert(id, tx);
        (id, rx)
    }

    /// Drops the oldest pending connection (to free a file descriptor); false if none.
    fn drop_oldest(&self, reason: &'static str) -> bool {
        match self.lock().conns.pop_first() {
            Some((_, oldest)) => {
                let _ = oldest.send(reason);
                true
            }
            None => false,
        }
    }

    fn done(&self, id: u64) {
        self.lock().conns.remove(&id);
    }
}

/// Out of file descriptors (process or system): the kind of accept error that dropping a
/// pending connection can cure.
fn out_of_fds(e: &std::io::Error) -> bool {
    /// Linux `ENFILE` and `EMFILE`.
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}

impl Scheduler {
    /// Accepts TLS connections on `listener` forever, serving each on its own task. The
    /// client's roles, bound UUIDs and key come from its verified certificate.
    pub async fn run_tls(
        self,
        listener: tokio::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::convert::Infallible {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let pending = Arc::new(Pending {
            cap: self.cfg.max_pending,
            state: Mutex::new(PendingState::default()),
        });
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(accepted) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    accepted
                }
                Err(e) => {
                    let freed = out_of_fds(&e)
                        && pending.drop_oldest(
                            "dropped as the oldest unauthenticated connection (out of file descriptors)",
                        );
                    if let Some(suppressed) = self.refusals.allow() {
                        tracing::warn!(
                            error = %e,
                            freed_a_pending_connection = freed,
                            backoff_ms = backoff.as_millis() as u64,
                            suppressed,
                            "accept failed"
                        );
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (id, cancel) = pending.admit();
            // ERROR level so that the span (and its peer) is kept whatever the log level: a
            // refusal logged at WARN must still name its peer under `--log-level warn`.
            let span = tracing::error_span!(
                "session",
                peer = %addr,
                uuid = tracing::field::Empty,
                role = tracing::field::Empty
            );
            let task = self
                .clone()
                .connection(tcp, acceptor.clone(), pending.clone(), id, cancel);
            tokio::spawn(task.instrument(span));
        }
    }

    /// One connection: TLS and CONNECT within the handshake deadline (unless dropped from the
    /// pending set first), then the session.
    async fn connection(
        self,
        tcp: tokio::net::TcpStream,
        acceptor: tokio_rustls::TlsAcceptor,
        pending: Arc<Pending>,
        id: u64,
        mut cancel: oneshot::Receiver<&'static str>,
    ) {
        let timeout = self.cfg.handshake_timeout;
        let deadline = Instant::now() + timeout;
        let handshake = async {
            let tls = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Err(_) => return Err(format!("no TLS handshake within {timeout:?}")),
                Ok(Err(e)) => return Err(format!("TLS handshake: {e}")),
                Ok(Ok(tls)) => tls,
            };
            let peer = crate::tls::peer_identity(tls.get_ref().1);
            let (r, w) = tokio::io::split(tls);
            let left = deadline.saturating_duration_since(Instant::now());
            self.handshake(FrameReader::new(r), FrameWriter::new(w), peer, left)
                .await
                .map_err(|e| e.to_string())
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout_at(deadline + REFUSAL_GRACE, handshake) => r,
            reason = &mut cancel => {
                self.log_refusal(&reason.unwrap_or("dropped"));
                return;
            }
        };
        pending.done(id);
        let accepted = match outcome {
            Err(_) => {
                self.log_refusal(&format!("no CONNECT within {timeout:?}"));
                return;
            }
            Ok(Err(reason)) => {
                self.log_refusal(&reason);
                return;
            }
            Ok(Ok(accepted)) => accepted,
        };
        tracing::info!("session up");
        match self.run_session(accepted).await {
            Ok(()) => tracing::info!("session ended"),
            Err(e) => tracing::info!(error = %e, "session ended"),
        }
    }
}
