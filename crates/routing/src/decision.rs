//! Who gets which waiting conversation: a pure function of a snapshot.
//!
//! B3.2: waiting conversations are served by queue priority (higher first),
//! then by their place in the queue (`queued_since`, FIFO). For each, the
//! eligible agents are those `Available` with a free slot and every skill the
//! queue requires, minus those it must not go to (B3.5: an agent that left the
//! conversation and still owes its wrap-up, or one already in it). Among them
//! the agent idle longest (smallest `idle_since`) gets the offer.
//!
//! The plan is only a proposal: each offer is then made with the agent's
//! stream version as expected version, so two routing replicas planning at
//! once cannot both use the same free slot (B3.3).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Queue;

pub type Millis = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub conversation_id: String,
    pub queue_id: String,
    pub queued_since: Millis,
    /// Agents this conversation must not be offered to (B3.5, participants).
    pub excluded: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    pub agent_id: String,
    /// `Available` (B1.2).
    pub available: bool,
    pub free_slots: u32,
    pub skills: BTreeSet<String>,
    /// Since when the agent has been idle for routing purposes (B3.2).
    pub idle_since: Millis,
    /// The agent stream's version this view was built from.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub conversation_id: String,
    pub queue_id: String,
    pub agent_id: String,
    /// Expected version of the agent's stream for the slot reservation.
    pub agent_version: u64,
}

