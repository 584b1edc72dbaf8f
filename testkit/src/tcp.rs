//! TCP stand-ins for workload services, and probes of them, inside network namespaces: a
//! listener that answers every connection with a tag line, and a probe that says which tag
//! (if any) answered. Used by the forward, SSH, tenant-rule and restart tests.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::cluster::in_netns;

/// How long a probe waits for the connection: a dropped SYN is retried after 1 s, so a
/// connect still pending after this was dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A TCP listener in a namespace that writes `tag` and a newline to every connection;
/// stopped when dropped.
pub struct TagListener {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TagListener {
    /// Listens on `0.0.0.0:port` in namespace `ns`; returns once it is bound.
    pub fn start(ns: PathBuf, port: u16, tag: &'static str) -> TagListener {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, listening) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            in_netns(&ns, || {
                let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind");
                listener.set_nonblocking(true).expect("nonblocking");
                let _ = ready.send(());
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut conn, _)) => {
                            let _ = conn.write_all(format!("{tag}\n").as_bytes());
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        Err(_) => break,
                    }
                }
            })
        });
        listening.recv().expect("listener ready");
        TagListener {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TagListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A connection to `dst`, from source address `src` if given, failing after
/// [`CONNECT_TIMEOUT`].
fn connect(src: Option<&str>, dst: SocketAddr) -> Option<TcpStream> {
    let socket = Socket::new(Domain::for_address(dst), Type::STREAM, None).ok()?;
    if let Some(src) = src {
        let from = SocketAddrV4::new(src.parse().ok()?, 0);
        socket.bind(&SocketAddr::V4(from).into()).ok()?;
    }
    socket.connect_timeout(&dst.into(), CONNECT_TIMEOUT).ok()?;
    Some(socket.into())
}

/// The tag the listener behind `ip:port` sends, seen from namespace `ns` (from source address
/// `src` if given); `None` when the connection is not accepted within [`CONNECT_TIMEOUT`] or
/// no whole line comes within 2 s.
pub fn tag_at(ns: &Path, src: Option<&str>, ip: &str, port: u16) -> Option<String> {
    let dst = SocketAddr::new(ip.parse().ok()?, port);
    in_netns(ns, || {
        let stream = connect(src, dst)?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        line.ends_with('\n').then(|| line.trim().to_string())
    })
}
