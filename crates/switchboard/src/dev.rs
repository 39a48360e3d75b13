//! `switchboard dev`: everything on one machine, with no outside account.
//!
//! It makes sure NATS answers (starting a local `nats-server -js` when none
//! does), creates the JetStream streams, runs the embedded event store at
//! `SWITCHBOARD_EVENTSTORE_URL` with its log under the data dir, runs the four
//! domain services in this process (each exactly as `switchboard serve` runs
//! it), prints where everything is, and stops cleanly on Ctrl-C or SIGTERM.
//! With the same data dir it comes back with everything it had.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context, bail};
use bus::{Bus, BusConfig};
use clap::Args;
use eventlog::server::{Auth, Server, ServerConfig};
use kernel::{Readiness, Runtime, Shutdown};
use tokio::process::{Child, Command};

use crate::{
    config::{DataDirArgs, NatsArgs},
    serve::{DomainArgs, ServiceName, StoreArgs},
};

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub domain: DomainArgs,
    /// The `nats-server` binary to start when no NATS answers at the URL.
    #[arg(long, env = "SWITCHBOARD_NATS_SERVER_BIN", default_value = "nats-server")]
    pub nats_server_bin: String,
    #[command(flatten)]
    pub whatsapp: crate::edge::WhatsAppArgs,
    #[command(flatten)]
    pub gateway: crate::gateway_cmd::GatewayArgs,
    /// Gateway, agent desktop and webhook address.
    #[arg(long, env = "SWITCHBOARD_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub gateway_listen: SocketAddr,
    /// The WhatsApp sandbox (a local Graph API stand-in).
    #[arg(long, env = "SWITCHBOARD_SANDBOX_LISTEN", default_value = "127.0.0.1:8090")]
    pub sandbox_listen: SocketAddr,
}

