//! A configuration with `tenant` and no `subnet`: the controller gives the tenant a subnet and
//! this node a range of it (through `ciao-node run`, see [`netcore::auto_subnet`]). ADD asks,
//! bounded by `subnetWaitSeconds`; the other commands use only what ADD got (the cache).

use std::time::Duration;

use netcore::auto_subnet::{self, AskError};

use crate::conf::{NetConf, RangeConf};
use crate::error::{CniError, Code};

/// `conf` with its subnet and range filled in, or `None` when there is nothing to act on (DEL,
/// GC or STATUS of a tenant this node never got a subnet for).
pub fn with_auto_subnet(cmd: &str, mut conf: NetConf) -> Result<Option<NetConf>, CniError> {
    if conf.subnet.is_some() {
        return Ok(Some(conf));
    }
    if conf.range.is_some() {
        return Err(CniError::new(
            Code::InvalidConfig,
            "network configuration field range: given without subnet (an automatic subnet \
             comes with this node's range)",
        ));
    }
    let state_dir = conf.state_dir();
    let got = if cmd == "ADD" {
        let wait = wait(&conf)?;
        auto_subnet::resolve(&state_dir, conf.tenant, wait).map_err(ask_error)?
    } else {
        match auto_subnet::cached(&state_dir, conf.tenant).map_err(ask_error)? {
            Some(got) => got,
            None if cmd == "CHECK" => {
                return Err(CniError::new(
                    Code::CheckFailed,
                    format!(
                        "check failed: no automatic subnet of tenant {} on this node",
                        conf.tenant
                    ),
                ))
            }
            None => return Ok(None),
        }
    };
    conf.subnet = Some(got.subnet);
    conf.range = Some(RangeConf {
        start: got.range_start,
        end: got.range_end,
    });
    Ok(Some(conf))
}

/// `subnetWaitSeconds`, default 10, more than 0 and at most an hour.
fn wait(conf: &NetConf) -> Result<Duration, CniError> {
    match conf.subnet_wait_seconds {
        None => Ok(auto_subnet::DEFAULT_WAIT),
        Some(s) if s > 0.0 && s <= 3600.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(CniError::new(
            Code::InvalidConfig,
            format!("network configuration field subnetWaitSeconds: {s} is not in (0, 3600]"),
        )),
    }
}

/// Try again later (11) while the daemon or the controller is away; a refusal is the
/// configuration's fault (7).
fn ask_error(e: AskError) -> CniError {
    let code = match &e {
        AskError::NotRunning(_) | AskError::NoAnswer(_) => Code::TryAgainLater,
        AskError::Refused(_) => Code::InvalidConfig,
        AskError::Failed(_) => Code::Io,
    };
    CniError::new(code, e.to_string())
}
