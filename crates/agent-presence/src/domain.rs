//! The agent-presence rules (PRODUCT.md B1, B2.2–B2.3), as pure functions.
//!
//! One aggregate per agent (stream `agent-<agentId>`). [`decide`] looks at the
//! current [`State`] and a [`Command`] and answers with the [`Event`]s to append
//! or a typed [`Error`]; [`evolve`] folds one event into the state. Nothing in
//! this module reads a clock, makes an id or does I/O: time (`now_ms`) and ids
//! come in the command, and a test keeps it that way (`purity_guard`).
//!
//! Slots (B1.3) are a list of [`Holding`]s keyed by offer id, not a set of
//! conversation ids: an agent that left a conversation by transfer and is later
//! invited back holds two slots for it (B7.1), each freed on its own.

use std::collections::VecDeque;
use std::fmt;

/// Chat capacity of an agent registered without one (B1.2).
pub const DEFAULT_CAPACITY: u32 = 3;
/// Largest chat capacity a supervisor may set; anything above is a typo.
pub const MAX_CAPACITY: u32 = 50;
/// Longest agent display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most skills one agent may have.
pub const MAX_SKILLS: usize = 50;
/// Longest skill name, in characters.
pub const MAX_SKILL_CHARS: usize = 64;
/// Longest idle reason code (`break`, `lunch`, `disconnected`, …), in characters.
pub const MAX_IDLE_REASON_CHARS: usize = 64;
/// How many wrap-up ids that freed a slot an agent's state remembers, so a
/// repeated release for the same wrap-up changes nothing.
pub const RELEASED_WRAPUP_MEMORY: usize = 256;
/// The idle reason the gateway uses for a lost session (B1.5).
pub const IDLE_REASON_DISCONNECTED: &str = "disconnected";

macro_rules! id_newtype {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )+};
}

id_newtype!(
    /// An agent id (the JWT `sub`); the aggregate id of stream `agent-<id>`.
    AgentId,
    /// A supervisor id (the JWT `sub` of a supervisor).
    SupervisorId,
    /// A conversation id (a UUID, made by the conversation service).
    ConversationId,
    /// An offer id (made by routing); the key of a slot holding.
    OfferId,
    /// A wrap-up id (made by the wrap-up service); its submission frees a slot.
    WrapupId,
);

/// Who made a change (B1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Agent(AgentId),
    Supervisor(SupervisorId),
    /// A service acting on a rule: RONA by routing, `disconnected` by the gateway.
    System,
}

/// An agent's presence state (B1.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Presence {
    #[default]
    LoggedOut,
    /// Not taking offers, with a reason code such as `break`, `lunch`, `disconnected`.
    Idle(String),
    Available,
    /// Redirection on no answer: an offer expired (B2.2). Left only by an explicit choice.
    Rona,
}

impl Presence {
    /// Stable lowercase name, for logs and messages.
    pub fn name(&self) -> &'static str {
        match self {
            Presence::LoggedOut => "logged_out",
            Presence::Idle(_) => "idle",
            Presence::Available => "available",
            Presence::Rona => "rona",
        }
    }

    pub fn kind(&self) -> PresenceKind {
        match self {
            Presence::LoggedOut => PresenceKind::LoggedOut,
            Presence::Idle(_) => PresenceKind::Idle,
            Presence::Available => PresenceKind::Available,
            Presence::Rona => PresenceKind::Rona,
        }
    }

    pub fn idle_reason(&self) -> Option<&str> {
        match self {
            Presence::Idle(reason) => Some(reason),
            _ => None,
        }
    }
}

/// A presence state without its idle reason (the previous state of a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceKind {
    LoggedOut,
    Idle,
    Available,
    Rona,
}

/// A state an agent or supervisor may choose (B1.1). RONA is not one of them:
/// only [`Command::EnterRona`] enters it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    LoggedOut,
    Idle(String),
    Available,
}

