//! The WhatsApp edge as `switchboard` runs it: configuration (flags and
//! `SWITCHBOARD_WHATSAPP_*`), `serve whatsapp`, and `simulate customer`.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf};

use anyhow::Context;
use bus::Bus;
use clap::{Args, Subcommand};
use kernel::Clock;
use serde::Deserialize;
use whatsapp::{
    Secret,
    graph::{GraphConfig, RetryPolicy},
    service::{Edge, EdgeConfig},
    simulate::{self, BusinessNumber, CustomerText},
    webhook::WebhookConfig,
};

use crate::config::parse_http_url;

/// Where the sandbox of `switchboard dev` listens by default.
pub const DEFAULT_SANDBOX_URL: &str = "http://127.0.0.1:8090";

#[derive(Debug, Clone, Args)]
pub struct WhatsAppArgs {
    /// Signs and verifies webhooks (`X-Hub-Signature-256`).
    #[arg(long, env = "SWITCHBOARD_WHATSAPP_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// `hub.verify_token` of the webhook handshake.
    #[arg(long, env = "SWITCHBOARD_WHATSAPP_VERIFY_TOKEN", hide_env_values = true)]
    pub verify_token: Option<String>,
    /// Bearer token for sends (per-number tokens: see --numbers-file).
    #[arg(long, env = "SWITCHBOARD_WHATSAPP_ACCESS_TOKEN", hide_env_values = true, default_value = whatsapp::sandbox::DEFAULT_SANDBOX_ACCESS_TOKEN, hide_default_value = true)]
    pub access_token: String,
    /// Graph API base URL (Meta's, or the sandbox; `dev` uses its own sandbox,
    /// `serve whatsapp` the default sandbox address http://127.0.0.1:8090).
    #[arg(long, env = "SWITCHBOARD_WHATSAPP_GRAPH_URL", value_parser = parse_http_url)]
    pub graph_url: Option<String>,
    /// Graph API version segment.
    #[arg(long, env = "SWITCHBOARD_WHATSAPP_GRAPH_VERSION", default_value = "v23.0")]
    pub graph_version: String,
    /// JSON list of business numbers: `[{"phoneNumberId", "displayPhoneNumber",
    /// "accessToken"? | "accessTokenFile"?}]`; tokens are never logged.
    #[arg(long, env = "SWITCHBOARD_WHATSAPP_NUMBERS_FILE")]
    pub numbers_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NumberEntry {
    phone_number_id: String,
    display_phone_number: String,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    access_token_file: Option<PathBuf>,
}

/// One configured business number.
#[derive(Debug, Clone)]
pub struct Number {
    pub business: BusinessNumber,
    pub token: Option<Secret>,
}

impl WhatsAppArgs {
    /// The business numbers from `--numbers-file` (none when not given).
    pub fn numbers(&self) -> anyhow::Result<Vec<Number>> {
        let Some(path) = &self.numbers_file else { return Ok(vec![]) };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let entries: Vec<NumberEntry> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a list of business numbers", path.display()))?;
        entries
            .into_iter()
            .map(|e| {
                let token = match (e.access_token, e.access_token_file) {
                    (Some(t), _) => Some(Secret::new(t)),
                    (None, Some(file)) => Some(Secret::from_file(&file).with_context(|| {
                        format!("cannot read the token file {}", file.display())
                    })?),
                    (None, None) => None,
                };
                Ok(Number {
                    business: BusinessNumber {
                        phone_number_id: e.phone_number_id,
                        display_phone_number: e.display_phone_number,
                    },
                    token,
                })
            })
            .collect()
    }

    pub fn edge_config(&self) -> anyhow::Result<EdgeConfig> {
        let tokens: HashMap<String, Secret> = self
            .numbers()?
            .into_iter()
            .filter_map(|n| n.token.map(|t| (n.business.phone_number_id, t)))
            .collect();
        Ok(EdgeConfig {
            graph: GraphConfig::new(
                self.graph_url.as_deref().unwrap_or(DEFAULT_SANDBOX_URL),
                &self.graph_version,
                self.access_token.clone(),
            ),
            tokens,
            retry: RetryPolicy::default(),
        })
    }

    /// The webhook settings; both secrets are required outside `dev`.
    pub fn webhook_config(&self) -> anyhow::Result<WebhookConfig> {
        let app_secret =
            self.app_secret.clone().context("SWITCHBOARD_WHATSAPP_APP_SECRET is required")?;
        let verify_token =
            self.verify_token.clone().context("SWITCHBOARD_WHATSAPP_VERIFY_TOKEN is required")?;
        Ok(WebhookConfig::new(app_secret, verify_token))
    }
}

/// The edge's webhook routes plus its health routes, on one router.
pub fn router(edge: &Edge, webhook: WebhookConfig, ready: kernel::Readiness) -> axum::Router {
    whatsapp::webhook::router(webhook, edge.sink()).merge(kernel::health::router(vec![ready]))
}

pub fn edge(bus: &Bus, clock: Clock, args: &WhatsAppArgs) -> anyhow::Result<Edge> {
    Edge::new(bus.clone(), clock, args.edge_config()?)
        .context("cannot configure the Graph API client")
}

#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// Send a signed customer text message to the webhook, as WhatsApp would.
    Customer(CustomerArgs),
}

