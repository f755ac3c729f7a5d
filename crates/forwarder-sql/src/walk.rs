//! The one walk Forwarder makes over a parsed statement's syntax tree: how wide a query is
//! (its tables and query blocks, which bound what planning it costs) and which table it reads
//! first (the job views' `table`).
//!
//! Why one walk for both: every type that implements sqlparser's `Visitor` makes the crate that
//! uses it compile its own copy of the traversal of the whole tree, about a thousand functions,
//! each behind a stack guard (sqlparser's `recursive-protection`). So every question asked of
//! the tree goes through the one type below.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{ObjectName, Query, Statement, TableFactor, Visit, Visitor};

/// How wide a query is: its tables (named or derived: `(SELECT …) t`) and its query blocks
/// (subqueries, CTEs, set-operation branches).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Width {
    pub tables: usize,
    pub blocks: usize,
}

impl Width {
    /// Whether either count is past `most`'s.
    pub fn exceeds(self, most: Width) -> bool {
        self.tables > most.tables || self.blocks > most.blocks
    }
}

/// Counts `statement`'s tables and query blocks, stopping as soon as one count passes `most`
/// (a hostile query's count is only ever known to be past it).
pub fn width(statement: &Statement, most: Width) -> Width {
    let mut walk = Walk { goal: Goal::Width(most), seen: Width::default(), first_table: None };
    let _ = statement.visit(&mut walk);
    walk.seen
}

/// The first table, in the order the statements name them, whose dotted name is not in `skip`
/// (a query's CTEs).
pub fn first_table(statements: &[Statement], skip: &[String]) -> Option<String> {
    let mut walk = Walk { goal: Goal::FirstTable(skip), seen: Width::default(), first_table: None };
    for statement in statements {
        if statement.visit(&mut walk).is_break() {
            break;
        }
    }
    walk.first_table
}

/// A table's name as written, its parts joined by dots and unquoted.
pub fn dotted(name: &ObjectName) -> String {
    let parts: Vec<String> =
        name.0.iter().map(|p| p.as_ident().map_or_else(|| p.to_string(), |i| i.value.clone())).collect();
    parts.join(".")
}

/// The one `Visitor` (see the module's note).
struct Walk<'a> {
    goal: Goal<'a>,
    seen: Width,
    first_table: Option<String>,
}

enum Goal<'a> {
    Width(Width),
    FirstTable(&'a [String]),
}

impl Walk<'_> {
    fn past_most(&self) -> ControlFlow<()> {
        match self.goal {
            Goal::Width(most) if self.seen.exceeds(most) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}

impl Visitor for Walk<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
        if let Goal::FirstTable(skip) = self.goal {
            let name = dotted(name);
            if !skip.contains(&name) {
                self.first_table = Some(name);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<()> {
        self.seen.tables += 1;
        self.past_most()
    }

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.seen.blocks += 1;
        self.past_most()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};

    use super::*;

    fn parse(sql: &str) -> Vec<Statement> {
        Parser::parse_sql(&GenericDialect {}, sql).unwrap()
    }

    const WIDE: Width = Width { tables: 1000, blocks: 1000 };

    #[test]
    fn counts_named_and_derived_tables_and_every_query_block() {
        let statements =
            parse("WITH c AS (SELECT 1) SELECT * FROM a, (SELECT * FROM b) d WHERE x IN (SELECT y FROM c)");
        // Tables: a, the derived d, b inside it, c in the IN subquery; blocks: the outer query,
        // the CTE's, the derived table's and the IN subquery's.
        assert_eq!(width(&statements[0], WIDE), Width { tables: 4, blocks: 4 });
    }

    #[test]
    fn stops_counting_once_past_the_most() {
        let sql =
            format!("SELECT * FROM {}", (0..50).map(|i| format!("t{i}")).collect::<Vec<_>>().join(", "));
        let seen = width(&parse(&sql)[0], Width { tables: 10, blocks: 1000 });
        assert_eq!(seen.tables, 11);
        assert!(seen.exceeds(Width { tables: 10, blocks: 1000 }));
    }

    #[test]
    fn the_first_table_skips_the_names_given() {
        let statements = parse("WITH c AS (SELECT * FROM \"my\".src) SELECT * FROM c JOIN other.t ON true");
        assert_eq!(first_table(&statements, &[]).as_deref(), Some("my.src"));
        assert_eq!(first_table(&statements, &["my.src".into(), "c".into()]).as_deref(), Some("other.t"));
        assert_eq!(first_table(&parse("SELECT 1"), &[]), None);
    }
}