impl Choice {
    fn into_presence(self) -> Presence {
        match self {
            Choice::LoggedOut => Presence::LoggedOut,
            Choice::Idle(reason) => Presence::Idle(reason),
            Choice::Available => Presence::Available,
        }
    }
}

/// Why a slot came back (B1.3, B7.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseCause {
    /// The offer was withdrawn (expired, session lost, conversation ended) or declined.
    OfferWithdrawn,
    /// This wrap-up of the agent for the conversation was submitted.
    WrapupSubmitted(WrapupId),
}

impl ReleaseCause {
    /// The cause without its details: `offer_withdrawn` or `wrapup_submitted`.
    pub fn name(&self) -> &'static str {
        match self {
            ReleaseCause::OfferWithdrawn => "offer_withdrawn",
            ReleaseCause::WrapupSubmitted(_) => "wrapup_submitted",
        }
    }
}

/// Which slot to give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// The holding taken by this offer, because the offer was withdrawn or
    /// declined. Idempotent: releasing an offer that holds nothing changes nothing.
    Offer(OfferId),
    /// The oldest holding for this conversation, because wrap-up `wrapup_id`
    /// for it was submitted (B7.5). Wrap-ups and holdings pair up by count,
    /// oldest first, so an agent that owes two wrap-ups for one conversation
    /// (B7.1) frees one slot per submission. Idempotent per wrap-up id (the
    /// last [`RELEASED_WRAPUP_MEMORY`] are remembered), since the reaction to a
    /// `WrapupSubmitted` event may run twice.
    Wrapup { conversation_id: ConversationId, wrapup_id: WrapupId },
}

/// A registration or profile change (B1.2, `PUT /agents/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    /// `None` means [`DEFAULT_CAPACITY`].
    pub capacity: Option<u32>,
    pub skills: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create the agent (it starts `LoggedOut`) or update its profile.
    /// Supervisors only. Lowering the capacity below the slots in use is
    /// allowed: no new offers until enough slots come back.
    Register { agent_id: AgentId, profile: Profile, by: Actor, now_ms: i64 },
    /// Choose LoggedOut / Idle(reason) / Available, from any state (B1.1). The
    /// system may choose LoggedOut or Idle (lost session, B1.5) but never
    /// Available, and never for an agent in RONA: nothing but a person's choice
    /// takes an agent out of RONA (B2.3). Choosing the current state again
    /// changes nothing.
    ChangeState { to: Choice, by: Actor, now_ms: i64 },
    /// An offer expired (B2.2): routing, as the system, withdraws the offer
    /// and moves an `Available` agent to RONA, in one append. With an
    /// `offer_id`, its slot is released too, and an offer that holds no slot
    /// (already withdrawn) makes the command a no-op, so a repeat never sends
    /// an agent that chose Available again back to RONA. Routing should send
    /// this *instead of* a `ReleaseSlot` for an expired offer. Without an
    /// offer id (`ChangeAgentState` RONA by the system) only the state
    /// changes. An agent that is not `Available` (already RONA, Idle, logged
    /// out) keeps its state: it chose it after the offer went out.
    EnterRona { offer_id: Option<OfferId>, now_ms: i64 },
    /// Routing takes a slot for an offer (B1.2, B3.3). Only while `Available`
    /// with a free slot. Idempotent for the same offer id.
    ReserveSlot { conversation_id: ConversationId, offer_id: OfferId, now_ms: i64 },
    /// Give a slot back (B1.3).
    ReleaseSlot { release: Release, now_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AgentRegistered {
        agent_id: AgentId,
        name: String,
        capacity: u32,
        skills: Vec<String>,
        by: Actor,
        at_ms: i64,
    },
    AgentProfileUpdated {
        agent_id: AgentId,
        name: String,
        capacity: u32,
        skills: Vec<String>,
        by: Actor,
        at_ms: i64,
    },
    StateChanged {
        agent_id: AgentId,
        from: PresenceKind,
        to: Presence,
        by: Actor,
        at_ms: i64,
    },
    SlotReserved {
        agent_id: AgentId,
        conversation_id: ConversationId,
        offer_id: OfferId,
        at_ms: i64,
    },
    SlotReleased {
        agent_id: AgentId,
        conversation_id: ConversationId,
        offer_id: OfferId,
        cause: ReleaseCause,
        at_ms: i64,
    },
}

