//! What a `POST /v1/stream` asks for, read from its body, URL parameters and headers (pure):
//! the query, the output format (a trailing `FORMAT …` clause, as in ClickHouse, else
//! `default_format`), the compression (`Accept-Encoding`) and the client's `query_id`.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::compress::Compression;

/// The formats a stream can be written in, by ClickHouse's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    TabSeparatedWithNames,
    CsvWithNames,
    JsonEachRow,
    Parquet,
}

impl StreamFormat {
    const ALL: [StreamFormat; 4] = [
        StreamFormat::TabSeparatedWithNames,
        StreamFormat::CsvWithNames,
        StreamFormat::JsonEachRow,
        StreamFormat::Parquet,
    ];

    /// ClickHouse's name (format names are matched ignoring case; `TSVWithNames` is an alias).
    pub fn name(self) -> &'static str {
        match self {
            StreamFormat::TabSeparatedWithNames => "TabSeparatedWithNames",
            StreamFormat::CsvWithNames => "CSVWithNames",
            StreamFormat::JsonEachRow => "JSONEachRow",
            StreamFormat::Parquet => "Parquet",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        if name.eq_ignore_ascii_case("TSVWithNames") {
            return Ok(StreamFormat::TabSeparatedWithNames);
        }
        Self::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
            format!(
                "unknown format {}: end the query with FORMAT and one of {} (or pass default_format)",
                shown(name),
                Self::ALL.map(|f| f.name()).join(", ")
            )
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            StreamFormat::TabSeparatedWithNames => "text/tab-separated-values; charset=UTF-8",
            StreamFormat::CsvWithNames => "text/csv; charset=UTF-8; header=present",
            StreamFormat::JsonEachRow => "application/x-ndjson; charset=UTF-8",
            StreamFormat::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// The SQL of a request body: the text itself, or the `query` of a JSON object.
pub fn query_text(body: &[u8], json: bool) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body must be UTF-8 text".to_string())?;
    let looks_json = text.trim_start().starts_with('{');
    let query = if json || looks_json {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            query: String,
        }
        let body: Body = serde_json::from_str(text).map_err(|e| {
            format!("the body is not the SQL text nor a JSON object {{\"query\": \"SELECT …\"}}: {}", e)
        })?;
        body.query
    } else {
        text.to_string()
    };
    if query.trim().is_empty() {
        return Err("send the query: the SQL as the body, or {\"query\": \"SELECT …\"}".into());
    }
    Ok(query)
}

/// Splits a trailing `FORMAT <name>` (and `;`) off `sql`: the query without it, and the
/// name. Found by the SQL tokenizer, so that a `FORMAT` inside a string or a comment is not
/// taken for one.
pub fn split_format(sql: &str) -> (String, Option<String>) {
    let whole = || (sql.to_string(), None);
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return whole();
    };
    let mut significant = tokens.iter().filter(|t| !matches!(t.token, Token::Whitespace(_))).rev().peekable();
    if significant.peek().is_some_and(|t| t.token == Token::SemiColon) {
        significant.next();
    }
    let (Some(name), Some(keyword)) = (significant.next(), significant.next()) else { return whole() };
    let (Token::Word(name), Token::Word(format)) = (&name.token, &keyword.token) else { return whole() };
    if !format.value.eq_ignore_ascii_case("FORMAT") || format.quote_style.is_some() {
        return whole();
    }
    let Some(cut) = byte_offset(sql, keyword.span.start.line, keyword.span.start.column) else {
        return whole();
    };
    (sql[..cut].trim_end().to_string(), Some(name.value.clone()))
}

/// The byte offset of a 1-based line and character column.
pub(super) fn byte_offset(text: &str, line: u64, column: u64) -> Option<usize> {
    let mut start = 0;
    for _ in 1..line {
        start += text[start..].find('\n')? + 1;
    }
    let skip = usize::try_from(column.checked_sub(1)?).ok()?;
    text[start..].char_indices().nth(skip).map(|(at, _)| start + at)
}

