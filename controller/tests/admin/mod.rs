//! A real admin API server for the tests: a SQLite store in a temp dir, filled through the
//! Store trait, served on a real unix socket by a runtime the fixture owns.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use ciao_controller::api::client::Client;
use ciao_controller::api::{self, AdminEvent};
use ciao_controller::{CnciState, PublicPool, SqliteStore, Store};
use ciao_types::TunnelKind;
use hyper::{Method, StatusCode};
use tempfile::TempDir;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::common::{ip, net, network_node};

pub const CN1: Uuid = Uuid::from_u128(0xc1);
pub const CN2: Uuid = Uuid::from_u128(0xc2);
/// A tenant with two subnets (one on both compute nodes), its CNCI ready.
pub const T1: Uuid = Uuid::from_u128(0x7e00_0001);
/// A tenant with one subnet, its CNCI only requested.
pub const T2: Uuid = Uuid::from_u128(0x7e00_0002);
/// A tenant whose workloads named no subnet: one automatic subnet, a slice on each CN
/// ([`auto_subnet_on_both_nodes`]).
pub const T3: Uuid = Uuid::from_u128(0x7e00_0003);
/// A tenant the store never heard of.
pub const UNKNOWN: Uuid = Uuid::from_u128(0x7e00_0099);
pub const POOL: &str = "203.0.113.0/30";

pub struct Server {
    pub socket: PathBuf,
    pub store: Arc<SqliteStore>,
    pub events: mpsc::Receiver<AdminEvent>,
    pub runtime: tokio::runtime::Runtime,
    pub nn: Uuid,
    /// T1's CNCI.
    pub cnci: Uuid,
    // Last: the directory goes after the server that uses it.
    pub dir: TempDir,
}

/// An answer: status and JSON body (`Null` when empty).
pub struct Answer {
    pub status: StatusCode,
    pub json: serde_json::Value,
    pub headers: hyper::HeaderMap,
}

/// Gives [`T3`] an automatic subnet with the default plan (172.16.0.0/24, /27 slices) on
/// [`CN1`] and then [`CN2`], for [`Server::start_with`].
pub fn auto_subnet_on_both_nodes(store: &SqliteStore) {
    let plan = ciao_controller::TenantSubnets::default();
    for cn in [CN1, CN2] {
        store
            .auto_subnet(T3, cn, &plan, TunnelKind::default())
            .expect("automatic subnet");
    }
}

impl Server {
    /// A server over the filled store, public pool [`POOL`] (two addresses).
    pub fn start() -> Server {
        Server::start_with(|store| {
            store
                .set_public_pools(&[POOL.parse::<PublicPool>().expect("pool")])
                .expect("pools");
        })
    }

    pub fn start_with(extra: impl FnOnce(&SqliteStore)) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open_in(dir.path()).expect("store"));
        let nn = network_node(store.as_ref(), 1, 10);
        store
            .compute_node_connected(CN1, ip("192.0.2.101"))
            .expect("cn1");
        store
            .compute_node_connected(CN2, ip("192.0.2.102"))
            .expect("cn2");
        let vxlan = TunnelKind::default();
        let a = store
            .request_subnet(T1, net("172.16.1.0/24"), vxlan, CN1)
            .expect("t1 cn1");
        store
            .request_subnet(T1, net("172.16.1.0/24"), vxlan, CN2)
            .expect("t1 cn2");
        store
            .request_subnet(T1, net("172.16.2.0/24"), vxlan, CN1)
            .expect("t1 second subnet");
        store
            .set_cnci_state(a.cnci.uuid, CnciState::Ready, Some(ip("192.0.2.1")))
            .expect("ready");
        store
            .request_subnet(T2, net("172.16.1.0/24"), vxlan, CN2)
            .expect("t2");
        extra(store.as_ref());
        let socket = api::socket_path(dir.path());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(async { api::bind(&socket) })
            .expect("bind");
        let (tx, events) = mpsc::channel(16);
        let served: Arc<dyn Store> = store.clone();
        runtime.spawn(api::serve(listener, served, tx));
        Server {
            socket,
            store,
            events,
            runtime,
            nn,
            cnci: a.cnci.uuid,
            dir,
        }
    }

    pub fn call(&self, method: Method, path: &str, body: Option<&str>) -> Answer {
        let client = Client::new(&self.socket);
        let body = body.map(|b| b.as_bytes().to_vec());
        let response = self
            .runtime
            .block_on(client.call(method, path, body))
            .expect("the server answers");
        let json = if response.body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&response.body).unwrap_or_else(|e| {
                panic!(
                    "{path}: not JSON ({e}): {}",
                    String::from_utf8_lossy(&response.body)
                )
            })
        };
        Answer {
            status: response.status,
            json,
            headers: response.headers,
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None)
    }

    /// The event the last call sent, if any. Events are sent before the reply, so none
    /// can still be on its way once the reply arrived.
    pub fn event(&mut self) -> Option<AdminEvent> {
        self.events.try_recv().ok()
    }

    /// Every row of every table of the store file, read through a second connection.
    pub fn snapshot(&self) -> Vec<(String, Vec<String>)> {
        let conn = rusqlite::Connection::open(self.store.path()).expect("second connection");
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .expect("tables")
            .query_map([], |row| row.get(0))
            .expect("tables")
            .collect::<Result<_, _>>()
            .expect("tables");
        tables
            .into_iter()
            .map(|table| {
                let mut stmt = conn
                    .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
                    .expect("select");
                let columns = stmt.column_count();
                let rows = stmt
                    .query_map([], |row| {
                        let cells: Vec<String> = (0..columns)
                            .map(|i| row.get_ref(i).map(|v| format!("{v:?}")).unwrap_or_default())
                            .collect();
                        Ok(cells.join("|"))
                    })
                    .expect("rows")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("rows");
                (table, rows)
            })
            .collect()
    }
}
