//! The conversation aggregate (stream `conversation-<id>`): pure rules.
//!
//! One conversation is one customer talking to one business number, from the
//! first message with no open conversation (B4.4) to End (B7.1). Its states:
//!
//! ```text
//!            MakeOffer             Accept
//!   Queued ─────────────▶ Offered ────────▶ Active ──RequestConference──▶ ConferenceRequested
//!     ▲  ◀── Expire/Withdraw ──┘             │  ▲                               │  Accept
//!     │                                      │  └──── Leave (last guest) ──── Conference ◀┘
//!     └──── Transfer (to queue or agent) ────┘             End / EndConference │
//!                                                              ▼               ▼
//!                                                                    Ended
//! ```
//!
//! At most one offer is live at a time. Customer messages are accepted in every
//! state but `Ended` and stored once per WhatsApp id (B4.3).
//!
//! Time is `i64` Unix milliseconds and always comes in the command.

use std::collections::{BTreeMap, BTreeSet};

/// B4.2: the longest agent message, in Unicode scalar values.
pub const MAX_MESSAGE_CHARS: usize = 4096;
/// B4.6: WhatsApp's customer-service window after the customer's last message.
pub const WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// No event yet.
    #[default]
    New,
    Queued,
    Offered,
    Active,
    ConferenceRequested,
    Conference,
    Ended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Queued => "queued",
            Status::Offered => "offered",
            Status::Active => "active",
            Status::ConferenceRequested => "conferenceRequested",
            Status::Conference => "conference",
            Status::Ended => "ended",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Customer {
    pub name: String,
    /// E.164 with `+`.
    pub phone: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferKind {
    New,
    Transfer,
    Conference,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithdrawReason {
    /// Not accepted before `expires_at` (B2.2): the agent goes to RONA.
    Expired,
    /// The agent's session was lost (B1.5).
    SessionLost,
    /// The conversation ended while the offer was live.
    ConversationEnded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    Ended,
    Transferred,
    LeftConference,
    ConferenceEnded,
    /// A supervisor moved the conversation to someone else (B1.5).
    Reassigned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryStatus {
    /// Forward-only order (B4.1): `failed` can follow anything but `read`.
    fn may_follow(self, current: DeliveryStatus) -> bool {
        match (current, self) {
            (DeliveryStatus::Failed, _) => false,
            (DeliveryStatus::Read, _) => false,
            (_, DeliveryStatus::Failed) => true,
            (current, next) => next > current,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    /// Any non-text WhatsApp type, kept with its name (B4.5).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerMessage {
    pub message_id: String,
    pub whatsapp_message_id: String,
    pub kind: MessageKind,
    pub text: String,
    pub media_id: String,
    /// WhatsApp's own timestamp of the message.
    pub sent_at: Millis,
    pub reply_to_whatsapp_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub offer_id: String,
    pub agent_id: String,
    pub kind: OfferKind,
    pub queue: QueueRef,
    pub offered_at: Millis,
    pub expires_at: Millis,
    /// The agent who asked for a transfer or conference.
    pub requested_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub agent_id: String,
    pub name: String,
}

/// Where a transfer or conference goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Queue(QueueRef),
    /// The agent's slot was reserved by the service before deciding; the offer
    /// expires at `expires_at` (the current queue's offer timeout, B3.6).
    Agent {
        agent_id: String,
        offer_id: String,
        expires_at: Millis,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Agent(String),
    Supervisor(String),
    System,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // commands live for one decision; boxing buys nothing
pub enum Command {
    /// From the WhatsApp edge. `entry_queue` is the queue the business number
    /// maps to, resolved by the service (used only when this starts the conversation).
    ReceiveCustomerMessage {
        conversation_id: String,
        customer: Customer,
        source_number: String,
        phone_number_id: String,
        entry_queue: QueueRef,
        message: CustomerMessage,
        now: Millis,
    },
    /// From routing: the agent's slot is already reserved under `offer_id`.
    MakeOffer {
        offer_id: String,
        agent_id: String,
        expires_at: Millis,
        now: Millis,
    },
    AcceptOffer {
        agent_id: String,
        agent_name: String,
        now: Millis,
    },
    /// From routing's timer: idempotent, and only at or after the deadline.
    ExpireOffer {
        offer_id: String,
        now: Millis,
    },
    WithdrawOffer {
        offer_id: String,
        reason: WithdrawReason,
        now: Millis,
    },
    /// From routing's timer: a conference asked of a queue at `requested_at`
    /// that no agent has been offered by now is dropped (B6.3).
    ExpireConferenceRequest {
        requested_at: Millis,
        now: Millis,
    },
    SendAgentMessage {
        message_id: String,
        agent_id: String,
        agent_name: String,
        text: String,
        now: Millis,
    },
    RecordStatus {
        message_id: String,
        status: DeliveryStatus,
        whatsapp_message_id: String,
        failure: Option<(i64, String)>,
        now: Millis,
    },
    Transfer {
        agent_id: String,
        to: Target,
        now: Millis,
    },
    /// B1.5: a supervisor moves an active conversation from its owner.
    Reassign {
        supervisor_id: String,
        to: Target,
        now: Millis,
    },
    RequestConference {
        agent_id: String,
        to: Target,
        now: Millis,
    },
    EndConference {
        agent_id: String,
        now: Millis,
    },
    Leave {
        agent_id: String,
        now: Millis,
    },
    End {
        by: Actor,
        now: Millis,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started {
        conversation_id: String,
        customer: Customer,
        source_number: String,
        phone_number_id: String,
        at: Millis,
    },
    Queued {
        queue: QueueRef,
        queued_since: Millis,
        kind: OfferKind,
        at: Millis,
    },
    CustomerMessageReceived {
        message: CustomerMessage,
        customer: Customer,
        at: Millis,
    },
    OfferMade(Offer),
    OfferAccepted {
        offer_id: String,
        agent_id: String,
        agent_name: String,
        at: Millis,
    },
    OfferWithdrawn {
        offer_id: String,
        agent_id: String,
        reason: WithdrawReason,
        at: Millis,
    },
    AgentMessageAdded {
        message_id: String,
        agent_id: String,
        agent_name: String,
        text: String,
        at: Millis,
    },
    MessageStatusChanged {
        message_id: String,
        status: DeliveryStatus,
        whatsapp_message_id: String,
        failure: Option<(i64, String)>,
        at: Millis,
    },
    TransferRequested {
        from_agent_id: String,
        to: TransferTo,
        at: Millis,
    },
    TransferFailed {
        to_agent_id: String,
        at: Millis,
    },
    ConferenceRequested {
        by_agent_id: String,
        to: TransferTo,
        at: Millis,
    },
    ConferenceDeclined {
        agent_id: String,
        at: Millis,
    },
    ParticipantLeft {
        agent_id: String,
        reason: LeaveReason,
        at: Millis,
    },
    Ended {
        by: Actor,
        agent_ids: Vec<String>,
        at: Millis,
    },
}

/// The recorded target of a transfer or conference request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTo {
    Queue(QueueRef),
    Agent(String),
}

/// Why a command was refused. Each has a stable `code` (GATEWAY-API.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("conversation not found")]
    NotFound,
    #[error("the conversation has ended")]
    ConversationEnded,
    #[error("the conversation is {0:?}, which does not allow this")]
    WrongState(Status),
    #[error("there is no live offer for you on this conversation")]
    NotOfferedToYou,
    #[error("the offer expired at its deadline")]
    OfferExpired,
    #[error("the offer was already accepted")]
    AlreadyAccepted,
    #[error("the conversation is already offered to an agent")]
    AlreadyOffered,
    #[error("you are not a participant of this conversation")]
    NotAParticipant,
    #[error("only the conversation's owner may do this")]
    NotOwner,
    #[error("a message may not be blank")]
    MessageBlank,
    #[error("a message may have at most {MAX_MESSAGE_CHARS} characters; this one has {0}")]
    MessageTooLong(usize),
    #[error(
        "WhatsApp's 24-hour window closed at {0} (ms since epoch); free-form messages are refused"
    )]
    WindowClosed(Millis),
    #[error("unknown message")]
    UnknownMessage,
    #[error("cannot transfer or invite yourself")]
    SelfTarget,
    #[error("the agent is already in this conversation")]
    AlreadyParticipant,
    #[error("the owner cannot leave; end the conference or transfer the conversation")]
    OwnerCannotLeave,
    #[error("a deadline has not passed yet")]
    NotYetDue,
}

/// Coarse classes of refusal; the gateway maps them to HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Conflict,
    Rule,
    Forbidden,
}

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound => "conversation_not_found",
            Error::ConversationEnded => "conversation_ended",
            Error::WrongState(_) => "wrong_state",
            Error::NotOfferedToYou => "not_offered_to_you",
            Error::OfferExpired => "offer_expired",
            Error::AlreadyAccepted => "offer_already_accepted",
            Error::AlreadyOffered => "already_offered",
            Error::NotAParticipant => "not_a_participant",
            Error::NotOwner => "not_owner",
            Error::MessageBlank => "message_blank",
            Error::MessageTooLong(_) => "message_too_long",
            Error::WindowClosed(_) => "window_closed",
            Error::UnknownMessage => "unknown_message",
            Error::SelfTarget => "cannot_target_self",
            Error::AlreadyParticipant => "already_participant",
            Error::OwnerCannotLeave => "owner_cannot_leave",
            Error::NotYetDue => "not_yet_due",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound | Error::UnknownMessage => ErrorKind::NotFound,
            Error::NotOfferedToYou | Error::NotAParticipant | Error::NotOwner => {
                ErrorKind::Forbidden
            }
            Error::MessageBlank
            | Error::MessageTooLong(_)
            | Error::WindowClosed(_)
            | Error::SelfTarget => ErrorKind::Rule,
            _ => ErrorKind::Conflict,
        }
    }
}

