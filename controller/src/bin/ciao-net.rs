//! `ciao-net`: the operator's view of the controller, through its admin API on a unix socket.
//! Tables by default, the API's own JSON with `--json`; exit 1 with the API's message on error.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use ciao_controller::api::client::{ApiResponse, Client};
use ciao_controller::api::views::ErrorBody;
use ciao_controller::api::{default_socket_path, text};
use clap::{Args, Parser, Subcommand};
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

#[path = "ciao-net/ingress.rs"]
mod ingress;
#[path = "ciao-net/sg.rs"]
mod sg;

/// List and change what the ciao controller decided: nodes, tenants, CNCIs, public IPs.
#[derive(Parser)]
#[command(name = "ciao-net", version)]
struct Cli {
    /// The controller's admin socket [default: $CIAO_NET_SOCKET, else
    /// /var/lib/ciao-controller/admin.sock].
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Network and compute nodes, with their state.
    Nodes,
    /// Tenants, with their CNCI and subnets.
    Tenants,
    /// One tenant (`tenant UUID`): its CNCI, subnets, tunnel ids, compute nodes, public IPs;
    /// or `tenant delete UUID`.
    Tenant(TenantArgs),
    /// Every CNCI, with its state and network node.
    Cncis,
    /// The public IP pools and the assigned addresses.
    PublicIps,
    /// Assign or release a tenant's public IP.
    PublicIp {
        #[command(subcommand)]
        action: PublicIpAction,
    },
    /// A tenant's security groups: list, show, create, delete.
    Group {
        #[command(subcommand)]
        action: sg::GroupAction,
    },
    /// Add a rule to a security group, or delete one.
    Rule {
        #[command(subcommand)]
        action: sg::RuleAction,
    },
    /// A tenant's inbound port forwards on its forward IP.
    Forward {
        #[command(subcommand)]
        action: sg::ForwardAction,
    },
    /// SSH access to every workload of a tenant, on its forward IP.
    Ssh {
        #[command(subcommand)]
        action: sg::SshAction,
    },
    /// The tenant's ordered rules for what enters from outside (public IPs, forwards, SSH
    /// ports), applied by its CNCI: first match wins, then the default.
    IngressRule {
        #[command(subcommand)]
        action: ingress::RuleAction,
    },
    /// Show the tenant's default for what matches no ingress rule, or set it (allow|deny).
    IngressPolicy {
        #[arg(long)]
        tenant: Uuid,
        /// allow (nothing filtered, the default) or deny.
        default: Option<String>,
    },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct TenantArgs {
    #[command(subcommand)]
    action: Option<TenantAction>,
    /// The tenant to show.
    #[arg(required = true)]
    tenant: Option<Uuid>,
}

#[derive(Subcommand)]
enum TenantAction {
    /// Delete the tenant: it takes no new workload; its CNCI stops once no workload remains.
    Delete { tenant: Uuid },
}

#[derive(Subcommand)]
enum PublicIpAction {
    /// Give a private address (in one of the tenant's subnets) a public IP from the pool.
    Assign { tenant: Uuid, private_ip: Ipv4Addr },
    /// Take a public IP back from the tenant.
    Release { tenant: Uuid, public_ip: Ipv4Addr },
}

/// Where the socket is when `--socket` is not given (an empty value counts as unset).
const SOCKET_ENV: &str = "CIAO_NET_SOCKET";

/// How an answer reads.
type Show = fn(&ApiResponse) -> anyhow::Result<String>;

/// One API call and how its answer reads.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) show: Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ciao-net: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = cli
        .socket
        .or_else(|| {
            std::env::var_os(SOCKET_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(default_socket_path);
    let call = call(cli.command)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let response =
        runtime.block_on(Client::new(socket).call(call.method, &call.path, call.body))?;
    if !response.status.is_success() {
        return Err(anyhow!(refusal(&response)));
    }
    if cli.json {
        if !response.body.is_empty() {
            println!("{}", String::from_utf8_lossy(&response.body));
        }
        return Ok(());
    }
    print!("{}", (call.show)(&response)?);
    Ok(())
}

/// The API's message, or what came instead of it.
fn refusal(response: &ApiResponse) -> String {
    match serde_json::from_slice::<ErrorBody>(&response.body) {
        Ok(body) => body.error,
        Err(_) => format!(
            "the controller answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        ),
    }
}

pub(crate) fn parse<T: DeserializeOwned>(response: &ApiResponse) -> anyhow::Result<T> {
    serde_json::from_slice(&response.body)
        .context("the controller's answer is not what this ciao-net reads (versions differ?)")
}

pub(crate) fn get(path: &str, show: fn(&ApiResponse) -> anyhow::Result<String>) -> Call {
    Call {
        method: Method::GET,
        path: path.to_owned(),
        body: None,
        show,
    }
}

fn call(command: Command) -> anyhow::Result<Call> {
    Ok(match command {
        Command::Nodes => get("/v1/nodes", |r| Ok(text::nodes(&parse(r)?))),
        Command::Tenants => get("/v1/tenants", |r| Ok(text::tenants(&parse::<Vec<_>>(r)?))),
        Command::Cncis => get("/v1/cncis", |r| Ok(text::cncis(&parse::<Vec<_>>(r)?))),
        Command::PublicIps => get("/v1/public-ips", |r| Ok(text::public_ips(&parse(r)?))),
        Command::Tenant(TenantArgs {
            action: Some(TenantAction::Delete { tenant }),
            ..
        }) => Call {
            method: Method::DELETE,
            path: format!("/v1/tenants/{tenant}"),
            body: None,
            show: |r| Ok(text::deleted(&parse(r)?)),
        },
        Command::Tenant(TenantArgs {
            tenant: Some(tenant),
            ..
        }) => get(&format!("/v1/tenants/{tenant}"), |r| {
            Ok(text::tenant(&parse(r)?))
        }),
        Command::Tenant(_) => return Err(anyhow!("tenant: give a tenant UUID")),
        Command::Group { action } => sg::group(action)?,
        Command::Rule { action } => sg::rule(action)?,
        Command::Forward { action } => sg::forward(action)?,
        Command::Ssh { action } => sg::ssh(action)?,
        Command::IngressRule { action } => ingress::rule(action)?,
        Command::IngressPolicy { tenant, default } => ingress::policy(tenant, default)?,
        Command::PublicIp {
            action: PublicIpAction::Assign { tenant, private_ip },
        } => Call {
            method: Method::POST,
            path: format!("/v1/tenants/{tenant}/public-ips"),
            body: Some(serde_json::to_vec(
                &serde_json::json!({ "private_ip": private_ip }),
            )?),
            show: |r| Ok(text::assigned(&parse(r)?)),
        },
        Command::PublicIp {
            action: PublicIpAction::Release { tenant, public_ip },
        } => Call {
            method: Method::DELETE,
            path: format!("/v1/tenants/{tenant}/public-ips/{public_ip}"),
            body: None,
            show: |r| {
                if r.status == StatusCode::NO_CONTENT {
                    return Ok("that public IP was not assigned: nothing to release\n".to_owned());
                }
                Ok(text::released(&parse(r)?))
            },
        },
    })
}
