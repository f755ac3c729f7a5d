//! API credentials in the SQL stores: bearer tokens (kept as SHA-256 digests) and Devo API
//! keys (the secret sealed with the server key).

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{Credential, CredentialKind, CredentialStore, PostgresStore, SqliteStore, StoreError};
use crate::job::now_ms;

/// What a bearer token is looked up by: its SHA-256, never the token itself.
pub fn token_lookup(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn kind_str(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Token => "token",
        CredentialKind::ApiKey => "apikey",
    }
}

type Row = (String, String, String, Option<Vec<u8>>, i64, Option<i64>);

fn credential((id, kind, domain, sealed, created_at, revoked_at): Row) -> Credential {
    let kind = if kind == "apikey" { CredentialKind::ApiKey } else { CredentialKind::Token };
    Credential { id, kind, domain, sealed, created_at_ms: created_at, revoked: revoked_at.is_some() }
}

/// The same statements serve both stores (`$n` parameters work in SQLite too).
macro_rules! sql_credential_store {
    ($store:ty) => {
#[async_trait]
impl CredentialStore for $store {
    async fn add_credential(&self, kind: CredentialKind, domain: &str, lookup: &str, sealed: Option<&[u8]>) -> Result<String, StoreError> {
        let id = format!("{}_{}", kind_str(kind), &uuid::Uuid::new_v4().simple().to_string()[..12]);
        sqlx::query("INSERT INTO credentials (id, kind, domain, lookup, sealed, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&id)
            .bind(kind_str(kind))
            .bind(domain)
            .bind(lookup)
            .bind(sealed)
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        Ok(id)
    }

    async fn find_credential(&self, kind: CredentialKind, lookup: &str) -> Result<Option<Credential>, StoreError> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, kind, domain, sealed, created_at, revoked_at FROM credentials
             WHERE kind = $1 AND lookup = $2 AND revoked_at IS NULL",
        )
        .bind(kind_str(kind))
        .bind(lookup)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(credential))
    }

    async fn list_credentials(&self) -> Result<Vec<Credential>, StoreError> {
        let rows: Vec<Row> =
            sqlx::query_as("SELECT id, kind, domain, CASE WHEN FALSE THEN sealed END, created_at, revoked_at FROM credentials ORDER BY created_at")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(credential).collect())
    }

    async fn revoke_credential(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE credentials SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn adopt_server_key(&self, fingerprint: &str) -> Result<bool, StoreError> {
        sqlx::query("INSERT INTO server_key (id, fingerprint) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .bind(fingerprint)
            .execute(self.pool())
            .await?;
        let stored: String = sqlx::query_scalar("SELECT fingerprint FROM server_key WHERE id = 1").fetch_one(self.pool()).await?;
        Ok(stored == fingerprint)
    }

    async fn first_use_of_signature(&self, signature: &str, expires_at_ms: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM used_signatures WHERE expires_at < $1").bind(now_ms()).execute(&mut *tx).await?;
        let added = sqlx::query("INSERT INTO used_signatures (signature, expires_at) VALUES ($1, $2) ON CONFLICT (signature) DO NOTHING")
            .bind(signature.to_ascii_lowercase())
            .bind(expires_at_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(added.rows_affected() == 1)
    }

    async fn has_credentials(&self) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials").fetch_one(self.pool()).await?;
        Ok(n > 0)
    }
}
    };
}

sql_credential_store!(SqliteStore);
sql_credential_store!(PostgresStore);
