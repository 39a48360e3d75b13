//! Deadlines stored in events (offer expiry, auto wrap-up) and fired by the
//! service. The service's read model schedules and cancels them as events
//! arrive — including while it replays the log on start, so a deadline that
//! passed while the service was down fires right after the replay, late but
//! never lost.

use std::{collections::BTreeMap, future::Future, sync::Mutex, time::Duration};

use tokio::sync::Notify;

use crate::{Clock, Millis, Shutdown};

/// When a firing failed (the store was down, say), try again after this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A set of keyed deadlines.
#[derive(Debug, Default)]
pub struct Deadlines<K: Ord> {
    due: Mutex<BTreeMap<K, Millis>>,
    changed: Notify,
}

impl<K: Ord + Clone + Send + std::fmt::Debug> Deadlines<K> {
    pub fn new() -> Self {
        Deadlines { due: Mutex::new(BTreeMap::new()), changed: Notify::new() }
    }

    pub fn schedule(&self, key: K, at: Millis) {
        self.lock().insert(key, at);
        self.changed.notify_one();
    }

    pub fn cancel(&self, key: &K) {
        if self.lock().remove(key).is_some() {
            self.changed.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn get(&self, key: &K) -> Option<Millis> {
        self.lock().get(key).copied()
    }

    fn earliest(&self) -> Option<Millis> {
        self.lock().values().min().copied()
    }

    /// Removes and returns every deadline at or before `now`.
    fn take_due(&self, now: Millis) -> Vec<K> {
        let mut due = self.lock();
        let keys: Vec<K> =
            due.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
        for k in &keys {
            due.remove(k);
        }
        keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<K, Millis>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fires deadlines as `clock` reaches them until shutdown. `fire` returns
    /// `false` when it could not act; the deadline is then tried again after
    /// [`RETRY_AFTER`].
    pub async fn run<F, Fut>(&self, clock: Clock, fire: F, mut shutdown: Shutdown)
    where
        F: Fn(K) -> Fut,
        Fut: Future<Output = bool>,
    {
        loop {
            let changed = self.changed.notified();
            let now = clock.now();
            for key in self.take_due(now) {
                if !fire(key.clone()).await {
                    tracing::warn!(?key, "deadline could not be fired; retrying");
                    self.lock().entry(key).or_insert(now + RETRY_AFTER.as_millis() as Millis);
                }
            }
            let next = self.earliest();
            tokio::select! {
                () = async {
                    match next {
                        Some(at) => clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {},
                () = changed => {},
                () = shutdown.wait() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn deadlines_fire_when_the_clock_reaches_them_and_not_before() {
        let clock = Clock::manual(0);
        let deadlines = Arc::new(Deadlines::<String>::new());
        let (fired_tx, mut fired) = tokio::sync::mpsc::unbounded_channel();
        let (trigger, shutdown) = Shutdown::new();
        let runner = tokio::spawn({
            let (deadlines, clock) = (deadlines.clone(), clock.clone());
            async move {
                deadlines
                    .run(
                        clock,
                        |k| {
                            let tx = fired_tx.clone();
                            async move { tx.send(k).is_ok() }
                        },
                        shutdown,
                    )
                    .await
            }
        });
        deadlines.schedule("b".into(), 2_000);
        deadlines.schedule("a".into(), 1_000);
        deadlines.schedule("c".into(), 3_000);
        deadlines.cancel(&"c".to_string());
        clock.set(999);
        tokio::task::yield_now().await;
        assert!(fired.try_recv().is_err());
        clock.set(1_000);
        assert_eq!(fired.recv().await.unwrap(), "a");
        clock.set(5_000);
        assert_eq!(fired.recv().await.unwrap(), "b");
        assert!(deadlines.is_empty(), "c was cancelled");
        trigger.trigger();
        runner.await.unwrap();
    }

    #[tokio::test]
    async fn a_deadline_already_past_fires_at_once() {
        let clock = Clock::manual(10_000);
        let deadlines = Deadlines::<u32>::new();
        deadlines.schedule(1, 5_000); // e.g. replayed after a restart
        let (trigger, shutdown) = Shutdown::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let run = deadlines.run(
            clock,
            |k| {
                let tx = tx.clone();
                async move { tx.send(k).is_ok() }
            },
            shutdown,
        );
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => panic!("stopped early"),
            k = rx.recv() => assert_eq!(k, Some(1)),
        }
        trigger.trigger();
        run.await;
    }
}
