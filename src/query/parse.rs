//! Parsing a query, with queries too deep to plan refused before they become a tree.
//!
//! The SQL parser bounds its own recursion (parentheses, subqueries, function calls), but it
//! builds chains of operators (`1+1+…+1`, `a OR b OR …`, `x[1][1]…`, `UNION ALL …`) in a loop:
//! such a chain becomes a tree as deep as it is long, and the planner, the optimizer, cloning,
//! hashing, printing and dropping that tree all recurse once per level. On a 2 MiB thread
//! stack a few thousand levels abort the whole process. So the depth the tree could reach is
//! bounded from the tokens first, with no recursion and no tree built.

use std::collections::VecDeque;

use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use forwarder_sql::Width;

use super::error::QueryError;

/// How deeply the SQL parser may recurse (parentheses, subqueries, nested calls); also the
/// session's `datafusion.sql_parser.recursion_limit`.
pub const PARSER_RECURSION_LIMIT: usize = 50;

/// The deepest expression or set-operation tree a query may give (as bounded by
/// [`depth_bound`]). Measured in a debug build: 5,000 levels still run, 10,000 crash, and
/// planning time grows with the square of the depth (1,000 levels: 6 s, 5,000: 5 min), so a
/// query just over 1,000 terms long is the most one submission may ask.
pub const MAX_DEPTH: usize = 1_200;

/// What a caller is told when a query is refused for its depth.
const TOO_DEEP: &str = "the query is too deeply nested";
const WHAT_TO_DO: &str = "write long chains of OR as IN (…) lists, split long UNION ALL chains or \
                          operator chains into several queries, and nest fewer parentheses and subqueries";

