//! B9.4 live statistics: a reporting projection folded from events only.
//!
//! Pure and synchronous (no I/O, no clock): [`Stats::apply`] folds one
//! recorded event; [`Stats::queues`] and [`Stats::agents`] compute the figures
//! for an interval `[from, to)` and a `now` given by the caller. Restarted, the
//! gateway replays the log through the same fold, so it rebuilds the same
//! figures.
//!
//! Joins are on the conversation id only: a RONA is an `OfferWithdrawn(EXPIRED)`
//! (the presence change names no conversation), attributed to the queue the
//! conversation was in; an acceptance's queue is the conversation's queue at
//! that moment (`OfferAccepted` names no kind nor queue).

use std::collections::{BTreeMap, HashMap};

use eventlog::RecordedEvent;
use kernel::Millis;
use sb_proto::v1;
use sb_proto::{AgentPresenceEvent, ConversationEvent, Service, WrapUpEvent};
use serde::Serialize;
use utoipa::ToSchema;

/// Facts kept for interval queries, oldest dropped first.
pub const MAX_FACTS: usize = 1_000_000;

/// What happened, when, in which queue, by which agent.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Offered,
    /// Speed of answer only for an answer out of the queue (not a transfer or conference join).
    Accepted {
        speed_ms: Option<Millis>,
    },
    Rona,
    Handled {
        ms: Millis,
    },
    Wrapup {
        ms: Option<Millis>,
        reason: String,
    },
    Transfer,
    Conference,
}

