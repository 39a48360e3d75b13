//! A bare embedded event store for tests and benchmarks that cannot depend on
//! the `switchboard` binary (the crash test kills it with SIGKILL).
//! Operators use `switchboard eventstore`, which runs the same server.
//!
//! Usage: `eventlog-server --data DIR [--listen ADDR] [--insecure | --user U --password P]`.
//! Prints `listening on ADDR` on stdout once it accepts connections.

use std::io::Write as _;
use std::process::ExitCode;

use eventlog::server::{Auth, Server, ServerConfig};

fn main() -> ExitCode {
    let mut data = None;
    let mut listen = "127.0.0.1:2113".to_owned();
    let mut auth = Auth::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--data", Some(v)) => data = Some(v),
            ("--listen", Some(v)) => listen = v,
            ("--user", Some(v)) => {
                if let Auth::Basic { user, .. } = &mut auth {
                    *user = v;
                }
            }
            ("--password", Some(v)) => {
                if let Auth::Basic { password, .. } = &mut auth {
                    *password = v;
                }
            }
            ("--insecure", next) => {
                auth = Auth::Insecure;
                if let Some(next) = next {
                    eprintln!("error: unexpected argument {next:?} after --insecure (put it last)");
                    return ExitCode::from(2);
                }
            }
            (other, _) => {
                eprintln!("error: unexpected argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(data) = data else {
        eprintln!("error: --data DIR is required");
        return ExitCode::from(2);
    };
    let listen = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: --listen {listen:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = tracing_subscriber_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let server = Server::bind(ServerConfig { data_dir: data.into(), listen, auth }).await?;
        println!("listening on {}", server.local_addr());
        let _ = std::io::stdout().flush();
        server
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (the recovery warning is what the crash test looks for).
fn tracing_subscriber_init() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init()
        .map_err(|e| e.to_string().into())
}