#[derive(Debug, Args)]
pub struct CustomerArgs {
    /// The customer's WhatsApp profile name.
    #[arg(long)]
    pub name: String,
    /// The customer's phone number (E.164, `+` optional).
    #[arg(long)]
    pub phone: String,
    /// The business number written to (digits, as `display_phone_number`).
    #[arg(long)]
    pub to: String,
    /// The message text.
    pub text: String,
    /// Webhook URL.
    #[arg(
        long,
        env = "SWITCHBOARD_WEBHOOK_URL",
        default_value = "http://127.0.0.1:8080/webhooks/whatsapp"
    )]
    pub webhook_url: String,
    /// Signs the payload.
    #[arg(long, env = "SWITCHBOARD_WHATSAPP_APP_SECRET", hide_env_values = true)]
    pub app_secret: String,
    /// Business numbers (maps `--to` to its phone number id; otherwise the id is the number).
    #[arg(long, env = "SWITCHBOARD_WHATSAPP_NUMBERS_FILE")]
    pub numbers_file: Option<PathBuf>,
}

pub async fn simulate(command: SimulateCommand) -> anyhow::Result<()> {
    let SimulateCommand::Customer(args) = command;
    let numbers = WhatsAppArgs {
        app_secret: None,
        verify_token: None,
        access_token: String::new(),
        graph_url: None,
        graph_version: String::new(),
        numbers_file: args.numbers_file.clone(),
    }
    .numbers()?;
    let to = numbers
        .into_iter()
        .map(|n| n.business)
        .find(|b| b.display_phone_number == args.to)
        .unwrap_or(BusinessNumber {
            phone_number_id: args.to.clone(),
            display_phone_number: args.to.clone(),
        });
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let message = CustomerText {
        name: args.name,
        phone: args.phone,
        to,
        text: args.text,
        whatsapp_message_id: simulate::new_wamid("SIM"),
        timestamp,
        reply_to_whatsapp_id: None,
    };
    simulate::customer_text(&args.webhook_url, &Secret::new(args.app_secret), &message)
        .await
        .with_context(|| {
            format!("the webhook at {} did not accept the message", args.webhook_url)
        })?;
    println!("delivered {} to {}", message.whatsapp_message_id, args.webhook_url);
    Ok(())
}

/// `serve whatsapp`: the webhook listener and the sender.
pub async fn serve(
    listen: SocketAddr,
    args: &WhatsAppArgs,
    runtime: kernel::Runtime<eventlog::HttpEventStore>,
) -> anyhow::Result<()> {
    let edge = edge(&runtime.bus, runtime.clock.clone(), args)?;
    let app = router(&edge, args.webhook_config()?, runtime.ready.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("whatsapp webhook on http://{}/webhooks/whatsapp", listener.local_addr()?);
    let http = tokio::spawn({
        let mut shutdown = runtime.shutdown.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.wait().await })
                .await
        }
    });
    whatsapp::service::run(
        edge,
        runtime.store.clone(),
        runtime.ready.clone(),
        runtime.shutdown.clone(),
    )
    .await;
    let _ = http.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(numbers_file: Option<PathBuf>) -> WhatsAppArgs {
        WhatsAppArgs {
            app_secret: None,
            verify_token: None,
            access_token: "default-token".into(),
            graph_url: None,
            graph_version: "v23.0".into(),
            numbers_file,
        }
    }

    #[test]
    fn several_business_numbers_with_their_own_tokens_from_a_file_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("sales.token");
        std::fs::write(&token_file, "sales-secret-token\n").unwrap();
        let numbers = dir.path().join("numbers.json");
        std::fs::write(
            &numbers,
            serde_json::json!([
                {"phoneNumberId": "111", "displayPhoneNumber": "15550001111", "accessTokenFile": token_file},
                {"phoneNumberId": "222", "displayPhoneNumber": "15550002222", "accessToken": "support-secret-token"},
                {"phoneNumberId": "333", "displayPhoneNumber": "15550003333"}
            ])
            .to_string(),
        )
        .unwrap();
        let config = args(Some(numbers)).edge_config().unwrap();
        assert_eq!(config.tokens.len(), 2, "the third number uses the default token");
        assert_eq!(config.tokens["111"].expose(), "sales-secret-token");
        assert_eq!(config.tokens["222"].expose(), "support-secret-token");
        let shown = format!("{config:?}");
        for secret in ["sales-secret-token", "support-secret-token", "default-token"] {
            assert!(!shown.contains(secret), "a token leaked into Debug: {shown}");
        }
        assert_eq!(config.graph.base_url, DEFAULT_SANDBOX_URL);
    }

    #[test]
    fn a_bad_numbers_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let numbers = dir.path().join("numbers.json");
        std::fs::write(&numbers, "{not json").unwrap();
        let err = args(Some(numbers)).numbers().unwrap_err().to_string();
        assert!(err.contains("not a list of business numbers"), "{err}");
        let missing = args(Some(dir.path().join("nope.json"))).numbers().unwrap_err().to_string();
        assert!(missing.contains("cannot read"), "{missing}");
    }
}
