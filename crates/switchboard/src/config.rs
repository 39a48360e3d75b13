//! Configuration shared by subcommands: flag + `SWITCHBOARD_*` variable pairs,
//! with parsers that refuse bad values up front.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, error::ErrorKind};

/// Prints clap's verdict: help and version as clap renders them, any other
/// error as one line, exit code 2.
pub fn exit_on_clap_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let rendered = e.render().to_string();
            let line =
                rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            eprintln!("{}", line.trim_end());
            ExitCode::from(2)
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL (`nats://host:port`).
    #[arg(long = "nats-url", env = "SWITCHBOARD_NATS_URL", default_value = "nats://127.0.0.1:4222", value_parser = parse_nats_url)]
    pub nats_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Where the embedded event store and any local state live.
    #[arg(long = "data-dir", env = "SWITCHBOARD_DATA_DIR", default_value = "./.switchboard")]
    pub data_dir: PathBuf,
}

/// Accepts `nats://`, `tls://` or `ws://` URLs with a host and an optional port.
pub fn parse_nats_url(value: &str) -> Result<String, String> {
    let (scheme, rest) = value
        .split_once("://")
        .ok_or_else(|| format!("`{value}` is not a NATS URL; expected nats://host:port"))?;
    if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
        return Err(format!("`{value}` has scheme `{scheme}`; expected nats://host:port"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (host_port, None),
    };
    if host.is_empty() {
        return Err(format!("`{value}` has no host; expected nats://host:port"));
    }
    if let Some(port) = port {
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{value}` has an invalid port `{port}`"))?;
    }
    Ok(value.to_owned())
}

/// `http(s)://host[:port]` base URLs, without a trailing slash.
pub fn parse_http_url(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or_else(|| format!("`{value}` is not an http(s):// URL"))?;
    if rest.trim_end_matches('/').is_empty() {
        return Err(format!("`{value}` has no host"));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_urls_are_checked() {
        for ok in [
            "nats://127.0.0.1:4222",
            "nats://nats",
            "tls://user:pw@nats.example:4443",
            "nats://[::1]:4222",
        ] {
            assert!(parse_nats_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "127.0.0.1:4222",
            "http://x:1",
            "nats://",
            "nats://:4222",
            "nats://h:99999",
            "nats://h:x",
        ] {
            assert!(parse_nats_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_urls_are_checked() {
        assert_eq!(parse_http_url("http://127.0.0.1:2113/").unwrap(), "http://127.0.0.1:2113");
        assert!(parse_http_url("ftp://x").is_err());
        assert!(parse_http_url("http://").is_err());
    }
}
