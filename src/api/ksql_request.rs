//! What a ksqlDB `POST /query` asks for (pure): the body (`ksql`, `streamsProperties`), the
//! statement in ksqlDB's dialect turned into one the engine runs (the `;`, `EMIT CHANGES` and a
//! push query's `LIMIT` taken off), and the result's schema as ksqlDB writes it in the header.

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use serde_json::{Map, Value};

use super::stream_request::byte_offset;

/// The `streamsProperties` that choose where a push query starts (ksqlDB's names).
const OFFSET_RESET: [&str; 2] = ["ksql.streams.auto.offset.reset", "auto.offset.reset"];

/// A request body, as ksqlDB's clients send it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Body {
    ksql: Option<String>,
    #[serde(default)]
    streams_properties: Option<Map<String, Value>>,
    // Sent by ksqlDB's own clients; accepted, and nothing here depends on them.
    #[serde(default, rename = "sessionVariables")]
    _session_variables: Option<Value>,
    #[serde(default, rename = "commandSequenceNumber")]
    _command_sequence_number: Option<Value>,
    #[serde(default, rename = "requestProperties")]
    _request_properties: Option<Value>,
}

/// Where a push query starts: at the table's first row, or at rows that land from now on
/// (ksqlDB's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    Earliest,
    #[default]
    Latest,
}

/// A request, read and checked.
#[derive(Debug, PartialEq, Eq)]
pub struct KsqlRequest {
    /// The statement the engine runs (DataFusion's SQL).
    pub sql: String,
    /// `EMIT CHANGES`: keeps streaming rows as they land, until `limit` or the client leaves.
    pub push: bool,
    /// A push query's `LIMIT` (a pull query's stays in `sql`).
    pub limit: Option<u64>,
    pub start: Start,
}

/// Why a request was refused: a body that is not one (`generic_error`), or a statement that
/// cannot run here (`statement_error`).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Body(String),
    Statement(String),
}

pub fn parse(body: &[u8]) -> Result<KsqlRequest, Refused> {
    let text = std::str::from_utf8(body).map_err(|_| Refused::Body("the body must be UTF-8 JSON".into()))?;
    let body: Body = serde_json::from_str(text).map_err(|e| {
        Refused::Body(format!(
            "the body must be a JSON object {{\"ksql\": \"SELECT …;\", \"streamsProperties\": {{}}}}: {e}"
        ))
    })?;
    let ksql = body.ksql.filter(|k| !k.trim().is_empty()).ok_or_else(|| {
        Refused::Body(
            "the body needs \"ksql\": the SELECT statement to run, e.g. \"SELECT * FROM t;\"".into(),
        )
    })?;
    let start = start(&body.streams_properties.unwrap_or_default())?;
    let (sql, push, limit) = statement(&ksql)?;
    Ok(KsqlRequest { sql, push, limit, start })
}

/// The properties this server honours; any other is refused rather than silently ignored.
fn start(properties: &Map<String, Value>) -> Result<Start, Refused> {
    let mut start = Start::default();
    for (name, value) in properties {
        if !OFFSET_RESET.contains(&name.as_str()) {
            return Err(Refused::Body(format!(
                "streamsProperties {} is not supported: the only one taken is {} (\"earliest\" or \"latest\")",
                shown(name),
                OFFSET_RESET[0]
            )));
        }
        start = match value.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("earliest") => Start::Earliest,
            Some("latest") => Start::Latest,
            _ => {
                return Err(Refused::Body(format!(
                    "streamsProperties {name} must be \"earliest\" or \"latest\", not {value}"
                )));
            }
        };
    }
    Ok(start)
}

