//! The streams running on this server, by domain and `query_id`, so that
//! `DELETE /v1/stream/{query_id}` can stop one at once. A caller sees only its own domain's
//! ids: another domain's query with the same id is not there for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct StreamRegistry {
    running: Mutex<HashMap<(String, String), CancellationToken>>,
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
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), CancellationToken>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `query_id` for a new stream of `domain`; `None` while another of its streams
    /// runs with that id.
    pub fn register(self: &Arc<Self>, domain: &str, query_id: &str) -> Option<Registered> {
        let key = (domain.to_string(), query_id.to_string());
        let mut running = self.lock();
        if running.contains_key(&key) {
            return None;
        }
        let cancel = CancellationToken::new();
        running.insert(key.clone(), cancel.clone());
        Some(Registered { registry: self.clone(), key, cancel })
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
        let registry = Arc::new(StreamRegistry::default());
        let a = registry.register("acme", "q1").unwrap();
        assert!(registry.register("acme", "q1").is_none(), "one running stream per id");
        let b = registry.register("other", "q1").unwrap();
        assert!(!registry.cancel("nobody", "q1"));
        assert!(registry.cancel("other", "q1"));
        assert!(b.cancel.is_cancelled() && !a.cancel.is_cancelled());
        drop(a);
        assert!(registry.register("acme", "q1").is_some());
        drop(b);
        assert!(registry.is_empty());
    }
}
