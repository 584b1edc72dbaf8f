//! `ciao-cert`: makes SSNTP certificates, either in the shape ciao's own `ciao-cert` makes them
//! (so either side can be the Go original) or in a modern CA + leaf shape.
//!
//!   ciao-cert anchor --host sched.example --ip 10.0.0.1 --out-dir certs
//!   ciao-cert issue --anchor certs/cert-scheduler-sched.example.pem --role cnciagent --host cnci1 --out-dir certs
//!
//! Files: `CAcert-<host>.pem` (the CA certificate clients and servers trust), the anchor
//! (`cert-scheduler-<host>.pem` in the ciao shape, where it is the scheduler's certificate;
//! `ca-<host>.pem` in the modern shape), and `cert-<roles>-<host>.pem` per issued certificate:
//! certificate and key in one PEM file, as ciao loads them. Files holding a private key are
//! mode 0600 from the moment they exist ([`ssntp::certs::write_pem`]).
//!
//!   ciao-cert issue --shape modern --anchor certs/ca-x.pem --role cnciagent --uuid <uuid> ...
//!
//! binds the certificate to node UUIDs (`urn:uuid:` SANs): the scheduler then refuses it a
//! CONNECT as any other UUID.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use ssntp::certs::{write_pem, Authority, Names, Secrecy, Shape, Validity};
use ssntp::frame::role;

#[derive(Parser)]
#[command(name = "ciao-cert", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ShapeArg {
    /// As ciao-cert: RSA-2048, anyExtendedKeyUsage + role OIDs, the CA is the scheduler's cert.
    Ciao,
    /// A proper ECDSA CA and leaves with serverAuth/clientAuth + role OIDs.
    Modern,
}

#[derive(Subcommand)]
enum Command {
    /// Make the trust anchor: for the ciao shape also the scheduler's certificate.
    Anchor {
        #[arg(long, value_enum, default_value = "ciao")]
        shape: ShapeArg,
        /// DNS names the scheduler is reached by (SANs).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// IP addresses the scheduler is reached by (SANs).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        #[arg(long, default_value = "")]
        org: String,
        #[arg(long, default_value_t = 365)]
        days: u64,
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
    /// Issue a role certificate signed by an anchor.
    Issue {
        #[arg(long, value_enum, default_value = "ciao")]
        shape: ShapeArg,
        /// The anchor's certificate and key (the file `anchor` wrote).
        #[arg(long)]
        anchor: PathBuf,
        /// Roles, comma separated: scheduler, controller, agent, netagent, cnciagent.
        #[arg(long, value_delimiter = ',', required = true)]
        role: Vec<String>,
        #[arg(long = "host")]
        hosts: Vec<String>,
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// Node UUIDs this certificate may connect as (repeatable; `urn:uuid:` SANs).
        #[arg(long = "uuid")]
        uuids: Vec<uuid::Uuid>,
        #[arg(long, default_value_t = 365)]
        days: u64,
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
}

fn shape(s: ShapeArg) -> Shape {
    match s {
        ShapeArg::Ciao => Shape::Ciao,
        ShapeArg::Modern => Shape::Modern,
    }
}

fn role_bits(names: &[String]) -> anyhow::Result<u32> {
    let mut bits = 0;
    for n in names {
        bits |= match n.as_str() {
            "scheduler" => role::SCHEDULER,
            "controller" => role::CONTROLLER,
            "agent" => role::AGENT,
            "netagent" => role::NETAGENT,
            "cnciagent" => role::CNCIAGENT,
            "server" => role::SERVER,
            other => {
                bail!("unknown role {other:?} (scheduler, controller, agent, netagent, cnciagent)")
            }
        };
    }
    Ok(bits)
}

/// Writes one certificate file (see [`write_pem`]) and prints its path.
fn write(dir: &Path, name: &str, text: &str, secrecy: Secrecy) -> anyhow::Result<PathBuf> {
    let path = write_pem(dir, name, text, secrecy)?;
    println!("{}", path.display());
    Ok(path)
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Anchor {
            shape: s,
            hosts,
            ips,
            org,
            days,
            out_dir,
        } => {
            let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let names = Names::new(&host_refs, &ips);
            let authority = Authority::new(shape(s), &org, Validity::days(days), &names)?;
            let tag = hosts.first().map(String::as_str).unwrap_or("localhost");
            write(
                &out_dir,
                &format!("CAcert-{tag}.pem"),
                authority.cert_pem(),
                Secrecy::Public,
            )?;
            // ciao shape: the anchor is the scheduler's own certificate. Modern: a CA whose key
            // only signs; the scheduler gets a leaf with `issue --role scheduler`.
            let anchor_file = match s {
                ShapeArg::Ciao => format!("cert-scheduler-{tag}.pem"),
                ShapeArg::Modern => format!("ca-{tag}.pem"),
            };
            write(
                &out_dir,
                &anchor_file,
                &authority.anchor().combined_pem(),
                Secrecy::PrivateKey,
            )?;
        }
        Command::Issue {
            shape: s,
            anchor,
            role,
            hosts,
            ips,
            uuids,
            days,
            out_dir,
        } => {
            let pem = std::fs::read_to_string(&anchor)
                .with_context(|| format!("read {}", anchor.display()))?;
            let authority = Authority::from_pem(shape(s), &pem, &pem).context("load the anchor")?;
            let bits = role_bits(&role)?;
            let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let names = Names::new(&host_refs, &ips).with_uuids(&uuids);
            let validity = Validity::days(days);
            let issued = authority.issue_with_validity(bits, &names, validity)?;
            let tag = hosts.first().map(String::as_str).unwrap_or("localhost");
            write(
                &out_dir,
                &format!("cert-{}-{tag}.pem", role.join("+")),
                &issued.combined_pem(),
                Secrecy::PrivateKey,
            )?;
        }
    }
    Ok(())
}