/// Splits ksqlDB's clauses off `ksql` (found by the SQL tokenizer, so that words inside
/// strings and comments are left alone): the SQL to run, whether it is a push query, and a
/// push query's `LIMIT`.
fn statement(ksql: &str) -> Result<(String, bool, Option<u64>), Refused> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, ksql).tokenize_with_location() else {
        // Left to the engine, whose parser says what is wrong.
        return Ok((ksql.trim().to_string(), false, None));
    };
    let mut significant: Vec<&TokenWithSpan> =
        tokens.iter().filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF)).collect();
    let mut semicolon = None;
    if significant.last().is_some_and(|t| t.token == Token::SemiColon) {
        semicolon = significant.pop();
    }
    let mut cut = semicolon;
    if significant.iter().any(|t| t.token == Token::SemiColon) {
        return Err(Refused::Statement("send one statement per request: /query runs a single SELECT".into()));
    }
    match significant.first().map(|t| &t.token) {
        Some(Token::Word(w)) if ["SELECT", "WITH"].iter().any(|k| w.value.eq_ignore_ascii_case(k)) => {}
        Some(Token::Word(w)) => {
            return Err(Refused::Statement(format!(
                "only SELECT queries run on /query, not {}: this server has no streams or tables to create, \
                 insert into, drop or show; it queries the tables of its catalog",
                w.value.to_uppercase()
            )));
        }
        _ => return Err(Refused::Statement("the ksql statement must be a SELECT query".into())),
    }
    let mut limit = take_limit(&mut significant, &mut cut)?;
    let push = match significant.as_slice() {
        [.., emit, changes] if is_word(emit, "EMIT") && is_word(changes, "CHANGES") => {
            cut = Some(emit);
            significant.truncate(significant.len() - 2);
            true
        }
        [.., emit, refinement] if is_word(emit, "EMIT") => {
            return Err(Refused::Statement(format!(
                "EMIT {} is not supported: end a push query with EMIT CHANGES, or leave EMIT out for a pull query",
                refinement.token
            )));
        }
        _ => false,
    };
    if push && limit.is_none() {
        // `… LIMIT 3 EMIT CHANGES` as well as ksqlDB's `… EMIT CHANGES LIMIT 3`.
        limit = take_limit(&mut significant, &mut cut)?;
    }
    if push && take_limit(&mut significant.clone(), &mut cut.clone())?.is_some() {
        // A second LIMIT would stay in the SQL and apply to each window of new rows, not
        // to the stream: the stream would never reach its own.
        return Err(Refused::Statement(
            "a push query takes one LIMIT: write it once, before or after EMIT CHANGES".into(),
        ));
    }
    if !push {
        // A pull query's LIMIT is the engine's to apply: only the `;` comes off.
        cut = semicolon;
        limit = None;
    }
    let sql = match cut.and_then(|t| byte_offset(ksql, t.span.start.line, t.span.start.column)) {
        Some(at) => ksql[..at].trim().to_string(),
        None => ksql.trim().to_string(),
    };
    Ok((sql, push, limit))
}

fn is_word(t: &TokenWithSpan, keyword: &str) -> bool {
    matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case(keyword))
}

/// Takes a trailing `LIMIT <n>` off `significant` (and moves `cut` to it): its `n`.
fn take_limit<'a>(
    significant: &mut Vec<&'a TokenWithSpan>,
    cut: &mut Option<&'a TokenWithSpan>,
) -> Result<Option<u64>, Refused> {
    let [.., keyword, count] = significant.as_slice() else { return Ok(None) };
    let (keyword, Token::Number(n, _)) = (*keyword, &count.token) else { return Ok(None) };
    if !is_word(keyword, "LIMIT") {
        return Ok(None);
    }
    let n = n.parse::<u64>().map_err(|_| {
        Refused::Statement(format!("LIMIT {n} is not a row count: write a whole number of rows"))
    })?;
    *cut = Some(keyword);
    significant.truncate(significant.len() - 2);
    Ok(Some(n))
}

/// The result's columns as ksqlDB's header names them: "`COL` TYPE, …", names upper-cased.
pub fn schema_text(schema: &Schema) -> String {
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("`{}` {}", f.name().to_uppercase().replace('`', "``"), type_name(f.data_type())))
        .collect();
    columns.join(", ")
}

/// An Arrow type by ksqlDB's name for it.
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            "INTEGER".into()
        }
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "BIGINT".into(),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "DOUBLE".into(),
        DataType::Timestamp(..) => "TIMESTAMP".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "BYTES".into()
        }
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
            format!("DECIMAL({p}, {s})")
        }
        DataType::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f) => {
            format!("ARRAY<{}>", type_name(f.data_type()))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!("MAP<{}, {}>", type_name(kv[0].data_type()), type_name(kv[1].data_type()))
            }
            _ => "STRING".into(),
        },
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("`{}` {}", f.name().to_uppercase(), type_name(f.data_type())))
                .collect();
            format!("STRUCT<{}>", inner.join(", "))
        }
        DataType::Dictionary(_, values) => type_name(values),
        // Text, and what ksqlDB has no type for (durations, intervals, unions): their text.
        _ => "STRING".into(),
    }
}