/// Parses `query` with the parser's recursion bounded, after checking the depth its tree could
/// reach; a query too deep for either is refused with [`QueryError::TooDeep`].
pub fn parse(query: &str) -> Result<VecDeque<DfStatement>, QueryError> {
    let dialect = GenericDialect {};
    // A query that does not tokenize is left to the parser, which says why.
    if let Ok(tokens) = Tokenizer::new(&dialect, query).tokenize() {
        let depth = depth_bound(&tokens);
        if depth > MAX_DEPTH {
            return Err(QueryError::TooDeep(format!(
                "{TOO_DEEP}: its operators, parentheses and set operations could nest {depth} levels deep, \
                 and at most {MAX_DEPTH} are allowed; {WHAT_TO_DO}"
            )));
        }
    }
    let parsed = DFParserBuilder::new(query)
        .with_dialect(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .build()
        .and_then(|mut parser| parser.parse_statements());
    parsed.map_err(|e| match e.find_root() {
        DataFusionError::SQL(parser, _) if matches!(**parser, ParserError::RecursionLimitExceeded) => {
            too_deep_for_parser()
        }
        DataFusionError::SQL(parser, _) => does_not_parse(query, &parser.to_string()),
        other => does_not_parse(query, &other.to_string()),
    })
}

/// The parser's own words ("Expected: …, found: …"), not DataFusion's debug wrapping.
fn does_not_parse(query: &str, why: &str) -> QueryError {
    // Devo's own language (`from t where … select …`) is what Devo clients know best.
    let linq = query.trim_start().get(..5).is_some_and(|w| w.eq_ignore_ascii_case("from "));
    let hint = if linq {
        " (this looks like Devo's LINQ; Forwarder runs SQL: SELECT … FROM … WHERE …)"
    } else {
        ""
    };
    QueryError::Invalid(format!("the query does not parse: {why}{hint}"))
}

fn too_deep_for_parser() -> QueryError {
    QueryError::TooDeep(format!(
        "{TOO_DEEP}: it nests parentheses, subqueries or function calls more than {PARSER_RECURSION_LIMIT} \
         levels deep; {WHAT_TO_DO}"
    ))
}

/// Parses `query` and refuses anything but one `SELECT` (or `WITH … SELECT`) before planning,
/// so that the message names what was sent rather than what went wrong planning it.
pub fn only_one_select(query: &str) -> Result<DfStatement, QueryError> {
    use datafusion::sql::sqlparser::ast::Statement;
    let mut statements = parse(query)?;
    let statement = match statements.len() {
        1 => statements.pop_front().expect("one statement"),
        n => return Err(QueryError::Invalid(format!("send exactly one SELECT statement, not {n}"))),
    };
    match &statement {
        DfStatement::Statement(s) if matches!(**s, Statement::Query(_)) => {
            super::big_stack::on_big_stack(|| not_too_wide(s))?;
            Ok(statement)
        }
        other => {
            let text = other.to_string();
            let kind: Vec<&str> = text.split_whitespace().take(2).collect();
            Err(QueryError::Invalid(format!(
                "only SELECT queries run here, not {}",
                kind.join(" ").to_uppercase()
            )))
        }
    }
}

/// The most tables (named or derived: `(SELECT …) t`) and the most query blocks (subqueries,
/// CTEs, set-operation branches) one query may hold. Joins are planned as a tree as deep as
/// their number, and the optimizer's join and projection rules work over all of them:
/// 1,000 comma-joined derived tables (25 KB of SQL) ran 4 minutes and then overflowed the
/// stack, and 3,000 chained CTEs took 3 GB to plan. Real queries stay far below.
pub const MAX_TABLES: usize = 100;
pub const MAX_QUERY_BLOCKS: usize = 250;

/// Refuses a query that names more tables or query blocks than the planner can take safely.
fn not_too_wide(statement: &datafusion::sql::sqlparser::ast::Statement) -> Result<(), QueryError> {
    let most = Width { tables: MAX_TABLES, blocks: MAX_QUERY_BLOCKS };
    let seen = forwarder_sql::width(statement, most);
    if !seen.exceeds(most) {
        return Ok(());
    }
    let what = if seen.tables > MAX_TABLES {
        format!("it reads more than {MAX_TABLES} tables (named or derived, joined or in subqueries)")
    } else {
        format!("it holds more than {MAX_QUERY_BLOCKS} subqueries, CTEs and SELECT blocks")
    };
    Err(QueryError::TooDeep(format!(
        "{TOO_DEEP}: {what}; join fewer tables in one query, or export the parts separately"
    )))
}

/// An upper bound on the depth of the tree the parser would build from `tokens`.
///
/// Brackets (`(…)`, `[…]`, `{…}`) open groups; commas split a group into items. In an item,
/// every token that can join two operands (an operator, a keyword, a group) can add one level
/// above the others, and a group inside it hangs below at most all of them: so an item is at
/// most as deep as its counted tokens plus its deepest group, and a group one level deeper
/// than its deepest item. Identifiers and literals only ever are leaves.
pub fn depth_bound(tokens: &[Token]) -> usize {
    #[derive(Default)]
    struct Group {
        /// The deepest item so far.
        deepest: usize,
        /// The current item: its counted tokens, and its deepest group.
        counted: usize,
        inner: usize,
    }
    impl Group {
        fn end_item(&mut self) {
            self.deepest = self.deepest.max(self.counted + self.inner);
            self.counted = 0;
            self.inner = 0;
        }
    }
    let mut open = vec![Group::default()];
    for token in tokens {
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => open.push(Group::default()),
            // An unbalanced closing bracket is the parser's to report.
            Token::RParen | Token::RBracket | Token::RBrace if open.len() > 1 => {
                let mut group = open.pop().expect("more than one group");
                group.end_item();
                let parent = open.last_mut().expect("the outermost group stays");
                parent.counted += 1;
                parent.inner = parent.inner.max(group.deepest + 1);
            }
            Token::Comma | Token::SemiColon => open.last_mut().expect("a group").end_item(),
            Token::Whitespace(_) | Token::EOF => {}
            Token::Word(w) if w.keyword == Keyword::NoKeyword => {}
            Token::Number(..) | Token::SingleQuotedString(_) | Token::DoubleQuotedString(_) => {}
            _ => open.last_mut().expect("a group").counted += 1,
        }
    }
    // Groups left open (the parser refuses them) still count.
    let mut depth = 0;
    while let Some(mut group) = open.pop() {
        group.end_item();
        depth = depth.max(group.deepest) + 1;
    }
    depth
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_over_too_many_tables_or_blocks_are_refused() {
        let derived =
            |n: usize| (0..n).map(|i| format!("(SELECT 1 AS a{i}) t{i}")).collect::<Vec<_>>().join(", ");
        assert!(only_one_select(&format!("SELECT 1 FROM {}", derived(50))).is_ok());
        let err = only_one_select(&format!("SELECT 1 FROM {}", derived(1000))).unwrap_err().to_string();
        assert!(err.contains("too deeply nested") && err.contains("more than 100 tables"), "{err}");
        let ctes = (1..300)
            .map(|i| format!("t{i} AS (SELECT a + 1 AS a FROM t{})", i - 1))
            .collect::<Vec<_>>()
            .join(", ");
        let err = only_one_select(&format!("WITH t0 AS (SELECT 1 AS a), {ctes} SELECT a FROM t299"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than"), "{err}");
    }

    use super::*;

    fn bound(sql: &str) -> usize {
        depth_bound(&Tokenizer::new(&GenericDialect {}, sql).tokenize().unwrap())
    }

    #[test]
    fn only_one_select_runs() {
        for ok in [
            "SELECT 1",
            "select * from demo.ecommerce.data where statusCode >= 500",
            "WITH t AS (SELECT 1 AS a) SELECT a FROM t",
        ] {
            assert!(only_one_select(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("INSERT INTO t VALUES (1)", "not INSERT INTO"),
            ("DROP TABLE t", "not DROP TABLE"),
            ("COPY (SELECT 1) TO '/tmp/x'", "not COPY"),
            ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "not CREATE EXTERNAL"),
            ("SET datafusion.execution.batch_size = 1", "not SET"),
            ("EXPLAIN SELECT 1", "not EXPLAIN"),
            ("SELECT 1; SELECT 2", "exactly one"),
            ("SELEKT 1", "does not parse"),
            ("from demo.ecommerce.data where statusCode >= 500 select eventdate", "looks like Devo's LINQ"),
        ] {
            let err = only_one_select(bad).unwrap_err().to_string();
            assert!(err.contains(says) && !err.contains("ParserError("), "{bad}: {err}");
        }
    }

    #[test]
    fn long_chains_are_deep_and_long_lists_are_not() {
        let chain = |n: usize, op: &str| format!("SELECT {}", vec!["1"; n].join(op));
        assert!(bound(&chain(1000, "+")) >= 1000);
        assert!(bound(&chain(1000, " OR ")) >= 1000);
        assert!(bound(&format!("SELECT 1{}", "[1]".repeat(1000))) >= 1000);
        assert!(bound(&vec!["SELECT 1"; 500].join(" UNION ALL ")) >= 1000);
        assert!(bound(&format!("SELECT {}1{}", "(".repeat(700), ")".repeat(700))) >= 700);
        // Lists are flat: the bound stays that of one element.
        let list: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        assert!(bound(&format!("SELECT * FROM t WHERE x IN ({})", list.join(", "))) < 10);
        assert!(bound(&format!("SELECT concat({}) FROM t", list.join(", "))) < 10);
        let everyday = "SELECT method, count(*) AS n FROM demo.ecommerce.data WHERE statusCode >= 500 \
                        AND uri LIKE '/api/%' GROUP BY method ORDER BY n DESC LIMIT 10";
        assert!(bound(everyday) < 40, "{}", bound(everyday));
    }

    #[test]
    fn too_deep_queries_are_refused_before_parsing() {
        for sql in [
            format!("SELECT {}", vec!["1"; 10_000].join("+")),
            format!("SELECT {}1{}", "(".repeat(100), ")".repeat(100)),
            format!("SELECT {}1{}", "abs(".repeat(100), ")".repeat(100)),
            format!("SELECT {}1", "- ".repeat(100)),
        ] {
            let err = parse(&sql).unwrap_err().to_string();
            assert!(err.starts_with("the query is too deeply nested"), "{err}");
        }
        assert_eq!(parse("SELECT 1 + (2 * 3)").unwrap().len(), 1);
    }
}
