//! Every operator of a query checks, between batches, whether the memory backstop stopped it.
//!
//! Checking only the query's output is not enough: an aggregation over a table joined with
//! itself pulls every joined batch from memory within a single poll of its output (nothing in
//! between waits on I/O), and allocated 1.4 GiB before that poll returned. With each operator's
//! input wrapped, the aggregation's next pull from the join ends in `ResourcesExhausted`, which
//! every operator above passes on, and the query ends at once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::Stream;

use super::memory_backstop::StopSignal;

/// `plan` with every operator's output checked against `stop`.
pub(super) fn watched(plan: Arc<dyn ExecutionPlan>, stop: &StopSignal) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let wrapped: Arc<dyn ExecutionPlan> =
            Arc::new(WatchedExec { properties: node.properties().clone(), input: node, stop: stop.clone() });
        Ok(Transformed::yes(wrapped))
    })
    .map(|t| t.data)
}

#[derive(Debug)]
struct WatchedExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    stop: StopSignal,
}

impl DisplayAs for WatchedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WatchedExec")
    }
}

impl ExecutionPlan for WatchedExec {
    fn name(&self) -> &str {
        "WatchedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        Ok(Arc::new(WatchedExec { properties: input.properties().clone(), input, stop: self.stop.clone() }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.stop.check()?;
        let inner = self.input.execute(partition, context)?;
        Ok(Box::pin(CheckedStream { inner, stop: self.stop.clone(), ended: false }))
    }
}

struct CheckedStream {
    inner: SendableRecordBatchStream,
    stop: StopSignal,
    ended: bool,
}

impl Stream for CheckedStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Err(stopped) = self.stop.check() {
            self.ended = true;
            return Poll::Ready(Some(Err(stopped)));
        }
        self.inner.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for CheckedStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}
