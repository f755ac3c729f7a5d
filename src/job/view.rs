//! The job as Devo's API shows it, plus fields of ours under `extra`. Built from [`Job`]
//! alone, which holds no secret, so nothing secret can reach a response.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::Job;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: String,
    pub status: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub friendly_name: String,
    pub query: String,
    pub table: Option<String>,
    pub owner: String,
    pub event_generated: u64,
    pub events_sent: u64,
    pub last_datetime: Option<i64>,
    pub extra: Extra,
    pub error: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Extra {
    pub paths: Vec<String>,
    pub parts: Vec<PartView>,
    /// The manifest's URL, once written (`manifest: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    pub percent_complete: Option<u8>,
    pub format: &'static str,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartView {
    pub index: u32,
    pub key: String,
    pub bytes: u64,
    pub rows: u64,
    /// SHA-256 of the stored object, hex (empty for parts stored before it was kept).
    pub sha256: String,
}

pub fn job_view(job: &Job) -> JobView {
    let bounded = job.spec.to_ms.is_some();
    JobView {
        id: job.id.to_string(),
        status: job.status.as_str(),
        kind: job.spec.destination.kind.name(),
        friendly_name: job.friendly_name.clone(),
        query: job.spec.query.clone(),
        table: table_of(&job.spec.query),
        owner: job.owner.clone(),
        event_generated: job.progress.events_generated,
        events_sent: job.progress.events_sent,
        last_datetime: job.progress.last_datetime_ms,
        extra: Extra {
            paths: job.parts.iter().map(|p| p.url.clone()).collect(),
            manifest: job.manifest_url.clone(),
            parts: job
                .parts
                .iter()
                .map(|p| PartView {
                    index: p.index,
                    key: p.key.clone(),
                    bytes: p.bytes,
                    rows: p.rows,
                    sha256: p.sha256.clone(),
                })
                .collect(),
            percent_complete: bounded.then_some(job.progress.percent_complete),
            format: super::part_extension(job.spec.destination.file_format, job.spec.destination.format),
            from: job.spec.from_ms,
            to: job.spec.to_ms,
            created_at: job.created_at_ms,
            started_at: job.started_at_ms,
            finished_at: job.finished_at_ms,
        },
        error: job.errors.clone(),
    }
}

/// The first table the query reads, as the SQL parser sees it (so `EXTRACT(YEAR FROM x)` or
/// a CTE's name is not taken for one), or, for text it cannot parse (Devo's LINQ,
/// `from a.b.c select …`), the name after the first `from`.
pub fn table_of(query: &str) -> Option<String> {
    use datafusion::sql::sqlparser::{ast, dialect::GenericDialect, parser::Parser};

    use forwarder_sql::{dotted, first_table};
    if let Ok(statements) = Parser::parse_sql(&GenericDialect {}, query) {
        let query = match statements.first() {
            Some(ast::Statement::Query(q)) => q,
            _ => return None,
        };
        let ctes: Vec<String> =
            query.with.iter().flat_map(|w| w.cte_tables.iter().map(|c| c.alias.name.value.clone())).collect();
        // The outermost FROM first: a subquery in the SELECT list is visited before it.
        if let ast::SetExpr::Select(select) = query.body.as_ref()
            && let Some(ast::TableFactor::Table { name, .. }) = select.from.first().map(|t| &t.relation)
            && !ctes.contains(&dotted(name))
        {
            return Some(dotted(name));
        }
        return first_table(&statements, &ctes);
    }
    static FROM: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"(?i)\bfrom\s+([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)"#).expect("valid regex")
    });
    FROM.captures(query).map(|c| c[1].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_table() {
        assert_eq!(
            table_of("SELECT * FROM demo.ecommerce.data WHERE x=1").as_deref(),
            Some("demo.ecommerce.data")
        );
        assert_eq!(table_of("from demo.ecommerce.data select *").as_deref(), Some("demo.ecommerce.data"));
        assert_eq!(table_of("SELECT 1"), None);
        let extract = "SELECT EXTRACT(YEAR FROM eventdate) FROM demo.ecommerce.data";
        assert_eq!(table_of(extract).as_deref(), Some("demo.ecommerce.data"));
        assert_eq!(
            table_of(r#"SELECT * FROM "demo"."ecommerce"."data""#).as_deref(),
            Some("demo.ecommerce.data")
        );
        let nested = "SELECT (SELECT max(x) FROM lookup) AS m, * FROM demo.ecommerce.data";
        assert_eq!(table_of(nested).as_deref(), Some("demo.ecommerce.data"));
        let cte = "WITH t AS (SELECT * FROM demo.ecommerce.data) SELECT * FROM t";
        assert_eq!(table_of(cte).as_deref(), Some("demo.ecommerce.data"));
    }
}
