//! The access-token cache: one token per scope, renewed before it expires, fetched once however
//! many callers need it at the same moment.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::OnlineError;

/// A token as the token endpoint granted it.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) access_token: SecretString,
    pub(crate) expires_in: Duration,
}

/// A token ready to send, with the generation that lets a 401 invalidate exactly this one.
#[derive(Debug, Clone)]
pub(crate) struct Bearer {
    pub(crate) token: Arc<SecretString>,
    pub(crate) generation: u64,
}

#[derive(Debug)]
struct Cached {
    bearer: Bearer,
    usable_until: Instant,
}

#[derive(Debug, Default)]
struct Slot {
    cached: Option<Cached>,
    generations: u64,
}

/// One scope's token. A fresh token is read under a plain mutex, held for a clone and never
/// across an `.await`: every request passes here, and an async mutex would hand the lock from
/// task to task, each hand-over waiting for the next task to be scheduled (a convoy that capped
/// the worker's request rate, docs/PERFORMANCE.md). Holding the async `refresh` mutex across the
/// fetch is what makes the refresh single-flight: concurrent callers that find no fresh token
/// queue on it and find the fresh token when they get it.
#[derive(Debug)]
pub(crate) struct TokenCache {
    renewal_margin: Duration,
    slot: std::sync::Mutex<Slot>,
    refresh: Mutex<()>,
}

impl TokenCache {
    pub(crate) fn new(renewal_margin: Duration) -> Self {
        Self {
            renewal_margin,
            slot: std::sync::Mutex::new(Slot::default()),
            refresh: Mutex::new(()),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        // A token and a counter: a panic while holding the lock cannot leave them half-written.
        self.slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fresh(&self) -> Option<Bearer> {
        self.slot()
            .cached
            .as_ref()
            .filter(|cached| Instant::now() < cached.usable_until)
            .map(|cached| cached.bearer.clone())
    }

    /// The cached token while it is fresh, else the one `fetch` obtains.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<Bearer, OnlineError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Grant, OnlineError>>,
    {
        if let Some(bearer) = self.fresh() {
            return Ok(bearer);
        }
        let _single_flight = self.refresh.lock().await;
        if let Some(bearer) = self.fresh() {
            return Ok(bearer);
        }
        let grant = fetch().await?;
        let mut slot = self.slot();
        slot.generations += 1;
        let bearer = Bearer {
            token: Arc::new(grant.access_token),
            generation: slot.generations,
        };
        slot.cached = Some(Cached {
            bearer: bearer.clone(),
            usable_until: Instant::now() + usable_for(grant.expires_in, self.renewal_margin),
        });
        Ok(bearer)
    }

    /// Forgets the token of `generation` after the service refused it; a newer token that
    /// another caller already fetched is kept, so simultaneous 401s renew only once.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut slot = self.slot();
        if slot
            .cached
            .as_ref()
            .is_some_and(|cached| cached.bearer.generation == generation)
        {
            slot.cached = None;
        }
    }
}

/// How long a token is used: its lifetime less the renewal margin, but never less than half
/// its lifetime, so a short-lived token (an emulator's, or a 10-minute policy) is still reused.
fn usable_for(expires_in: Duration, margin: Duration) -> Duration {
    expires_in.saturating_sub(margin.min(expires_in / 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::ExposeSecret;

    fn grant(value: &str, seconds: u64) -> Grant {
        Grant {
            access_token: SecretString::from(value),
            expires_in: Duration::from_secs(seconds),
        }
    }

    #[test]
    fn a_token_is_renewed_five_minutes_early_but_short_tokens_live_half_their_life() {
        let margin = Duration::from_secs(300);
        assert_eq!(
            usable_for(Duration::from_secs(3599), margin),
            Duration::from_secs(3299)
        );
        assert_eq!(
            usable_for(Duration::from_secs(60), margin),
            Duration::from_secs(30)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_token_is_reused_and_an_expiring_one_renewed() {
        let cache = TokenCache::new(Duration::from_secs(300));
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok(grant(&format!("token-{n}"), 3599))
        };
        let first = cache.get(fetch).await.unwrap();
        let again = cache.get(fetch).await.unwrap();
        assert_eq!(again.token.expose_secret(), "token-0");
        assert_eq!(first.generation, again.generation);

        tokio::time::advance(Duration::from_secs(3300)).await;
        let renewed = cache.get(fetch).await.unwrap();
        assert_eq!(renewed.token.expose_secret(), "token-1");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(300)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(grant("shared", 3599))
                    })
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().token.expose_secret(), "shared");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidating_an_old_generation_keeps_the_newer_token() {
        let cache = TokenCache::new(Duration::from_secs(300));
        let old = cache
            .get(|| async { Ok(grant("old", 3599)) })
            .await
            .unwrap();
        cache.invalidate(old.generation).await;
        let new = cache
            .get(|| async { Ok(grant("new", 3599)) })
            .await
            .unwrap();
        cache.invalidate(old.generation).await;
        let still = cache
            .get(|| async { Ok(grant("newer", 3599)) })
            .await
            .unwrap();
        assert_eq!(new.generation, still.generation);
        assert_eq!(still.token.expose_secret(), "new");
    }
}
