//! Lost sessions (B1.5).
//!
//! An agent has a session while it has an open WebSocket or made an
//! authenticated call within `session_timeout`. An agent without one whose
//! presence is not `LoggedOut` or `Idle(disconnected)` is moved to
//! `Idle(disconnected)` by the system (an agent in RONA stays there: only a
//! person's choice leaves RONA, B2.3), and each of its live offers is
//! withdrawn (`SESSION_LOST`) so routing offers it to someone else. Its
//! active conversations stay with it.
//!
//! Time comes from [`kernel::Clock`], so tests move it by hand. After a
//! restart every agent counts as last seen at the gateway's start, so nobody
//! is disconnected merely because the gateway was down.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kernel::{Millis, Shutdown};
use sb_proto::v1;
use sb_proto::{Service, verbs};

use crate::Shared;

/// The idle reason of a lost session.
pub const DISCONNECTED: &str = "disconnected";
/// Longest time between two sweeps.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default)]
struct Session {
    last_seen: Millis,
    open_sockets: u32,
    /// When the sweep last acted on this agent (so it does not repeat every tick).
    handled_at: Option<Millis>,
}

/// Who was seen when.
#[derive(Debug)]
pub struct Sessions {
    started_at: Millis,
    by_agent: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(started_at: Millis) -> Sessions {
        Sessions { started_at, by_agent: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_agent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An authenticated call by `agent_id`.
    pub fn touch(&self, agent_id: &str, now: Millis) {
        let mut map = self.lock();
        let s = map.entry(agent_id.to_owned()).or_default();
        s.last_seen = s.last_seen.max(now);
        s.handled_at = None;
    }

    pub fn socket_opened(&self, agent_id: &str, now: Millis) {
        let mut map = self.lock();
        let s = map.entry(agent_id.to_owned()).or_default();
        s.open_sockets += 1;
        s.last_seen = s.last_seen.max(now);
        s.handled_at = None;
    }

    pub fn socket_closed(&self, agent_id: &str, now: Millis) {
        let mut map = self.lock();
        let s = map.entry(agent_id.to_owned()).or_default();
        s.open_sockets = s.open_sockets.saturating_sub(1);
        s.last_seen = s.last_seen.max(now);
    }

    /// Whether `agent_id` has had no session for `timeout` at `now`, and the
    /// sweep has not acted on it within the last `timeout`.
    fn lost(&self, agent_id: &str, now: Millis, timeout: Millis) -> bool {
        let map = self.lock();
        let (last_seen, open, handled) =
            map.get(agent_id).map_or((self.started_at, 0, None), |s| {
                (s.last_seen.max(self.started_at), s.open_sockets, s.handled_at)
            });
        open == 0 && now - last_seen >= timeout && handled.is_none_or(|t| now - t >= timeout)
    }

    fn mark_handled(&self, agent_id: &str, now: Millis) {
        self.lock().entry(agent_id.to_owned()).or_default().handled_at = Some(now);
    }
}

/// What the sweep will do for one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostSession {
    pub agent_id: String,
    /// Whether its presence must change to `Idle(disconnected)`.
    pub change_state: bool,
    /// `(conversation id, offer id)` of its live offers.
    pub offers: Vec<(String, String)>,
}

/// The agents whose session is lost at `now` (and need something done).
pub fn find_lost(shared: &Shared, now: Millis) -> Vec<LostSession> {
    let timeout = i64::try_from(shared.config.session_timeout.as_millis()).unwrap_or(i64::MAX);
    let view = shared.view();
    // One pass over the conversations: live offers by agent.
    let mut offers: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for c in view.conversations.values() {
        if let Some(o) = &c.offer {
            offers.entry(o.agent_id.as_str()).or_default().push((c.id.clone(), o.offer_id.clone()));
        }
    }
    view.agents
        .values()
        .filter_map(|agent| {
            let settled = match agent.state {
                v1::PresenceState::LoggedOut | v1::PresenceState::Unspecified => true,
                v1::PresenceState::Idle => agent.idle_reason == DISCONNECTED,
                // B2.3: nothing but a person's choice takes an agent out of RONA.
                v1::PresenceState::Rona => true,
                v1::PresenceState::Available => false,
            };
            let offers = offers.remove(agent.id.as_str()).unwrap_or_default();
            if settled && offers.is_empty() {
                return None;
            }
            if !shared.sessions.lost(&agent.id, now, timeout) {
                return None;
            }
            Some(LostSession { agent_id: agent.id.clone(), change_state: !settled, offers })
        })
        .collect()
}

/// Acts on one lost session: the commands B1.5 asks for.
pub async fn handle_lost(shared: &Shared, lost: &LostSession) {
    let now = shared.clock.now();
    shared.sessions.mark_handled(&lost.agent_id, now);
    shared.stats.sessions_lost.fetch_add(1, Ordering::Relaxed);
    tracing::info!(agent = %lost.agent_id, offers = lost.offers.len(), "session lost");
    // Offers first: the agent must not get a new one while it is being moved.
    for (conversation_id, offer_id) in &lost.offers {
        let command = v1::WithdrawOffer {
            conversation_id: conversation_id.clone(),
            offer_id: offer_id.clone(),
            reason: v1::WithdrawReason::SessionLost as i32,
        };
        let result = kernel::commands::call::<_, v1::ConversationSummary>(
            &shared.bus,
            Service::Conversation,
            verbs::conversation::WITHDRAW_OFFER,
            &command,
            None,
        )
        .await;
        if let Err(e) = result {
            tracing::warn!(agent = %lost.agent_id, %offer_id, error = %e, "withdrawing the offer of a lost session failed");
        }
    }
    if lost.change_state {
        let command = v1::ChangeAgentState {
            agent_id: lost.agent_id.clone(),
            state: v1::PresenceState::Idle as i32,
            idle_reason: DISCONNECTED.to_owned(),
            by: Some(v1::Actor { kind: v1::ActorKind::System as i32, id: String::new() }),
        };
        let result = kernel::commands::call::<_, v1::AgentPresence>(
            &shared.bus,
            Service::AgentPresence,
            verbs::presence::CHANGE_STATE,
            &command,
            None,
        )
        .await;
        if let Err(e) = result {
            tracing::warn!(agent = %lost.agent_id, error = %e, "moving a lost session to Idle failed");
        }
    }
}

/// Sweeps for lost sessions until shutdown, on the gateway's clock.
pub async fn run_sweeper(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let interval =
        (shared.config.session_timeout / 4).clamp(Duration::from_millis(100), MAX_SWEEP_INTERVAL);
    let interval = i64::try_from(interval.as_millis()).unwrap_or(1000);
    loop {
        let next = shared.clock.now() + interval;
        tokio::select! {
            () = shared.clock.sleep_until(next) => {}
            () = shutdown.wait() => return,
        }
        if !shared.ready.get() {
            continue; // the read model is still replaying: its presence is stale
        }
        let now = shared.clock.now();
        for lost in find_lost(&shared, now) {
            handle_lost(&shared, &lost).await;
        }
    }
}