impl Event {
    /// The agent whose stream (`agent-<id>`) the event belongs to.
    pub fn agent_id(&self) -> &AgentId {
        match self {
            Event::AgentRegistered { agent_id, .. }
            | Event::AgentProfileUpdated { agent_id, .. }
            | Event::StateChanged { agent_id, .. }
            | Event::SlotReserved { agent_id, .. }
            | Event::SlotReleased { agent_id, .. } => agent_id,
        }
    }

    /// The event type name (the proto message name).
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::AgentRegistered { .. } => "AgentRegistered",
            Event::AgentProfileUpdated { .. } => "AgentProfileUpdated",
            Event::StateChanged { .. } => "AgentStateChanged",
            Event::SlotReserved { .. } => "SlotReserved",
            Event::SlotReleased { .. } => "SlotReleased",
        }
    }
}

/// How a refusal maps onto the API (proto `ErrorKind`, HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request (400).
    Invalid,
    /// The referenced thing does not exist (404).
    NotFound,
    /// Conflicts with the current state (409).
    Conflict,
    /// Well-formed but breaks a rule (422).
    Rule,
    /// The actor may not do this (403).
    Forbidden,
}

/// A domain refusal. A refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no agent with this id is registered")]
    UnknownAgent,
    #[error("capacity must be between 1 and {MAX_CAPACITY}, got {0}")]
    InvalidCapacity(u32),
    #[error("agent name must be 1 to {MAX_NAME_CHARS} characters and not blank")]
    InvalidName,
    #[error(
        "skills must be at most {MAX_SKILLS} names of 1 to {MAX_SKILL_CHARS} characters, not blank"
    )]
    InvalidSkill,
    #[error("choosing Idle needs a reason code such as `break` or `lunch`")]
    IdleReasonRequired,
    #[error("idle reason must be at most {MAX_IDLE_REASON_CHARS} characters")]
    InvalidIdleReason,
    #[error("only supervisors register agents or change their profile")]
    SupervisorOnly,
    #[error("an agent may change only its own state")]
    NotYourAgent,
    #[error("only the agent or a supervisor makes an agent Available (B1.1)")]
    SystemCannotMakeAvailable,
    #[error("only the agent or a supervisor takes an agent out of RONA (B2.3)")]
    RonaLeftOnlyByChoice,
    #[error("the agent is {0}, not available: it takes no offers")]
    AgentNotAvailable(&'static str),
    #[error("the agent has no free chat slot ({used} of {capacity} in use)")]
    NoFreeSlot { used: u32, capacity: u32 },
    #[error("offer {0} already holds a slot for another conversation")]
    OfferIdReused(OfferId),
}

impl Error {
    /// Stable snake_case code (GATEWAY-API.md errors).
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownAgent => "unknown_agent",
            Error::InvalidCapacity(_) => "invalid_capacity",
            Error::InvalidName => "invalid_name",
            Error::InvalidSkill => "invalid_skill",
            Error::IdleReasonRequired => "idle_reason_required",
            Error::InvalidIdleReason => "invalid_idle_reason",
            Error::SupervisorOnly => "supervisor_only",
            Error::NotYourAgent => "not_your_agent",
            Error::SystemCannotMakeAvailable => "system_cannot_make_available",
            Error::RonaLeftOnlyByChoice => "rona_left_only_by_choice",
            Error::AgentNotAvailable(_) => "agent_not_available",
            Error::NoFreeSlot { .. } => "no_free_slot",
            Error::OfferIdReused(_) => "offer_id_reused",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidCapacity(_)
            | Error::InvalidName
            | Error::InvalidSkill
            | Error::IdleReasonRequired
            | Error::InvalidIdleReason => ErrorKind::Invalid,
            Error::UnknownAgent => ErrorKind::NotFound,
            Error::AgentNotAvailable(_) | Error::NoFreeSlot { .. } | Error::OfferIdReused(_) => {
                ErrorKind::Conflict
            }
            Error::SystemCannotMakeAvailable | Error::RonaLeftOnlyByChoice => ErrorKind::Rule,
            Error::SupervisorOnly | Error::NotYourAgent => ErrorKind::Forbidden,
        }
    }
}