/// Plans offers for as many waiting conversations as agents allow.
/// `now` becomes the idle-since of an agent that gets an offer in this plan, so
/// a second conversation prefers another idle agent.
pub fn plan(
    queues: &BTreeMap<String, Queue>,
    waiting: &[Waiting],
    agents: &[AgentView],
    now: Millis,
) -> Vec<Assignment> {
    let mut order: Vec<&Waiting> =
        waiting.iter().filter(|w| queues.contains_key(&w.queue_id)).collect();
    order.sort_by(|a, b| {
        let pa = queues[&a.queue_id].priority;
        let pb = queues[&b.queue_id].priority;
        pb.cmp(&pa)
            .then(a.queued_since.cmp(&b.queued_since))
            .then(a.conversation_id.cmp(&b.conversation_id))
    });
    let mut pool: Vec<AgentView> =
        agents.iter().filter(|a| a.available && a.free_slots > 0).cloned().collect();
    let mut plan = Vec::new();
    for w in order {
        let queue = &queues[&w.queue_id];
        let best = pool
            .iter_mut()
            .filter(|a| {
                a.free_slots > 0
                    && !w.excluded.contains(&a.agent_id)
                    && queue.skills.iter().all(|s| a.skills.contains(s))
            })
            .min_by(|a, b| a.idle_since.cmp(&b.idle_since).then(a.agent_id.cmp(&b.agent_id)));
        if let Some(agent) = best {
            agent.free_slots -= 1;
            agent.idle_since = now;
            plan.push(Assignment {
                conversation_id: w.conversation_id.clone(),
                queue_id: w.queue_id.clone(),
                agent_id: agent.agent_id.clone(),
                agent_version: agent.version,
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn queue(id: &str, priority: i32, skills: &[&str]) -> Queue {
        Queue {
            id: id.into(),
            name: id.into(),
            offer_timeout_secs: 30,
            priority,
            skills: skills.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn agent(id: &str, idle_since: Millis, free: u32, skills: &[&str]) -> AgentView {
        AgentView {
            agent_id: id.into(),
            available: true,
            free_slots: free,
            skills: skills.iter().map(|s| s.to_string()).collect(),
            idle_since,
            version: 7,
        }
    }

    fn wait(id: &str, queue: &str, since: Millis) -> Waiting {
        Waiting {
            conversation_id: id.into(),
            queue_id: queue.into(),
            queued_since: since,
            excluded: BTreeSet::new(),
        }
    }

    fn queues(list: &[Queue]) -> BTreeMap<String, Queue> {
        list.iter().map(|q| (q.id.clone(), q.clone())).collect()
    }

    fn pairs(plan: &[Assignment]) -> Vec<(&str, &str)> {
        plan.iter().map(|a| (a.conversation_id.as_str(), a.agent_id.as_str())).collect()
    }

    #[test]
    fn b3_2_longest_idle_agent_gets_the_oldest_conversation() {
        let qs = queues(&[queue("q", 0, &[])]);
        let plan = plan(
            &qs,
            &[wait("c2", "q", 20), wait("c1", "q", 10)],
            &[agent("a", 5, 1, &[]), agent("b", 1, 1, &[])],
            100,
        );
        assert_eq!(pairs(&plan), [("c1", "b"), ("c2", "a")]);
        assert_eq!(plan[0].agent_version, 7);
    }

    #[test]
    fn b3_2_higher_priority_queues_are_served_first() {
        let qs = queues(&[queue("low", 0, &[]), queue("vip", 10, &[])]);
        let plan = plan(
            &qs,
            &[wait("old", "low", 1), wait("new", "vip", 50)],
            &[agent("a", 0, 1, &[])],
            100,
        );
        assert_eq!(pairs(&plan), [("new", "a")]);
    }

    #[test]
    fn b3_2_required_skills_and_availability_limit_eligibility() {
        let qs = queues(&[queue("es", 0, &["spanish"])]);
        let mut away = agent("away", 0, 3, &["spanish"]);
        away.available = false;
        let plan = plan(
            &qs,
            &[wait("c", "es", 1)],
            &[agent("x", 0, 3, &[]), away, agent("s", 9, 1, &["spanish", "billing"])],
            10,
        );
        assert_eq!(pairs(&plan), [("c", "s")]);
    }

    #[test]
    fn b1_2_no_agent_gets_more_offers_than_free_slots() {
        let qs = queues(&[queue("q", 0, &[])]);
        let waiting: Vec<_> = (0..5).map(|i| wait(&format!("c{i}"), "q", i)).collect();
        let plan = plan(&qs, &waiting, &[agent("a", 0, 2, &[]), agent("b", 1, 0, &[])], 100);
        assert_eq!(pairs(&plan), [("c0", "a"), ("c1", "a")]);
    }

    #[test]
    fn b3_5_an_agent_is_not_offered_a_conversation_it_left_while_owing_wrapup() {
        let qs = queues(&[queue("q", 0, &[])]);
        let mut w = wait("c", "q", 1);
        w.excluded.insert("a".into());
        let plan = plan(&qs, &[w], &[agent("a", 0, 1, &[]), agent("b", 5, 1, &[])], 10);
        assert_eq!(pairs(&plan), [("c", "b")]);
    }

    #[test]
    fn b3_4_nothing_is_dropped_when_no_agent_is_free() {
        let qs = queues(&[queue("q", 0, &[])]);
        assert!(plan(&qs, &[wait("c", "q", 1)], &[], 10).is_empty());
    }

    fn arb_case() -> impl Strategy<Value = (Vec<Queue>, Vec<Waiting>, Vec<AgentView>)> {
        let skills = prop::sample::subsequence(vec!["en", "es", "vip"], 0..=2);
        let queues = prop::collection::vec((0i32..3, skills.clone()), 1..4).prop_map(|qs| {
            qs.into_iter()
                .enumerate()
                .map(|(i, (p, s))| queue(&format!("q{i}"), p, &s))
                .collect::<Vec<_>>()
        });
        queues.prop_flat_map(move |qs| {
            let n = qs.len();
            let waiting = prop::collection::vec(
                (0..n, 0i64..100, prop::collection::btree_set(0u8..6, 0..2)),
                0..12,
            )
            .prop_map(|ws| {
                ws.into_iter()
                    .enumerate()
                    .map(|(i, (q, since, ex))| Waiting {
                        conversation_id: format!("c{i}"),
                        queue_id: format!("q{q}"),
                        queued_since: since,
                        excluded: ex.into_iter().map(|a| format!("a{a}")).collect(),
                    })
                    .collect::<Vec<_>>()
            });
            let agents = prop::collection::vec(
                (
                    any::<bool>(),
                    0u32..4,
                    prop::sample::subsequence(vec!["en", "es", "vip"], 0..=3),
                    0i64..100,
                ),
                0..6,
            )
            .prop_map(|xs| {
                xs.into_iter()
                    .enumerate()
                    .map(|(i, (av, free, sk, idle))| AgentView {
                        agent_id: format!("a{i}"),
                        available: av,
                        free_slots: free,
                        skills: sk.into_iter().map(String::from).collect(),
                        idle_since: idle,
                        version: i as u64,
                    })
                    .collect::<Vec<_>>()
            });
            (Just(qs), waiting, agents)
        })
    }

    /// A simple model of B3.2: repeatedly take the first waiting conversation
    /// (priority, then FIFO) and give it to the longest-idle eligible agent.
    fn model(
        queues: &BTreeMap<String, Queue>,
        waiting: &[Waiting],
        agents: &[AgentView],
        now: Millis,
    ) -> Vec<(String, String)> {
        let mut left: Vec<Waiting> = waiting.to_vec();
        let mut agents: Vec<AgentView> = agents.to_vec();
        let mut out = Vec::new();
        while !left.is_empty() {
            let i = (0..left.len())
                .max_by_key(|&i| {
                    let w = &left[i];
                    (
                        queues[&w.queue_id].priority,
                        std::cmp::Reverse((w.queued_since, w.conversation_id.clone())),
                    )
                })
                .unwrap_or(0);
            let w = left.remove(i);
            let q = &queues[&w.queue_id];
            let eligible = agents.iter().enumerate().filter(|(_, a)| {
                a.available
                    && a.free_slots > 0
                    && !w.excluded.contains(&a.agent_id)
                    && q.skills.iter().all(|s| a.skills.contains(s))
            });
            if let Some((j, _)) = eligible.min_by_key(|(_, a)| (a.idle_since, a.agent_id.clone())) {
                agents[j].free_slots -= 1;
                agents[j].idle_since = now;
                out.push((w.conversation_id.clone(), agents[j].agent_id.clone()));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn b3_routing_plan_matches_the_simple_model_and_never_overbooks((qs, waiting, agents) in arb_case()) {
            let qmap = queues(&qs);
            let plan = plan(&qmap, &waiting, &agents, 1_000);
            let got: Vec<(String, String)> = plan.iter().map(|a| (a.conversation_id.clone(), a.agent_id.clone())).collect();
            prop_assert_eq!(&got, &model(&qmap, &waiting, &agents, 1_000));
            // B3.3: each conversation at most once; no agent beyond its free slots.
            let mut seen = BTreeSet::new();
            for a in &plan {
                prop_assert!(seen.insert(a.conversation_id.clone()));
            }
            for agent in &agents {
                let n = plan.iter().filter(|a| a.agent_id == agent.agent_id).count() as u32;
                let allowed = if agent.available { agent.free_slots } else { 0 };
                prop_assert!(n <= allowed, "{} offers for {} free slots", n, allowed);
            }
        }
    }
}
