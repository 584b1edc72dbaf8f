//! A ciao-shaped certificate set made in this process with `ssntp::certs` (the library
//! `ciao-cert` uses), for benchmarks that need many client configurations quickly. The tests
//! and the cluster make theirs with the `ciao-cert` binary instead ([`crate::ciao_certificates`]).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use ssntp::certs::{write_pem, Authority, Names, Secrecy, Shape, Validity};
use ssntp::tls::{ca_from_pem, client_config, ClientOptions, Identity};

/// An anchor for `localhost`/127.0.0.1 whose files (`cert-scheduler-localhost.pem`,
/// `CAcert-localhost.pem`) are in a temporary directory removed on drop.
pub struct LocalCa {
    pub dir: tempfile::TempDir,
    /// The scheduler's certificate and key (the anchor).
    pub scheduler_pem: PathBuf,
    /// The CA every party trusts.
    pub ca_pem: PathBuf,
    authority: Authority,
}

impl LocalCa {
    /// A new anchor; `org` names who made it (in the certificate).
    pub fn new(org: &str) -> Result<LocalCa> {
        let localhost = Names::new(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let authority = Authority::new(Shape::Ciao, org, Validity::days(365), &localhost)
            .context("make the scheduler certificate")?;
        let dir = tempfile::tempdir().context("temporary directory")?;
        // Key files are 0600 from the moment they exist, as ciao-cert writes them.
        let scheduler_pem = write_pem(
            dir.path(),
            "cert-scheduler-localhost.pem",
            &authority.anchor().combined_pem(),
            Secrecy::PrivateKey,
        )?;
        let ca_pem = write_pem(
            dir.path(),
            "CAcert-localhost.pem",
            authority.cert_pem(),
            Secrecy::Public,
        )?;
        Ok(LocalCa {
            dir,
            scheduler_pem,
            ca_pem,
            authority,
        })
    }

    /// Issues a certificate of `roles` (an `ssntp::frame::role` mask) for host `localhost` and
    /// writes it with its key to `file_name` in the set's directory.
    pub fn write_leaf(&self, roles: u32, file_name: &str) -> Result<PathBuf> {
        let issued = self
            .authority
            .issue(roles, &Names::new(&["localhost"], &[]))
            .context("issue a certificate")?;
        Ok(write_pem(
            self.dir.path(),
            file_name,
            &issued.combined_pem(),
            Secrecy::PrivateKey,
        )?)
    }

    /// A client configuration presenting a new certificate of `roles`. Without `resumption`,
    /// clients sharing it never resume each other's TLS sessions, so each does the RSA work a
    /// separate node would.
    pub fn client(&self, roles: u32, resumption: bool) -> Result<Arc<rustls::ClientConfig>> {
        let issued = self
            .authority
            .issue(roles, &Names::new(&["localhost"], &[]))
            .context("issue a client certificate")?;
        let ca = ca_from_pem(self.authority.cert_pem().as_bytes()).context("CA certificate")?;
        let identity = Identity::from_pem(issued.combined_pem().as_bytes())?;
        let shared = client_config(&ca, identity, &ClientOptions::default())?;
        if resumption {
            return Ok(shared);
        }
        let mut own = (*shared).clone();
        own.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(own))
    }
}