/// The dev secret `name` when the user did not set it: random the first time,
/// then kept in `<data dir>/dev-secrets/<name>` (owner-only) so tokens and the
/// simulator keep working when `dev` restarts on the same data dir.
fn dev_secret(data_dir: &Path, name: &str) -> anyhow::Result<String> {
    let dir = data_dir.join("dev-secrets");
    let path = dir.join(name);
    if let Ok(saved) = std::fs::read_to_string(&path) {
        let saved = saved.trim();
        if !saved.is_empty() {
            return Ok(saved.to_owned());
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let secret = kernel::new_id().replace('-', "");
    std::fs::write(&path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(secret)
}

const SERVICES: [ServiceName; 4] = [
    ServiceName::AgentPresence,
    ServiceName::WrapUp,
    ServiceName::Conversation,
    ServiceName::Routing,
];

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data.data_dir.display()))?;

    let (bus, _nats_child) = connect_or_start_nats(&args).await?;
    let info = bus.ensure_events_stream().await?;
    let (trigger, shutdown) = Shutdown::new();

    // The embedded event store, where services expect it.
    let listen = loopback_listen_addr(&args.store.url)?;
    let log_dir = crate::eventstore::log_dir(&args.data.data_dir);
    let server = Server::bind(ServerConfig {
        data_dir: log_dir.clone(),
        listen,
        auth: Auth::Basic { user: args.store.user.clone(), password: args.store.password.clone() },
    })
    .await
    .with_context(|| format!("cannot start the event store on {listen}"))?;
    let store_task = tokio::spawn({
        let mut shutdown = shutdown.clone();
        server.run(async move { shutdown.wait().await })
    });
    let store = crate::serve::connect_store(&args.store).await?;

    let mut tasks = Vec::new();
    let mut readiness = Vec::new();
    for service in SERVICES {
        let ready = Readiness::default();
        readiness.push(ready.clone());
        let runtime = Runtime {
            store: store.clone(),
            bus: bus.clone(),
            clock: crate::serve::clock(args.domain.clock, &bus),
            shutdown: shutdown.clone(),
            ready,
        };
        let domain = args.domain.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::serve::run_service(service, runtime, &domain).await {
                tracing::error!(?service, error = %e, "service stopped");
            }
        }));
    }
    // The WhatsApp sandbox, and the edge whose webhook the sandbox posts statuses to.
    let mut whatsapp = args.whatsapp.clone();
    let data_dir = &args.data.data_dir;
    if whatsapp.app_secret.is_none() {
        whatsapp.app_secret = Some(dev_secret(data_dir, "whatsapp-app-secret")?);
    }
    if whatsapp.verify_token.is_none() {
        whatsapp.verify_token = Some(dev_secret(data_dir, "whatsapp-verify-token")?);
    }
    let app_secret = whatsapp.app_secret.clone().unwrap_or_default();
    let verify_token = whatsapp.verify_token.clone().unwrap_or_default();
    let webhook_url = format!("http://{}/webhooks/whatsapp", args.gateway_listen);
    let mut sandbox_config = whatsapp::sandbox::SandboxConfig::new(
        args.sandbox_listen,
        whatsapp.access_token.clone(),
        app_secret.clone(),
    );
    sandbox_config.webhook_url = Some(webhook_url.clone());
    sandbox_config.numbers = whatsapp.numbers()?.into_iter().map(|n| n.business).collect();
    let sandbox = whatsapp::sandbox::Sandbox::bind(sandbox_config)
        .await
        .with_context(|| format!("cannot start the WhatsApp sandbox on {}", args.sandbox_listen))?;
    let sandbox_url = sandbox.base_url();
    whatsapp.graph_url.get_or_insert_with(|| sandbox_url.clone());
    tasks.push(tokio::spawn({
        let mut shutdown = shutdown.clone();
        async move {
            if let Err(e) = sandbox.run(async move { shutdown.wait().await }).await {
                tracing::error!(error = %e, "sandbox stopped");
            }
        }
    }));
    let edge_ready = Readiness::default();
    let edge = crate::edge::edge(&bus, crate::serve::clock(args.domain.clock, &bus), &whatsapp)?;
    let webhook = whatsapp::webhook::router(whatsapp.webhook_config()?, edge.sink());
    tasks.push(tokio::spawn(whatsapp::service::run(
        edge,
        store.clone(),
        edge_ready.clone(),
        shutdown.clone(),
    )));

    // The gateway, with the agent desktop and the webhook on the same address.
    let jwt_secret = match args.gateway.jwt_secret.clone() {
        Some(secret) => secret,
        None => dev_secret(&args.data.data_dir, "jwt-secret")?,
    };
    let gateway_runtime = Runtime {
        store: store.clone(),
        bus: bus.clone(),
        clock: crate::serve::clock(args.domain.clock, &bus),
        shutdown: shutdown.clone(),
        ready: Readiness::default(),
    };
    let options = gateway::GatewayOptions {
        extra_routes: Some(webhook),
        readiness: vec![edge_ready.clone()],
    };
    let gateway = crate::gateway_cmd::bind(
        args.gateway_listen,
        &args.gateway,
        jwt_secret.clone(),
        &gateway_runtime,
        options,
    )
    .await?;
    readiness.push(gateway.shared().ready.clone());
    readiness.push(edge_ready);
    tasks.push(tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            if let Err(e) = gateway.run(shutdown).await {
                tracing::error!(error = %e, "gateway stopped");
            }
        }
    }));

    let started = tokio::time::Instant::now();
    while !readiness.iter().all(Readiness::get) && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!("switchboard dev is running");
    println!(
        "  NATS            {} (stream {}, {} events)",
        args.nats.nats_url, info.config.name, info.state.messages
    );
    println!("  event store     {} (log in {})", args.store.url, log_dir.display());
    println!("  services        agent-presence, wrap-up, conversation, routing");
    println!("  default queue   {}", args.domain.default_queue);
    println!(
        "  auto wrap-up    {} s (reason `{}`)",
        args.domain.auto_wrapup_secs, args.domain.auto_wrapup_reason
    );
    println!(
        "  gateway         http://{} (agent desktop; API /api/v1; OpenAPI /api/v1/openapi.json)",
        args.gateway_listen
    );
    println!("  JWT secret      {jwt_secret}   (SWITCHBOARD_JWT_SECRET)");
    println!("  webhook         {webhook_url}");
    println!("  WhatsApp sandbox {sandbox_url} (outbox: {sandbox_url}/sandbox/outbox)");
    println!("  app secret      {app_secret}   (SWITCHBOARD_WHATSAPP_APP_SECRET)");
    println!("  verify token    {verify_token}   (SWITCHBOARD_WHATSAPP_VERIFY_TOKEN)");
    println!("  data dir        {}", args.data.data_dir.display());
    println!(
        "Try: SWITCHBOARD_WHATSAPP_APP_SECRET={app_secret} switchboard simulate customer --name \"Maria Lopez\" --phone 15551234567 --to 15550001111 \"Hello\""
    );
    println!(
        "Sign in: SWITCHBOARD_JWT_SECRET={jwt_secret} switchboard token --sub sup --name Supervisor --role supervisor"
    );
    println!("Press Ctrl-C to stop.");

    shutdown_signal().await;
    tracing::info!("shutting down");
    trigger.trigger();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), store_task).await;
    Ok(())
}

