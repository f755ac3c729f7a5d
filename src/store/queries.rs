//! Queries registered for a later export (`POST /v1/queries`): what to run and over which
//! time range, kept in the job store so that an export can be asked for after a restart, or
//! on another server sharing the store.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PostgresStore, SqliteStore, StoreError};

/// One registered query; its id is the `executionId` the caller exports by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredQuery {
    pub id: Uuid,
    pub domain: String,
    pub query: String,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub created_at_ms: i64,
}

#[async_trait]
pub trait QueryStore: Send + Sync + 'static {
    async fn register_query(&self, query: &RegisteredQuery) -> Result<(), StoreError>;
    /// The query if it exists in `domain` (another domain's is not found).
    async fn registered_query(&self, domain: &str, id: Uuid) -> Result<Option<RegisteredQuery>, StoreError>;
}

type Row = (String, String, String, Option<i64>, Option<i64>, i64);

fn from_row((id, domain, query, from_ms, to_ms, created_at_ms): Row) -> Result<RegisteredQuery, StoreError> {
    let id = Uuid::parse_str(&id).map_err(|e| super::rows::corrupt(&id, e))?;
    Ok(RegisteredQuery { id, domain, query, from_ms, to_ms, created_at_ms })
}

/// The same statements serve both stores (`$n` parameters work in SQLite too).
macro_rules! sql_query_store {
    ($store:ty) => {
        #[async_trait]
        impl QueryStore for $store {
            async fn register_query(&self, q: &RegisteredQuery) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO registered_queries (id, domain, query, from_ms, to_ms, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(q.id.to_string())
                .bind(&q.domain)
                .bind(&q.query)
                .bind(q.from_ms)
                .bind(q.to_ms)
                .bind(q.created_at_ms)
                .execute(self.pool())
                .await?;
                Ok(())
            }

            async fn registered_query(
                &self,
                domain: &str,
                id: Uuid,
            ) -> Result<Option<RegisteredQuery>, StoreError> {
                let row: Option<Row> = sqlx::query_as(
                    "SELECT id, domain, query, from_ms, to_ms, created_at FROM registered_queries
                     WHERE id = $1 AND domain = $2",
                )
                .bind(id.to_string())
                .bind(domain)
                .fetch_optional(self.pool())
                .await?;
                row.map(from_row).transpose()
            }
        }
    };
}

sql_query_store!(SqliteStore);
sql_query_store!(PostgresStore);
