//! Switchboard's WhatsApp edge (issue 7): the pieces that talk to Meta's
//! WhatsApp Business Platform Cloud API, as a library with one seam towards
//! the rest of the system.
//!
//! - [`webhook`]: the `GET`/`POST /webhooks/whatsapp` router. Verifies the
//!   handshake and `X-Hub-Signature-256` ([`signature`]), parses every update
//!   of a payload ([`inbound`]) into `sb_proto::v1::ReceiveCustomerMessage`s
//!   and [`inbound::InboundStatus`]es, and hands them to an
//!   [`webhook::InboundSink`]; it answers 200 only once the sink succeeded.
//! - [`graph`]: the sender (`POST {graph}/{version}/{phone_number_id}/messages`),
//!   Meta's errors as a typed [`graph::SendError`] classified retryable or
//!   permanent, a pure [`graph::RetryPolicy`], the 24-hour window helpers.
//! - [`sandbox`]: a local Graph API stand-in for `switchboard dev` and tests.
//! - [`simulate`]: signed Cloud API payloads (a customer's text, statuses)
//!   posted to a webhook, like Meta.
//!
//! Credentials are [`Secret`]s: redacted in `Debug`, never logged.
//! Formats and codes follow `shared/reference/whatsapp-cloud-api.md`
//! ("reference §n" in the docs below).

pub mod graph;
pub mod inbound;
pub mod sandbox;
mod secret;
pub mod service;
pub mod signature;
pub mod simulate;
pub mod webhook;

pub use secret::Secret;
