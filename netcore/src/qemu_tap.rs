//! Taps that QEMU made before it ran its ifup hook: the hook's one call into the core.
//!
//! The policy lives here, not in the hook: the name must be a tap, and a record for this tap
//! name while the tap is fresh (on no bridge) was left by a QEMU that was killed before its
//! ifdown. The tap that record named is gone, so the record is dropped first.

use crate::attach::{Attachment, Node};
use crate::config::{SubnetConfig, VnicId, VnicKind, VnicRequest};
use crate::error::{Error, Result};
use crate::kernel::Kernel;

/// What attaching QEMU's tap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapAttachment {
    pub attachment: Attachment,
    /// Keys of the records of a previous VM with this tap name, killed without its ifdown.
    pub stale_removed: Vec<String>,
}

impl<K: Kernel> Node<K> {
    /// Attaches the existing tap of `req` (a [`VnicKind::Tap`]) to its subnet, after dropping
    /// stale records of the same tap name. Refuses a missing tap and a link that is no tap.
    pub fn attach_existing_tap(
        &mut self,
        cfg: &SubnetConfig,
        req: &VnicRequest,
    ) -> Result<TapAttachment> {
        let VnicKind::Tap { name: tap, .. } = &req.kind else {
            return Err(Error::Internal(
                "attach_existing_tap of a non-tap VNIC".into(),
            ));
        };
        let link = self.nl.link_by_name(tap)?.ok_or_else(|| {
            Error::invalid(
                "tap",
                format!(
                    "tap {tap} does not exist in this network namespace \
                     (QEMU creates it before it runs the script)"
                ),
            )
        })?;
        if link.kind.as_deref() != Some("tun") {
            return Err(Error::invalid(
                "tap",
                format!(
                    "{tap} is not a tap device (it is a {} link)",
                    link.kind.as_deref().unwrap_or("plain")
                ),
            ));
        }
        let mut stale_removed = Vec::new();
        if link.master.is_none() {
            stale_removed = self.detach_tap(tap)?;
        }
        let attachment = self.attach(cfg, req)?;
        Ok(TapAttachment {
            attachment,
            stale_removed,
        })
    }

    /// Detaches whatever is recorded for the tap `tap` (the last VNIC of a subnet takes its
    /// tunnel and bridge). Returns the detached VNICs' keys; nothing recorded is not an error.
    pub fn detach_tap(&mut self, tap: &str) -> Result<Vec<String>> {
        let mut detached = Vec::new();
        for (net, id) in self.tap_records(tap)? {
            self.detach(&net, &id)?;
            detached.push(id.key());
        }
        Ok(detached)
    }

    /// (subnet key, VNIC id) of every record whose port is the tap `tap`.
    fn tap_records(&mut self, tap: &str) -> Result<Vec<(String, VnicId)>> {
        let view = self.view()?;
        Ok(view
            .nets
            .into_iter()
            .flat_map(|net| {
                let key = net.net.key;
                net.vnics
                    .into_iter()
                    .filter(|v| matches!(&v.kind, VnicKind::Tap { name, .. } if name == tap))
                    .map(move |v| (key.clone(), v.id))
            })
            .collect())
    }
}