/// One slot in use: taken by an offer, kept through the conversation and its
/// wrap-up (B1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub offer_id: OfferId,
    pub conversation_id: ConversationId,
    pub reserved_at_ms: i64,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    pub name: String,
    pub capacity: u32,
    pub skills: Vec<String>,
    pub presence: Presence,
    /// When `presence` last changed (B1.4 time in state).
    pub state_since_ms: i64,
    /// Who made the last state change (B1.4); the registering supervisor at first.
    pub changed_by: Actor,
    /// Slots in use, oldest first.
    pub holdings: Vec<Holding>,
    /// Since when the agent has been free of new offers, for longest-idle
    /// routing (B3.2): the last time it became Available, or an offer to it was
    /// made or ended (slot reserved or released), whichever is latest.
    pub idle_since_ms: i64,
    /// Wrap-ups whose submission freed a slot, most recent last (at most
    /// [`RELEASED_WRAPUP_MEMORY`]).
    pub released_wrapups: VecDeque<WrapupId>,
}

impl Agent {
    pub fn slots_used(&self) -> u32 {
        u32::try_from(self.holdings.len()).unwrap_or(u32::MAX)
    }

    pub fn has_free_slot(&self) -> bool {
        self.slots_used() < self.capacity
    }

    /// May routing offer this agent a conversation now (B1.2)?
    pub fn is_routable(&self) -> bool {
        self.presence == Presence::Available && self.has_free_slot()
    }

    /// Conversation ids holding a slot, oldest first; a conversation appears
    /// once per holding.
    pub fn slot_conversation_ids(&self) -> impl Iterator<Item = &ConversationId> {
        self.holdings.iter().map(|h| &h.conversation_id)
    }

    pub fn holding(&self, offer_id: &OfferId) -> Option<&Holding> {
        self.holdings.iter().find(|h| &h.offer_id == offer_id)
    }

    /// Whether the agent belongs in a listing (`ListAgents`, B1.4, B5.1):
    /// `search` is a case-insensitive substring of the name (blank matches
    /// all); `available_only` keeps agents that are Available with a free slot
    /// (the transfer directory).
    pub fn listed(&self, available_only: bool, search: &str) -> bool {
        let needle = search.trim().to_lowercase();
        (!available_only || self.is_routable())
            && (needle.is_empty() || self.name.to_lowercase().contains(&needle))
    }
}

/// The state of one agent aggregate: nothing until it is registered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    pub agent: Option<Agent>,
}

impl State {
    pub fn agent(&self) -> Option<&Agent> {
        self.agent.as_ref()
    }

    pub fn slots_used(&self) -> u32 {
        self.agent.as_ref().map_or(0, Agent::slots_used)
    }

    pub fn has_free_slot(&self) -> bool {
        self.agent.as_ref().is_some_and(Agent::has_free_slot)
    }

    pub fn is_routable(&self) -> bool {
        self.agent.as_ref().is_some_and(Agent::is_routable)
    }
}

