//! The architecture invariants of ARCHITECTURE.md that a reading of the
//! source can check (rust-analyzer's `tidy` tests do the same): which
//! module may name which crate or module, which modules stay pure, that
//! the files of a folder import each other in one direction only, and that
//! files and functions stay small enough to read whole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest file, in lines ("about 700").
const MAX_FILE_LINES: usize = 750;
/// Longest function, in lines ("about 100").
const MAX_FN_LINES: usize = 110;

/// Every `.rs` file below `host/src`, with its path relative to it (`/`
/// separated) and its text.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source folder") {
            let path: PathBuf = entry.expect("a folder entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).expect("below src");
                let rel = rel.to_string_lossy().replace('\\', "/");
                files.push((rel, std::fs::read_to_string(&path).expect("a source file")));
            }
        }
    }
    files.sort();
    assert!(files.len() > 20, "found only {} source files", files.len());
    files
}

/// The code of a file without its comments and its `#[cfg(test)]` module
/// (a test may use what the module itself must not).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The files that name `word` (as a path segment) outside `allowed`.
fn naming(word: &str, allowed: &[&str]) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(path, _)| !allowed.iter().any(|a| path.starts_with(a)))
        .filter(|(_, text)| {
            let code = code(text);
            code.contains(&format!("{word}::")) || code.contains(&format!("use {word}"))
        })
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn only_the_runtime_imports_wasmtime() {
    assert_eq!(naming("wasmtime", &["runtime/"]), Vec::<String>::new());
    assert_eq!(naming("wasmtime_wasi", &["runtime/"]), Vec::<String>::new());
}

#[test]
fn only_the_store_and_the_sql_import_use_sqlite() {
    assert_eq!(
        naming("rusqlite", &["store/", "runtime/sql/"]),
        Vec::<String>::new()
    );
}

#[test]
fn the_runtime_never_names_the_central_store() {
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|(path, _)| path.starts_with("runtime/"))
        .filter(|(_, text)| code(text).contains("crate::store"))
        .map(|(path, _)| path)
        .collect();
    assert_eq!(found, Vec::<String>::new());
}

#[test]
fn mapping_and_the_plan_do_no_io() {
    let pure = |path: &str| {
        path.starts_with("mapping/") || path == "engine/plan.rs" || path == "engine/retry.rs"
    };
    let io = [
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "tokio",
        "reqwest",
        "rusqlite",
        // The store's data types are fine, its handles are not.
        "Store::",
        "&Store",
        "&mut Store",
        "Tx<",
        "crate::runtime",
        "async fn",
        ".await",
    ];
    let mut found = Vec::new();
    for (path, text) in sources().into_iter().filter(|(p, _)| pure(p)) {
        let code = code(&text);
        for word in io {
            if code.contains(word) {
                found.push(format!("{path}: {word}"));
            }
        }
        // No clock either, but the retry policy's caller's: its pure part
        // takes the jitter and returns a duration.
        if path != "engine/retry.rs" && code.contains("::now()") {
            found.push(format!("{path}: a clock"));
        }
    }
    assert_eq!(found, Vec::<String>::new());
}

/// For each folder below `host/src`, the sibling files each of its files
/// imports (`use super::x` or `use super::{x, ...}`, `x` a sibling's name;
/// items of the folder's `mod.rs` are not counted).
fn sibling_imports() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let files = sources();
    let mut folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (path, _) in &files {
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        let name = name.strip_suffix(".rs").unwrap_or(name);
        if name != "mod" {
            let folder = folders.entry(folder.to_string()).or_default();
            folder.insert(name.to_string(), BTreeSet::new());
        }
    }
    for (path, text) in &files {
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        let name = name.strip_suffix(".rs").unwrap_or(name);
        let Some(siblings) = folders.get_mut(folder) else {
            continue;
        };
        if name == "mod" {
            continue;
        }
        let code = code(text);
        let mut uses = BTreeSet::new();
        for (at, _) in code.match_indices("use super::") {
            let rest = &code[at + "use super::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(list) => list.split('}').next().unwrap_or("").split(',').collect(),
                None => vec![rest],
            };
            for n in names {
                let module: String = n
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if module != name && siblings.contains_key(&module) {
                    uses.insert(module);
                }
            }
        }
        siblings.insert(name.to_string(), uses);
    }
    folders
}

