//! The streams running on this server, by domain and `query_id`, so that
//! `DELETE /v1/stream/{query_id}` can stop one at once. A caller sees only its own domain's
//! ids: another domain's query with the same id is not there for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Why a stream was not registered.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The domain already runs a stream with this `query_id`.
    IdTaken,
    /// The domain already runs this many streams, the most it may (`server.max_streams_per_domain`).
    DomainBusy(usize),
}

pub struct StreamRegistry {
    running: Mutex<HashMap<(String, String), CancellationToken>>,
    /// Streams one domain may run at once on this server (`None`: no cap). Each holds a query
    /// (its memory budget, a share of the query runtime's threads), so one tenant opening
    /// streams without end must not leave the others none.
    max_per_domain: Option<usize>,
}

/// A running stream's place in the registry; leaving it (when the stream ends, however it
/// ends) frees the id.
pub struct Registered {
    registry: Arc<StreamRegistry>,
    key: (String, String),
    pub cancel: CancellationToken,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
    }
}

impl StreamRegistry {
    /// A registry letting each domain run `max_per_domain` streams at once (0: no cap).
    pub fn new(max_per_domain: usize) -> Self {
        Self { running: Mutex::default(), max_per_domain: (max_per_domain > 0).then_some(max_per_domain) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), CancellationToken>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `query_id` for a new stream of `domain`: refused while another of its streams
    /// runs with that id, or while it already runs as many streams as it may.
    pub fn register(self: &Arc<Self>, domain: &str, query_id: &str) -> Result<Registered, Refusal> {
        let key = (domain.to_string(), query_id.to_string());
        let mut running = self.lock();
        if running.contains_key(&key) {
            return Err(Refusal::IdTaken);
        }
        if let Some(max) = self.max_per_domain
            && running.keys().filter(|(d, _)| d == domain).count() >= max
        {
            return Err(Refusal::DomainBusy(max));
        }
        let cancel = CancellationToken::new();
        running.insert(key.clone(), cancel.clone());
        Ok(Registered { registry: self.clone(), key, cancel })
    }

    /// Cancels `domain`'s stream `query_id`; `false` if none runs.
    pub fn cancel(&self, domain: &str, query_id: &str) -> bool {
        match self.lock().get(&(domain.to_string(), query_id.to_string())) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// How many streams run now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_per_domain_and_freed_when_the_stream_ends() {
        let registry = Arc::new(StreamRegistry::new(4));
        let a = registry.register("acme", "q1").unwrap();
        assert_eq!(
            registry.register("acme", "q1").err(),
            Some(Refusal::IdTaken),
            "one running stream per id"
        );
        let b = registry.register("other", "q1").unwrap();
        assert!(!registry.cancel("nobody", "q1"));
        assert!(registry.cancel("other", "q1"));
        assert!(b.cancel.is_cancelled() && !a.cancel.is_cancelled());
        drop(a);
        assert!(registry.register("acme", "q1").is_ok());
        drop(b);
        assert!(registry.is_empty());
    }

    #[test]
    fn one_domain_runs_a_bounded_number_of_streams() {
        let registry = Arc::new(StreamRegistry::new(3));
        let held: Vec<_> = (0..3).map(|i| registry.register("acme", &format!("q{i}")).unwrap()).collect();
        assert_eq!(registry.register("acme", "one-more").err(), Some(Refusal::DomainBusy(3)));
        assert!(registry.register("other", "q0").is_ok(), "another domain is not held back");
        drop(held);
        assert!(registry.register("acme", "one-more").is_ok(), "a stream that ends frees its place");
        let uncapped = Arc::new(StreamRegistry::new(0));
        let many: Vec<_> = (0..100).map(|i| uncapped.register("acme", &format!("q{i}")).unwrap()).collect();
        assert_eq!(many.len(), 100, "0: no cap");
    }
}