/// Decide what a command does to an agent.
pub fn decide(state: &State, command: &Command) -> Result<Vec<Event>, Error> {
    match command {
        Command::Register { agent_id, profile, by, now_ms } => {
            if !matches!(by, Actor::Supervisor(_)) {
                return Err(Error::SupervisorOnly);
            }
            let (name, capacity, skills) = validate_profile(profile)?;
            Ok(match &state.agent {
                None => vec![Event::AgentRegistered {
                    agent_id: agent_id.clone(),
                    name,
                    capacity,
                    skills,
                    by: by.clone(),
                    at_ms: *now_ms,
                }],
                Some(agent)
                    if agent.name == name
                        && agent.capacity == capacity
                        && agent.skills == skills =>
                {
                    vec![]
                }
                Some(agent) => vec![Event::AgentProfileUpdated {
                    agent_id: agent.id.clone(),
                    name,
                    capacity,
                    skills,
                    by: by.clone(),
                    at_ms: *now_ms,
                }],
            })
        }
        Command::ChangeState { to, by, now_ms } => {
            let agent = state.agent.as_ref().ok_or(Error::UnknownAgent)?;
            match by {
                Actor::Agent(id) if id != &agent.id => return Err(Error::NotYourAgent),
                Actor::System if *to == Choice::Available => {
                    return Err(Error::SystemCannotMakeAvailable);
                }
                Actor::System if agent.presence == Presence::Rona => {
                    return Err(Error::RonaLeftOnlyByChoice);
                }
                _ => {}
            }
            let to = match to {
                Choice::Idle(reason) => Choice::Idle(validate_idle_reason(reason)?),
                other => other.clone(),
            }
            .into_presence();
            if to == agent.presence {
                return Ok(vec![]);
            }
            Ok(vec![Event::StateChanged {
                agent_id: agent.id.clone(),
                from: agent.presence.kind(),
                to,
                by: by.clone(),
                at_ms: *now_ms,
            }])
        }
        Command::EnterRona { offer_id, now_ms } => {
            let agent = state.agent.as_ref().ok_or(Error::UnknownAgent)?;
            let mut events = Vec::new();
            if let Some(offer_id) = offer_id {
                let Some(holding) = agent.holding(offer_id) else {
                    // Already withdrawn: a repeat of this command changes nothing
                    // (the agent may have chosen Available again since).
                    return Ok(events);
                };
                events.push(Event::SlotReleased {
                    agent_id: agent.id.clone(),
                    conversation_id: holding.conversation_id.clone(),
                    offer_id: holding.offer_id.clone(),
                    cause: ReleaseCause::OfferWithdrawn,
                    at_ms: *now_ms,
                });
            }
            if agent.presence == Presence::Available {
                events.push(Event::StateChanged {
                    agent_id: agent.id.clone(),
                    from: PresenceKind::Available,
                    to: Presence::Rona,
                    by: Actor::System,
                    at_ms: *now_ms,
                });
            }
            Ok(events)
        }
        Command::ReserveSlot { conversation_id, offer_id, now_ms } => {
            let agent = state.agent.as_ref().ok_or(Error::UnknownAgent)?;
            if let Some(held) = agent.holding(offer_id) {
                return if &held.conversation_id == conversation_id {
                    Ok(vec![])
                } else {
                    Err(Error::OfferIdReused(offer_id.clone()))
                };
            }
            if agent.presence != Presence::Available {
                return Err(Error::AgentNotAvailable(agent.presence.name()));
            }
            if !agent.has_free_slot() {
                return Err(Error::NoFreeSlot {
                    used: agent.slots_used(),
                    capacity: agent.capacity,
                });
            }
            Ok(vec![Event::SlotReserved {
                agent_id: agent.id.clone(),
                conversation_id: conversation_id.clone(),
                offer_id: offer_id.clone(),
                at_ms: *now_ms,
            }])
        }
        Command::ReleaseSlot { release, now_ms } => {
            let agent = state.agent.as_ref().ok_or(Error::UnknownAgent)?;
            let (holding, cause) = match release {
                Release::Offer(offer_id) => (agent.holding(offer_id), ReleaseCause::OfferWithdrawn),
                Release::Wrapup { wrapup_id, .. } if agent.released_wrapups.contains(wrapup_id) => {
                    return Ok(vec![]);
                }
                Release::Wrapup { conversation_id, wrapup_id } => (
                    agent.holdings.iter().find(|h| &h.conversation_id == conversation_id),
                    ReleaseCause::WrapupSubmitted(wrapup_id.clone()),
                ),
            };
            Ok(holding
                .map(|h| Event::SlotReleased {
                    agent_id: agent.id.clone(),
                    conversation_id: h.conversation_id.clone(),
                    offer_id: h.offer_id.clone(),
                    cause,
                    at_ms: *now_ms,
                })
                .into_iter()
                .collect())
        }
    }
}

