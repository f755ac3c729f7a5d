//! The code that turns SQL text into a plan, compiled apart from the main crate.
//!
//! Why a crate of its own: the main crate is built at opt-level 3 for its encoders, and every
//! generic function or async body it uses from a dependency is compiled there again, at
//! opt-level 3. sqlparser's syntax-tree visitors (a thousand functions per visitor type, each
//! behind a stack guard) and DataFusion's SQL planner (`SqlToRel`, reached through the async
//! `SessionState::statement_to_plan`) were a fifth of the main crate's machine code and of
//! the time its build takes, alone at the end of a cold build. Here they are compiled once, at
//! opt-level 1 like the planner itself (Cargo.toml's release profile): they run once per query.
//! The main crate calls only the plain functions and the boxed future below.

mod walk;

use datafusion::error::Result;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement;
use futures::future::BoxFuture;

pub use walk::{Width, dotted, first_table, width};

/// DataFusion's `SessionState::statement_to_plan`, its future boxed so that the planner is
/// compiled in this crate and not in the caller's.
pub fn statement_to_plan(
    state: SessionState,
    statement: Statement,
) -> BoxFuture<'static, Result<LogicalPlan>> {
    Box::pin(async move { state.statement_to_plan(statement).await })
}
