//! Time as an input. Services read time only through [`Clock`]; deadlines
//! (offer expiry, auto wrap-up, the 24 h window) are stored in events and
//! fired by comparing them with this clock.
//!
//! [`Clock::manual`] is a controllable clock for tests. A service started with
//! `SWITCHBOARD_CLOCK=manual` uses one and follows the time published on
//! [`bus::subjects::TEST_CLOCK`], so an end-to-end test can move every
//! process's time forward without sleeping.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::StreamExt;
use tokio::sync::watch;

/// Unix milliseconds.
pub type Millis = i64;

#[derive(Clone)]
pub struct Clock(Arc<Inner>);

enum Inner {
    System,
    Manual(watch::Sender<Millis>),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Inner::System => f.write_str("Clock::System"),
            Inner::Manual(now) => write!(f, "Clock::Manual({})", *now.borrow()),
        }
    }
}

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(Inner::System))
    }

    /// A clock that only moves when told to.
    pub fn manual(start: Millis) -> Clock {
        Clock(Arc::new(Inner::Manual(watch::Sender::new(start))))
    }

    pub fn is_manual(&self) -> bool {
        matches!(&*self.0, Inner::Manual(_))
    }

    pub fn now(&self) -> Millis {
        match &*self.0 {
            Inner::System => system_now(),
            Inner::Manual(now) => *now.borrow(),
        }
    }

    /// Moves a manual clock to `to` (never backwards). No effect on the system clock.
    pub fn set(&self, to: Millis) {
        if let Inner::Manual(now) = &*self.0 {
            now.send_if_modified(|t| {
                let moved = to > *t;
                if moved {
                    *t = to;
                }
                moved
            });
        }
    }

    pub fn advance(&self, by: Duration) {
        self.set(self.now() + i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
    }

    /// Resolves once `now() >= deadline`.
    pub async fn sleep_until(&self, deadline: Millis) {
        match &*self.0 {
            Inner::System => loop {
                let left = deadline - system_now();
                if left <= 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(left.unsigned_abs())).await;
            },
            Inner::Manual(now) => {
                let mut rx = now.subscribe();
                let _ = rx.wait_for(|t| *t >= deadline).await;
            }
        }
    }

    /// For a manual clock: follows the times published on the test-clock
    /// subject until the connection closes. Returns at once for the system clock.
    pub async fn follow_bus(self, bus: bus::Bus) {
        if !self.is_manual() {
            return;
        }
        let Ok(mut sub) = bus.client().subscribe(bus::subjects::TEST_CLOCK).await else {
            tracing::error!("cannot subscribe to the test clock");
            return;
        };
        while let Some(message) = sub.next().await {
            match std::str::from_utf8(&message.payload)
                .ok()
                .and_then(|s| s.trim().parse::<Millis>().ok())
            {
                Some(t) => self.set(t),
                None => tracing::warn!("ignoring a malformed test-clock message"),
            }
            if let Some(reply) = message.reply {
                let _ = bus.client().publish(reply, self.now().to_string().into()).await;
            }
        }
    }
}

fn system_now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_only_when_moved_past_their_deadline() {
        let clock = Clock::manual(1_000);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(5_000).await }
        });
        clock.set(4_999);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.set(3_000); // never backwards
        assert_eq!(clock.now(), 4_999);
        clock.advance(Duration::from_millis(1));
        sleeper.await.unwrap();
        assert_eq!(clock.now(), 5_000);
    }
}
