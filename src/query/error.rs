//! Why a query did not run or stopped, and its error as callers, logs and emails may see it.

use datafusion::error::DataFusionError;

/// The ways a query fails, by whose it is to fix.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query itself is wrong (syntax, unknown table or column, not allowed): the caller's
    /// to fix.
    #[error("query refused: {0}")]
    Invalid(String),
    /// The query would nest deeper than the engine can plan without overflowing its stack:
    /// the message says so first, and what to write instead.
    #[error("{0}")]
    TooDeep(String),
    /// The query needs more memory than its budget (`worker.query_memory_mb`) allows.
    #[error("the query needs more memory than one query may use (worker.query_memory_mb): {0}")]
    OverBudget(String),
    #[error("query failed: {0}")]
    Execution(String),
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        match e {
            DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
                QueryError::Invalid(e.to_string())
            }
            // The optimizer fails only on what the query itself says: a constant that does not
            // cast (`CAST('abc' AS INT)`), a negative LIMIT. The caller's to fix, told in the
            // words of what failed rather than the rule's name.
            DataFusionError::Context(ref context, ref inner) if context.starts_with("Optimizer rule") => {
                QueryError::Invalid(inner.find_root().to_string())
            }
            other => QueryError::Execution(error_text(&other)),
        }
    }
}

/// A query error as callers, logs and emails may see it. An object store's error carries the
/// S3 answer's body, which can hold the worker's access key id, its session token and the
/// signed request (`InvalidAccessKeyId`, `ExpiredToken`, `SignatureDoesNotMatch`): such an
/// error is told by its kind, its path and the S3 code alone.
pub fn error_text(e: &DataFusionError) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(store) = c.downcast_ref::<object_store::Error>() {
            return object_store_text(store);
        }
        cause = c.source();
    }
    e.to_string()
}

fn object_store_text(e: &object_store::Error) -> String {
    // The code only (`<Code>AccessDenied</Code>`): the rest of the body stays unread.
    let full = e.to_string();
    let code = full
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code)
        .filter(|c| !c.is_empty() && c.len() < 64 && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
        .map_or_else(String::new, |c| format!(" (S3 {c})"));
    let settings = "check the table's location and the worker's [s3] settings";
    match e {
        object_store::Error::NotFound { path, .. } => format!("reading a table: {path} not found{code}"),
        object_store::Error::PermissionDenied { path, .. }
        | object_store::Error::Unauthenticated { path, .. } => {
            format!("reading a table: access to {path} refused{code}; {settings}")
        }
        object_store::Error::Generic { store, .. } => {
            format!("reading a table from {store} failed{code}; {settings}")
        }
        _ => format!("reading a table failed{code}; {settings}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_store_errors_keep_the_s3_answer_to_themselves() {
        let body = "<Error><Code>ExpiredToken</Code><Token-0>FwoGZXIvYXdzEXAMPLESESSIONTOKEN</Token-0>\
                    <AWSAccessKeyId>AKIAEXAMPLEKEYID</AWSAccessKeyId></Error>";
        let store = object_store::Error::Generic { store: "S3", source: body.into() };
        let wrapped = DataFusionError::ArrowError(
            Box::new(datafusion::arrow::error::ArrowError::ExternalError(Box::new(
                DataFusionError::ObjectStore(Box::new(store)),
            ))),
            None,
        );
        let text = error_text(&wrapped);
        assert_eq!(
            text,
            "reading a table from S3 failed (S3 ExpiredToken); check the table's location and the worker's [s3] settings"
        );
        let QueryError::Execution(text) = QueryError::from(wrapped) else { panic!("an execution error") };
        assert!(!text.contains("FwoGZXIv") && !text.contains("AKIAEXAMPLE"), "{text}");
    }
}
