//! `switchboard serve <service>`: one service as its own process, as deployed
//! (one container per service, N replicas behind NATS queue groups).

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use bus::{Bus, BusConfig};
use clap::{Args, ValueEnum};
use eventlog::{HttpEventStore, HttpEventStoreConfig};
use kernel::{Clock, Readiness, Runtime, Shutdown};

use crate::config::{NatsArgs, parse_http_url};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    AgentPresence,
    WrapUp,
    Conversation,
    Routing,
    /// The WhatsApp Cloud API edge: webhook listener and sender.
    Whatsapp,
    /// The HTTP + WebSocket API and the agent desktop.
    Gateway,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClockKind {
    /// The machine's clock.
    System,
    /// Test only: a clock that moves when a time is published on `sb.test.clock`.
    Manual,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Event store base URL (EventStoreDB/KurrentDB HTTP API with AtomPub enabled, or the embedded one).
    #[arg(long = "eventstore-url", env = "SWITCHBOARD_EVENTSTORE_URL", default_value = "http://127.0.0.1:2113", value_parser = parse_http_url)]
    pub url: String,
    /// Event store user.
    #[arg(long = "eventstore-user", env = "SWITCHBOARD_EVENTSTORE_USER", default_value = "admin")]
    pub user: String,
    /// Event store password.
    #[arg(
        long = "eventstore-password",
        env = "SWITCHBOARD_EVENTSTORE_PASSWORD",
        default_value = "changeit",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: String,
}

impl StoreArgs {
    pub fn client(&self) -> anyhow::Result<HttpEventStore> {
        HttpEventStore::new(
            HttpEventStoreConfig::new(&self.url).with_credentials(&self.user, &self.password),
        )
        .context("cannot configure the event store client")
    }
}

#[derive(Debug, Clone, Args)]
pub struct DomainArgs {
    /// Queue for business numbers with no entry point (created when first needed).
    #[arg(long, env = "SWITCHBOARD_DEFAULT_QUEUE", default_value = "default")]
    pub default_queue: String,
    /// Seconds until an unsubmitted wrap-up is submitted automatically; 0 disables.
    #[arg(long, env = "SWITCHBOARD_AUTO_WRAPUP_SECS", default_value_t = 120)]
    pub auto_wrapup_secs: u32,
    /// Reason code recorded by an automatic wrap-up.
    #[arg(long, env = "SWITCHBOARD_AUTO_WRAPUP_REASON", default_value = "auto")]
    pub auto_wrapup_reason: String,
    /// Where time comes from.
    #[arg(long, env = "SWITCHBOARD_CLOCK", value_enum, default_value = "system")]
    pub clock: ClockKind,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The service to run.
    #[arg(value_enum)]
    pub service: ServiceName,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub domain: DomainArgs,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "SWITCHBOARD_HEALTH_LISTEN", default_value = "127.0.0.1:0")]
    pub health_listen: SocketAddr,
    #[command(flatten)]
    pub whatsapp: crate::edge::WhatsAppArgs,
    #[command(flatten)]
    pub gateway: crate::gateway_cmd::GatewayArgs,
    /// Gateway and agent desktop address.
    #[arg(long, env = "SWITCHBOARD_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub gateway_listen: SocketAddr,
    /// The whatsapp service's webhook listener (`/webhooks/whatsapp`).
    #[arg(long, env = "SWITCHBOARD_WHATSAPP_LISTEN", default_value = "127.0.0.1:8081")]
    pub whatsapp_listen: SocketAddr,
}

/// Connects to NATS (creating the streams) and checks the event store.
pub async fn connect(nats: &NatsArgs, store: &StoreArgs) -> anyhow::Result<(Bus, HttpEventStore)> {
    let bus = Bus::connect(BusConfig::new(&nats.nats_url)).await?;
    bus.ensure_events_stream().await?;
    Ok((bus, connect_store(store).await?))
}

/// A client of the event store, once `/info` says it is usable (waiting a
/// little for one that is still starting).
pub async fn connect_store(store: &StoreArgs) -> anyhow::Result<HttpEventStore> {
    let client = store.client()?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.check().await {
            Ok(_) => break,
            Err(e) if e.is_retryable() && attempt < 40 => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("event store at {} is not usable", store.url));
            }
        }
    }
    Ok(client)
}

/// A clock as configured; a manual one follows the test clock on the bus.
pub fn clock(kind: ClockKind, bus: &Bus) -> Clock {
    match kind {
        ClockKind::System => Clock::system(),
        ClockKind::Manual => {
            let clock = Clock::manual(0);
            tokio::spawn(clock.clone().follow_bus(bus.clone()));
            clock
        }
    }
}

/// Runs one service with its runtime until shutdown.
pub async fn run_service(
    name: ServiceName,
    runtime: Runtime<HttpEventStore>,
    domain: &DomainArgs,
) -> anyhow::Result<()> {
    match name {
        ServiceName::Whatsapp | ServiceName::Gateway => {
            anyhow::bail!("{name:?} needs its own listener: use `switchboard serve`")
        }
        ServiceName::Conversation => {
            conversation::service::run(
                runtime,
                conversation::service::Options { default_queue: domain.default_queue.clone() },
            )
            .await
        }
        ServiceName::Routing => routing::service::run(runtime).await,
        ServiceName::AgentPresence => agent_presence::service::run(runtime).await,
        ServiceName::WrapUp => {
            wrap_up::service::run(
                runtime,
                wrap_up::service::Options {
                    auto_wrapup: (domain.auto_wrapup_secs > 0)
                        .then(|| Duration::from_secs(u64::from(domain.auto_wrapup_secs))),
                    auto_reason: domain.auto_wrapup_reason.clone(),
                },
            )
            .await
        }
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (bus, store) = connect(&args.nats, &args.store).await?;
    let (trigger, shutdown) = Shutdown::new();
    let ready = Readiness::default();
    let runtime = Runtime {
        store,
        bus: bus.clone(),
        clock: clock(args.domain.clock, &bus),
        shutdown: shutdown.clone(),
        ready: ready.clone(),
    };
    let listener = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.health_listen))?;
    let name = format!("{:?}", args.service);
    println!("{} serving (health on http://{})", name, listener.local_addr()?);
    let health = tokio::spawn(kernel::health::serve(listener, vec![ready], shutdown.clone()));
    tokio::spawn(async move {
        crate::dev::shutdown_signal().await;
        tracing::info!("draining");
        trigger.trigger();
    });
    if args.service == ServiceName::Whatsapp {
        crate::edge::serve(args.whatsapp_listen, &args.whatsapp, runtime).await?;
    } else if args.service == ServiceName::Gateway {
        crate::gateway_cmd::serve(args.gateway_listen, &args.gateway, runtime).await?;
    } else {
        run_service(args.service, runtime, &args.domain).await?;
    }
    let _ = health.await;
    Ok(())
}
