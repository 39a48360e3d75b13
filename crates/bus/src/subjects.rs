//! Every NATS subject Switchboard uses is built here, never as a literal
//! elsewhere.
//!
//! - events: `sb.evt.<service>.<aggregate-id>.<EventType>`, all captured by
//!   the JetStream stream [`EVENTS_STREAM`];
//! - commands: `sb.cmd.<service>.<verb>` (request/reply, queue group = service).

use sb_proto::Service;

/// The JetStream stream holding every domain event.
pub const EVENTS_STREAM: &str = "SB_EVENTS";
/// Subject filter of [`EVENTS_STREAM`].
pub const ALL_EVENTS: &str = "sb.evt.>";

/// Test-only: the current time (Unix ms, decimal) for services started with a
/// manual clock (`SWITCHBOARD_CLOCK=manual`). Request/reply: each service answers
/// with its time once set.
pub const TEST_CLOCK: &str = "sb.test.clock";

/// JetStream stream keeping one relay checkpoint per service (last message per subject).
pub const RELAY_STREAM: &str = "SB_RELAY";
const RELAY_PREFIX: &str = "sb.relay";
/// Subjects of [`RELAY_STREAM`].
pub const RELAY_SUBJECTS: &str = "sb.relay.>";

/// `sb.relay.<service>`: the subject holding `service`'s relay checkpoint.
pub fn relay_checkpoint(service: Service) -> String {
    format!("{RELAY_PREFIX}.{}", service.as_str())
}

const EVENT_PREFIX: &str = "sb.evt";
const COMMAND_PREFIX: &str = "sb.cmd";

/// A subject token that would change the subject's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{token}` cannot be a subject token: it must be non-empty, printable ASCII without `.`, `*`, `>` or spaces"
)]
pub struct InvalidToken {
    pub token: String,
}

/// Checks that `token` is one well-formed subject token. Ids (agent, queue,
/// conversation) become tokens, so they are checked at the edge with this.
pub fn check_token(token: &str) -> Result<&str, InvalidToken> {
    let ok = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'));
    if ok { Ok(token) } else { Err(InvalidToken { token: token.to_owned() }) }
}

/// `sb.evt.<service>.<aggregate-id>.<EventType>`.
pub fn event(
    service: Service,
    aggregate_id: &str,
    event_type: &str,
) -> Result<String, InvalidToken> {
    Ok(format!(
        "{EVENT_PREFIX}.{}.{}.{}",
        service.as_str(),
        check_token(aggregate_id)?,
        check_token(event_type)?
    ))
}

/// Every event of one service: `sb.evt.<service>.>`.
pub fn events_of(service: Service) -> String {
    format!("{EVENT_PREFIX}.{}.>", service.as_str())
}

/// One event type of one service, any aggregate: `sb.evt.<service>.*.<EventType>`.
pub fn events_of_type(service: Service, event_type: &str) -> Result<String, InvalidToken> {
    Ok(format!("{EVENT_PREFIX}.{}.*.{}", service.as_str(), check_token(event_type)?))
}

/// `sb.cmd.<service>.<verb>`.
pub fn command(service: Service, verb: &str) -> Result<String, InvalidToken> {
    Ok(format!("{COMMAND_PREFIX}.{}.{}", service.as_str(), check_token(verb)?))
}

/// Every command of one service: `sb.cmd.<service>.*`.
pub fn commands_of(service: Service) -> String {
    format!("{COMMAND_PREFIX}.{}.*", service.as_str())
}

/// The verb of a command subject of `service`, if it is one.
pub fn command_verb(service: Service, subject: &str) -> Option<&str> {
    subject
        .strip_prefix(COMMAND_PREFIX)?
        .strip_prefix('.')?
        .strip_prefix(service.as_str())?
        .strip_prefix('.')
        .filter(|verb| check_token(verb).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b9_1_event_subjects_follow_the_documented_shape() {
        assert_eq!(
            event(Service::Conversation, "7d1c", "OfferAccepted").unwrap(),
            "sb.evt.conversation.7d1c.OfferAccepted"
        );
        assert_eq!(events_of(Service::WrapUp), "sb.evt.wrap-up.>");
        assert_eq!(
            events_of_type(Service::AgentPresence, "SlotReserved").unwrap(),
            "sb.evt.agent-presence.*.SlotReserved"
        );
    }

    #[test]
    fn ids_that_would_change_a_subject_are_refused() {
        for bad in ["", "a.b", "a b", "*", ">", "a\u{e9}"] {
            assert!(event(Service::Routing, bad, "QueueDefined").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn command_subjects_round_trip_their_verb() {
        let s = command(Service::AgentPresence, "reserve-slot").unwrap();
        assert_eq!(s, "sb.cmd.agent-presence.reserve-slot");
        assert_eq!(command_verb(Service::AgentPresence, &s), Some("reserve-slot"));
        assert_eq!(command_verb(Service::WrapUp, &s), None);
        assert_eq!(commands_of(Service::Routing), "sb.cmd.routing.*");
    }
}
