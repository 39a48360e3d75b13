//! Queues and entry points (stream `config-queues`): pure `decide` / `evolve`.
//!
//! B3.1: a queue has a name, an offer timeout, a priority (higher is served
//! first) and optional required skills; a business number maps to an entry
//! queue, and an unknown number goes to the default queue, which is created
//! when first needed (B3.4).

use std::collections::BTreeMap;

pub type Millis = i64;

/// B2.2: the offer timeout when a queue does not set one.
pub const DEFAULT_OFFER_TIMEOUT_SECS: u32 = 30;
pub const MIN_OFFER_TIMEOUT_SECS: u32 = 5;
pub const MAX_OFFER_TIMEOUT_SECS: u32 = 3600;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_SKILLS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub id: String,
    pub name: String,
    pub offer_timeout_secs: u32,
    pub priority: i32,
    pub skills: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    PutQueue {
        queue: Queue,
        by: String,
        now: Millis,
    },
    PutEntryPoint {
        business_number: String,
        queue_id: String,
        by: String,
        now: Millis,
    },
    /// Creates the default queue if it does not exist yet (B3.4).
    EnsureQueue {
        queue_id: String,
        now: Millis,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    QueueDefined { queue: Queue, by: String, at: Millis },
    EntryPointMapped { business_number: String, queue_id: String, by: String, at: Millis },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a valid id: use 1-64 letters, digits, `-` or `_`")]
    InvalidId(String),
    #[error("a queue needs a name of 1-{MAX_NAME_CHARS} characters")]
    InvalidName,
    #[error(
        "the offer timeout must be between {MIN_OFFER_TIMEOUT_SECS} and {MAX_OFFER_TIMEOUT_SECS} seconds"
    )]
    InvalidTimeout,
    #[error("at most {MAX_SKILLS} skills, each a valid id")]
    InvalidSkills,
    #[error("`{0}` is not a business number: digits only, as WhatsApp's display_phone_number")]
    InvalidNumber(String),
    #[error("unknown queue `{0}`")]
    UnknownQueue(String),
}

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidId(_) => "invalid_id",
            Error::InvalidName => "invalid_name",
            Error::InvalidTimeout => "invalid_offer_timeout",
            Error::InvalidSkills => "invalid_skills",
            Error::InvalidNumber(_) => "invalid_business_number",
            Error::UnknownQueue(_) => "unknown_queue",
        }
    }

    /// `true` for "not found", else a broken rule (422).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::UnknownQueue(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub queues: BTreeMap<String, Queue>,
    pub entry_points: BTreeMap<String, String>,
}

impl Config {
    /// The queue a business number enters (B3.1), or the default queue id.
    pub fn entry_queue_id<'a>(
        &'a self,
        business_number: &str,
        default_queue_id: &'a str,
    ) -> &'a str {
        self.entry_points
            .get(business_number)
            .filter(|q| self.queues.contains_key(*q))
            .map_or(default_queue_id, String::as_str)
    }

    /// Queues whose name contains `search`, case-insensitively (B5.1 directory), by name.
    pub fn search(&self, search: &str) -> Vec<&Queue> {
        let needle = search.to_lowercase();
        let mut found: Vec<_> =
            self.queues.values().filter(|q| q.name.to_lowercase().contains(&needle)).collect();
        found.sort_by(|a, b| {
            a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.id.cmp(&b.id))
        });
        found
    }
}

/// Ids become NATS subject tokens and stream names: keep them plain.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn decide(state: &Config, command: &Command) -> Result<Vec<Event>, Error> {
    match command {
        Command::PutQueue { queue, by, now } => {
            if !valid_id(&queue.id) {
                return Err(Error::InvalidId(queue.id.clone()));
            }
            let name = queue.name.trim();
            if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
                return Err(Error::InvalidName);
            }
            if !(MIN_OFFER_TIMEOUT_SECS..=MAX_OFFER_TIMEOUT_SECS)
                .contains(&queue.offer_timeout_secs)
            {
                return Err(Error::InvalidTimeout);
            }
            if queue.skills.len() > MAX_SKILLS || !queue.skills.iter().all(|s| valid_id(s)) {
                return Err(Error::InvalidSkills);
            }
            let mut skills = queue.skills.clone();
            skills.sort();
            skills.dedup();
            let queue = Queue { name: name.to_owned(), skills, ..queue.clone() };
            if state.queues.get(&queue.id) == Some(&queue) {
                return Ok(vec![]); // nothing changes: PUT is idempotent
            }
            Ok(vec![Event::QueueDefined { queue, by: by.clone(), at: *now }])
        }
        Command::PutEntryPoint { business_number, queue_id, by, now } => {
            if business_number.is_empty()
                || business_number.len() > 20
                || !business_number.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(Error::InvalidNumber(business_number.clone()));
            }
            if !state.queues.contains_key(queue_id) {
                return Err(Error::UnknownQueue(queue_id.clone()));
            }
            if state.entry_points.get(business_number) == Some(queue_id) {
                return Ok(vec![]);
            }
            Ok(vec![Event::EntryPointMapped {
                business_number: business_number.clone(),
                queue_id: queue_id.clone(),
                by: by.clone(),
                at: *now,
            }])
        }
        Command::EnsureQueue { queue_id, now } => {
            if state.queues.contains_key(queue_id) {
                return Ok(vec![]);
            }
            if !valid_id(queue_id) {
                return Err(Error::InvalidId(queue_id.clone()));
            }
            Ok(vec![Event::QueueDefined {
                queue: Queue {
                    id: queue_id.clone(),
                    name: queue_id.clone(),
                    offer_timeout_secs: DEFAULT_OFFER_TIMEOUT_SECS,
                    priority: 0,
                    skills: vec![],
                },
                by: String::new(),
                at: *now,
            }])
        }
    }
}

