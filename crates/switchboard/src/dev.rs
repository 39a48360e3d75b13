//! `switchboard dev`: everything on one machine, with no outside account.
//!
//! It grows with every component: today it makes sure NATS answers (starting
//! a local `nats-server -js` when none does), creates the `SB_EVENTS` stream,
//! runs every component built so far, prints where everything is, and stops
//! cleanly on Ctrl-C or SIGTERM.

use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use bus::{Bus, BusConfig};
use clap::Args;
use tokio::process::{Child, Command};

use crate::config::{DataDirArgs, NatsArgs};

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub data: DataDirArgs,
    /// The `nats-server` binary to start when no NATS answers at the URL.
    #[arg(long, env = "SWITCHBOARD_NATS_SERVER_BIN", default_value = "nats-server")]
    pub nats_server_bin: String,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data.data_dir.display()))?;

    let (bus, _nats_child) = connect_or_start_nats(&args).await?;
    let info = bus.ensure_events_stream().await?;
    tracing::info!(stream = %info.config.name, messages = info.state.messages, "event stream ready");

    println!("switchboard dev is running");
    println!("  NATS            {}", args.nats.nats_url);
    println!("  event stream    {} ({} events)", info.config.name, info.state.messages);
    println!("  data dir        {}", args.data.data_dir.display());
    println!("Press Ctrl-C to stop.");

    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
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
}
