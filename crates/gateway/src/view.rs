//! The gateway's read models, built from the event log and nothing else.
//!
//! [`View::apply`] is pure and synchronous: it folds one recorded event into
//! agents, queues, wrap-up reasons, pending wrap-ups and conversations (with
//! their transcripts and live offers), remembers which version of each stream
//! it has applied (read-your-writes), and returns the WebSocket [`Frame`]s the
//! change is worth, numbered in `$all` order so a client can resume with
//! `since`. It never decides anything the domain services decide; it mirrors
//! what their events say.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use eventlog::RecordedEvent;
use kernel::Millis;
use sb_proto::v1;
use sb_proto::{AgentPresenceEvent, ConversationEvent, RoutingEvent, Service, WrapUpEvent};
use serde_json::{Value, json};

use crate::dto;

/// B4.6: WhatsApp's customer-service window.
pub const WINDOW_MS: Millis = 24 * 60 * 60 * 1000;
/// Frames kept for `since` replays.
pub const DEFAULT_RING_FRAMES: usize = 4096;
/// Ended conversations kept in memory (oldest dropped first).
pub const MAX_ENDED_CONVERSATIONS: usize = 10_000;
/// Messages kept per transcript (oldest dropped first).
pub const MAX_TRANSCRIPT_MESSAGES: usize = 5_000;
/// Default chat capacity (B1.2), for an agent registered with 0.
const DEFAULT_CAPACITY: u32 = 3;

/// Who may see a frame: the agents named, and every supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audience {
    pub agents: BTreeSet<String>,
}

impl Audience {
    pub fn includes(&self, agent_id: &str, supervisor: bool) -> bool {
        supervisor || self.agents.contains(agent_id)
    }
}

/// One WebSocket frame, already rendered as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Position in the stream of frames, `$all` order, 1-based.
    pub position: u64,
    pub audience: Audience,
    pub text: Arc<str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub registered: bool,
    pub capacity: u32,
    pub skills: Vec<String>,
    pub state: v1::PresenceState,
    pub idle_reason: String,
    pub state_since: Option<Millis>,
    /// `(offer_id, conversation_id)` of each held slot (B1.3).
    pub holdings: Vec<(String, String)>,
}

impl AgentView {
    fn new(id: &str) -> AgentView {
        AgentView {
            id: id.to_owned(),
            name: id.to_owned(),
            registered: false,
            capacity: DEFAULT_CAPACITY,
            skills: Vec::new(),
            state: v1::PresenceState::LoggedOut,
            idle_reason: String::new(),
            state_since: None,
            holdings: Vec::new(),
        }
    }

    pub fn slots_used(&self) -> u32 {
        u32::try_from(self.holdings.len()).unwrap_or(u32::MAX)
    }

    pub fn has_free_slot(&self) -> bool {
        self.slots_used() < self.capacity
    }

    pub fn to_dto(&self) -> dto::Agent {
        dto::Agent {
            id: self.id.clone(),
            name: self.name.clone(),
            state: presence_state(self.state),
            idle_reason: (self.state == v1::PresenceState::Idle).then(|| self.idle_reason.clone()),
            state_since: self.state_since.map(rfc3339),
            slots_used: self.slots_used(),
            capacity: self.capacity,
            skills: self.skills.clone(),
        }
    }

