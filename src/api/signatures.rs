//! A signed request is good for one method and path. Devo's signature covers the API key,
//! the body and the timestamp, not the path: a captured `GET /search/job/{id}` (empty body)
//! would otherwise also sign `GET /search/job/remove/{id}` until its timestamp goes stale.
//! The first use of a signature binds it to its method and path (with the query); the same
//! request again is allowed (Devo's SDK signs whole seconds, so two polls of a job in one
//! second carry one signature), any other is refused.
//!
//! Kept in this process's memory, not in the job store: a binding is needed on every signed
//! read, and the store would take a write per poll. With several API servers, a signature
//! bound on one is unknown to the others (the submission replay check, which is in the
//! store, covers all of them).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

/// Signatures remembered at most (about 200 bytes each): far above what honest clients sign
/// within the clock-skew window, a bound on what a flood of signed requests can take.
pub const MAX_SIGNATURES: usize = 200_000;

pub struct SignatureBindings {
    inner: Mutex<Bindings>,
    cap: usize,
}

#[derive(Default)]
struct Bindings {
    /// Signature → the method and path it was first used with, and when it goes stale.
    target: HashMap<Arc<str>, (String, i64)>,
    /// The same signatures by when they go stale, soonest first.
    expiry: BinaryHeap<Reverse<(i64, Arc<str>)>>,
}

/// Why a signed request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The signature was first used with another method or path.
    BoundElsewhere,
    /// `cap` live signatures are remembered; the oldest goes stale in this many ms.
    Full { retry_after_ms: i64 },
}

impl SignatureBindings {
    pub fn new(cap: usize) -> Self {
        Self { inner: Mutex::new(Bindings::default()), cap }
    }

    /// Binds `signature` to `target` (method and path) on its first use, until `stale_at_ms`;
    /// a later use is allowed with the same target only.
    pub fn bind(&self, signature: &str, target: &str, stale_at_ms: i64, now_ms: i64) -> Result<(), Refused> {
        let mut b = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        b.forget_stale(now_ms);
        if let Some((bound, _)) = b.target.get(signature) {
            return if bound == target { Ok(()) } else { Err(Refused::BoundElsewhere) };
        }
        if b.target.len() >= self.cap {
            let soonest = b.expiry.peek().map_or(now_ms, |Reverse((at, _))| *at);
            return Err(Refused::Full { retry_after_ms: (soonest - now_ms).max(1) });
        }
        let signature: Arc<str> = signature.into();
        b.target.insert(signature.clone(), (target.to_string(), stale_at_ms));
        b.expiry.push(Reverse((stale_at_ms, signature)));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).target.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Bindings {
    fn forget_stale(&mut self, now_ms: i64) {
        while let Some(Reverse((at, _))) = self.expiry.peek()
            && *at < now_ms
        {
            let Some(Reverse((_, signature))) = self.expiry.pop() else { break };
            self.target.remove(&signature);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_good_for_its_first_target_only() {
        let b = SignatureBindings::new(10);
        assert_eq!(b.bind("s1", "GET /search/job/1", 1_000, 0), Ok(()));
        assert_eq!(b.bind("s1", "GET /search/job/1", 1_000, 10), Ok(()), "the same read again");
        assert_eq!(b.bind("s1", "GET /search/job/remove/1", 1_000, 20), Err(Refused::BoundElsewhere));
        assert_eq!(b.bind("s1", "POST /search/job/1", 1_000, 20), Err(Refused::BoundElsewhere));
        assert_eq!(b.bind("s2", "GET /search/job/remove/1", 1_000, 30), Ok(()));
    }

    #[test]
    fn stale_signatures_are_forgotten_and_a_full_map_refuses_until_one_is() {
        let b = SignatureBindings::new(2);
        b.bind("s1", "GET /a", 100, 0).unwrap();
        b.bind("s2", "GET /b", 200, 0).unwrap();
        assert_eq!(b.bind("s3", "GET /c", 300, 50), Err(Refused::Full { retry_after_ms: 50 }));
        assert_eq!(b.bind("s3", "GET /c", 300, 101), Ok(()), "s1 went stale at 100");
        assert_eq!(b.len(), 2);
        // Past its staleness the clock-skew check refuses the signature anyway; here it is free.
        assert_eq!(b.bind("s1", "GET /other", 400, 201), Ok(()), "s2 went stale at 200");
    }
}
