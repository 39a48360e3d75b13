//! Consuming other services' events: a durable JetStream consumer per
//! (service, purpose), explicit ack after the reaction succeeded, redelivery
//! on a transient failure. Reactions must be idempotent — the same event may
//! come twice — which they are by deriving their command ids from the event
//! id ([`crate::derived_id`]) and by domains that treat a repeat as a no-op.

use std::{future::Future, time::Duration};

use bus::{Bus, ConsumerOptions};
use sb_proto::v1::EventEnvelope;

use tracing::Instrument;

use crate::Shutdown;

/// Delay before a transiently failed event is delivered again.
pub const RETRY_DELAY: Duration = Duration::from_millis(500);
/// How long JetStream waits for an ack before redelivering: the longest a
/// reaction can be delayed by a replica that died while handling it.
pub const ACK_WAIT: Duration = Duration::from_secs(5);

/// What a reaction tells the consumer.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Try again later (a service or the store was unavailable).
    Retry(String),
    /// Will never work (malformed event): log it and move on.
    Skip(String),
}

/// Runs `react` for every event on `filter_subject` until shutdown.
pub async fn run<F, Fut>(
    bus: Bus,
    durable_name: &str,
    filter_subject: String,
    react: F,
    mut shutdown: Shutdown,
) where
    F: Fn(EventEnvelope) -> Fut + Send + Sync,
    Fut: Future<Output = Outcome> + Send,
{
    let options = ConsumerOptions {
        filter_subject,
        ack_wait: ACK_WAIT,
        ..ConsumerOptions::new(durable_name)
    };
    let mut consumer = loop {
        match bus.event_consumer(options.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, durable_name, "cannot create consumer; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_DELAY) => {},
                    () = shutdown.wait() => return,
                }
            }
        }
    };
    loop {
        let delivery = tokio::select! {
            d = consumer.next() => d,
            () = shutdown.wait() => return,
        };
        let Some(delivery) = delivery else { return };
        let delivery = match delivery {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
        };
        let envelope = match &delivery.envelope {
            Ok(envelope) => envelope.clone(),
            Err(e) => {
                tracing::error!(error = %e, subject = delivery.subject(), "undecodable event skipped");
                let _ = delivery.ack().await;
                continue;
            }
        };
        let span = tracing::info_span!("react", durable_name, event_type = %envelope.event_type, event_id = %envelope.event_id);
        let outcome = react(envelope).instrument(span).await;
        match outcome {
            Outcome::Done => {
                let _ = delivery.ack().await;
            }
            Outcome::Skip(why) => {
                tracing::error!(durable_name, why, "event skipped");
                let _ = delivery.ack().await;
            }
            Outcome::Retry(why) => {
                tracing::warn!(durable_name, why, "reaction failed; will retry");
                let _ = delivery.nak(RETRY_DELAY).await;
            }
        }
    }
}