pub fn evolve(mut state: Config, event: &Event) -> Config {
    match event {
        Event::QueueDefined { queue, .. } => {
            state.queues.insert(queue.id.clone(), queue.clone());
        }
        Event::EntryPointMapped { business_number, queue_id, .. } => {
            state.entry_points.insert(business_number.clone(), queue_id.clone());
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(id: &str, name: &str) -> Queue {
        Queue {
            id: id.into(),
            name: name.into(),
            offer_timeout_secs: 30,
            priority: 0,
            skills: vec![],
        }
    }

    fn apply(state: Config, command: Command) -> Config {
        decide(&state, &command).unwrap().iter().fold(state, evolve)
    }

    #[test]
    fn b3_1_queues_and_entry_points() {
        let state = apply(
            Config::default(),
            Command::PutQueue { queue: queue("sales", "Sales"), by: "sup".into(), now: 1 },
        );
        let state = apply(
            state,
            Command::PutEntryPoint {
                business_number: "15550001111".into(),
                queue_id: "sales".into(),
                by: "sup".into(),
                now: 2,
            },
        );
        assert_eq!(state.entry_queue_id("15550001111", "default"), "sales");
        assert_eq!(state.entry_queue_id("15559999999", "default"), "default");
    }

    #[test]
    fn b3_1_entry_point_to_unknown_queue_or_bad_number_is_refused() {
        let err = decide(
            &Config::default(),
            &Command::PutEntryPoint {
                business_number: "1555".into(),
                queue_id: "nope".into(),
                by: "s".into(),
                now: 1,
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), "unknown_queue");
        let err = decide(
            &Config::default(),
            &Command::PutEntryPoint {
                business_number: "+1555".into(),
                queue_id: "nope".into(),
                by: "s".into(),
                now: 1,
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), "invalid_business_number");
    }

    #[test]
    fn b3_1_queue_validation() {
        let s = Config::default();
        let put = |q: Queue| decide(&s, &Command::PutQueue { queue: q, by: "s".into(), now: 1 });
        assert_eq!(put(queue("a.b", "x")), Err(Error::InvalidId("a.b".into())));
        assert_eq!(put(queue("a", "  ")), Err(Error::InvalidName));
        assert_eq!(
            put(Queue { offer_timeout_secs: 1, ..queue("a", "A") }),
            Err(Error::InvalidTimeout)
        );
        assert_eq!(
            put(Queue { skills: vec!["bad skill".into()], ..queue("a", "A") }),
            Err(Error::InvalidSkills)
        );
    }

    #[test]
    fn putting_the_same_queue_twice_records_nothing_new() {
        let state = apply(
            Config::default(),
            Command::PutQueue { queue: queue("a", "A"), by: "s".into(), now: 1 },
        );
        assert_eq!(
            decide(&state, &Command::PutQueue { queue: queue("a", "A"), by: "s".into(), now: 2 }),
            Ok(vec![])
        );
    }

    #[test]
    fn b3_4_default_queue_is_created_once_when_needed() {
        let state =
            apply(Config::default(), Command::EnsureQueue { queue_id: "default".into(), now: 1 });
        assert_eq!(state.queues["default"].offer_timeout_secs, DEFAULT_OFFER_TIMEOUT_SECS);
        assert_eq!(
            decide(&state, &Command::EnsureQueue { queue_id: "default".into(), now: 2 }),
            Ok(vec![])
        );
    }

    #[test]
    fn b5_1_queue_directory_search_is_case_insensitive() {
        let mut state = Config::default();
        for (id, name) in [("s", "Sales EMEA"), ("b", "Billing"), ("t", "Tech sales")] {
            state =
                apply(state, Command::PutQueue { queue: queue(id, name), by: "s".into(), now: 1 });
        }
        let names: Vec<_> = state.search("SALES").iter().map(|q| q.name.as_str()).collect();
        assert_eq!(names, ["Sales EMEA", "Tech sales"]);
        assert_eq!(state.search("").len(), 3);
    }
}
