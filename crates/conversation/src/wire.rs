//! Domain events ↔ the `switchboard.v1` contract. Decoding is outside input:
//! it never panics, and a missing field is a typed error.

use sb_proto::{ConversationEvent, millis_from_timestamp, timestamp_from_millis, v1};

use crate::domain::{
    Actor, Conversation, Customer, CustomerMessage, DeliveryStatus, Event, LeaveReason,
    MessageKind, Offer, OfferKind, QueueRef, TransferTo, WithdrawReason,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {detail}")]
pub struct WireError {
    pub field: &'static str,
    pub detail: String,
}

fn bad(field: &'static str, detail: impl Into<String>) -> WireError {
    WireError { field, detail: detail.into() }
}

fn ts(t: Option<&sb_proto::Timestamp>, field: &'static str) -> Result<i64, WireError> {
    t.map(millis_from_timestamp).ok_or_else(|| bad(field, "missing"))
}

fn at(ms: i64) -> Option<sb_proto::Timestamp> {
    Some(timestamp_from_millis(ms))
}

pub fn customer_to_proto(c: &Customer) -> v1::Customer {
    v1::Customer { name: c.name.clone(), phone: c.phone.clone() }
}

pub fn customer_from_proto(c: Option<&v1::Customer>) -> Customer {
    c.map(|c| Customer { name: c.name.clone(), phone: c.phone.clone() }).unwrap_or_default()
}

pub fn offer_kind_to_proto(k: OfferKind) -> v1::OfferKind {
    match k {
        OfferKind::New => v1::OfferKind::New,
        OfferKind::Transfer => v1::OfferKind::Transfer,
        OfferKind::Conference => v1::OfferKind::Conference,
    }
}

fn offer_kind_from_proto(k: i32) -> Result<OfferKind, WireError> {
    match v1::OfferKind::try_from(k) {
        Ok(v1::OfferKind::New) => Ok(OfferKind::New),
        Ok(v1::OfferKind::Transfer) => Ok(OfferKind::Transfer),
        Ok(v1::OfferKind::Conference) => Ok(OfferKind::Conference),
        _ => Err(bad("kind", format!("unknown offer kind {k}"))),
    }
}

pub fn withdraw_reason_to_proto(r: WithdrawReason) -> v1::WithdrawReason {
    match r {
        WithdrawReason::Expired => v1::WithdrawReason::Expired,
        WithdrawReason::SessionLost => v1::WithdrawReason::SessionLost,
        WithdrawReason::ConversationEnded => v1::WithdrawReason::ConversationEnded,
    }
}

pub fn withdraw_reason_from_proto(r: i32) -> Result<WithdrawReason, WireError> {
    match v1::WithdrawReason::try_from(r) {
        Ok(v1::WithdrawReason::Expired) => Ok(WithdrawReason::Expired),
        Ok(v1::WithdrawReason::SessionLost) => Ok(WithdrawReason::SessionLost),
        Ok(v1::WithdrawReason::ConversationEnded) => Ok(WithdrawReason::ConversationEnded),
        _ => Err(bad("reason", format!("unknown withdraw reason {r}"))),
    }
}

fn leave_to_proto(r: LeaveReason) -> v1::LeaveReason {
    match r {
        LeaveReason::Ended => v1::LeaveReason::Ended,
        LeaveReason::Transferred => v1::LeaveReason::Transferred,
        LeaveReason::LeftConference => v1::LeaveReason::LeftConference,
        LeaveReason::ConferenceEnded => v1::LeaveReason::ConferenceEnded,
        LeaveReason::Reassigned => v1::LeaveReason::Reassigned,
    }
}

fn leave_from_proto(r: i32) -> Result<LeaveReason, WireError> {
    match v1::LeaveReason::try_from(r) {
        Ok(v1::LeaveReason::Ended) => Ok(LeaveReason::Ended),
        Ok(v1::LeaveReason::Transferred) => Ok(LeaveReason::Transferred),
        Ok(v1::LeaveReason::LeftConference) => Ok(LeaveReason::LeftConference),
        Ok(v1::LeaveReason::ConferenceEnded) => Ok(LeaveReason::ConferenceEnded),
        Ok(v1::LeaveReason::Reassigned) => Ok(LeaveReason::Reassigned),
        _ => Err(bad("reason", format!("unknown leave reason {r}"))),
    }
}

pub fn status_to_proto(s: DeliveryStatus) -> v1::DeliveryStatus {
    match s {
        DeliveryStatus::Pending => v1::DeliveryStatus::Pending,
        DeliveryStatus::Sent => v1::DeliveryStatus::Sent,
        DeliveryStatus::Delivered => v1::DeliveryStatus::Delivered,
        DeliveryStatus::Read => v1::DeliveryStatus::Read,
        DeliveryStatus::Failed => v1::DeliveryStatus::Failed,
    }
}

pub fn status_from_proto(s: i32) -> Result<DeliveryStatus, WireError> {
    match v1::DeliveryStatus::try_from(s) {
        Ok(v1::DeliveryStatus::Pending) => Ok(DeliveryStatus::Pending),
        Ok(v1::DeliveryStatus::Sent) => Ok(DeliveryStatus::Sent),
        Ok(v1::DeliveryStatus::Delivered) => Ok(DeliveryStatus::Delivered),
        Ok(v1::DeliveryStatus::Read) => Ok(DeliveryStatus::Read),
        Ok(v1::DeliveryStatus::Failed) => Ok(DeliveryStatus::Failed),
        _ => Err(bad("status", format!("unknown delivery status {s}"))),
    }
}

/// WhatsApp message types: text stays text; everything else is kept by name (B4.5).
pub fn message_kind_from_proto(t: i32, type_name: &str) -> MessageKind {
    match v1::MessageType::try_from(t) {
        Ok(v1::MessageType::Text) => MessageKind::Text,
        _ if !type_name.is_empty() => MessageKind::Other(type_name.to_owned()),
        Ok(other) => MessageKind::Other(
            other.as_str_name().trim_start_matches("MESSAGE_TYPE_").to_ascii_lowercase(),
        ),
        Err(_) => MessageKind::Other("unknown".into()),
    }
}

pub fn message_kind_to_proto(k: &MessageKind) -> (v1::MessageType, String) {
    match k {
        MessageKind::Text => (v1::MessageType::Text, "text".into()),
        MessageKind::Other(name) => {
            let base = name.split(':').next().unwrap_or(name);
            let t = v1::MessageType::from_str_name(&format!(
                "MESSAGE_TYPE_{}",
                base.to_ascii_uppercase()
            ))
            .filter(|t| *t != v1::MessageType::Unspecified)
            .unwrap_or(v1::MessageType::Unknown);
            (t, name.clone())
        }
    }
}

fn actor_to_proto(a: &Actor) -> v1::Actor {
    match a {
        Actor::Agent(id) => v1::Actor { kind: v1::ActorKind::Agent as i32, id: id.clone() },
        Actor::Supervisor(id) => {
            v1::Actor { kind: v1::ActorKind::Supervisor as i32, id: id.clone() }
        }
        Actor::System => v1::Actor { kind: v1::ActorKind::System as i32, id: String::new() },
    }
}

pub fn actor_from_proto(a: Option<&v1::Actor>) -> Result<Actor, WireError> {
    let a = a.ok_or_else(|| bad("by", "missing"))?;
    match v1::ActorKind::try_from(a.kind) {
        Ok(v1::ActorKind::Agent) if !a.id.is_empty() => Ok(Actor::Agent(a.id.clone())),
        Ok(v1::ActorKind::Supervisor) if !a.id.is_empty() => Ok(Actor::Supervisor(a.id.clone())),
        Ok(v1::ActorKind::System) => Ok(Actor::System),
        _ => Err(bad("by", "unknown actor")),
    }
}

fn split_target(to: &TransferTo) -> (String, String, String) {
    match to {
        TransferTo::Queue(q) => (q.id.clone(), q.name.clone(), String::new()),
        TransferTo::Agent(a) => (String::new(), String::new(), a.clone()),
    }
}

fn join_target(queue_id: &str, queue_name: &str, agent_id: &str) -> Result<TransferTo, WireError> {
    match (queue_id.is_empty(), agent_id.is_empty()) {
        (false, true) => {
            Ok(TransferTo::Queue(QueueRef { id: queue_id.into(), name: queue_name.into() }))
        }
        (true, false) => Ok(TransferTo::Agent(agent_id.into())),
        _ => Err(bad("to", "exactly one of queue and agent")),
    }
}

/// A domain event as the contract's event, for conversation `id`.
pub fn event_to_proto(id: &str, event: &Event) -> ConversationEvent {
    let cid = id.to_owned();
    match event {
        Event::Started { conversation_id, customer, source_number, phone_number_id, at: t } => {
            v1::ConversationStarted {
                conversation_id: conversation_id.clone(),
                customer: Some(customer_to_proto(customer)),
                source_number: source_number.clone(),
                phone_number_id: phone_number_id.clone(),
                at: at(*t),
            }
            .into()
        }
        Event::Queued { queue, queued_since, kind, at: t } => v1::ConversationQueued {
            conversation_id: cid,
            queue_id: queue.id.clone(),
            queue_name: queue.name.clone(),
            queued_since: at(*queued_since),
            at: at(*t),
            kind: offer_kind_to_proto(*kind) as i32,
        }
        .into(),
        Event::CustomerMessageReceived { message, customer, at: t } => {
            let (kind, type_name) = message_kind_to_proto(&message.kind);
            v1::CustomerMessageReceived {
                conversation_id: cid,
                message_id: message.message_id.clone(),
                whatsapp_message_id: message.whatsapp_message_id.clone(),
                r#type: kind as i32,
                type_name,
                text: message.text.clone(),
                media_id: message.media_id.clone(),
                sent_at: at(message.sent_at),
                received_at: at(*t),
                reply_to_whatsapp_id: message.reply_to_whatsapp_id.clone(),
                customer: Some(customer_to_proto(customer)),
            }
            .into()
        }
        Event::OfferMade(o) => v1::OfferMade {
            conversation_id: cid,
            offer_id: o.offer_id.clone(),
            agent_id: o.agent_id.clone(),
            kind: offer_kind_to_proto(o.kind) as i32,
            queue_id: o.queue.id.clone(),
            queue_name: o.queue.name.clone(),
            offered_at: at(o.offered_at),
            expires_at: at(o.expires_at),
            requested_by: o.requested_by.clone().unwrap_or_default(),
        }
        .into(),
        Event::OfferAccepted { offer_id, agent_id, agent_name, at: t } => v1::OfferAccepted {
            conversation_id: cid,
            offer_id: offer_id.clone(),
            agent_id: agent_id.clone(),
            agent_name: agent_name.clone(),
            at: at(*t),
        }
        .into(),
        Event::OfferWithdrawn { offer_id, agent_id, reason, at: t } => v1::OfferWithdrawn {
            conversation_id: cid,
            offer_id: offer_id.clone(),
            agent_id: agent_id.clone(),
            reason: withdraw_reason_to_proto(*reason) as i32,
            at: at(*t),
        }
        .into(),
        Event::AgentMessageAdded { message_id, agent_id, agent_name, text, at: t } => {
            v1::AgentMessageAdded {
                conversation_id: cid,
                message_id: message_id.clone(),
                agent_id: agent_id.clone(),
                agent_name: agent_name.clone(),
                text: text.clone(),
                at: at(*t),
            }
            .into()
        }
        Event::MessageStatusChanged { message_id, status, whatsapp_message_id, failure, at: t } => {
            let (failure_code, failure_reason) = failure.clone().unwrap_or_default();
            v1::MessageStatusChanged {
                conversation_id: cid,
                message_id: message_id.clone(),
                status: status_to_proto(*status) as i32,
                whatsapp_message_id: whatsapp_message_id.clone(),
                failure_code,
                failure_reason,
                at: at(*t),
            }
            .into()
        }
        Event::TransferRequested { from_agent_id, to, at: t } => {
            let (to_queue_id, _, to_agent_id) = split_target(to);
            v1::TransferRequested {
                conversation_id: cid,
                from_agent_id: from_agent_id.clone(),
                to_queue_id,
                to_agent_id,
                at: at(*t),
            }
            .into()
        }
        Event::TransferFailed { to_agent_id, at: t } => v1::TransferFailed {
            conversation_id: cid,
            to_agent_id: to_agent_id.clone(),
            at: at(*t),
        }
        .into(),
        Event::ConferenceRequested { by_agent_id, to, at: t } => {
            let (to_queue_id, to_queue_name, to_agent_id) = split_target(to);
            v1::ConferenceRequested {
                conversation_id: cid,
                by_agent_id: by_agent_id.clone(),
                to_queue_id,
                to_agent_id,
                at: at(*t),
                to_queue_name,
            }
            .into()
        }
        Event::ConferenceDeclined { agent_id, at: t } => {
            v1::ConferenceDeclined { conversation_id: cid, agent_id: agent_id.clone(), at: at(*t) }
                .into()
        }
        Event::ParticipantLeft { agent_id, reason, at: t } => v1::ParticipantLeft {
            conversation_id: cid,
            agent_id: agent_id.clone(),
            reason: leave_to_proto(*reason) as i32,
            at: at(*t),
        }
        .into(),
        Event::Ended { by, agent_ids, at: t } => v1::ConversationEnded {
            conversation_id: cid,
            by: Some(actor_to_proto(by)),
            agent_ids: agent_ids.clone(),
            at: at(*t),
        }
        .into(),
    }
}

/// The inverse of [`event_to_proto`].
pub fn event_from_proto(event: &ConversationEvent) -> Result<Event, WireError> {
    use ConversationEvent as E;
    Ok(match event {
        E::ConversationStarted(e) => Event::Started {
            conversation_id: e.conversation_id.clone(),
            customer: customer_from_proto(e.customer.as_ref()),
            source_number: e.source_number.clone(),
            phone_number_id: e.phone_number_id.clone(),
            at: ts(e.at.as_ref(), "at")?,
        },
        E::ConversationQueued(e) => Event::Queued {
            queue: QueueRef { id: e.queue_id.clone(), name: e.queue_name.clone() },
            queued_since: ts(e.queued_since.as_ref(), "queued_since")?,
            kind: offer_kind_from_proto(e.kind).unwrap_or(OfferKind::New),
            at: ts(e.at.as_ref(), "at")?,
        },
        E::CustomerMessageReceived(e) => Event::CustomerMessageReceived {
            message: CustomerMessage {
                message_id: e.message_id.clone(),
                whatsapp_message_id: e.whatsapp_message_id.clone(),
                kind: message_kind_from_proto(e.r#type, &e.type_name),
                text: e.text.clone(),
                media_id: e.media_id.clone(),
                sent_at: ts(e.sent_at.as_ref(), "sent_at")?,
                reply_to_whatsapp_id: e.reply_to_whatsapp_id.clone(),
            },
            customer: customer_from_proto(e.customer.as_ref()),
            at: ts(e.received_at.as_ref(), "received_at")?,
        },
        E::OfferMade(e) => Event::OfferMade(Offer {
            offer_id: e.offer_id.clone(),
            agent_id: e.agent_id.clone(),
            kind: offer_kind_from_proto(e.kind)?,
            queue: QueueRef { id: e.queue_id.clone(), name: e.queue_name.clone() },
            offered_at: ts(e.offered_at.as_ref(), "offered_at")?,
            expires_at: ts(e.expires_at.as_ref(), "expires_at")?,
            requested_by: (!e.requested_by.is_empty()).then(|| e.requested_by.clone()),
        }),
        E::OfferAccepted(e) => Event::OfferAccepted {
            offer_id: e.offer_id.clone(),
            agent_id: e.agent_id.clone(),
            agent_name: e.agent_name.clone(),
            at: ts(e.at.as_ref(), "at")?,
        },
        E::OfferWithdrawn(e) => Event::OfferWithdrawn {
            offer_id: e.offer_id.clone(),
            agent_id: e.agent_id.clone(),
            reason: withdraw_reason_from_proto(e.reason)?,
            at: ts(e.at.as_ref(), "at")?,
        },
        E::AgentMessageAdded(e) => Event::AgentMessageAdded {
            message_id: e.message_id.clone(),
            agent_id: e.agent_id.clone(),
            agent_name: e.agent_name.clone(),
            text: e.text.clone(),
            at: ts(e.at.as_ref(), "at")?,
        },
        E::MessageStatusChanged(e) => Event::MessageStatusChanged {
            message_id: e.message_id.clone(),
            status: status_from_proto(e.status)?,
            whatsapp_message_id: e.whatsapp_message_id.clone(),
            failure: (e.failure_code != 0 || !e.failure_reason.is_empty())
                .then(|| (e.failure_code, e.failure_reason.clone())),
            at: ts(e.at.as_ref(), "at")?,
        },
        E::TransferRequested(e) => Event::TransferRequested {
            from_agent_id: e.from_agent_id.clone(),
            to: join_target(&e.to_queue_id, "", &e.to_agent_id)?,
            at: ts(e.at.as_ref(), "at")?,
        },
        E::TransferFailed(e) => Event::TransferFailed {
            to_agent_id: e.to_agent_id.clone(),
            at: ts(e.at.as_ref(), "at")?,
        },
        E::ConferenceRequested(e) => Event::ConferenceRequested {
            by_agent_id: e.by_agent_id.clone(),
            to: join_target(&e.to_queue_id, &e.to_queue_name, &e.to_agent_id)?,
            at: ts(e.at.as_ref(), "at")?,
        },
        E::ConferenceDeclined(e) => {
            Event::ConferenceDeclined { agent_id: e.agent_id.clone(), at: ts(e.at.as_ref(), "at")? }
        }
        E::ParticipantLeft(e) => Event::ParticipantLeft {
            agent_id: e.agent_id.clone(),
            reason: leave_from_proto(e.reason)?,
            at: ts(e.at.as_ref(), "at")?,
        },
        E::ConversationEnded(e) => Event::Ended {
            by: actor_from_proto(e.by.as_ref())?,
            agent_ids: e.agent_ids.clone(),
            at: ts(e.at.as_ref(), "at")?,
        },
    })
}

/// The command-reply view of a conversation.
pub fn summary(state: &Conversation) -> v1::ConversationSummary {
    v1::ConversationSummary {
        conversation_id: state.id.clone(),
        state: state.status.as_str().to_owned(),
        customer: Some(customer_to_proto(&state.customer)),
        source_number: state.source_number.clone(),
        phone_number_id: state.phone_number_id.clone(),
        queue_id: state.queue.as_ref().map(|q| q.id.clone()).unwrap_or_default(),
        queue_name: state.queue.as_ref().map(|q| q.name.clone()).unwrap_or_default(),
        owner: state.owner.clone().unwrap_or_default(),
        participants: state
            .participants
            .iter()
            .map(|p| v1::Participant {
                agent_id: p.agent_id.clone(),
                name: p.name.clone(),
                role: if state.owner.as_deref() == Some(&p.agent_id) {
                    "owner"
                } else {
                    "participant"
                }
                .into(),
            })
            .collect(),
        offer: state.offer.as_ref().map(|o| v1::LiveOffer {
            offer_id: o.offer_id.clone(),
            agent_id: o.agent_id.clone(),
            kind: offer_kind_to_proto(o.kind) as i32,
            queue_id: o.queue.id.clone(),
            queue_name: o.queue.name.clone(),
            offered_at: at(o.offered_at),
            expires_at: at(o.expires_at),
        }),
        window_closes_at: state.window_closes_at().and_then(at),
        queued_since: at(state.queued_since),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_through_the_contract_and_json() {
        let events = vec![
            Event::Started {
                conversation_id: "c1".into(),
                customer: Customer { name: "Maria Lopez".into(), phone: "+15551234567".into() },
                source_number: "15550001111".into(),
                phone_number_id: "pn".into(),
                at: 1,
            },
            Event::Queued {
                queue: QueueRef { id: "q".into(), name: "Q".into() },
                queued_since: 1,
                kind: OfferKind::Transfer,
                at: 2,
            },
            Event::CustomerMessageReceived {
                message: CustomerMessage {
                    message_id: "m".into(),
                    whatsapp_message_id: "wamid.1".into(),
                    kind: MessageKind::Other("image".into()),
                    text: "caption".into(),
                    media_id: "media-1".into(),
                    sent_at: 3,
                    reply_to_whatsapp_id: "wamid.0".into(),
                },
                customer: Customer::default(),
                at: 4,
            },
            Event::OfferMade(Offer {
                offer_id: "o".into(),
                agent_id: "a".into(),
                kind: OfferKind::Conference,
                queue: QueueRef { id: "q".into(), name: "Q".into() },
                offered_at: 5,
                expires_at: 6,
                requested_by: Some("b".into()),
            }),
            Event::OfferAccepted {
                offer_id: "o".into(),
                agent_id: "a".into(),
                agent_name: "A".into(),
                at: 7,
            },
            Event::OfferWithdrawn {
                offer_id: "o".into(),
                agent_id: "a".into(),
                reason: WithdrawReason::Expired,
                at: 8,
            },
            Event::AgentMessageAdded {
                message_id: "x".into(),
                agent_id: "a".into(),
                agent_name: "A".into(),
                text: "hi".into(),
                at: 9,
            },
            Event::MessageStatusChanged {
                message_id: "x".into(),
                status: DeliveryStatus::Failed,
                whatsapp_message_id: "wamid.2".into(),
                failure: Some((131047, "Re-engagement message".into())),
                at: 10,
            },
            Event::TransferRequested {
                from_agent_id: "a".into(),
                to: TransferTo::Agent("b".into()),
                at: 11,
            },
            Event::TransferFailed { to_agent_id: "b".into(), at: 12 },
            Event::ConferenceRequested {
                by_agent_id: "a".into(),
                to: TransferTo::Queue(QueueRef { id: "q".into(), name: "Q".into() }),
                at: 13,
            },
            Event::ConferenceDeclined { agent_id: "b".into(), at: 14 },
            Event::ParticipantLeft {
                agent_id: "b".into(),
                reason: LeaveReason::LeftConference,
                at: 15,
            },
            Event::Ended { by: Actor::Supervisor("s".into()), agent_ids: vec!["a".into()], at: 16 },
        ];
        for event in events {
            let proto = event_to_proto("c1", &event);
            let json = proto.to_json();
            let back = ConversationEvent::from_json(proto.event_type(), &json).unwrap();
            assert_eq!(event_from_proto(&back).unwrap(), event);
        }
    }

    #[test]
    fn b4_5_unknown_message_types_keep_their_name() {
        assert_eq!(
            message_kind_from_proto(v1::MessageType::Unknown as i32, "unsupported:poll"),
            MessageKind::Other("unsupported:poll".into())
        );
        assert_eq!(
            message_kind_to_proto(&MessageKind::Other("unsupported:poll".into())).0,
            v1::MessageType::Unknown
        );
        assert_eq!(
            message_kind_to_proto(&MessageKind::Other("audio".into())).0,
            v1::MessageType::Audio
        );
    }

    #[test]
    fn malformed_events_are_errors_not_panics() {
        let e = ConversationEvent::OfferWithdrawn(v1::OfferWithdrawn {
            reason: 99,
            ..Default::default()
        });
        assert!(event_from_proto(&e).is_err());
        let e = ConversationEvent::OfferAccepted(v1::OfferAccepted::default());
        assert_eq!(event_from_proto(&e).unwrap_err().field, "at");
    }
}