/// Fold one event into the state. Events come from the log: they were valid
/// when decided, so `evolve` never refuses; an event that cannot apply (a slot
/// event before registration, another agent's event) is ignored rather than
/// invented into state.
pub fn evolve(mut state: State, event: &Event) -> State {
    if let Event::AgentRegistered { agent_id, name, capacity, skills, by, at_ms } = event {
        state.agent = Some(Agent {
            id: agent_id.clone(),
            name: name.clone(),
            capacity: *capacity,
            skills: skills.clone(),
            presence: Presence::LoggedOut,
            state_since_ms: *at_ms,
            changed_by: by.clone(),
            holdings: Vec::new(),
            idle_since_ms: *at_ms,
            released_wrapups: VecDeque::new(),
        });
        return state;
    }
    let Some(agent) = state.agent.as_mut() else {
        return state;
    };
    if event.agent_id() != &agent.id {
        return state; // another agent's event in this stream: a bug upstream, not state
    }
    match event {
        Event::AgentRegistered { .. } => {}
        Event::AgentProfileUpdated { name, capacity, skills, .. } => {
            agent.name.clone_from(name);
            agent.capacity = *capacity;
            agent.skills.clone_from(skills);
        }
        Event::StateChanged { to, by, at_ms, .. } => {
            if *to == Presence::Available && agent.presence != Presence::Available {
                agent.idle_since_ms = *at_ms;
            }
            agent.presence = to.clone();
            agent.state_since_ms = *at_ms;
            agent.changed_by = by.clone();
        }
        Event::SlotReserved { conversation_id, offer_id, at_ms, .. } => {
            agent.holdings.push(Holding {
                offer_id: offer_id.clone(),
                conversation_id: conversation_id.clone(),
                reserved_at_ms: *at_ms,
            });
            agent.idle_since_ms = *at_ms;
        }
        Event::SlotReleased { offer_id, cause, at_ms, .. } => {
            if let Some(i) = agent.holdings.iter().position(|h| &h.offer_id == offer_id) {
                agent.holdings.remove(i);
                if let ReleaseCause::WrapupSubmitted(wrapup_id) = cause {
                    if agent.released_wrapups.len() == RELEASED_WRAPUP_MEMORY {
                        agent.released_wrapups.pop_front();
                    }
                    agent.released_wrapups.push_back(wrapup_id.clone());
                }
                agent.idle_since_ms = *at_ms;
            }
        }
    }
    state
}

/// Rebuild a state from its whole stream.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> State {
    events.into_iter().fold(State::default(), evolve)
}

fn validate_profile(profile: &Profile) -> Result<(String, u32, Vec<String>), Error> {
    let name = profile.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::InvalidName);
    }
    let capacity = profile.capacity.unwrap_or(DEFAULT_CAPACITY);
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(Error::InvalidCapacity(capacity));
    }
    if profile.skills.len() > MAX_SKILLS {
        return Err(Error::InvalidSkill);
    }
    // Skills are a set: trimmed, sorted, without duplicates, so equal
    // profiles compare equal and re-registering is a no-op.
    let mut skills = Vec::with_capacity(profile.skills.len());
    for skill in &profile.skills {
        let skill = skill.trim();
        if skill.is_empty() || skill.chars().count() > MAX_SKILL_CHARS {
            return Err(Error::InvalidSkill);
        }
        skills.push(skill.to_owned());
    }
    skills.sort_unstable();
    skills.dedup();
    Ok((name.to_owned(), capacity, skills))
}

fn validate_idle_reason(reason: &str) -> Result<String, Error> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::IdleReasonRequired);
    }
    if reason.chars().count() > MAX_IDLE_REASON_CHARS {
        return Err(Error::InvalidIdleReason);
    }
    Ok(reason.to_owned())
}