/// The state of one conversation, rebuilt by folding [`evolve`] over its events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conversation {
    pub id: String,
    pub status: Status,
    pub customer: Customer,
    pub source_number: String,
    pub phone_number_id: String,
    /// The queue it is in or was last in (a failed agent transfer goes back here, B5.4).
    pub queue: Option<QueueRef>,
    /// Its place in that queue (B2.2: kept across RONA and failed transfers).
    pub queued_since: Millis,
    /// Kind of the offer routing will make next from the queue.
    pub queued_kind: Option<OfferKind>,
    /// A conference asked of a queue, waiting for routing.
    pub conference_queue: Option<QueueRef>,
    /// When that conference was asked (names the request for its timer, B6.3).
    pub conference_requested_at: Option<Millis>,
    pub owner: Option<String>,
    /// Every agent in the conversation, owner first.
    pub participants: Vec<Participant>,
    pub offer: Option<Offer>,
    /// Agents whose offer on this conversation ended unanswered (a late accept is `offer_expired`).
    pub missed_offers: BTreeSet<String>,
    pub whatsapp_ids: BTreeSet<String>,
    pub agent_messages: BTreeMap<String, DeliveryStatus>,
    pub last_customer_message_at: Option<Millis>,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
}

impl Conversation {
    /// B4.6: when WhatsApp's window for free-form messages closes.
    pub fn window_closes_at(&self) -> Option<Millis> {
        self.last_customer_message_at.map(|t| t + WINDOW_MS)
    }

