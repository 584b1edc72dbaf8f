//! `ciao-nn show`: the node and its CNCIs as recorded (read-only: creates nothing).

use std::path::Path;

use anyhow::Result;
use cnci_agent::state::Store;
use serde::Serialize;
use uuid::Uuid;

use crate::records::NodeDir;

#[derive(Serialize)]
struct View {
    uuid: Option<Uuid>,
    running: bool,
    connected: bool,
    cncis: Vec<CnciView>,
}

#[derive(Serialize)]
struct CnciView {
    uuid: Uuid,
    tenant: Uuid,
    netns: String,
    uplink: String,
    deleting: bool,
    connected: bool,
    subnets: usize,
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn view(dir: &NodeDir) -> Result<View> {
    let status = dir.status().unwrap_or_default();
    let running = status.pid != 0 && alive(status.pid);
    let mut cncis = Vec::new();
    for found in dir.scan(false)? {
        let r = found.record;
        let store = Store::open_existing(&dir.cnci_dir(r.uuid))?;
        let (connected, subnets) = match store {
            Some(s) => (
                running && s.status()?.is_some_and(|st| st.connected),
                s.desired()?.subnets.len(),
            ),
            None => (false, 0),
        };
        cncis.push(CnciView {
            uuid: r.uuid,
            tenant: r.tenant,
            netns: r.netns,
            uplink: r.uplink.to_string(),
            deleting: found.deleting,
            connected,
            subnets,
        });
    }
    Ok(View {
        uuid: dir.node()?.map(|n| n.uuid),
        running,
        connected: running && status.connected,
        cncis,
    })
}

pub fn print(state_dir: &Path, json: bool) -> Result<()> {
    if !state_dir.is_dir() {
        anyhow::bail!("no network node recorded in {}", state_dir.display());
    }
    let v = view(&NodeDir::new(state_dir))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let uuid = v
        .uuid
        .map_or_else(|| "(none yet)".to_string(), |u| u.to_string());
    println!(
        "network node {uuid}: running: {}, connected: {}, {} CNCIs",
        v.running,
        v.connected,
        v.cncis.len()
    );
    for c in &v.cncis {
        println!(
            "  CNCI {} tenant {} namespace {} uplink {} subnets {} connected: {}{}",
            c.uuid,
            c.tenant,
            c.netns,
            c.uplink,
            c.subnets,
            c.connected,
            if c.deleting { " (deleting)" } else { "" }
        );
    }
    Ok(())
}
