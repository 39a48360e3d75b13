//! Commands over NATS request/reply: serving them (bounded, traced, drained
//! on shutdown) and calling them (typed replies).

use std::{future::Future, sync::Arc, time::Duration};

use bus::{Bus, BusError, TraceParent};
use bytes::Bytes;
use prost::Message;
use sb_proto::{
    Service,
    v1::{CommandError, CommandReply, ErrorKind, command_reply},
};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::{DomainError, Shutdown, aggregate::ExecError};

/// Commands a replica handles at once; more wait in NATS.
pub const MAX_IN_FLIGHT: usize = 256;
/// Default time a caller waits for a reply.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A command as the handler receives it.
#[derive(Debug, Clone)]
pub struct Request {
    pub verb: String,
    pub payload: Bytes,
    pub trace: Option<TraceParent>,
}

impl Request {
    /// Decodes the payload; a malformed one is answered with `invalid_command`.
    pub fn decode<M: Message + Default>(&self) -> Result<M, CommandReply> {
        M::decode(self.payload.clone())
            .map_err(|e| invalid(format!("malformed {} command: {e}", self.verb)))
    }
}

/// A successful reply carrying `state`.
pub fn ok<M: Message>(state_type: &str, state: &M) -> CommandReply {
    CommandReply {
        result: Some(command_reply::Result::State(state.encode_to_vec())),
        state_type: state_type.to_owned(),
        ..Default::default()
    }
}

/// A successful reply carrying `state` and the version of `stream` it reflects
/// (`-1`: no stream yet), for read-your-writes.
pub fn ok_at<M: Message>(
    state_type: &str,
    state: &M,
    stream: &str,
    version: Option<u64>,
) -> CommandReply {
    CommandReply {
        stream: stream.to_owned(),
        version: version.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)),
        ..ok(state_type, state)
    }
}

/// A refusal by the domain.
pub fn refused(error: &impl DomainError) -> CommandReply {
    error_reply(error.code(), &error.to_string(), error.kind())
}

pub fn invalid(message: impl Into<String>) -> CommandReply {
    error_reply("invalid_command", &message.into(), ErrorKind::Invalid)
}

pub fn unknown_verb(verb: &str) -> CommandReply {
    error_reply("unknown_command", &format!("unknown command verb `{verb}`"), ErrorKind::Invalid)
}

pub fn error_reply(code: &str, message: &str, kind: ErrorKind) -> CommandReply {
    CommandReply {
        result: Some(command_reply::Result::Error(CommandError {
            code: code.to_owned(),
            message: message.to_owned(),
            kind: kind as i32,
        })),
        ..Default::default()
    }
}

/// The reply for a failed execution: domain refusals as they are,
/// infrastructure failures logged once here and answered as `unavailable`.
pub fn from_exec_error<E: DomainError>(error: &ExecError<E>) -> CommandReply {
    match error {
        ExecError::Domain(e) => refused(e),
        other => {
            tracing::error!(error = %other, "command failed");
            error_reply("unavailable", &other.to_string(), ErrorKind::Unavailable)
        }
    }
}

/// Serves `service`'s commands until shutdown, then stops taking new ones and
/// waits for those in flight.
pub async fn serve<H, F>(
    bus: Bus,
    service: Service,
    handler: H,
    mut shutdown: Shutdown,
) -> Result<(), BusError>
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = CommandReply> + Send + 'static,
{
    let mut commands = bus.serve_commands(service).await?;
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let incoming = tokio::select! {
            incoming = commands.next() => incoming,
            () = shutdown.wait() => None,
        };
        let Some(incoming) = incoming else { break };
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let handler = handler.clone();
        let span = tracing::info_span!("command", %service, verb = %incoming.verb,
            trace = incoming.trace.map(|t| t.to_string()).unwrap_or_default());
        tokio::spawn(
            async move {
                let request = Request {
                    verb: incoming.verb.clone(),
                    payload: incoming.payload.clone(),
                    trace: incoming.trace,
                };
                let reply = handler(request).await;
                let outcome = match &reply.result {
                    Some(command_reply::Result::Error(e)) => e.code.clone(),
                    _ => "ok".to_owned(),
                };
                crate::metrics::global().add(
                    "sb_commands_total",
                    &format!(
                        "service=\"{service}\",verb=\"{}\",outcome=\"{outcome}\"",
                        incoming.verb
                    ),
                    1,
                );
                if let Err(e) = incoming.reply(Bytes::from(reply.encode_to_vec())).await {
                    tracing::warn!(error = %e, "could not send the reply");
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
    let _ = commands.drain().await;
    // Wait for in-flight commands: every permit back.
    let _ = permits.acquire_many(MAX_IN_FLIGHT as u32).await;
    let _ = bus.flush().await;
    Ok(())
}

/// Why a call did not give a state.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{}: {}", .0.code, .0.message)]
    Refused(CommandError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("malformed reply: {0}")]
    Malformed(String),
}

impl CallError {
    /// Whether the same call may succeed later (B8.3): the bus or a service
    /// was unreachable, timed out, or answered `unavailable` (event store
    /// down, contention between replicas). A domain refusal is permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Refused(e) => e.kind == ErrorKind::Unavailable as i32,
            CallError::Bus(_) | CallError::Malformed(_) => true,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            CallError::Refused(e) => &e.code,
            CallError::Bus(_) => "unavailable",
            CallError::Malformed(_) => "unavailable",
        }
    }
}

/// A decoded reply state with the stream version it reflects.
#[derive(Debug, Clone)]
pub struct Answer<R> {
    pub state: R,
    /// The stream the command changed, when the service said.
    pub stream: String,
    /// Its version after the command (`-1`: no stream).
    pub version: i64,
}

/// Sends a command and decodes the state in its reply.
pub async fn call<C: Message, R: Message + Default>(
    bus: &Bus,
    service: Service,
    verb: &str,
    command: &C,
    trace: Option<TraceParent>,
) -> Result<R, CallError> {
    call_answer(bus, service, verb, command, trace).await.map(|a| a.state)
}

/// Like [`call`], keeping the stream version for read-your-writes.
pub async fn call_answer<C: Message, R: Message + Default>(
    bus: &Bus,
    service: Service,
    verb: &str,
    command: &C,
    trace: Option<TraceParent>,
) -> Result<Answer<R>, CallError> {
    let bytes = bus
        .request(service, verb, Bytes::from(command.encode_to_vec()), trace, CALL_TIMEOUT)
        .await?;
    let reply = CommandReply::decode(bytes).map_err(|e| CallError::Malformed(e.to_string()))?;
    match reply.result {
        Some(command_reply::Result::State(state)) => Ok(Answer {
            state: R::decode(state.as_slice()).map_err(|e| CallError::Malformed(e.to_string()))?,
            stream: reply.stream,
            version: reply.version,
        }),
        Some(command_reply::Result::Error(e)) => Err(CallError::Refused(e)),
        None => Err(CallError::Malformed("empty reply".into())),
    }
}