    pub fn is_participant(&self, agent_id: &str) -> bool {
        self.participants.iter().any(|p| p.agent_id == agent_id)
    }

    /// Open conversations take customer messages; ended ones don't (a new one starts).
    pub fn is_open(&self) -> bool {
        !matches!(self.status, Status::New | Status::Ended)
    }
}

pub fn decide(state: &Conversation, command: &Command) -> Result<Vec<Event>, Error> {
    use Command as C;
    if state.status == Status::Ended {
        match command {
            // B4.1: a status after End still counts (the message went out before).
            C::RecordStatus { .. } => {}
            // B4.3: a re-delivery after End is the same message, stored once.
            C::ReceiveCustomerMessage { message, .. }
                if state.whatsapp_ids.contains(&message.whatsapp_message_id) =>
            {
                return Ok(vec![]);
            }
            _ => return Err(Error::ConversationEnded),
        }
    }
    if state.status == Status::New && !matches!(command, C::ReceiveCustomerMessage { .. }) {
        return Err(Error::NotFound);
    }
    match command {
        C::ReceiveCustomerMessage {
            conversation_id,
            customer,
            source_number,
            phone_number_id,
            entry_queue,
            message,
            now,
        } => {
            if state.whatsapp_ids.contains(&message.whatsapp_message_id) {
                return Ok(vec![]); // B4.3: stored once
            }
            let mut events = Vec::new();
            if state.status == Status::New {
                events.push(Event::Started {
                    conversation_id: conversation_id.clone(),
                    customer: customer.clone(),
                    source_number: source_number.clone(),
                    phone_number_id: phone_number_id.clone(),
                    at: *now,
                });
                events.push(Event::Queued {
                    queue: entry_queue.clone(),
                    queued_since: *now,
                    kind: OfferKind::New,
                    at: *now,
                });
            }
            events.push(Event::CustomerMessageReceived {
                message: message.clone(),
                customer: customer.clone(),
                at: *now,
            });
            Ok(events)
        }

        C::MakeOffer { offer_id, agent_id, expires_at, now } => {
            if state.offer.is_some() {
                return Err(Error::AlreadyOffered);
            }
            let (kind, queue) = match (state.status, &state.conference_queue) {
                (Status::Queued, _) => (
                    state.queued_kind.unwrap_or(OfferKind::New),
                    state.queue.clone().ok_or(Error::WrongState(state.status))?,
                ),
                (Status::ConferenceRequested, Some(q)) => (OfferKind::Conference, q.clone()),
                (status, _) => return Err(Error::WrongState(status)),
            };
            if state.is_participant(agent_id) {
                return Err(Error::AlreadyParticipant);
            }
            Ok(vec![Event::OfferMade(Offer {
                offer_id: offer_id.clone(),
                agent_id: agent_id.clone(),
                kind,
                queue,
                offered_at: *now,
                expires_at: *expires_at,
                requested_by: None,
            })])
        }

        C::AcceptOffer { agent_id, agent_name, now } => {
            let offer = match &state.offer {
                Some(o) if o.agent_id == *agent_id => o,
                _ if state.is_participant(agent_id) => return Err(Error::AlreadyAccepted),
                _ if state.missed_offers.contains(agent_id) => return Err(Error::OfferExpired),
                _ => return Err(Error::NotOfferedToYou),
            };
            if *now >= offer.expires_at {
                return Err(Error::OfferExpired);
            }
            Ok(vec![Event::OfferAccepted {
                offer_id: offer.offer_id.clone(),
                agent_id: agent_id.clone(),
                agent_name: agent_name.clone(),
                at: *now,
            }])
        }

        C::ExpireOffer { offer_id, now } => {
            let Some(offer) = state.offer.as_ref().filter(|o| o.offer_id == *offer_id) else {
                return Ok(vec![]); // already accepted or withdrawn: the timer fired late
            };
            if *now < offer.expires_at {
                return Err(Error::NotYetDue);
            }
            Ok(withdraw(state, offer, WithdrawReason::Expired, *now))
        }

        C::ExpireConferenceRequest { requested_at, now } => {
            let pending = state.status == Status::ConferenceRequested
                && state.conference_queue.is_some()
                && state.offer.is_none()
                && state.conference_requested_at == Some(*requested_at);
            // Offered meanwhile (its own expiry decides) or already over: nothing to drop.
            Ok(if pending {
                vec![Event::ConferenceDeclined { agent_id: String::new(), at: *now }]
            } else {
                vec![]
            })
        }

        C::WithdrawOffer { offer_id, reason, now } => {
            let Some(offer) = state.offer.as_ref().filter(|o| o.offer_id == *offer_id) else {
                return Ok(vec![]);
            };
            Ok(withdraw(state, offer, *reason, *now))
        }

        C::SendAgentMessage { message_id, agent_id, agent_name, text, now } => {
            if state.agent_messages.contains_key(message_id) {
                return Ok(vec![]); // a retried send with the same id
            }
            if !state.is_participant(agent_id) {
                return Err(Error::NotAParticipant);
            }
            if text.trim().is_empty() {
                return Err(Error::MessageBlank);
            }
            let chars = text.chars().count();
            if chars > MAX_MESSAGE_CHARS {
                return Err(Error::MessageTooLong(chars));
            }
            match state.window_closes_at() {
                Some(closes) if *now < closes => {}
                Some(closes) => return Err(Error::WindowClosed(closes)),
                None => return Err(Error::WindowClosed(state.started_at)),
            }
            Ok(vec![Event::AgentMessageAdded {
                message_id: message_id.clone(),
                agent_id: agent_id.clone(),
                agent_name: agent_name.clone(),
                text: text.clone(),
                at: *now,
            }])
        }

        C::RecordStatus { message_id, status, whatsapp_message_id, failure, now } => {
            let current = state.agent_messages.get(message_id).ok_or(Error::UnknownMessage)?;
            if !status.may_follow(*current) {
                return Ok(vec![]); // statuses move forward only (B4.1)
            }
            Ok(vec![Event::MessageStatusChanged {
                message_id: message_id.clone(),
                status: *status,
                whatsapp_message_id: whatsapp_message_id.clone(),
                failure: failure.clone(),
                at: *now,
            }])
        }

        C::Transfer { agent_id, to, now } => {
            require_owner(state, agent_id)?;
            if state.status != Status::Active {
                return Err(Error::WrongState(state.status));
            }
            let mut events = vec![
                Event::TransferRequested {
                    from_agent_id: agent_id.clone(),
                    to: transfer_to(to),
                    at: *now,
                },
                Event::ParticipantLeft {
                    agent_id: agent_id.clone(),
                    reason: LeaveReason::Transferred,
                    at: *now,
                },
            ];
            match to {
                Target::Queue(queue) => events.push(Event::Queued {
                    queue: queue.clone(),
                    queued_since: *now,
                    kind: OfferKind::Transfer,
                    at: *now,
                }),
                Target::Agent { agent_id: target, offer_id, expires_at } => {
                    if target == agent_id {
                        return Err(Error::SelfTarget);
                    }
                    events.push(Event::OfferMade(Offer {
                        offer_id: offer_id.clone(),
                        agent_id: target.clone(),
                        kind: OfferKind::Transfer,
                        queue: state.queue.clone().ok_or(Error::WrongState(state.status))?,
                        offered_at: *now,
                        expires_at: *expires_at,
                        requested_by: Some(agent_id.clone()),
                    }));
                }
            }
            Ok(events)
        }

        C::Reassign { supervisor_id, to, now } => {
            if state.status != Status::Active {
                return Err(Error::WrongState(state.status));
            }
            let owner = state.owner.clone().ok_or(Error::WrongState(state.status))?;
            let mut events = vec![
                Event::TransferRequested {
                    from_agent_id: owner.clone(),
                    to: transfer_to(to),
                    at: *now,
                },
                Event::ParticipantLeft {
                    agent_id: owner.clone(),
                    reason: LeaveReason::Reassigned,
                    at: *now,
                },
            ];
            match to {
                Target::Queue(queue) => events.push(Event::Queued {
                    queue: queue.clone(),
                    queued_since: state.queued_since,
                    kind: OfferKind::Transfer,
                    at: *now,
                }),
                Target::Agent { agent_id: target, offer_id, expires_at } => {
                    if *target == owner {
                        return Err(Error::SelfTarget);
                    }
                    events.push(Event::OfferMade(Offer {
                        offer_id: offer_id.clone(),
                        agent_id: target.clone(),
                        kind: OfferKind::Transfer,
                        queue: state.queue.clone().ok_or(Error::WrongState(state.status))?,
                        offered_at: *now,
                        expires_at: *expires_at,
                        requested_by: Some(supervisor_id.clone()),
                    }));
                }
            }
            Ok(events)
        }

        C::RequestConference { agent_id, to, now } => {
            require_owner(state, agent_id)?;
            if state.status != Status::Active {
                return Err(Error::WrongState(state.status));
            }
            let mut events = vec![Event::ConferenceRequested {
                by_agent_id: agent_id.clone(),
                to: transfer_to(to),
                at: *now,
            }];
            if let Target::Agent { agent_id: target, offer_id, expires_at } = to {
                if target == agent_id {
                    return Err(Error::SelfTarget);
                }
                if state.is_participant(target) {
                    return Err(Error::AlreadyParticipant);
                }
                events.push(Event::OfferMade(Offer {
                    offer_id: offer_id.clone(),
                    agent_id: target.clone(),
                    kind: OfferKind::Conference,
                    queue: state.queue.clone().ok_or(Error::WrongState(state.status))?,
                    offered_at: *now,
                    expires_at: *expires_at,
                    requested_by: Some(agent_id.clone()),
                }));
            }
            Ok(events)
        }

        C::EndConference { agent_id, now } => {
            require_owner(state, agent_id)?;
            if !matches!(state.status, Status::Conference | Status::ConferenceRequested) {
                return Err(Error::WrongState(state.status));
            }
            Ok(end(state, Actor::Agent(agent_id.clone()), *now))
        }

        C::Leave { agent_id, now } => {
            if !state.is_participant(agent_id) {
                return Err(Error::NotAParticipant);
            }
            if state.owner.as_deref() == Some(agent_id) {
                return Err(Error::OwnerCannotLeave);
            }
            Ok(vec![Event::ParticipantLeft {
                agent_id: agent_id.clone(),
                reason: LeaveReason::LeftConference,
                at: *now,
            }])
        }

        C::End { by, now } => {
            match by {
                Actor::Agent(agent_id) => {
                    require_owner(state, agent_id)?;
                }
                Actor::Supervisor(_) | Actor::System => {}
            }
            Ok(end(state, by.clone(), *now))
        }
    }
}

