//! The gateway as `switchboard` runs it: `serve gateway`, `token`, and the
//! gateway inside `dev`.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use clap::{Args, ValueEnum};
use gateway::{Gateway, GatewayConfig, GatewayOptions, Role};
use kernel::{Clock, Runtime};

#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// HS256 secret of the gateway's JWTs.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// B1.5: an agent with no WebSocket and no call for this long goes Idle (`disconnected`).
    #[arg(long, env = "SWITCHBOARD_SESSION_TIMEOUT_SECS", default_value_t = 60)]
    pub session_timeout_secs: u64,
}

impl GatewayArgs {
    pub fn config(&self, listen: SocketAddr, jwt_secret: String) -> GatewayConfig {
        GatewayConfig {
            session_timeout: Duration::from_secs(self.session_timeout_secs),
            ..GatewayConfig::new(listen, jwt_secret)
        }
    }
}

/// Binds the gateway with optional extra routes (the webhook in `dev`).
pub async fn bind(
    listen: SocketAddr,
    args: &GatewayArgs,
    jwt_secret: String,
    runtime: &Runtime<eventlog::HttpEventStore>,
    options: GatewayOptions,
) -> anyhow::Result<Gateway<eventlog::HttpEventStore>> {
    Gateway::bind_with(
        args.config(listen, jwt_secret),
        runtime.bus.clone(),
        runtime.store.clone(),
        runtime.clock.clone(),
        options,
    )
    .await
    .with_context(|| format!("cannot listen on {listen}"))
}

/// `serve gateway`.
pub async fn serve(
    listen: SocketAddr,
    args: &GatewayArgs,
    runtime: Runtime<eventlog::HttpEventStore>,
) -> anyhow::Result<()> {
    let secret = args.jwt_secret.clone().context("SWITCHBOARD_JWT_SECRET is required")?;
    let gateway = bind(listen, args, secret, &runtime, GatewayOptions::default()).await?;
    // The health listener's /readyz follows the gateway's read model.
    tokio::spawn({
        let (theirs, ours) = (gateway.shared().ready.clone(), runtime.ready.clone());
        async move {
            while !theirs.get() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ours.set(true);
        }
    });
    println!("gateway on http://{}", gateway.local_addr()?);
    gateway.run(runtime.shutdown.clone()).await.context("gateway failed")
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Agent,
    Supervisor,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Agent id (the token's `sub`).
    #[arg(long)]
    pub sub: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 12 * 3600)]
    pub ttl_secs: u64,
    /// The gateway's HS256 secret.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
}

/// `switchboard token`: prints a token the gateway accepts.
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    if args.sub.trim().is_empty() {
        anyhow::bail!("--sub must not be empty");
    }
    let role = match args.role {
        RoleArg::Agent => Role::Agent,
        RoleArg::Supervisor => Role::Supervisor,
    };
    let now_secs = Clock::system().now() / 1000;
    println!(
        "{}",
        gateway::issue_token(
            &args.jwt_secret,
            &args.sub,
            &args.name,
            role,
            Duration::from_secs(args.ttl_secs),
            now_secs
        )
    );
    Ok(())
}