/// The socket address of a loopback `http://host:port` URL, for the embedded store.
fn loopback_listen_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let authority =
        url.split_once("://").map_or(url, |(_, r)| r).split('/').next().unwrap_or_default();
    let addr: SocketAddr = authority
        .parse()
        .or_else(|_| authority.replace("localhost", "127.0.0.1").parse())
        .with_context(|| format!("SWITCHBOARD_EVENTSTORE_URL {url} must be http://<loopback ip>:<port> for the embedded store"))?;
    if !addr.ip().is_loopback() {
        bail!("the embedded event store listens on loopback only; {url} is not");
    }
    Ok(addr)
}

/// Connects to the configured NATS; when nothing answers on a loopback URL,
/// starts `nats-server -js` there with its store under the data dir. The child
/// is killed when the returned handle is dropped.
async fn connect_or_start_nats(args: &DevArgs) -> anyhow::Result<(Bus, Option<Child>)> {
    let url = &args.nats.nats_url;
    let probe = BusConfig { connect_timeout: Duration::from_millis(500), ..BusConfig::new(url) };
    if let Ok(bus) = Bus::connect(probe).await {
        tracing::info!(%url, "using the NATS server that answers");
        return Ok((bus, None));
    }
    let (host, port) = loopback_host_port(url).with_context(|| {
        format!("no NATS answers at {url} and it is not a loopback address to start one on")
    })?;
    let store = args.data.data_dir.join("nats");
    let child = start_nats_server(&args.nats_server_bin, &host, port, &store)?;
    tracing::info!(%url, store = %store.display(), "started a local nats-server");
    let bus = Bus::connect(BusConfig::new(url)).await?;
    Ok((bus, Some(child)))
}

fn start_nats_server(bin: &str, host: &str, port: u16, store: &Path) -> anyhow::Result<Child> {
    std::fs::create_dir_all(store)?;
    let log = std::fs::File::create(store.join("nats-server.log"))?;
    Command::new(bin)
        .args(["-a", host, "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| {
            format!("cannot start `{bin}`: install it (`apt-get install nats-server`) or point SWITCHBOARD_NATS_URL at a running server")
        })
}

fn loopback_host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().context("bad port")?),
        None => (authority, 4222),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let is_loopback = host == "localhost"
        || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false);
    if !is_loopback {
        bail!("{host} is not a loopback address");
    }
    Ok((host.to_owned(), port))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_get_a_local_server() {
        assert_eq!(
            loopback_host_port("nats://127.0.0.1:4333").unwrap(),
            ("127.0.0.1".into(), 4333)
        );
        assert_eq!(loopback_host_port("nats://localhost").unwrap(), ("localhost".into(), 4222));
        assert!(loopback_host_port("nats://nats.internal:4222").is_err());
    }

    #[test]
    fn dev_secrets_are_made_once_and_kept_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = dev_secret(dir.path(), "jwt-secret").unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(
            dev_secret(dir.path(), "jwt-secret").unwrap(),
            first,
            "same data dir, same secret"
        );
        assert_ne!(dev_secret(dir.path(), "whatsapp-app-secret").unwrap(), first);
    }

    #[test]
    fn the_embedded_store_listens_where_services_expect_it() {
        assert_eq!(loopback_listen_addr("http://127.0.0.1:2113").unwrap().port(), 2113);
        assert_eq!(loopback_listen_addr("http://localhost:2999").unwrap().port(), 2999);
        assert!(loopback_listen_addr("http://10.0.0.1:2113").is_err());
    }
}