/// A circle of imports in `graph`, as the path around it, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first from each file, looking for a way back to it.
    fn back_to(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            path.push(next.clone());
            if next == start
                || (seen.insert(next.clone()) && back_to(graph, start, next, path, seen))
            {
                return true;
            }
            path.pop();
        }
        false
    }
    graph.keys().find_map(|start| {
        let mut path = vec![start.clone()];
        back_to(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
    })
}

/// The functions of `code` longer than `max` lines: (first line, length).
/// A function ends at the first later line that is a `}` at its indent.
fn long_functions(code: &str, max: usize) -> Vec<(usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut long = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let words: Vec<&str> = trimmed.split_whitespace().take(3).collect();
        let is_fn = words.iter().position(|w| *w == "fn").is_some_and(|at| {
            words[..at]
                .iter()
                .all(|w| *w == "async" || w.starts_with("pub") || *w == "const")
        });
        if !is_fn || trimmed.ends_with(';') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(line.len() - trimmed.len()));
        if let Some(k) = lines[i + 1..].iter().position(|l| l.trim_end() == close) {
            let n = k + 2;
            if n > max {
                long.push((i + 1, n));
            }
        }
    }
    long
}

#[test]
fn the_files_of_a_folder_import_each_other_in_one_direction() {
    let folders = sibling_imports();
    let engine = &folders["engine"];
    assert!(engine.len() >= 10, "engine files: {engine:?}");
    assert!(
        engine["run"].contains("pass"),
        "run imports pass: {engine:?}"
    );
    assert!(engine["review"].contains("golden"), "{engine:?}");
    let circles: Vec<String> = folders
        .iter()
        .filter_map(|(folder, graph)| {
            circle(graph).map(|path| format!("{folder}: {}", path.join(" -> ")))
        })
        .collect();
    assert_eq!(
        circles,
        Vec::<String>::new(),
        "files that import in a circle"
    );
}

#[test]
fn files_stay_short_enough_to_read_whole() {
    let long: Vec<String> = sources()
        .into_iter()
        .map(|(path, text)| (path, code(&text).lines().count()))
        .filter(|(_, n)| *n > MAX_FILE_LINES)
        .map(|(path, n)| format!("{path}: {n} lines"))
        .collect();
    assert_eq!(long, Vec::<String>::new());
}

#[test]
fn functions_stay_short() {
    let mut long = Vec::new();
    for (path, text) in sources() {
        for (line, n) in long_functions(&code(&text), MAX_FN_LINES) {
            long.push(format!("{path}:{line}: {n} lines"));
        }
    }
    assert_eq!(long, Vec::<String>::new());
}

#[test]
fn the_checks_see_what_they_look_for() {
    // Each check would fail on code that breaks its rule.
    assert!(code("use wasmtime::Engine;").contains("wasmtime::"));
    assert!(!code("// wasmtime::Engine").contains("wasmtime::"));
    let tests = "fn a() {}\n#[cfg(test)]\nmod tests {\n use rusqlite::x;\n}";
    assert!(!code(tests).contains("rusqlite"));
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(circle(&graph(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        circle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let body = |n: usize| "    x();\n".repeat(n);
    let f = format!(
        "fn short() {{\n{}}}\n    pub(super) async fn long(\n        a: u8,\n    ) {{\n{}    }}\n",
        body(3),
        body(8)
    );
    assert_eq!(long_functions(&f, 6), vec![(6, 12)]);
    assert_eq!(long_functions("fn decl();\nfn x() {}\n", 0), vec![]);
}