    pub fn presence(&self) -> dto::Presence {
        let a = self.to_dto();
        dto::Presence {
            state: a.state,
            idle_reason: a.idle_reason,
            state_since: a.state_since,
            slots_used: a.slots_used,
            capacity: a.capacity,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueView {
    pub id: String,
    pub name: String,
    pub offer_timeout_secs: u32,
    pub priority: i32,
    pub skills: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReasonView {
    pub label: String,
    pub retired: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WrapupView {
    pub wrapup_id: String,
    pub conversation_id: String,
    pub since: Millis,
    pub auto_at: Option<Millis>,
}

impl WrapupView {
    pub fn to_dto(&self) -> dto::PendingWrapup {
        dto::PendingWrapup {
            conversation_id: self.conversation_id.clone(),
            wrapup_id: self.wrapup_id.clone(),
            since: rfc3339(self.since),
            auto_at: self.auto_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OfferView {
    pub offer_id: String,
    pub agent_id: String,
    pub kind: dto::OfferKind,
    pub queue_id: String,
    pub queue_name: String,
    pub offered_at: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantView {
    pub agent_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConversationView {
    pub id: String,
    pub state: dto::ConversationState,
    pub customer_name: String,
    pub customer_phone: String,
    pub source_number: String,
    pub queue_id: Option<String>,
    pub queue_name: Option<String>,
    pub owner: Option<String>,
    pub participants: Vec<ParticipantView>,
    /// The live offer, if any (at most one at a time).
    pub offer: Option<OfferView>,
    /// Every agent this conversation was ever offered to (a late accept is the
    /// service's `offer_expired`, not our 403).
    pub offered_ever: BTreeSet<String>,
    /// Every agent that ever took part (B8.1: it may still read the
    /// conversation after leaving it, e.g. while writing its wrap-up).
    pub participated_ever: BTreeSet<String>,
    pub messages: Vec<dto::Message>,
    pub last_customer_sent_at: Option<Millis>,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
}

impl ConversationView {
    fn new(id: &str, at: Millis) -> ConversationView {
        ConversationView {
            id: id.to_owned(),
            state: dto::ConversationState::Queued,
            customer_name: String::new(),
            customer_phone: String::new(),
            source_number: String::new(),
            queue_id: None,
            queue_name: None,
            owner: None,
            participants: Vec::new(),
            offer: None,
            offered_ever: BTreeSet::new(),
            participated_ever: BTreeSet::new(),
            messages: Vec::new(),
            last_customer_sent_at: None,
            started_at: at,
            ended_at: None,
        }
    }

    pub fn is_participant(&self, agent_id: &str) -> bool {
        self.participants.iter().any(|p| p.agent_id == agent_id)
    }

    pub fn is_offered_to(&self, agent_id: &str) -> bool {
        self.offer.as_ref().is_some_and(|o| o.agent_id == agent_id)
    }

    /// B8.1 + B3.6: participants (present or former, read-only for the
    /// latter), and the agent holding the live offer.
    pub fn visible_to(&self, agent_id: &str) -> bool {
        self.is_participant(agent_id)
            || self.participated_ever.contains(agent_id)
            || self.is_offered_to(agent_id)
    }

    pub fn window_closes_at(&self) -> Option<Millis> {
        self.last_customer_sent_at.map(|t| t.saturating_add(WINDOW_MS))
    }

    pub fn to_dto(&self, with_messages: bool) -> dto::Conversation {
        dto::Conversation {
            id: self.id.clone(),
            state: self.state,
            customer: dto::Customer {
                name: self.customer_name.clone(),
                phone: self.customer_phone.clone(),
                initials: initials(&self.customer_name),
            },
            source_number: self.source_number.clone(),
            queue_id: self.queue_id.clone(),
            queue_name: self.queue_name.clone(),
            owner: self.owner.clone(),
            participants: self
                .participants
                .iter()
                .map(|p| dto::Participant {
                    agent_id: p.agent_id.clone(),
                    name: p.name.clone(),
                    initials: initials(&p.name),
                    role: if self.owner.as_deref() == Some(p.agent_id.as_str()) {
                        "owner".into()
                    } else {
                        "participant".into()
                    },
                })
                .collect(),
            window_closes_at: self.window_closes_at().map(rfc3339),
            started_at: rfc3339(self.started_at),
            ended_at: self.ended_at.map(rfc3339),
            messages: with_messages.then(|| self.messages.clone()),
        }
    }

    pub fn offer_dto(&self) -> Option<dto::Offer> {
        let o = self.offer.as_ref()?;
        Some(dto::Offer {
            offer_id: o.offer_id.clone(),
            conversation_id: self.id.clone(),
            agent_id: o.agent_id.clone(),
            kind: o.kind,
            customer_name: self.customer_name.clone(),
            customer_phone: self.customer_phone.clone(),
            source_number: self.source_number.clone(),
            queue_id: o.queue_id.clone(),
            queue_name: o.queue_name.clone(),
            offered_at: rfc3339(o.offered_at),
            expires_at: rfc3339(o.expires_at),
        })
    }

    /// Who follows this conversation live: participants and the offered agent.
    fn audience(&self) -> Audience {
        let mut agents: BTreeSet<String> =
            self.participants.iter().map(|p| p.agent_id.clone()).collect();
        if let Some(o) = &self.offer {
            agents.insert(o.agent_id.clone());
        }
        Audience { agents }
    }
}

/// Everything the gateway serves, built from events.
#[derive(Debug)]
pub struct View {
    pub agents: BTreeMap<String, AgentView>,
    pub queues: BTreeMap<String, QueueView>,
    pub entry_points: BTreeMap<String, String>,
    pub reasons: BTreeMap<String, ReasonView>,
    /// Per agent, oldest first.
    pub wrapups: BTreeMap<String, Vec<WrapupView>>,
    pub conversations: HashMap<String, ConversationView>,
    ended: VecDeque<String>,
    /// Last applied event number per stream (read-your-writes).
    pub applied: HashMap<String, u64>,
    /// Events applied so far.
    pub events_applied: u64,
    next_position: u64,
    ring: VecDeque<Frame>,
    ring_capacity: usize,
}

impl Default for View {
    fn default() -> View {
        View::new(DEFAULT_RING_FRAMES)
    }
}

/// What a `since` replay found.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// The frames after `since` the caller may see (possibly none).
    Frames(Vec<Frame>),
    /// `since` is older than the ring (or from another history): re-GET.
    Resync,
}

impl View {
    pub fn new(ring_capacity: usize) -> View {
        View {
            agents: BTreeMap::new(),
            queues: BTreeMap::new(),
            entry_points: BTreeMap::new(),
            reasons: BTreeMap::new(),
            wrapups: BTreeMap::new(),
            conversations: HashMap::new(),
            ended: VecDeque::new(),
            applied: HashMap::new(),
            events_applied: 0,
            next_position: 1,
            ring: VecDeque::new(),
            ring_capacity: ring_capacity.max(1),
        }
    }

    /// Whether `stream` has been applied up to `version` (its last event number).
    pub fn has_applied(&self, stream: &str, version: u64) -> bool {
        self.applied.get(stream).is_some_and(|v| *v >= version)
    }

    /// The position of the newest frame (0: none yet).
    pub fn head_position(&self) -> u64 {
        self.next_position - 1
    }

    /// Frames after `since` that `agent_id` (or a supervisor) may see.
    pub fn replay(&self, since: u64, agent_id: &str, supervisor: bool) -> Replay {
        let oldest = self.ring.front().map_or(self.next_position, |f| f.position);
        if since > self.head_position() || since.saturating_add(1) < oldest {
            return Replay::Resync;
        }
        Replay::Frames(
            self.ring
                .iter()
                .filter(|f| f.position > since && f.audience.includes(agent_id, supervisor))
                .cloned()
                .collect(),
        )
    }

    /// Live offers to `agent_id`.
    pub fn offers_of(&self, agent_id: &str) -> Vec<dto::Offer> {
        let mut offers: Vec<dto::Offer> = self
            .conversations
            .values()
            .filter(|c| c.is_offered_to(agent_id))
            .filter_map(ConversationView::offer_dto)
            .collect();
        offers.sort_by(|a, b| a.offered_at.cmp(&b.offered_at));
        offers
    }

    pub fn conversations_of(&self, agent_id: &str) -> Vec<dto::Conversation> {
        let mut list: Vec<&ConversationView> =
            self.conversations.values().filter(|c| c.is_participant(agent_id)).collect();
        list.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        list.into_iter().map(|c| c.to_dto(false)).collect()
    }

    pub fn waiting_in(&self, queue_id: &str) -> u32 {
        let n = self
            .conversations
            .values()
            .filter(|c| {
                c.state == dto::ConversationState::Queued && c.queue_id.as_deref() == Some(queue_id)
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn queue_dto(&self, q: &QueueView) -> dto::Queue {
        dto::Queue {
            id: q.id.clone(),
            name: q.name.clone(),
            offer_timeout_secs: q.offer_timeout_secs,
            priority: q.priority,
            skills: q.skills.clone(),
            waiting: self.waiting_in(&q.id),
        }
    }

    pub fn pending_wrapups_of(&self, agent_id: &str) -> Vec<dto::PendingWrapup> {
        self.wrapups
            .get(agent_id)
            .map_or_else(Vec::new, |w| w.iter().map(WrapupView::to_dto).collect())
    }

    fn agent_name(&self, agent_id: &str) -> String {
        self.agents.get(agent_id).map_or_else(|| agent_id.to_owned(), |a| a.name.clone())
    }

    /// Folds one recorded event in; returns the frames it produced (also kept
    /// in the ring). Events this view cannot decode are skipped (logged), but
    /// still count as applied so nobody waits for them forever.
    pub fn apply(&mut self, recorded: &RecordedEvent) -> Vec<Frame> {
        let fallback_at =
            i64::try_from(recorded.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let mut out = Out::default();
        match sb_proto::service_of(&recorded.event_type) {
            Some(Service::AgentPresence) => {
                match AgentPresenceEvent::from_json(&recorded.event_type, &recorded.data) {
                    Ok(e) => self.apply_presence(e, fallback_at, &mut out),
                    Err(e) => skip(recorded, &e),
                }
            }
            Some(Service::WrapUp) => {
                match WrapUpEvent::from_json(&recorded.event_type, &recorded.data) {
                    Ok(e) => self.apply_wrapup(e, fallback_at, &mut out),
                    Err(e) => skip(recorded, &e),
                }
            }
            Some(Service::Conversation) => {
                match ConversationEvent::from_json(&recorded.event_type, &recorded.data) {
                    Ok(e) => self.apply_conversation(
                        e,
                        &recorded.event_id.to_string(),
                        fallback_at,
                        &mut out,
                    ),
                    Err(e) => skip(recorded, &e),
                }
            }
            Some(Service::Routing) => {
                match RoutingEvent::from_json(&recorded.event_type, &recorded.data) {
                    Ok(e) => self.apply_routing(e),
                    Err(e) => skip(recorded, &e),
                }
            }
            None => {
                tracing::debug!(stream = %recorded.stream, event_type = %recorded.event_type, "not a catalogue event; ignored")
            }
        }
        let applied = self.applied.entry(recorded.stream.clone()).or_insert(0);
        *applied = (*applied).max(recorded.event_number);
        self.events_applied += 1;
        let mut frames = Vec::with_capacity(out.0.len());
        for (type_, at, audience, mut payload) in out.0 {
            let position = self.next_position;
            self.next_position += 1;
            if let Value::Object(map) = &mut payload {
                map.insert("type".into(), Value::String(type_.into()));
                map.insert("at".into(), Value::String(rfc3339(at)));
                map.insert("position".into(), Value::from(position));
            }
            let frame = Frame { position, audience, text: Arc::from(payload.to_string()) };
            if self.ring.len() == self.ring_capacity {
                self.ring.pop_front();
            }
            self.ring.push_back(frame.clone());
            frames.push(frame);
        }
        frames
    }

    fn apply_presence(&mut self, event: AgentPresenceEvent, fallback_at: Millis, out: &mut Out) {
        use AgentPresenceEvent as E;
        let (agent_id, at) = match &event {
            E::AgentRegistered(e) => (e.agent_id.clone(), millis(e.at.as_ref(), fallback_at)),
            E::AgentProfileUpdated(e) => (e.agent_id.clone(), millis(e.at.as_ref(), fallback_at)),
            E::AgentStateChanged(e) => (e.agent_id.clone(), millis(e.at.as_ref(), fallback_at)),
            E::SlotReserved(e) => (e.agent_id.clone(), millis(e.at.as_ref(), fallback_at)),
            E::SlotReleased(e) => (e.agent_id.clone(), millis(e.at.as_ref(), fallback_at)),
        };
        let agent =
            self.agents.entry(agent_id.clone()).or_insert_with(|| AgentView::new(&agent_id));
        match event {
            E::AgentRegistered(e) => {
                let first = !agent.registered;
                agent.registered = true;
                agent.name = e.name;
                agent.capacity = if e.capacity == 0 { DEFAULT_CAPACITY } else { e.capacity };
                agent.skills = e.skills;
                if first && agent.state_since.is_none() {
                    agent.state = v1::PresenceState::LoggedOut;
                    agent.state_since = Some(at);
                }
            }
            E::AgentProfileUpdated(e) => {
                agent.registered = true;
                agent.name = e.name;
                agent.capacity = if e.capacity == 0 { DEFAULT_CAPACITY } else { e.capacity };
                agent.skills = e.skills;
            }
            E::AgentStateChanged(e) => {
                agent.state =
                    v1::PresenceState::try_from(e.state).unwrap_or(v1::PresenceState::LoggedOut);
                agent.idle_reason = e.idle_reason;
                agent.state_since = Some(at);
            }
            E::SlotReserved(e) => agent.holdings.push((e.offer_id, e.conversation_id)),
            E::SlotReleased(e) => {
                if let Some(i) = agent.holdings.iter().position(|(o, _)| *o == e.offer_id) {
                    agent.holdings.remove(i);
                } else if let Some(i) =
                    agent.holdings.iter().position(|(_, c)| *c == e.conversation_id)
                {
                    agent.holdings.remove(i);
                }
            }
        }
        let dto = agent.to_dto();
        out.push(
            "presence",
            at,
            Audience::of([agent_id.clone()]),
            json!({ "agentId": agent_id, "agent": dto }),
        );
    }

    fn apply_wrapup(&mut self, event: WrapUpEvent, fallback_at: Millis, out: &mut Out) {
        use WrapUpEvent as E;
        match event {
            E::WrapupReasonAdded(e) => {
                self.reasons.insert(e.code, ReasonView { label: e.label, retired: false });
            }
            E::WrapupReasonRenamed(e) => {
                let reason = self
                    .reasons
                    .entry(e.code)
                    .or_insert(ReasonView { label: String::new(), retired: false });
                reason.label = e.label;
            }
            E::WrapupReasonRetired(e) => {
                if let Some(r) = self.reasons.get_mut(&e.code) {
                    r.retired = true;
                }
            }
            E::WrapupOwed(e) => {
                let since = millis(e.since.as_ref(), fallback_at);
                let wrapup = WrapupView {
                    wrapup_id: e.wrapup_id,
                    conversation_id: e.conversation_id,
                    since,
                    auto_at: e.auto_at.as_ref().map(sb_proto::millis_from_timestamp),
                };
                let dto = wrapup.to_dto();
                self.wrapups.entry(e.agent_id.clone()).or_default().push(wrapup);
                out.push(
                    "wrapup_required",
                    since,
                    Audience::of([e.agent_id]),
                    json!({ "wrapup": dto }),
                );
            }
            E::WrapupSubmitted(e) => {
                let at = millis(e.at.as_ref(), fallback_at);
                if let Some(list) = self.wrapups.get_mut(&e.agent_id) {
                    let i = list.iter().position(|w| w.wrapup_id == e.wrapup_id).or_else(|| {
                        list.iter().position(|w| w.conversation_id == e.conversation_id)
                    });
                    if let Some(i) = i {
                        list.remove(i);
                    }
                    if list.is_empty() {
                        self.wrapups.remove(&e.agent_id);
                    }
                }
                out.push(
                    "wrapup_done",
                    at,
                    Audience::of([e.agent_id]),
                    json!({
                        "conversationId": e.conversation_id,
                        "wrapupId": e.wrapup_id,
                        "reason": e.reason_code,
                        "automatic": e.automatic,
                    }),
                );
            }
        }
    }

    fn apply_routing(&mut self, event: RoutingEvent) {
        match event {
            RoutingEvent::QueueDefined(e) => {
                self.queues.insert(
                    e.queue_id.clone(),
                    QueueView {
                        id: e.queue_id,
                        name: e.name,
                        offer_timeout_secs: e.offer_timeout_secs,
                        priority: e.priority,
                        skills: e.skills,
                    },
                );
            }
            RoutingEvent::EntryPointMapped(e) => {
                self.entry_points.insert(e.business_number, e.queue_id);
            }
            // Queue streams mirror what the conversation events already say.
            _ => {}
        }
    }

    fn apply_conversation(
        &mut self,
        event: ConversationEvent,
        event_id: &str,
        fallback_at: Millis,
        out: &mut Out,
    ) {
        use ConversationEvent as E;
        let (conversation_id, at) = conversation_key(&event, fallback_at);
        // Names resolved before the conversation is borrowed mutably.
        let name_of = |view: &View, id: &str| view.agent_name(id);
        let transfer_failed_name = match &event {
            E::TransferFailed(e) => Some(name_of(self, &e.to_agent_id)),
            E::ConferenceDeclined(e) => Some(name_of(self, &e.agent_id)),
            _ => None,
        };
        // The log is replayed from its start, so an unknown conversation is
        // either new or one dropped from memory after it ended: late events
        // for the latter (a delivery status, say) must not bring it back.
        if !self.conversations.contains_key(&conversation_id)
            && !matches!(event, E::ConversationStarted(_))
        {
            return;
        }
        let conv = self
            .conversations
            .entry(conversation_id.clone())
            .or_insert_with(|| ConversationView::new(&conversation_id, at));
        // Agents who stop following the conversation with this event still get its frames.
        let mut leavers: BTreeSet<String> = BTreeSet::new();
        let mut conversation_changed = true;
        let mut message: Option<dto::Message> = None;
        let mut status_frame: Option<Value> = None;
        match event {
            E::ConversationStarted(e) => {
                let customer = e.customer.unwrap_or_default();
                conv.customer_name = customer.name;
                conv.customer_phone = e164(&customer.phone);
                conv.source_number = e.source_number;
                conv.started_at = at;
                conv.state = dto::ConversationState::Queued;
            }
            E::ConversationQueued(e) => {
                conv.queue_id = Some(e.queue_id);
                conv.queue_name = Some(e.queue_name);
                conv.state = dto::ConversationState::Queued;
            }
            E::CustomerMessageReceived(e) => {
                if let Some(customer) = e.customer
                    && !customer.name.is_empty()
                {
                    conv.customer_name = customer.name;
                }
                let sent_at = e.sent_at.as_ref().map(sb_proto::millis_from_timestamp);
                if let Some(sent_at) = sent_at {
                    conv.last_customer_sent_at =
                        Some(conv.last_customer_sent_at.map_or(sent_at, |t| t.max(sent_at)));
                }
                let type_ = message_type(e.r#type, &e.type_name);
                message = Some(dto::Message {
                    id: e.message_id,
                    direction: dto::Direction::Inbound,
                    sender: dto::Sender {
                        kind: dto::SenderKind::Customer,
                        id: None,
                        name: conv.customer_name.clone(),
                        initials: initials(&conv.customer_name),
                    },
                    text: e.text,
                    type_,
                    media_id: (!e.media_id.is_empty()).then_some(e.media_id),
                    at: rfc3339(e.received_at.as_ref().map_or(at, sb_proto::millis_from_timestamp)),
                    status: None,
                    failure: None,
                });
                conversation_changed = false;
            }
            E::OfferMade(e) => {
                let kind = offer_kind(e.kind);
                if kind != dto::OfferKind::Conference {
                    conv.state = dto::ConversationState::Offered;
                }
                conv.offered_ever.insert(e.agent_id.clone());
                conv.offer = Some(OfferView {
                    offer_id: e.offer_id,
                    agent_id: e.agent_id.clone(),
                    kind,
                    queue_id: if e.queue_id.is_empty() {
                        conv.queue_id.clone().unwrap_or_default()
                    } else {
                        e.queue_id
                    },
                    queue_name: if e.queue_name.is_empty() {
                        conv.queue_name.clone().unwrap_or_default()
                    } else {
                        e.queue_name
                    },
                    offered_at: e.offered_at.as_ref().map_or(at, sb_proto::millis_from_timestamp),
                    expires_at: e.expires_at.as_ref().map_or(at, sb_proto::millis_from_timestamp),
                });
                if let Some(offer) = conv.offer_dto() {
                    out.push("offer", at, Audience::of([e.agent_id]), json!({ "offer": offer }));
                }
            }
            E::OfferAccepted(e) => {
                let kind = conv.offer.take().map(|o| o.kind);
                conv.participated_ever.insert(e.agent_id.clone());
                if !conv.is_participant(&e.agent_id) {
                    conv.participants.push(ParticipantView {
                        agent_id: e.agent_id.clone(),
                        name: e.agent_name.clone(),
                    });
                }
                if kind == Some(dto::OfferKind::Conference) {
                    conv.state = dto::ConversationState::Conference;
                    message = Some(system_message(
                        event_id,
                        format!("{} has joined the chat", e.agent_name),
                        at,
                    ));
                } else {
                    conv.owner = Some(e.agent_id.clone());
                    conv.state = dto::ConversationState::Active;
                }
                out.push(
                    "offer_withdrawn",
                    at,
                    Audience::of([e.agent_id.clone()]),
                    json!({ "offerId": e.offer_id, "conversationId": conv.id, "agentId": e.agent_id, "reason": "accepted" }),
                );
            }
            E::OfferWithdrawn(e) => {
                if let Some(offer) = conv.offer.take() {
                    conv.state = match offer.kind {
                        dto::OfferKind::Conference if conv.participants.len() > 1 => {
                            dto::ConversationState::Conference
                        }
                        dto::OfferKind::Conference => dto::ConversationState::Active,
                        _ => dto::ConversationState::Queued,
                    };
                }
                leavers.insert(e.agent_id.clone());
                out.push(
                    "offer_withdrawn",
                    at,
                    Audience::of([e.agent_id.clone()]),
                    json!({
                        "offerId": e.offer_id,
                        "conversationId": conv.id,
                        "agentId": e.agent_id,
                        "reason": withdraw_reason(e.reason),
                    }),
                );
            }
            E::AgentMessageAdded(e) => {
                message = Some(dto::Message {
                    id: e.message_id,
                    direction: dto::Direction::Outbound,
                    sender: dto::Sender {
                        kind: dto::SenderKind::Agent,
                        id: Some(e.agent_id),
                        initials: initials(&e.agent_name),
                        name: e.agent_name,
                    },
                    text: e.text,
                    type_: "text".into(),
                    media_id: None,
                    at: rfc3339(at),
                    status: Some(dto::DeliveryStatus::Pending),
                    failure: None,
                });
                conversation_changed = false;
            }
            E::MessageStatusChanged(e) => {
                let status = delivery_status(e.status);
                let failure = (status == Some(dto::DeliveryStatus::Failed)).then(|| dto::Failure {
                    code: e.failure_code,
                    reason: e.failure_reason.clone(),
                });
                if let Some(m) = conv.messages.iter_mut().rev().find(|m| m.id == e.message_id) {
                    if status.is_some() {
                        m.status = status;
                    }
                    m.failure.clone_from(&failure);
                }
                status_frame = Some(json!({
                    "conversationId": conv.id,
                    "messageId": e.message_id,
                    "status": status,
                    "failure": failure,
                }));
                conversation_changed = false;
            }
            E::TransferRequested(_) => conversation_changed = false,
            E::TransferFailed(_) => {
                let name = transfer_failed_name.unwrap_or_default();
                message = Some(system_message(event_id, format!("Transfer to {name} failed"), at));
            }
            E::ConferenceRequested(_) => conv.state = dto::ConversationState::ConferenceRequested,
            E::ConferenceDeclined(_) => {
                let name = transfer_failed_name.unwrap_or_default();
                conv.state = if conv.participants.len() > 1 {
                    dto::ConversationState::Conference
                } else {
                    dto::ConversationState::Active
                };
                // No agent: a conference asked of a queue that nobody was offered in time.
                let line = if name.is_empty() {
                    "Nobody joined the conference".to_owned()
                } else {
                    format!("{name} did not join the conference")
                };
                message = Some(system_message(event_id, line, at));
            }
            E::ParticipantLeft(e) => {
                let name = conv
                    .participants
                    .iter()
                    .find(|p| p.agent_id == e.agent_id)
                    .map_or_else(|| e.agent_id.clone(), |p| p.name.clone());
                conv.participants.retain(|p| p.agent_id != e.agent_id);
                if conv.owner.as_deref() == Some(e.agent_id.as_str()) {
                    conv.owner = None;
                } else if conv.state == dto::ConversationState::Conference
                    && conv.participants.len() <= 1
                {
                    conv.state = dto::ConversationState::Active;
                }
                let text = match v1::LeaveReason::try_from(e.reason) {
                    Ok(v1::LeaveReason::Transferred) => format!("{name} transferred the chat"),
                    Ok(v1::LeaveReason::Reassigned) => format!("{name} was removed from the chat"),
                    _ => format!("{name} left the chat"),
                };
                message = Some(system_message(event_id, text, at));
                leavers.insert(e.agent_id);
            }
            E::ConversationEnded(e) => {
                leavers.extend(conv.participants.iter().map(|p| p.agent_id.clone()));
                leavers.extend(e.agent_ids);
                if let Some(o) = conv.offer.take() {
                    leavers.insert(o.agent_id);
                }
                conv.participants.clear();
                conv.owner = None;
                conv.state = dto::ConversationState::Ended;
                conv.ended_at = Some(at);
                message = Some(system_message(event_id, "The chat ended".into(), at));
            }
        }
        let mut audience = conv.audience();
        audience.agents.extend(leavers);
        if let Some(m) = message {
            if conv.messages.len() >= MAX_TRANSCRIPT_MESSAGES {
                conv.messages.remove(0);
            }
            conv.messages.push(m.clone());
            out.push(
                "message",
                at,
                audience.clone(),
                json!({
                    "conversationId": conv.id,
                    "message": m,
                    "windowClosesAt": conv.window_closes_at().map(rfc3339),
                }),
            );
        }
        if let Some(payload) = status_frame {
            out.push("message_status", at, audience.clone(), payload);
        }
        if conversation_changed {
            out.push("conversation", at, audience, json!({ "conversation": conv.to_dto(false) }));
        }
        if conv.state == dto::ConversationState::Ended && !self.ended.contains(&conversation_id) {
            self.ended.push_back(conversation_id);
            while self.ended.len() > MAX_ENDED_CONVERSATIONS {
                if let Some(old) = self.ended.pop_front() {
                    self.conversations.remove(&old);
                }
            }
        }
    }
}

/// Frames being collected by one `apply`.
#[derive(Default)]
struct Out(Vec<(&'static str, Millis, Audience, Value)>);

impl Out {
    fn push(&mut self, type_: &'static str, at: Millis, audience: Audience, payload: Value) {
        self.0.push((type_, at, audience, payload));
    }
}

impl Audience {
    fn of<const N: usize>(agents: [String; N]) -> Audience {
        Audience { agents: agents.into_iter().collect() }
    }
}

fn skip(recorded: &RecordedEvent, error: &sb_proto::DecodeError) {
    tracing::warn!(stream = %recorded.stream, number = recorded.event_number, %error, "skipping an undecodable event");
}

fn conversation_key(event: &ConversationEvent, fallback_at: Millis) -> (String, Millis) {
    use ConversationEvent as E;
    let (id, at) = match event {
        E::ConversationStarted(e) => (&e.conversation_id, e.at.as_ref()),
        E::ConversationQueued(e) => (&e.conversation_id, e.at.as_ref()),
        E::CustomerMessageReceived(e) => (&e.conversation_id, e.received_at.as_ref()),
        E::OfferMade(e) => (&e.conversation_id, e.offered_at.as_ref()),
        E::OfferAccepted(e) => (&e.conversation_id, e.at.as_ref()),
        E::OfferWithdrawn(e) => (&e.conversation_id, e.at.as_ref()),
        E::AgentMessageAdded(e) => (&e.conversation_id, e.at.as_ref()),
        E::MessageStatusChanged(e) => (&e.conversation_id, e.at.as_ref()),
        E::TransferRequested(e) => (&e.conversation_id, e.at.as_ref()),
        E::TransferFailed(e) => (&e.conversation_id, e.at.as_ref()),
        E::ConferenceRequested(e) => (&e.conversation_id, e.at.as_ref()),
        E::ConferenceDeclined(e) => (&e.conversation_id, e.at.as_ref()),
        E::ParticipantLeft(e) => (&e.conversation_id, e.at.as_ref()),
        E::ConversationEnded(e) => (&e.conversation_id, e.at.as_ref()),
    };
    (id.clone(), millis(at, fallback_at))
}

fn system_message(event_id: &str, text: String, at: Millis) -> dto::Message {
    dto::Message {
        id: format!("system-{event_id}"),
        direction: dto::Direction::System,
        sender: dto::Sender {
            kind: dto::SenderKind::System,
            id: None,
            name: "Switchboard".into(),
            initials: "SB".into(),
        },
        text,
        type_: "system".into(),
        media_id: None,
        at: rfc3339(at),
        status: None,
        failure: None,
    }
}

fn millis(ts: Option<&sb_proto::Timestamp>, fallback: Millis) -> Millis {
    ts.map_or(fallback, sb_proto::millis_from_timestamp)
}

/// RFC 3339 UTC with milliseconds: `2025-11-24T16:00:00.123Z`.
pub fn rfc3339(ms: Millis) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

/// "Maria Lopez" → "ML"; one word → its first letter; nothing → "?".
pub fn initials(name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    let first = |w: &str| {
        w.chars().next().map(|c| c.to_uppercase().collect::<String>()).unwrap_or_default()
    };
    match words.as_slice() {
        [] => "?".to_owned(),
        [only] => first(only),
        [head, .., last] => format!("{}{}", first(head), first(last)),
    }
}

/// E.164 with a leading `+` (the log keeps it so; bare digits get one).
pub fn e164(phone: &str) -> String {
    if phone.is_empty() || phone.starts_with('+') { phone.to_owned() } else { format!("+{phone}") }
}

pub fn presence_state(state: v1::PresenceState) -> dto::PresenceState {
    match state {
        v1::PresenceState::Idle => dto::PresenceState::Idle,
        v1::PresenceState::Available => dto::PresenceState::Available,
        v1::PresenceState::Rona => dto::PresenceState::Rona,
        v1::PresenceState::LoggedOut | v1::PresenceState::Unspecified => {
            dto::PresenceState::LoggedOut
        }
    }
}

fn offer_kind(kind: i32) -> dto::OfferKind {
    match v1::OfferKind::try_from(kind) {
        Ok(v1::OfferKind::Transfer) => dto::OfferKind::Transfer,
        Ok(v1::OfferKind::Conference) => dto::OfferKind::Conference,
        _ => dto::OfferKind::New,
    }
}

fn withdraw_reason(reason: i32) -> &'static str {
    match v1::WithdrawReason::try_from(reason) {
        Ok(v1::WithdrawReason::Expired) => "expired",
        Ok(v1::WithdrawReason::SessionLost) => "session_lost",
        Ok(v1::WithdrawReason::ConversationEnded) => "conversation_ended",
        _ => "withdrawn",
    }
}

fn delivery_status(status: i32) -> Option<dto::DeliveryStatus> {
    match v1::DeliveryStatus::try_from(status) {
        Ok(v1::DeliveryStatus::Pending) => Some(dto::DeliveryStatus::Pending),
        Ok(v1::DeliveryStatus::Sent) => Some(dto::DeliveryStatus::Sent),
        Ok(v1::DeliveryStatus::Delivered) => Some(dto::DeliveryStatus::Delivered),
        Ok(v1::DeliveryStatus::Read) => Some(dto::DeliveryStatus::Read),
        Ok(v1::DeliveryStatus::Failed) => Some(dto::DeliveryStatus::Failed),
        _ => None,
    }
}

fn message_type(kind: i32, type_name: &str) -> String {
    use v1::MessageType as T;
    let known = match T::try_from(kind) {
        Ok(T::Text) => "text",
        Ok(T::Image) => "image",
        Ok(T::Audio) => "audio",
        Ok(T::Video) => "video",
        Ok(T::Document) => "document",
        Ok(T::Sticker) => "sticker",
        Ok(T::Location) => "location",
        Ok(T::Contacts) => "contacts",
        Ok(T::Reaction) => "reaction",
        Ok(T::Interactive) => "interactive",
        Ok(T::Button) => "button",
        Ok(T::Unknown) | Ok(T::Unspecified) | Err(_) => "",
    };
    if !known.is_empty() {
        known.to_owned()
    } else if !type_name.is_empty() {
        type_name.chars().take(64).collect()
    } else {
        "unknown".to_owned()
    }
}

#[cfg(test)]
mod tests;
