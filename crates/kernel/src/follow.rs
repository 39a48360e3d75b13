//! Following the log: read models and the relay to the bus.
//!
//! - [`run_projection`] replays `$all` (filtered by stream prefixes) from the
//!   start into a read model, marks it ready once caught up, then keeps
//!   following with long-polls.
//! - [`run_relay`] publishes every event of the service's streams on
//!   `SB_EVENTS`, from a checkpoint kept in the JetStream stream `SB_RELAY`
//!   (one message per service; a KV bucket would do, but nats-server 2.9's
//!   account info trips async-nats' KV creation). It publishes first and saves the checkpoint after, so
//!   a crash in between re-publishes (dropped by JetStream's de-duplication on
//!   the event id, and by idempotent consumers beyond its window) rather than
//!   losing an event: no appended event is ever missing from the bus.

use std::time::Duration;

use bus::Bus;
use eventlog::{AllFilter, AllPosition, AllSubscription, EventStore, RecordedEvent};
use sb_proto::{Service, v1::EventEnvelope};

use crate::{Readiness, Shutdown, aggregate::EventMetadata};

/// Events per page when reading `$all`.
pub const PAGE_EVENTS: usize = 1000;
/// How long a follower waits at the end of the log before asking again.
pub const LONG_POLL: Duration = Duration::from_secs(5);
/// Back-off after a failed read or publish.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Replays and follows the events of `prefixes` into `apply`. `ready` is set
/// once the replay reached the end of the log.
pub async fn run_projection<S: EventStore + Clone>(
    store: S,
    prefixes: Vec<String>,
    mut apply: impl FnMut(&RecordedEvent) + Send,
    ready: Readiness,
    mut shutdown: Shutdown,
) {
    let filter = AllFilter::StreamPrefixes(prefixes);
    let mut position = AllPosition::START;
    loop {
        // Long-poll only once caught up: replay pages come back at once.
        let long_poll = ready.get().then_some(LONG_POLL);
        let page = tokio::select! {
            page = store.read_all_forward(position, PAGE_EVENTS, &filter, long_poll) => page,
            () = shutdown.wait() => return,
        };
        match page {
            Ok(slice) => {
                for event in &slice.events {
                    apply(event);
                }
                position = slice.next_position;
                if slice.head_of_stream {
                    ready.set(true);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the log failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_DELAY) => {},
                    () = shutdown.wait() => return,
                }
            }
        }
    }
}

/// Publishes every event of `prefixes` on the bus, from the saved checkpoint.
pub async fn run_relay<S: EventStore + Clone>(
    store: S,
    bus: Bus,
    service: Service,
    prefixes: Vec<String>,
    mut shutdown: Shutdown,
) {
    let from = loop {
        match bus.load_checkpoint(service).await {
            Ok(saved) => {
                break saved
                    .and_then(|s| s.parse::<AllPosition>().ok())
                    .unwrap_or(AllPosition::START);
            }
            Err(e) => {
                tracing::warn!(error = %e, "relay checkpoint unavailable; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_DELAY) => {},
                    () = shutdown.wait() => return,
                }
            }
        }
    };
    tracing::info!(%service, from = %from, "relay starting");
    let mut subscription = AllSubscription::new(store, from, AllFilter::StreamPrefixes(prefixes))
        .with_long_poll(LONG_POLL);
    loop {
        let before = subscription.position();
        let page = tokio::select! {
            page = subscription.next_page() => page,
            () = shutdown.wait() => return,
        };
        let events = match page {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "relay read failed; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        if events.is_empty() {
            continue;
        }
        let envelopes: Vec<EventEnvelope> =
            events.iter().filter_map(|e| envelope(service, e)).collect();
        // Publish until it works: skipping would lose events. Shutdown leaves
        // the checkpoint where it was, so the next start publishes them.
        loop {
            match bus.publish_events(&envelopes).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "relay publish failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_DELAY) => {},
                        () = shutdown.wait() => return,
                    }
                }
            }
        }
        crate::metrics::global().add(
            "sb_events_published_total",
            service.as_str(),
            envelopes.len() as u64,
        );
        let position = subscription.position();
        if position != before
            && let Err(e) = bus.save_checkpoint(service, &position.to_string()).await
        {
            tracing::warn!(error = %e, "saving the relay checkpoint failed; events may be re-published");
        }
    }
}

/// The aggregate id of a stream: `agent-alice` → `alice`,
/// `conversation-<uuid>` → `<uuid>`, `config-queues` → `queues`.
pub fn aggregate_id(stream: &str) -> &str {
    stream
        .strip_prefix("config-")
        .or_else(|| stream.split_once('-').map(|(_, id)| id))
        .unwrap_or(stream)
}

/// The bus envelope of a recorded event; `None` (logged) for an event that is
/// not a valid event of `service`, which must not stop the relay.
pub fn envelope(service: Service, recorded: &RecordedEvent) -> Option<EventEnvelope> {
    let payload = match sb_proto::json_to_proto(&recorded.event_type, &recorded.data) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(stream = %recorded.stream, number = recorded.event_number, error = %e, "skipping an event that is not in the catalogue");
            return None;
        }
    };
    let metadata: EventMetadata = serde_json::from_slice(&recorded.metadata).unwrap_or_default();
    let occurred_at = if metadata.occurred_at != 0 {
        metadata.occurred_at
    } else {
        i64::try_from(recorded.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
    };
    let mut trace_context = std::collections::HashMap::new();
    if !metadata.traceparent.is_empty() {
        trace_context.insert(bus::trace::TRACEPARENT.to_owned(), metadata.traceparent.clone());
    }
    Some(EventEnvelope {
        event_id: recorded.event_id.to_string(),
        stream: recorded.stream.clone(),
        stream_position: recorded.event_number,
        log_position: 0,
        occurred_at: Some(sb_proto::timestamp_from_millis(occurred_at)),
        causation_id: metadata.causation_id,
        correlation_id: metadata.correlation_id,
        trace_context,
        event_type: recorded.event_type.clone(),
        service: service.as_str().to_owned(),
        aggregate_id: aggregate_id(&recorded.stream).to_owned(),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::aggregate_id;

    #[test]
    fn aggregate_ids_come_from_stream_names() {
        assert_eq!(aggregate_id("agent-alice"), "alice");
        assert_eq!(aggregate_id("conversation-7d1c-44"), "7d1c-44");
        assert_eq!(aggregate_id("config-queues"), "queues");
        assert_eq!(aggregate_id("config-wrapup-reasons"), "wrapup-reasons");
        assert_eq!(aggregate_id("wrapup-bob"), "bob");
    }
}
