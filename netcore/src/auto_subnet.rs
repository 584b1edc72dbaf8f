//! A workload that names its tenant but no subnet (issue 12: "the subnet too may be left out,
//! as in ciao"): the node's cache of the controller's answers, and the one client the front
//! ends (CNI plugin, QEMU hook, Docker plugin) use to ask `ciao-node run` for a new one.
//!
//! `ciao-node run` listens on [`SOCKET_FILE`] in the state directory (mode 0600): one JSON line
//! in (`{"auto_subnet":{"tenant":T}}`), one JSON line out (`{"ok":{"subnet":..,"range_start":..,
//! "range_end":..}}` or `{"error":"reason"}`). It writes every answer to [`CACHE_FILE`] before
//! replying, so a tenant's next workload on this node needs neither the daemon nor the
//! controller. The core also sends `{"changed":{}}` (no reply) after an attach that created a
//! subnet ([`poke`]).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The daemon's socket, in the node's state directory.
pub const SOCKET_FILE: &str = "node.sock";
/// The answers so far, tenant -> [`AutoSubnet`], in the node's state directory.
pub const CACHE_FILE: &str = "auto-subnets.json";
/// How long a front end waits for the controller by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Longest request or reply line accepted.
const MAX_LINE: usize = 4096;

/// The tenant's subnet on this node and the addresses this node may give out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoSubnet {
    pub subnet: Ipv4Net,
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
}

/// The request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// `{"auto_subnet":{"tenant":T}}`: the tenant's automatic subnet (one [`Reply`] line).
    AutoSubnet { tenant: Uuid },
    /// `{"changed":{}}`: an attach made a subnet on this node (its TenantAdded is queued, or
    /// it awaits its CNCI): deliver and ask now rather than at the next poll (no reply; see
    /// [`poke`]).
    Changed {},
}

/// The reply line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(AutoSubnet),
    Error(String),
}

/// Why no subnet: the first two are worth trying again later, a refusal is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    #[error("ciao-node run is not running (no {0})")]
    NotRunning(String),
    #[error("the controller did not answer within {0}")]
    NoAnswer(String),
    #[error("{0}")]
    Refused(String),
    #[error("automatic subnet: {0}")]
    Failed(String),
}

impl AskError {
    /// True when the same request may succeed later (the daemon or the controller is back).
    pub fn try_again(&self) -> bool {
        matches!(self, AskError::NotRunning(_) | AskError::NoAnswer(_))
    }
}

/// `10 s`, `1.5 s`.
pub fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The cached answer for `tenant`, from the cache first (no wait), else from `ciao-node run`,
/// waiting at most `wait`.
pub fn resolve(state_dir: &Path, tenant: Uuid, wait: Duration) -> Result<AutoSubnet, AskError> {
    if let Some(found) = cached(state_dir, tenant)? {
        return Ok(found);
    }
    ask(&state_dir.join(SOCKET_FILE), tenant, wait)
}

/// Every cached answer (none if the file does not exist yet).
pub fn cache(state_dir: &Path) -> Result<BTreeMap<Uuid, AutoSubnet>, AskError> {
    let path = state_dir.join(CACHE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| AskError::Failed(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(AskError::Failed(format!("{}: {e}", path.display()))),
    }
}

/// The cached answer for `tenant`, if any.
pub fn cached(state_dir: &Path, tenant: Uuid) -> Result<Option<AutoSubnet>, AskError> {
    Ok(cache(state_dir)?.get(&tenant).copied())
}

/// Adds one answer to the cache, durably (only `ciao-node run` writes it).
pub fn remember(state_dir: &Path, tenant: Uuid, got: AutoSubnet) -> crate::Result<()> {
    let mut all = cache(state_dir).map_err(|e| crate::Error::invalid(CACHE_FILE, e.to_string()))?;
    all.insert(tenant, got);
    let text = serde_json::to_vec_pretty(&all)
        .map_err(|e| crate::Error::invalid(CACHE_FILE, e.to_string()))?;
    crate::state::write_atomic(&state_dir.join(CACHE_FILE), &text)
}

/// Asks the daemon at `socket`: one line out, one full line back within `wait`.
pub fn ask(socket: &Path, tenant: Uuid, wait: Duration) -> Result<AutoSubnet, AskError> {
    let not_running = || AskError::NotRunning(socket.display().to_string());
    let mut stream = UnixStream::connect(socket).map_err(|_| not_running())?;
    let request = Request::AutoSubnet { tenant };
    let mut line = serde_json::to_vec(&request).map_err(|e| AskError::Failed(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|_| not_running())?;
    let deadline = Instant::now() + wait;
    let line = read_line(&mut stream, deadline).map_err(|e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => AskError::NoAnswer(seconds(wait)),
        _ => AskError::Failed(format!("{}: {e}", socket.display())),
    })?;
    match serde_json::from_slice::<Reply>(&line) {
        Ok(Reply::Ok(got)) => Ok(got),
        Ok(Reply::Error(why)) => Err(AskError::Refused(why)),
        Err(e) => Err(AskError::Failed(format!(
            "{}: a bad reply: {e}",
            socket.display()
        ))),
    }
}

/// Tells `ciao-node run` that an attach made a new subnet on this node, so it sends the queued
/// TenantAdded, or asks the controller for the subnet's CNCI, at once instead of at its next
/// poll (up to `--poll-ms` later: most of a new tenant's time to its first cross-node ping).
/// Best effort and never blocks the attach on the daemon: without one, the daemon's next poll
/// finds the subnet anyway.
pub fn poke(state_dir: &Path) {
    let Ok(mut stream) = UnixStream::connect(socket_path(state_dir)) else {
        return;
    };
    let Ok(mut line) = serde_json::to_vec(&Request::Changed {}) else {
        return;
    };
    line.push(b'\n');
    if stream.set_nonblocking(true).is_ok() {
        let _ = stream.write_all(&line);
    }
}

/// Reads up to and without the first newline, failing with `TimedOut` at `deadline` and with
/// `UnexpectedEof` if the peer closes first (half a line is no answer).
pub fn read_line(stream: &mut UnixStream, deadline: Instant) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.iter().position(|b| *b == b'\n') {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > MAX_LINE {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "reply line too long",
            ));
        }
    }
}