/// The compression an `Accept-Encoding` header allows, best first by its `q` weights (zstd
/// before gzip when they tie); `None` for identity.
pub fn negotiate(accept_encoding: Option<&str>) -> Option<Compression> {
    let mut best: Option<(f32, Compression)> = None;
    for item in accept_encoding.unwrap_or("").split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let compression = if coding.eq_ignore_ascii_case("zstd") {
            Compression::Zstd
        } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            Compression::Gzip
        } else {
            continue;
        };
        let better = match best {
            None => true,
            Some((bq, bc)) => {
                q > bq || (q == bq && compression == Compression::Zstd && bc != Compression::Zstd)
            }
        };
        if q > 0.0 && better {
            best = Some((q, compression));
        }
    }
    best.map(|(_, c)| c)
}

/// A client's `query_id`: 1 to 128 letters, digits and `-_.:`, so that it is safe in a path,
/// a header and a log line.
pub fn check_query_id(id: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "query_id {} is not allowed: use 1 to 128 letters, digits, '-', '_', '.' or ':' (a UUID is fine)",
            shown(id)
        ))
    }
}

/// A refused value as a message may quote it: escaped, and cut after 64 characters.
fn shown(value: &str) -> String {
    let escaped: String = value.escape_debug().collect();
    match escaped.char_indices().nth(64) {
        Some((cut, _)) => format!("\"{}…\" ({} bytes)", &escaped[..cut], value.len()),
        None => format!("\"{escaped}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_format_clause_is_split_off() {
        let split = |s: &str| split_format(s);
        assert_eq!(split("SELECT 1 FORMAT CSVWithNames"), ("SELECT 1".into(), Some("CSVWithNames".into())));
        assert_eq!(
            split("SELECT 1\nformat JSONEachRow ;\n"),
            ("SELECT 1".into(), Some("JSONEachRow".into()))
        );
        assert_eq!(
            split("SELECT 'é' AS x\n  FROM t FORMAT Parquet"),
            ("SELECT 'é' AS x\n  FROM t".into(), Some("Parquet".into()))
        );
        assert_eq!(split("SELECT 'x FORMAT CSV'"), ("SELECT 'x FORMAT CSV'".into(), None));
        assert_eq!(split("SELECT 1 -- FORMAT CSV"), ("SELECT 1 -- FORMAT CSV".into(), None));
        assert_eq!(split("SELECT format FROM t"), ("SELECT format FROM t".into(), None));
        assert_eq!(split("SELECT 1 FORMAT CSV -- the end"), ("SELECT 1".into(), Some("CSV".into())));
    }

    #[test]
    fn formats_by_clickhouse_names() {
        assert_eq!(StreamFormat::parse("csvwithnames"), Ok(StreamFormat::CsvWithNames));
        assert_eq!(StreamFormat::parse("TSVWithNames"), Ok(StreamFormat::TabSeparatedWithNames));
        let err = StreamFormat::parse("XML").unwrap_err();
        assert!(err.contains("XML") && err.contains("JSONEachRow"), "{err}");
    }

    #[test]
    fn accept_encoding_picks_by_weight() {
        assert_eq!(negotiate(None), None);
        assert_eq!(negotiate(Some("gzip")), Some(Compression::Gzip));
        assert_eq!(negotiate(Some("gzip, deflate, br, zstd")), Some(Compression::Zstd));
        assert_eq!(negotiate(Some("zstd;q=0.5, gzip")), Some(Compression::Gzip));
        assert_eq!(negotiate(Some("gzip;q=0, identity")), None);
        assert_eq!(negotiate(Some("br")), None);
    }

    #[test]
    fn bodies_and_ids() {
        assert_eq!(query_text(b"SELECT 1", false), Ok("SELECT 1".into()));
        assert_eq!(query_text(br#"{"query": "SELECT 2"}"#, false), Ok("SELECT 2".into()));
        assert!(query_text(br#"{"sql": "SELECT 2"}"#, true).unwrap_err().contains("query"));
        assert!(query_text(b"  ", false).is_err());
        assert!(query_text(&[0xff, 0xfe], false).is_err());
        assert!(check_query_id("my-query_1.2:3").is_ok());
        assert!(check_query_id("a/b").is_err());
        assert!(check_query_id("").is_err());
        assert!(check_query_id(&"x".repeat(129)).is_err());
    }
}
