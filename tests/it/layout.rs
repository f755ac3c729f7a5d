//! The layout `src/lib.rs` describes holds: no top-level module uses one that uses it back,
//! and no file uses a sibling file that uses it back (the folders follow the pipeline, and a
//! newcomer can read any file knowing only what it imports). Read from the sources as they
//! are, test modules left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file's node: `top` is its top-level module, `file` its name in that folder. Files
/// a `#[path]` attribute includes into another are counted as that file.
type Node = (String, String);

struct Source {
    node: Node,
    /// The code, without comments and without what follows `#[cfg(test)]`.
    code: String,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    // Files brought in by `#[path = "…"]` belong to the file that names them.
    let mut included: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (_, rest) in text.match_indices("#[path = \"").map(|(i, _)| ((), &text[i + 10..])) {
            let name = &rest[..rest.find('"').unwrap()];
            included.insert(file.parent().unwrap().join(name), file.clone());
        }
    }
    files
        .iter()
        .map(|file| {
            let mut owner = file.clone();
            while let Some(parent) = included.get(&owner) {
                owner = parent.clone();
            }
            let rel = owner.strip_prefix(&src).unwrap();
            let mut parts = rel.iter().map(|p| p.to_str().unwrap().trim_end_matches(".rs").to_string());
            let top = parts.next().unwrap();
            let file_name = parts.next().unwrap_or_else(|| "mod".to_string());
            let text = std::fs::read_to_string(file).unwrap();
            let code: String = without_tests(&text)
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| l.split(" // ").next().unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            Source { node: (top, file_name), code }
        })
        .collect()
}

/// `text` up to its test module: the first `#[cfg(test)]` on an item with a body (`mod tests
/// {`), not one on a declaration (`#[cfg(test)] #[path = "…"] mod tests;`).
fn without_tests(text: &str) -> &str {
    let mut at = 0;
    while let Some(found) = text[at..].find("#[cfg(test)]") {
        let start = at + found;
        let item = text[start..].lines().skip(1).find(|l| !l.trim_start().starts_with("#["));
        if item.is_some_and(|l| l.trim_end().ends_with('{')) {
            return &text[..start];
        }
        at = start + 1;
    }
    text
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The first names of the paths after each `prefix` (`super::` or `crate::x::`): `a` for
/// `prefix a::B`, and `a`, `b` for `prefix {a::B, b}`.
fn names_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut names = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut start) = (0, 0);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        names.push(ident(group[start..].trim_start()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(ident(group[start..].trim_start()));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            names.push(ident(rest));
        }
    }
    names
}

/// A cycle in `graph`, as the nodes along it, if there is one.
fn cycle<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Option<Vec<N>> {
    fn visit<N: Ord + Clone>(
        n: &N,
        graph: &BTreeMap<N, BTreeSet<N>>,
        path: &mut Vec<N>,
        done: &mut BTreeSet<N>,
    ) -> Option<Vec<N>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            return Some(path[at..].to_vec());
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.clone());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_and_no_file_uses_one_that_uses_it_back() {
    let sources = sources();
    let tops: BTreeSet<String> = sources.iter().map(|s| s.node.0.clone()).collect();
    let files: BTreeSet<Node> = sources.iter().map(|s| s.node.clone()).collect();
    assert!(files.len() > 100 && tops.contains("query"), "the sources were found: {}", files.len());

    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut siblings: BTreeMap<Node, BTreeSet<Node>> = BTreeMap::new();
    for Source { node: (top, file), code } in &sources {
        for used in names_after(code, "crate::") {
            if used != top && tops.contains(used) {
                modules.entry(top.clone()).or_default().insert(used.to_string());
            }
        }
        // A folder's `mod.rs` is its front door, naming every file in it: only the files
        // beside each other count.
        if file == "mod" {
            continue;
        }
        let inside = format!("crate::{top}::");
        for used in names_after(code, "super::").into_iter().chain(names_after(code, &inside)) {
            let used = (top.clone(), used.to_string());
            if used.1 != *file && used.1 != "mod" && files.contains(&used) {
                siblings.entry((top.clone(), file.clone())).or_default().insert(used);
            }
        }
    }
    assert!(
        modules.get("worker").is_some_and(|m| m.contains("query")),
        "the reader sees imports: {modules:?}"
    );
    assert!(
        siblings
            .get(&("encode".into(), "csv".into()))
            .is_some_and(|s| s.contains(&("encode".into(), "csv_quote".into()))),
        "the reader sees a sibling's import: {siblings:?}"
    );
    assert_eq!(cycle(&modules), None, "top-level modules that use each other");
    assert_eq!(cycle(&siblings), None, "files that use each other");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: BTreeMap<u8, BTreeSet<u8>> =
        [(1, [2].into()), (2, [3].into()), (3, [1, 4].into()), (4, BTreeSet::new())].into();
    assert_eq!(cycle(&graph), Some(vec![1, 2, 3]));
    assert_eq!(
        without_tests("a\n#[cfg(test)]\n#[path = \"t.rs\"]\nmod t;\nb\n#[cfg(test)]\nmod tests {\nc"),
        "a\n#[cfg(test)]\n#[path = \"t.rs\"]\nmod t;\nb\n"
    );
    assert_eq!(
        names_after("use super::{a::B, c, d::{E, F}};\nsuper::g::h()", "super::"),
        ["a", "c", "d", "g"]
    );
}