/// The socket path of the state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_FILE)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn got() -> AutoSubnet {
        AutoSubnet {
            subnet: "172.16.0.0/24".parse().expect("net"),
            range_start: Ipv4Addr::new(172, 16, 0, 2),
            range_end: Ipv4Addr::new(172, 16, 0, 31),
        }
    }

    /// A stand-in daemon that answers one request with `reply` (or never, if `None`).
    fn daemon(dir: &Path, reply: Option<Reply>) -> std::thread::JoinHandle<()> {
        let listener = UnixListener::bind(socket_path(dir)).expect("bind");
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let line = read_line(&mut s, Instant::now() + Duration::from_secs(10)).expect("line");
            let _: Request = serde_json::from_slice(&line).expect("request");
            match reply {
                Some(r) => {
                    let mut out = serde_json::to_vec(&r).expect("json");
                    out.push(b'\n');
                    s.write_all(&out).expect("reply");
                }
                // Hold the connection until the client gives up and closes it.
                None => while s.read(&mut [0u8; 16]).is_ok_and(|n| n > 0) {},
            }
        })
    }

    #[test]
    fn a_poke_is_one_changed_line_and_nothing_without_a_daemon() {
        let dir = tempfile::tempdir().expect("dir");
        poke(dir.path()); // no daemon: nothing happens, nothing fails
        let listener = UnixListener::bind(socket_path(dir.path())).expect("bind");
        poke(dir.path());
        let (mut s, _) = listener.accept().expect("accept");
        let line = read_line(&mut s, Instant::now() + Duration::from_secs(10)).expect("line");
        let req: Request = serde_json::from_slice(&line).expect("request");
        assert_eq!(req, Request::Changed {});
        assert_eq!(String::from_utf8_lossy(&line), r#"{"changed":{}}"#);
        let ask = serde_json::to_string(&Request::AutoSubnet {
            tenant: Uuid::nil(),
        })
        .expect("json");
        assert_eq!(
            ask,
            r#"{"auto_subnet":{"tenant":"00000000-0000-0000-0000-000000000000"}}"#
        );
    }

    #[test]
    fn answers_refusals_silence_and_absence_each_say_what_they_are() {
        let dir = tempfile::tempdir().expect("dir");
        let t = Uuid::new_v4();
        let wait = Duration::from_millis(300);
        let absent = resolve(dir.path(), t, wait).expect_err("no daemon");
        assert!(absent.try_again());
        assert!(absent
            .to_string()
            .starts_with("ciao-node run is not running (no "));

        let d = daemon(dir.path(), Some(Reply::Ok(got())));
        assert_eq!(resolve(dir.path(), t, wait), Ok(got()));
        d.join().expect("daemon");
        std::fs::remove_file(socket_path(dir.path())).expect("rm");

        let d = daemon(dir.path(), Some(Reply::Error("range exhausted".into())));
        assert_eq!(
            ask(&socket_path(dir.path()), t, wait),
            Err(AskError::Refused("range exhausted".into()))
        );
        d.join().expect("daemon");
        std::fs::remove_file(socket_path(dir.path())).expect("rm");

        let d = daemon(dir.path(), None);
        let silent = ask(&socket_path(dir.path()), t, wait).expect_err("no answer");
        assert_eq!(
            silent.to_string(),
            "the controller did not answer within 0.3 s"
        );
        d.join().expect("daemon");

        // A cached tenant needs no daemon.
        remember(dir.path(), t, got()).expect("remember");
        assert_eq!(resolve(dir.path(), t, wait), Ok(got()));
        assert_eq!(seconds(DEFAULT_WAIT), "10 s");
    }
}