/// A refused value as a message may quote it: escaped, and cut after 64 characters.
fn shown(value: &str) -> String {
    let escaped: String = value.escape_debug().take(64).collect();
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Result<KsqlRequest, Refused> {
        parse(body.as_bytes())
    }

    fn request(ksql: &str) -> KsqlRequest {
        parsed(&serde_json::json!({ "ksql": ksql }).to_string()).unwrap()
    }

    #[test]
    fn ksql_clauses_come_off_and_a_pull_limit_stays() {
        let r = request("SELECT uri FROM t EMIT CHANGES LIMIT 3;");
        assert_eq!((r.sql.as_str(), r.push, r.limit), ("SELECT uri FROM t", true, Some(3)));
        let r = request("select uri from t limit 3 emit changes");
        assert_eq!((r.sql.as_str(), r.push, r.limit), ("select uri from t", true, Some(3)));
        let r = request("SELECT uri FROM t\n  EMIT CHANGES ;\n");
        assert_eq!((r.sql.as_str(), r.push, r.limit), ("SELECT uri FROM t", true, None));
        let twice = statement("SELECT uri FROM t LIMIT 1 EMIT CHANGES LIMIT 3;");
        assert!(matches!(twice, Err(Refused::Statement(m)) if m.contains("one LIMIT")));
        let r = request("SELECT uri FROM t LIMIT 3;");
        assert_eq!((r.sql.as_str(), r.push, r.limit), ("SELECT uri FROM t LIMIT 3", false, None));
        let r = request("SELECT 'EMIT CHANGES' AS x -- EMIT CHANGES");
        assert_eq!((r.sql.as_str(), r.push), ("SELECT 'EMIT CHANGES' AS x -- EMIT CHANGES", false));
        assert_eq!(r.start, Start::Latest);
    }

    #[test]
    fn bodies_and_statements_that_cannot_run_are_refused_with_what_to_fix() {
        let body = |e: Result<KsqlRequest, Refused>| match e {
            Err(Refused::Body(m)) => m,
            other => panic!("a body refusal, not {other:?}"),
        };
        let statement = |e: Result<KsqlRequest, Refused>| match e {
            Err(Refused::Statement(m)) => m,
            other => panic!("a statement refusal, not {other:?}"),
        };
        assert!(body(parsed("SELECT 1")).contains("JSON object"));
        assert!(body(parsed("{}")).contains("\"ksql\""));
        assert!(body(parsed(r#"{"ksql": "SELECT 1", "sql": "x"}"#)).contains("unknown field"));
        let unknown =
            r#"{"ksql": "SELECT 1", "streamsProperties": {"ksql.query.pull.table.scan.enabled": "true"}}"#;
        assert!(body(parsed(unknown)).contains("ksql.streams.auto.offset.reset"));
        let bad = r#"{"ksql": "SELECT 1", "streamsProperties": {"auto.offset.reset": "middle"}}"#;
        assert!(body(parsed(bad)).contains("\"earliest\" or \"latest\""));
        let earliest = r#"{"ksql": "SELECT 1;", "streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"},
                          "commandSequenceNumber": 4}"#;
        assert_eq!(parsed(earliest).unwrap().start, Start::Earliest);
        assert!(statement(parsed(r#"{"ksql": "SELECT 1; SELECT 2;"}"#)).contains("one statement"));
        let ddl = r#"{"ksql": "CREATE STREAM s (a INT) WITH (kafka_topic='t');"}"#;
        assert!(statement(parsed(ddl)).contains("not CREATE"));
        assert!(statement(parsed(r#"{"ksql": "SELECT 1 EMIT FINAL"}"#)).contains("EMIT CHANGES"));
    }

    #[test]
    fn schemas_by_ksqldb_type_names() {
        use datafusion::arrow::datatypes::{Field, TimeUnit};
        let schema = Schema::new(vec![
            Field::new("statusCode", DataType::Int64, true),
            Field::new("n", DataType::Int32, true),
            Field::new("uri", DataType::Utf8, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("d", DataType::Decimal128(10, 2), true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("x", DataType::Float64, true),
            Field::new_list("l", Field::new("item", DataType::Utf8, true), true),
            Field::new("b", DataType::Binary, true),
        ]);
        assert_eq!(
            schema_text(&schema),
            "`STATUSCODE` BIGINT, `N` INTEGER, `URI` STRING, `T` TIMESTAMP, `D` DECIMAL(10, 2), `OK` BOOLEAN, \
             `X` DOUBLE, `L` ARRAY<STRING>, `B` BYTES"
        );
    }
}
