//! Where a query's recursion runs: on a stack big enough for the deepest query let through.
//!
//! Planning, optimizing, building the physical plan, polling its stream and dropping it all
//! recurse once per level of the query's tree. The parser's limits ([`super::parse`]) still let
//! through some 20 nested subqueries over a chain of a thousand operators, and in a debug build
//! that took more than a 2 MiB thread stack has: the process aborted (CI, 2026-12-01, a job
//! polled from a test's thread). So every such step runs through [`on_big_stack`]: in place on
//! the query runtimes' threads, whose stacks are [`QUERY_THREAD_STACK`] big, and on a fresh stack
//! of [`BIG_STACK`] bytes anywhere else. Only the pages a query touches are ever committed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::Stream;

/// The stack a query's recursion may use.
pub const BIG_STACK: usize = 64 << 20;

/// Left on the current stack, at least this much and the work stays on it.
const RED_ZONE: usize = 8 << 20;

/// The stack of the threads queries run on: big enough that [`on_big_stack`] stays in place.
pub const QUERY_THREAD_STACK: usize = BIG_STACK + RED_ZONE;

/// Runs `work` with at least [`BIG_STACK`] bytes of stack (in place when there is that much left).
pub fn on_big_stack<R>(work: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, BIG_STACK, work)
}

/// A future polled on a big stack (a physical planner's, for one).
pub async fn planned_on_big_stack<T>(future: impl Future<Output = T> + Send) -> T {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| on_big_stack(|| future.as_mut().poll(cx))).await
}

/// A query's record batches, each poll and the final drop on a big stack.
pub fn streamed_on_big_stack(stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    Box::pin(BigStackStream { schema: stream.schema(), inner: Some(stream) })
}

struct BigStackStream {
    schema: SchemaRef,
    /// Always `Some` until dropped.
    inner: Option<SendableRecordBatchStream>,
}

impl Stream for BigStackStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut() {
            Some(inner) => on_big_stack(|| inner.as_mut().poll_next(cx)),
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.as_ref().map_or((0, Some(0)), |s| s.size_hint())
    }
}

impl RecordBatchStream for BigStackStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Drop for BigStackStream {
    fn drop(&mut self) {
        // Dropping a plan walks its tree too.
        if let Some(inner) = self.inner.take() {
            on_big_stack(move || drop(inner));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recurse(depth: usize) -> usize {
        // A frame that holds 1 KiB, as a debug build's deep frames do.
        let frame = std::hint::black_box([0u8; 1024]);
        if depth == 0 { 0 } else { recurse(depth - 1) + 1 + usize::from(frame[0]) }
    }

    /// 16 MiB of recursion on a 256 KiB thread.
    #[test]
    fn deep_recursion_runs_on_a_small_thread() {
        let done = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| on_big_stack(|| recurse(16 * 1024)))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(done, 16 * 1024);
    }
}
