//! Counts the attempts the SDK makes for one call, so that the create of a multipart upload
//! that had to be retried is known: its earlier attempts may have created uploads of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;

/// Counts the attempts the SDK makes for one call (the first one and each retry), so that a
/// call that had to be retried can be told from one that was answered at once.
#[derive(Debug, Clone, Default)]
pub(super) struct Attempts(Arc<AtomicU32>);

impl Attempts {
    pub fn count(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "Attempts"
    }

    fn read_before_attempt(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
