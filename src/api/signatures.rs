//! A signed request is good for one method and path. Devo's signature covers the API key,
//! the body and the timestamp, not the path: a captured `GET /search/job/{id}` (empty body)
//! would otherwise also sign `GET /search/job/remove/{id}` until its timestamp goes stale.
//! The first use of a signature binds it to its method and path (with the query); the same
//! request again is allowed (Devo's SDK signs whole seconds, so two polls of a job in one
//! second carry one signature), any other is refused.
//!
//! One exception keeps Devo's SDK working unmodified: it signs with the time in whole seconds
//! (`int(time.time()) * 1000`), so every GET it sends in one second carries the same
//! signature, whatever the path (`get_job` then `remove_job` in one second). A signature
//! whose timestamp is a whole second may therefore serve other paths for [`SHARED_SECOND`]
//! after its first use on this server, not after: a captured request can be replayed on
//! another path within that moment only, instead of the whole clock-skew window. A client
//! signing with milliseconds gets no such moment.
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

/// How long after its first use a whole-second signature may serve other paths: the rest of
/// the client's second, plus room for the requests' travel.
pub const SHARED_SECOND: std::time::Duration = std::time::Duration::from_secs(2);

pub struct SignatureBindings {
    inner: Mutex<Bindings>,
    cap: usize,
}

#[derive(Default)]
struct Bindings {
    /// Signature → the method and path it was first used with, and until when it may serve
    /// other paths too (whole-second signatures only).
    target: HashMap<Arc<str>, (String, Option<i64>)>,
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
    /// a later use is allowed with the same target only (or, for a `whole_second` signature,
    /// with any target within [`SHARED_SECOND`] of the first use).
    pub fn bind(
        &self,
        signature: &str,
        target: &str,
        whole_second: bool,
        stale_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), Refused> {
        let mut b = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        b.forget_stale(now_ms);
        if let Some((bound, shared_until)) = b.target.get(signature) {
            return if bound == target || shared_until.is_some_and(|until| now_ms <= until) {
                Ok(())
            } else {
                Err(Refused::BoundElsewhere)
            };
        }
        if b.target.len() >= self.cap {
            let soonest = b.expiry.peek().map_or(now_ms, |Reverse((at, _))| *at);
            return Err(Refused::Full { retry_after_ms: (soonest - now_ms).max(1) });
        }
        let signature: Arc<str> = signature.into();
        let shared_until = whole_second.then(|| now_ms + SHARED_SECOND.as_millis() as i64);
        b.target.insert(signature.clone(), (target.to_string(), shared_until));
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
        assert_eq!(b.bind("s1", "GET /search/job/1", false, 1_000, 0), Ok(()));
        assert_eq!(b.bind("s1", "GET /search/job/1", false, 1_000, 10), Ok(()), "the same read again");
        assert_eq!(b.bind("s1", "GET /search/job/remove/1", false, 1_000, 20), Err(Refused::BoundElsewhere));
        assert_eq!(b.bind("s1", "POST /search/job/1", false, 1_000, 20), Err(Refused::BoundElsewhere));
        assert_eq!(b.bind("s2", "GET /search/job/remove/1", false, 1_000, 30), Ok(()));
    }

    #[test]
    fn a_whole_second_signature_serves_other_paths_only_just_after_its_first_use() {
        let b = SignatureBindings::new(10);
        let shared = SHARED_SECOND.as_millis() as i64;
        b.bind("s1", "GET /search/job/1", true, 300_000, 0).unwrap();
        assert_eq!(
            b.bind("s1", "GET /search/jobs", true, 300_000, shared),
            Ok(()),
            "the SDK's next call in its second"
        );
        assert_eq!(
            b.bind("s1", "GET /search/job/remove/1", true, 300_000, shared + 1),
            Err(Refused::BoundElsewhere)
        );
        assert_eq!(
            b.bind("s1", "GET /search/job/1", true, 300_000, shared + 1),
            Ok(()),
            "the first path still"
        );
    }

    #[test]
    fn stale_signatures_are_forgotten_and_a_full_map_refuses_until_one_is() {
        let b = SignatureBindings::new(2);
        b.bind("s1", "GET /a", false, 100, 0).unwrap();
        b.bind("s2", "GET /b", false, 200, 0).unwrap();
        assert_eq!(b.bind("s3", "GET /c", false, 300, 50), Err(Refused::Full { retry_after_ms: 50 }));
        assert_eq!(b.bind("s3", "GET /c", false, 300, 101), Ok(()), "s1 went stale at 100");
        assert_eq!(b.len(), 2);
        // Past its staleness the clock-skew check refuses the signature anyway; here it is free.
        assert_eq!(b.bind("s1", "GET /other", false, 400, 201), Ok(()), "s2 went stale at 200");
    }
}