fn require_owner(state: &Conversation, agent_id: &str) -> Result<(), Error> {
    match &state.owner {
        Some(owner) if owner == agent_id => Ok(()),
        _ if state.is_participant(agent_id) => Err(Error::NotOwner),
        _ => Err(Error::NotAParticipant),
    }
}

fn transfer_to(target: &Target) -> TransferTo {
    match target {
        Target::Queue(q) => TransferTo::Queue(q.clone()),
        Target::Agent { agent_id, .. } => TransferTo::Agent(agent_id.clone()),
    }
}

/// An offer ends unanswered; where the conversation goes depends on its kind:
/// a new or queue-routed offer keeps its queue place (B2.2), an agent transfer
/// goes back to the last queue at its original place (B5.4), a conference
/// invitation is dropped and the owner keeps the chat (B6.3).
fn withdraw(
    state: &Conversation,
    offer: &Offer,
    reason: WithdrawReason,
    now: Millis,
) -> Vec<Event> {
    let mut events = vec![Event::OfferWithdrawn {
        offer_id: offer.offer_id.clone(),
        agent_id: offer.agent_id.clone(),
        reason,
        at: now,
    }];
    match offer.kind {
        OfferKind::Transfer if offer.requested_by.is_some() => {
            events.push(Event::TransferFailed { to_agent_id: offer.agent_id.clone(), at: now });
            if let Some(queue) = &state.queue {
                events.push(Event::Queued {
                    queue: queue.clone(),
                    queued_since: state.queued_since,
                    kind: OfferKind::Transfer,
                    at: now,
                });
            }
        }
        OfferKind::Conference if offer.requested_by.is_some() || state.owner.is_some() => {
            events.push(Event::ConferenceDeclined { agent_id: offer.agent_id.clone(), at: now });
        }
        _ => {}
    }
    events
}