#[derive(Debug, Clone, PartialEq)]
struct Fact {
    at: Millis,
    queue: String,
    agent: String,
    kind: Kind,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Conv {
    queue: String,
    queued_since: Option<Millis>,
    waiting: bool,
    /// Agents in it and since when.
    joined: HashMap<String, Millis>,
    /// Live offers: offer id → agent.
    offers: HashMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct AgentLive {
    state: Option<v1::PresenceState>,
    since: Millis,
    slots: u32,
}

/// The projection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    conversations: HashMap<String, Conv>,
    agents: BTreeMap<String, AgentLive>,
    /// wrapup id → (since, conversation).
    owed: HashMap<String, (Millis, String)>,
    facts: std::collections::VecDeque<Fact>,
    /// Ended conversations, oldest first; beyond [`crate::view::MAX_ENDED_CONVERSATIONS`]
    /// the oldest is forgotten (its facts stay).
    ended: std::collections::VecDeque<String>,
}

/// Figures for one queue (GATEWAY-API.md `GET /api/v1/stats/queues`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    pub queue_id: String,
    pub waiting: u32,
    pub longest_wait_secs: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Figures for one agent (`GET /api/v1/stats/agents`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStats {
    pub agent_id: String,
    pub state: Option<crate::dto::PresenceState>,
    pub time_in_state_secs: u64,
    pub slots_used: u32,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Counts and averages over an interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub offered: u64,
    pub accepted: u64,
    pub rona: u64,
    pub avg_speed_of_answer_secs: Option<f64>,
    pub avg_handle_secs: Option<f64>,
    pub avg_wrapup_secs: Option<f64>,
    pub transfers: u64,
    pub conferences: u64,
    /// Reason code → submitted wrap-ups.
    pub wrapup_reasons: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Acc {
    f: Figures,
    speed: (i64, u64),
    handle: (i64, u64),
    wrapup: (i64, u64),
}

impl Acc {
    fn add(&mut self, fact: &Fact) {
        match &fact.kind {
            Kind::Offered => self.f.offered += 1,
            Kind::Accepted { speed_ms } => {
                self.f.accepted += 1;
                if let Some(ms) = speed_ms {
                    self.speed.0 += ms;
                    self.speed.1 += 1;
                }
            }
            Kind::Rona => self.f.rona += 1,
            Kind::Handled { ms } => {
                self.handle.0 += ms;
                self.handle.1 += 1;
            }
            Kind::Wrapup { ms, reason } => {
                *self.f.wrapup_reasons.entry(reason.clone()).or_insert(0) += 1;
                if let Some(ms) = ms {
                    self.wrapup.0 += ms;
                    self.wrapup.1 += 1;
                }
            }
            Kind::Transfer => self.f.transfers += 1,
            Kind::Conference => self.f.conferences += 1,
        }
    }

    fn done(mut self) -> Figures {
        let avg = |(sum, n): (i64, u64)| (n > 0).then(|| (sum as f64 / n as f64).round() / 1000.0);
        self.f.avg_speed_of_answer_secs = avg(self.speed);
        self.f.avg_handle_secs = avg(self.handle);
        self.f.avg_wrapup_secs = avg(self.wrapup);
        self.f
    }
}

fn ts(t: Option<&sb_proto::Timestamp>, fallback: Millis) -> Millis {
    t.map_or(fallback, sb_proto::millis_from_timestamp)
}

impl Stats {
    /// Folds one recorded event in; undecodable or foreign events are ignored.
    pub fn apply(&mut self, recorded: &RecordedEvent) {
        let fallback =
            i64::try_from(recorded.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        match sb_proto::service_of(&recorded.event_type) {
            Some(Service::AgentPresence) => {
                if let Ok(e) = AgentPresenceEvent::from_json(&recorded.event_type, &recorded.data) {
                    self.apply_presence(e, fallback);
                }
            }
            Some(Service::WrapUp) => {
                if let Ok(e) = WrapUpEvent::from_json(&recorded.event_type, &recorded.data) {
                    self.apply_wrapup(e, fallback);
                }
            }
            Some(Service::Conversation) => {
                if let Ok(e) = ConversationEvent::from_json(&recorded.event_type, &recorded.data) {
                    self.apply_conversation(e, fallback);
                }
            }
            _ => {}
        }
    }

    /// The queue a conversation is in or was last in (empty when unknown).
    fn queue_of(&self, conversation_id: &str) -> String {
        self.conversations.get(conversation_id).map(|c| c.queue.clone()).unwrap_or_default()
    }

    fn push(&mut self, at: Millis, queue: &str, agent: &str, kind: Kind) {
        if self.facts.len() == MAX_FACTS {
            self.facts.pop_front();
        }
        self.facts.push_back(Fact { at, queue: queue.to_owned(), agent: agent.to_owned(), kind });
    }

    fn apply_presence(&mut self, event: AgentPresenceEvent, fallback: Millis) {
        use AgentPresenceEvent as E;
        match event {
            E::AgentRegistered(e) => {
                let a = self.agents.entry(e.agent_id).or_default();
                a.state = Some(v1::PresenceState::LoggedOut);
                a.since = ts(e.at.as_ref(), fallback);
            }
            E::AgentStateChanged(e) => {
                let a = self.agents.entry(e.agent_id).or_default();
                a.state = v1::PresenceState::try_from(e.state).ok();
                a.since = ts(e.at.as_ref(), fallback);
            }
            E::SlotReserved(e) => self.agents.entry(e.agent_id).or_default().slots += 1,
            E::SlotReleased(e) => {
                let a = self.agents.entry(e.agent_id).or_default();
                a.slots = a.slots.saturating_sub(1);
            }
            E::AgentProfileUpdated(_) => {}
        }
    }

    fn apply_wrapup(&mut self, event: WrapUpEvent, fallback: Millis) {
        use WrapUpEvent as E;
        match event {
            E::WrapupOwed(e) => {
                self.owed.insert(e.wrapup_id, (ts(e.since.as_ref(), fallback), e.conversation_id));
            }
            E::WrapupSubmitted(e) => {
                let at = ts(e.at.as_ref(), fallback);
                let owed = self.owed.remove(&e.wrapup_id);
                let queue = self.queue_of(&e.conversation_id);
                let ms = owed.map(|(since, _)| at - since);
                self.push(at, &queue, &e.agent_id, Kind::Wrapup { ms, reason: e.reason_code });
            }
            _ => {}
        }
    }

    fn apply_conversation(&mut self, event: ConversationEvent, fallback: Millis) {
        use ConversationEvent as E;
        match event {
            E::ConversationStarted(e) => {
                self.conversations.insert(e.conversation_id, Conv::default());
            }
            E::ConversationQueued(e) => {
                let at = ts(e.at.as_ref(), fallback);
                let c = self.conversations.entry(e.conversation_id).or_default();
                c.queue = e.queue_id;
                c.queued_since = Some(ts(e.queued_since.as_ref(), at));
                c.waiting = true;
            }
            E::OfferMade(e) => {
                let at = ts(e.offered_at.as_ref(), fallback);
                let c = self.conversations.entry(e.conversation_id).or_default();
                c.offers.insert(e.offer_id, e.agent_id.clone());
                let queue = if e.queue_id.is_empty() { c.queue.clone() } else { e.queue_id };
                self.push(at, &queue, &e.agent_id, Kind::Offered);
            }
            E::OfferAccepted(e) => {
                let at = ts(e.at.as_ref(), fallback);
                let c = self.conversations.entry(e.conversation_id).or_default();
                c.offers.remove(&e.offer_id);
                c.joined.insert(e.agent_id.clone(), at);
                let queue = c.queue.clone();
                let was_waiting = std::mem::replace(&mut c.waiting, false);
                // Only an answer out of the queue counts for speed of answer; a
                // transfer or conference join is still an acceptance.
                let speed_ms = c.queued_since.filter(|_| was_waiting).map(|q| at - q);
                self.push(at, &queue, &e.agent_id, Kind::Accepted { speed_ms });
            }
            E::OfferWithdrawn(e) => {
                let at = ts(e.at.as_ref(), fallback);
                let c = self.conversations.entry(e.conversation_id).or_default();
                c.offers.remove(&e.offer_id);
                let queue = c.queue.clone();
                if e.reason == v1::WithdrawReason::Expired as i32 {
                    self.push(at, &queue, &e.agent_id, Kind::Rona);
                }
            }
            E::TransferRequested(e) => {
                let at = ts(e.at.as_ref(), fallback);
                let queue = self.queue_of(&e.conversation_id);
                self.push(at, &queue, &e.from_agent_id, Kind::Transfer);
            }
            E::ConferenceRequested(e) => {
                let at = ts(e.at.as_ref(), fallback);
                let queue = self.queue_of(&e.conversation_id);
                self.push(at, &queue, &e.by_agent_id, Kind::Conference);
            }
            E::ParticipantLeft(e) => {
                let at = ts(e.at.as_ref(), fallback);
                let Some(c) = self.conversations.get_mut(&e.conversation_id) else { return };
                if let Some(since) = c.joined.remove(&e.agent_id) {
                    let queue = c.queue.clone();
                    self.push(at, &queue, &e.agent_id, Kind::Handled { ms: at - since });
                }
            }
            E::ConversationEnded(e) => {
                let at = ts(e.at.as_ref(), fallback);
                let Some(mut c) = self.conversations.remove(&e.conversation_id) else { return };
                let mut joined: Vec<(String, Millis)> = c.joined.drain().collect();
                joined.sort();
                for (agent, since) in joined {
                    self.push(at, &c.queue, &agent, Kind::Handled { ms: at - since });
                }
                // Kept (not waiting) so late wrap-ups still find their queue.
                c.waiting = false;
                self.ended.push_back(e.conversation_id.clone());
                self.conversations.insert(e.conversation_id, c);
                if self.ended.len() > crate::view::MAX_ENDED_CONVERSATIONS
                    && let Some(oldest) = self.ended.pop_front()
                {
                    self.conversations.remove(&oldest);
                }
            }
            _ => {}
        }
    }

    fn facts_in(&self, from: Millis, to: Millis) -> impl Iterator<Item = &Fact> {
        self.facts.iter().filter(move |f| f.at >= from && f.at < to)
    }

    /// Per queue, for facts in `[from, to)`; `waiting` and `longestWaitSecs` as of `now`.
    pub fn queues(&self, from: Millis, to: Millis, now: Millis) -> Vec<QueueStats> {
        let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
        let mut live: BTreeMap<String, (u32, Millis)> = BTreeMap::new();
        for c in self.conversations.values().filter(|c| c.waiting && !c.queue.is_empty()) {
            let e = live.entry(c.queue.clone()).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.max(c.queued_since.map_or(0, |q| now - q));
            acc.entry(c.queue.clone()).or_default();
        }
        for f in self.facts_in(from, to).filter(|f| !f.queue.is_empty()) {
            acc.entry(f.queue.clone()).or_default().add(f);
        }
        acc.into_iter()
            .map(|(queue_id, a)| {
                let (waiting, longest) = live.get(&queue_id).copied().unwrap_or((0, 0));
                QueueStats {
                    queue_id,
                    waiting,
                    longest_wait_secs: u64::try_from(longest / 1000).unwrap_or(0),
                    figures: a.done(),
                }
            })
            .collect()
    }

    /// Per agent, for facts in `[from, to)`; state and time in state as of `now`.
    pub fn agents(&self, from: Millis, to: Millis, now: Millis) -> Vec<AgentStats> {
        let mut acc: BTreeMap<String, Acc> =
            self.agents.keys().map(|a| (a.clone(), Acc::default())).collect();
        for f in self.facts_in(from, to).filter(|f| !f.agent.is_empty()) {
            acc.entry(f.agent.clone()).or_default().add(f);
        }
        acc.into_iter()
            .map(|(agent_id, a)| {
                let live = self.agents.get(&agent_id).cloned().unwrap_or_default();
                AgentStats {
                    state: live.state.map(crate::view::presence_state),
                    time_in_state_secs: u64::try_from((now - live.since) / 1000).unwrap_or(0),
                    slots_used: live.slots,
                    agent_id,
                    figures: a.done(),
                }
            })
            .collect()
    }
}

/// Start of the UTC day holding `now` (the default `from`: "today").
pub fn start_of_day(now: Millis) -> Millis {
    now - now.rem_euclid(24 * 60 * 60 * 1000)
}

#[cfg(test)]
mod tests;
