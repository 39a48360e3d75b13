//! Routing's read model, built from the log: queues and entry points (its own
//! `config-queues` stream), waiting conversations and live offers (from
//! `conversation-*`), agents and their free slots (from `agent-*`) and owed
//! wrap-ups (from `wrapup-*`, for B3.5). Pure: events in, state out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sb_proto::{
    AgentPresenceEvent, ConversationEvent, RoutingEvent, WrapUpEvent, millis_from_timestamp,
    v1::{OfferKind, PresenceState, WithdrawReason},
};

use crate::{
    config::{self, Config},
    decision::{AgentView, Waiting},
};

pub type Millis = i64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationView {
    pub queue_id: String,
    pub queued_since: Millis,
    /// In its queue, waiting for an agent (also after an expired offer).
    pub waiting: bool,
    /// A conference asked of this queue (B6.1), waiting for an agent.
    pub conference_queue: Option<(String, Millis)>,
    pub participants: BTreeSet<String>,
    pub offer: Option<LiveOffer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveOffer {
    pub offer_id: String,
    pub agent_id: String,
    pub kind: i32,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentState {
    pub name: String,
    pub capacity: u32,
    pub skills: BTreeSet<String>,
    pub available: bool,
    pub slots_used: u32,
    pub idle_since: Millis,
    pub version: u64,
}

/// What the service must track after an event: offer deadlines for its
/// timer set, and slot reservations not (yet) tied to an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadlineChange {
    Schedule {
        conversation_id: String,
        offer_id: String,
        at: Millis,
    },
    Cancel {
        conversation_id: String,
        offer_id: String,
    },
    /// A slot was reserved for an offer that the log does not show yet.
    Reserved {
        agent_id: String,
        conversation_id: String,
        offer_id: String,
    },
    /// A conference asked of a queue at `requested_at` is dropped at `at`
    /// unless an agent has been offered it by then (B6.3).
    ConferenceRequest {
        conversation_id: String,
        requested_at: Millis,
        at: Millis,
    },
    /// That reservation is now accounted for (offer made, or slot released).
    Resolved {
        offer_id: String,
    },
}

#[derive(Debug, Default)]
pub struct View {
    pub config: Config,
    pub conversations: HashMap<String, ConversationView>,
    pub agents: HashMap<String, AgentState>,
    /// (agent, conversation) → wrap-ups owed (B3.5).
    pub owed: HashMap<(String, String), u32>,
    /// (agent, conversation) → leaves (`ParticipantLeft`) whose `WrapupOwed`
    /// the wrap-up service has not recorded yet. The leave and the conversation
    /// going back to a queue are one append, the wrap-up comes later through
    /// the bus: without this, a transferring agent with a free slot could be
    /// offered the conversation back in between (B3.5).
    pub leaves_not_yet_owed: HashMap<(String, String), u32>,
    /// Agents whose offer expired and whose RONA agent-presence has not
    /// recorded yet (B2.2): not routable in between, or the conversation
    /// they just missed could go straight back to them.
    pub rona_pending: BTreeSet<String>,
}

fn ms(t: Option<&sb_proto::Timestamp>) -> Millis {
    t.map(millis_from_timestamp).unwrap_or(0)
}

impl View {
    /// Applies one recorded event; returns the deadline changes it implies.
    pub fn apply(
        &mut self,
        stream: &str,
        event_number: u64,
        event_type: &str,
        data: &[u8],
    ) -> Vec<DeadlineChange> {
        if stream == "config-queues" {
            match RoutingEvent::from_json(event_type, data) {
                Ok(RoutingEvent::QueueDefined(q)) => {
                    let queue = config::Queue {
                        id: q.queue_id,
                        name: q.name,
                        offer_timeout_secs: q.offer_timeout_secs,
                        priority: q.priority,
                        skills: q.skills,
                    };
                    self.config.queues.insert(queue.id.clone(), queue);
                }
                Ok(RoutingEvent::EntryPointMapped(m)) => {
                    self.config.entry_points.insert(m.business_number, m.queue_id);
                }
                _ => {}
            }
        } else if let Some(agent_id) = stream.strip_prefix("agent-") {
            if let Ok(e) = AgentPresenceEvent::from_json(event_type, data) {
                let change = match &e {
                    AgentPresenceEvent::SlotReserved(r) => Some(DeadlineChange::Reserved {
                        agent_id: agent_id.to_owned(),
                        conversation_id: r.conversation_id.clone(),
                        offer_id: r.offer_id.clone(),
                    }),
                    AgentPresenceEvent::SlotReleased(r) => {
                        Some(DeadlineChange::Resolved { offer_id: r.offer_id.clone() })
                    }
                    _ => None,
                };
                self.apply_presence(agent_id, event_number, e);
                return change.into_iter().collect();
            }
        } else if stream.starts_with("wrapup-") {
            match WrapUpEvent::from_json(event_type, data) {
                Ok(WrapUpEvent::WrapupOwed(e)) => {
                    let key = (e.agent_id, e.conversation_id);
                    if let Some(n) = self.leaves_not_yet_owed.get_mut(&key) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.leaves_not_yet_owed.remove(&key);
                        }
                    }
                    *self.owed.entry(key).or_default() += 1;
                }
                Ok(WrapUpEvent::WrapupSubmitted(e)) => {
                    let key = (e.agent_id, e.conversation_id);
                    if let Some(n) = self.owed.get_mut(&key) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.owed.remove(&key);
                        }
                    }
                }
                _ => {}
            }
        } else if let Some(id) = stream.strip_prefix("conversation-")
            && let Ok(e) = ConversationEvent::from_json(event_type, data)
        {
            return self.apply_conversation(id, e);
        }
        vec![]
    }

    fn apply_presence(&mut self, agent_id: &str, version: u64, event: AgentPresenceEvent) {
        let agent = self.agents.entry(agent_id.to_owned()).or_default();
        agent.version = version;
        match event {
            AgentPresenceEvent::AgentRegistered(e) => {
                agent.name = e.name;
                agent.capacity = e.capacity;
                agent.skills = e.skills.into_iter().collect();
            }
            AgentPresenceEvent::AgentProfileUpdated(e) => {
                agent.name = e.name;
                agent.capacity = e.capacity;
                agent.skills = e.skills.into_iter().collect();
            }
            AgentPresenceEvent::AgentStateChanged(e) => {
                self.rona_pending.remove(agent_id);
                let available = e.state == PresenceState::Available as i32;
                if available && !agent.available {
                    agent.idle_since = ms(e.at.as_ref());
                }
                agent.available = available;
            }
            AgentPresenceEvent::SlotReserved(e) => {
                agent.slots_used += 1;
                agent.idle_since = ms(e.at.as_ref());
            }
            AgentPresenceEvent::SlotReleased(e) => {
                agent.slots_used = agent.slots_used.saturating_sub(1);
                agent.idle_since = agent.idle_since.max(ms(e.at.as_ref()));
            }
        }
    }

    fn apply_conversation(&mut self, id: &str, event: ConversationEvent) -> Vec<DeadlineChange> {
        use ConversationEvent as E;
        if let E::ConversationEnded(_) = event {
            let ended = self.conversations.remove(id);
            return ended
                .and_then(|c| c.offer)
                .map(|o| DeadlineChange::Cancel {
                    conversation_id: id.to_owned(),
                    offer_id: o.offer_id,
                })
                .into_iter()
                .collect();
        }
        let c = self.conversations.entry(id.to_owned()).or_default();
        match event {
            E::ConversationQueued(e) => {
                c.queue_id = e.queue_id;
                c.queued_since = ms(e.queued_since.as_ref());
                c.waiting = true;
            }
            E::OfferMade(e) => {
                let expires_at = ms(e.expires_at.as_ref());
                c.offer = Some(LiveOffer {
                    offer_id: e.offer_id.clone(),
                    agent_id: e.agent_id,
                    kind: e.kind,
                    expires_at,
                });
                return vec![
                    DeadlineChange::Resolved { offer_id: e.offer_id.clone() },
                    DeadlineChange::Schedule {
                        conversation_id: id.to_owned(),
                        offer_id: e.offer_id,
                        at: expires_at,
                    },
                ];
            }
            E::OfferAccepted(e) => {
                c.offer = None;
                c.waiting = false;
                c.conference_queue = None;
                c.participants.insert(e.agent_id);
                return vec![DeadlineChange::Cancel {
                    conversation_id: id.to_owned(),
                    offer_id: e.offer_id,
                }];
            }
            E::OfferWithdrawn(e) => {
                if e.reason == WithdrawReason::Expired as i32 {
                    self.rona_pending.insert(e.agent_id.clone());
                }
                if c.offer.take().is_some_and(|offer| offer.kind == OfferKind::Conference as i32) {
                    c.conference_queue = None;
                }
                return vec![DeadlineChange::Cancel {
                    conversation_id: id.to_owned(),
                    offer_id: e.offer_id,
                }];
            }
            E::ConferenceRequested(e) => {
                if !e.to_queue_id.is_empty() {
                    let requested_at = ms(e.at.as_ref());
                    let timeout_secs = self
                        .config
                        .queues
                        .get(&e.to_queue_id)
                        .map_or(crate::config::DEFAULT_OFFER_TIMEOUT_SECS, |q| {
                            q.offer_timeout_secs
                        });
                    c.conference_queue = Some((e.to_queue_id, requested_at));
                    return vec![DeadlineChange::ConferenceRequest {
                        conversation_id: id.to_owned(),
                        requested_at,
                        at: requested_at + Millis::from(timeout_secs) * 1000,
                    }];
                }
            }
            E::ConferenceDeclined(_) => c.conference_queue = None,
            E::ParticipantLeft(e) => {
                c.participants.remove(&e.agent_id);
                *self.leaves_not_yet_owed.entry((e.agent_id, id.to_owned())).or_default() += 1;
            }
            E::ConversationStarted(_)
            | E::CustomerMessageReceived(_)
            | E::AgentMessageAdded(_)
            | E::MessageStatusChanged(_)
            | E::TransferRequested(_)
            | E::TransferFailed(_)
            | E::ConversationEnded(_) => {}
        }
        vec![]
    }

    /// What waits for an agent now (B3.2), with whom it must not go to (B3.5).
    pub fn waiting(&self) -> Vec<Waiting> {
        let mut out = Vec::new();
        for (id, c) in &self.conversations {
            if c.offer.is_some() {
                continue;
            }
            let entry = if let Some((queue_id, since)) = &c.conference_queue {
                Some((queue_id.clone(), *since))
            } else if c.waiting && c.participants.is_empty() {
                Some((c.queue_id.clone(), c.queued_since))
            } else {
                None
            };
            if let Some((queue_id, queued_since)) = entry {
                let mut excluded = c.participants.clone();
                excluded.extend(
                    self.owed
                        .keys()
                        .chain(self.leaves_not_yet_owed.keys())
                        .filter(|(_, conv)| conv == id)
                        .map(|(agent, _)| agent.clone()),
                );
                out.push(Waiting { conversation_id: id.clone(), queue_id, queued_since, excluded });
            }
        }
        out
    }

    pub fn agent_views(&self) -> Vec<AgentView> {
        self.agents
            .iter()
            .map(|(id, a)| AgentView {
                agent_id: id.clone(),
                available: a.available && !self.rona_pending.contains(id),
                free_slots: a.capacity.saturating_sub(a.slots_used),
                skills: a.skills.clone(),
                idle_since: a.idle_since,
                version: a.version,
            })
            .collect()
    }

    /// Waiting conversations per queue, for the queue directory.
    pub fn waiting_counts(&self) -> BTreeMap<String, u32> {
        let mut counts = BTreeMap::new();
        for w in self.waiting() {
            *counts.entry(w.queue_id).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use sb_proto::{timestamp_from_millis, v1};

    use super::*;

    fn conv(view: &mut View, id: &str, e: impl Into<ConversationEvent>) -> Vec<DeadlineChange> {
        let e: ConversationEvent = e.into();
        view.apply(&format!("conversation-{id}"), 0, e.event_type(), &e.to_json())
    }

    #[test]
    fn b2_2_an_expired_offer_puts_the_conversation_back_at_its_place() {
        let mut view = View::default();
        conv(
            &mut view,
            "c",
            v1::ConversationQueued {
                queue_id: "q".into(),
                queued_since: Some(timestamp_from_millis(10)),
                kind: 1,
                ..Default::default()
            },
        );
        assert_eq!(view.waiting().len(), 1);
        let changes = conv(
            &mut view,
            "c",
            v1::OfferMade {
                offer_id: "o".into(),
                agent_id: "a".into(),
                kind: 1,
                expires_at: Some(timestamp_from_millis(99)),
                ..Default::default()
            },
        );
        assert!(changes.contains(&DeadlineChange::Schedule {
            conversation_id: "c".into(),
            offer_id: "o".into(),
            at: 99
        }));
        assert!(view.waiting().is_empty());
        conv(
            &mut view,
            "c",
            v1::OfferWithdrawn {
                offer_id: "o".into(),
                agent_id: "a".into(),
                reason: 1,
                ..Default::default()
            },
        );
        let w = view.waiting();
        assert_eq!((w[0].queue_id.as_str(), w[0].queued_since), ("q", 10));
    }

    #[test]
    fn b3_3_a_reservation_is_resolved_by_its_offer_or_its_release() {
        let mut view = View::default();
        let reserved = AgentPresenceEvent::from(v1::SlotReserved {
            offer_id: "o".into(),
            conversation_id: "c".into(),
            ..Default::default()
        });
        let changes = view.apply("agent-a", 0, reserved.event_type(), &reserved.to_json());
        assert_eq!(
            changes,
            vec![DeadlineChange::Reserved {
                agent_id: "a".into(),
                conversation_id: "c".into(),
                offer_id: "o".into()
            }]
        );
        let changes = conv(
            &mut view,
            "c",
            v1::OfferMade {
                offer_id: "o".into(),
                agent_id: "a".into(),
                kind: 1,
                ..Default::default()
            },
        );
        assert!(
            changes.contains(&DeadlineChange::Resolved { offer_id: "o".into() }),
            "an offer made accounts for its slot"
        );
        let released = AgentPresenceEvent::from(v1::SlotReleased {
            offer_id: "p".into(),
            ..Default::default()
        });
        assert_eq!(
            view.apply("agent-a", 1, released.event_type(), &released.to_json()),
            vec![DeadlineChange::Resolved { offer_id: "p".into() }]
        );
    }

    #[test]
    fn b2_2_an_agent_whose_offer_expired_is_not_routable_until_its_rona_is_recorded() {
        let mut view = View::default();
        for (n, e) in [
            AgentPresenceEvent::from(v1::AgentRegistered {
                agent_id: "a".into(),
                capacity: 2,
                ..Default::default()
            }),
            v1::AgentStateChanged { state: PresenceState::Available as i32, ..Default::default() }
                .into(),
        ]
        .into_iter()
        .enumerate()
        {
            view.apply("agent-a", n as u64, e.event_type(), &e.to_json());
        }
        assert!(view.agent_views()[0].available);
        conv(
            &mut view,
            "c",
            v1::OfferWithdrawn {
                agent_id: "a".into(),
                reason: WithdrawReason::Expired as i32,
                ..Default::default()
            },
        );
        assert!(!view.agent_views()[0].available, "not offered again before RONA lands");
        let rona = AgentPresenceEvent::from(v1::AgentStateChanged {
            state: PresenceState::Rona as i32,
            ..Default::default()
        });
        view.apply("agent-a", 2, rona.event_type(), &rona.to_json());
        let back = AgentPresenceEvent::from(v1::AgentStateChanged {
            state: PresenceState::Available as i32,
            ..Default::default()
        });
        view.apply("agent-a", 3, back.event_type(), &back.to_json());
        assert!(view.agent_views()[0].available, "routable again once it chose Available");
    }

    #[test]
    fn b3_5_agents_owing_a_wrapup_for_the_conversation_are_excluded() {
        let mut view = View::default();
        conv(&mut view, "c", v1::ConversationQueued { queue_id: "q".into(), ..Default::default() });
        let owed = WrapUpEvent::from(v1::WrapupOwed {
            agent_id: "a".into(),
            conversation_id: "c".into(),
            ..Default::default()
        });
        view.apply("wrapup-a", 0, owed.event_type(), &owed.to_json());
        assert!(view.waiting()[0].excluded.contains("a"));
        let done = WrapUpEvent::from(v1::WrapupSubmitted {
            agent_id: "a".into(),
            conversation_id: "c".into(),
            ..Default::default()
        });
        view.apply("wrapup-a", 1, done.event_type(), &done.to_json());
        assert!(view.waiting()[0].excluded.is_empty());
    }

    #[test]
    fn b3_5_an_agent_that_left_is_excluded_before_its_wrapup_is_recorded() {
        let mut view = View::default();
        conv(&mut view, "c", v1::ConversationQueued { queue_id: "q".into(), ..Default::default() });
        conv(&mut view, "c", v1::OfferAccepted { agent_id: "a".into(), ..Default::default() });
        // Transfer to a queue: the leave and the re-queue in one append.
        conv(&mut view, "c", v1::ParticipantLeft { agent_id: "a".into(), ..Default::default() });
        conv(&mut view, "c", v1::ConversationQueued { queue_id: "q".into(), ..Default::default() });
        assert!(view.waiting()[0].excluded.contains("a"), "before the wrap-up service has it");
        let owed = WrapUpEvent::from(v1::WrapupOwed {
            agent_id: "a".into(),
            conversation_id: "c".into(),
            ..Default::default()
        });
        view.apply("wrapup-a", 0, owed.event_type(), &owed.to_json());
        assert!(view.waiting()[0].excluded.contains("a"));
        let done = WrapUpEvent::from(v1::WrapupSubmitted {
            agent_id: "a".into(),
            conversation_id: "c".into(),
            ..Default::default()
        });
        view.apply("wrapup-a", 1, done.event_type(), &done.to_json());
        assert!(view.waiting()[0].excluded.is_empty(), "eligible again once wrapped up");
        assert!(view.leaves_not_yet_owed.is_empty() && view.owed.is_empty());
    }

    #[test]
    fn b1_2_agent_slots_and_availability_come_from_presence_events() {
        let mut view = View::default();
        for (n, e) in [
            AgentPresenceEvent::from(v1::AgentRegistered {
                agent_id: "a".into(),
                capacity: 2,
                ..Default::default()
            }),
            v1::AgentStateChanged {
                state: PresenceState::Available as i32,
                at: Some(timestamp_from_millis(5)),
                ..Default::default()
            }
            .into(),
            v1::SlotReserved { at: Some(timestamp_from_millis(7)), ..Default::default() }.into(),
        ]
        .into_iter()
        .enumerate()
        {
            view.apply("agent-a", n as u64, e.event_type(), &e.to_json());
        }
        let a = &view.agent_views()[0];
        assert_eq!((a.available, a.free_slots, a.idle_since, a.version), (true, 1, 7, 2));
    }
}