fn end(state: &Conversation, by: Actor, now: Millis) -> Vec<Event> {
    let mut events = Vec::new();
    if let Some(offer) = &state.offer {
        events.push(Event::OfferWithdrawn {
            offer_id: offer.offer_id.clone(),
            agent_id: offer.agent_id.clone(),
            reason: WithdrawReason::ConversationEnded,
            at: now,
        });
    }
    events.push(Event::Ended {
        by,
        agent_ids: state.participants.iter().map(|p| p.agent_id.clone()).collect(),
        at: now,
    });
    events
}

pub fn evolve(mut state: Conversation, event: &Event) -> Conversation {
    match event {
        Event::Started { conversation_id, customer, source_number, phone_number_id, at } => {
            state.id = conversation_id.clone();
            state.customer = customer.clone();
            state.source_number = source_number.clone();
            state.phone_number_id = phone_number_id.clone();
            state.started_at = *at;
            state.status = Status::Queued;
        }
        Event::Queued { queue, queued_since, kind, .. } => {
            state.queue = Some(queue.clone());
            state.queued_since = *queued_since;
            state.queued_kind = Some(*kind);
            state.status = Status::Queued;
        }
        Event::CustomerMessageReceived { message, customer, .. } => {
            state.whatsapp_ids.insert(message.whatsapp_message_id.clone());
            if !customer.name.is_empty() {
                state.customer.name = customer.name.clone();
            }
            let last = state.last_customer_message_at.unwrap_or(i64::MIN);
            state.last_customer_message_at = Some(last.max(message.sent_at));
        }
        Event::OfferMade(offer) => {
            state.missed_offers.remove(&offer.agent_id);
            if offer.kind != OfferKind::Conference {
                state.status = Status::Offered;
            }
            state.offer = Some(offer.clone());
        }
        Event::OfferAccepted { agent_id, agent_name, .. } => {
            let kind = state.offer.take().map(|o| o.kind);
            state
                .participants
                .push(Participant { agent_id: agent_id.clone(), name: agent_name.clone() });
            if kind == Some(OfferKind::Conference) {
                state.status = Status::Conference;
                state.conference_queue = None;
                state.conference_requested_at = None;
            } else {
                state.owner = Some(agent_id.clone());
                state.status = Status::Active;
                state.queued_kind = None;
            }
        }
        Event::OfferWithdrawn { agent_id, .. } => {
            state.missed_offers.insert(agent_id.clone());
            if let Some(offer) = state.offer.take() {
                state.status = match offer.kind {
                    OfferKind::Conference => {
                        if state.participants.len() > 1 {
                            Status::Conference
                        } else {
                            Status::Active
                        }
                    }
                    _ => Status::Queued,
                };
                if offer.kind == OfferKind::Conference {
                    state.conference_queue = None;
                    state.conference_requested_at = None;
                }
            }
        }
        Event::AgentMessageAdded { message_id, .. } => {
            state.agent_messages.insert(message_id.clone(), DeliveryStatus::Pending);
        }
        Event::MessageStatusChanged { message_id, status, .. } => {
            state.agent_messages.insert(message_id.clone(), *status);
        }
        Event::TransferRequested { .. } | Event::TransferFailed { .. } => {}
        Event::ConferenceRequested { to, at, .. } => {
            state.status = Status::ConferenceRequested;
            if let TransferTo::Queue(q) = to {
                state.conference_queue = Some(q.clone());
                state.conference_requested_at = Some(*at);
            }
        }
        Event::ConferenceDeclined { .. } => {
            state.conference_queue = None;
            state.conference_requested_at = None;
            state.status =
                if state.participants.len() > 1 { Status::Conference } else { Status::Active };
        }
        Event::ParticipantLeft { agent_id, .. } => {
            state.participants.retain(|p| p.agent_id != *agent_id);
            if state.owner.as_deref() == Some(agent_id) {
                state.owner = None;
            } else if state.status == Status::Conference && state.participants.len() <= 1 {
                state.status = Status::Active;
            }
        }
        Event::Ended { at, .. } => {
            state.status = Status::Ended;
            state.offer = None;
            state.participants.clear();
            state.owner = None;
            state.ended_at = Some(*at);
        }
    }
    state
}

#[cfg(test)]
mod tests;
