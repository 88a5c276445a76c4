//! The code's shape, checked: the engine's modules form layers (no module reaches, directly or
//! through others, back to itself), and no source file of ferry grows past 450 lines.
//!
//! `cargo test --test layers` prints the engine's modules bottom-up, each with what it uses.
//! How it reads the code: every `crate::a::b` and `super::x` path in a file (in `use` trees
//! too) is an edge from that file's module to the deepest module the path names. Within each
//! directory the children must form an acyclic graph, a child standing for itself and
//! everything under it; a module using its own parent or child is not counted (a `mod.rs`
//! declares its children, and they share its vocabulary).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file may be; over it a file mixes concerns (issue 16).
const MAX_LINES: usize = 450;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `["a", "b"]`; `src/a/mod.rs` → `["a"]`; `src/lib.rs` (or `main.rs`) → `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The text with plain comments and string literals blanked, so that paths in prose do not
/// count. Doc comments stay: an intra-doc link (`[`crate::a::B`]`) is an edge too.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"///") || b[i..].starts_with(b"//!") {
            out.push_str(&text[i..i + 3]);
            i += 3;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Every path a `use` tree or expression starting at `text` names: `a::b`, `a::{b, c::d}`.
fn paths_from(text: &str) -> Vec<Vec<String>> {
    fn tree(s: &[u8], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut path = prefix;
        loop {
            while *i < s.len() && s[*i].is_ascii_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == b'{' {
                *i += 1;
                loop {
                    tree(s, i, path.clone(), out);
                    while *i < s.len() && s[*i].is_ascii_whitespace() {
                        *i += 1;
                    }
                    match s.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b'}') => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    while *i < s.len() && s[*i].is_ascii_whitespace() {
                        *i += 1;
                    }
                    if s.get(*i) == Some(&b'}') {
                        *i += 1;
                        return;
                    }
                }
            }
            let start = *i;
            while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_') {
                *i += 1;
            }
            if start == *i {
                out.push(path);
                return;
            }
            path.push(String::from_utf8_lossy(&s[start..*i]).into_owned());
            if s[*i..].starts_with(b"::") {
                *i += 2;
            } else {
                out.push(path);
                return;
            }
        }
    }
    let mut out = Vec::new();
    tree(text.as_bytes(), &mut 0, Vec::new(), &mut out);
    out
}

struct Engine {
    /// Every module, by path.
    modules: BTreeSet<Vec<String>>,
    /// What each module names: the deepest known module of each path it uses.
    uses: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

/// The modules of the crate in `functions/<krate>` and what each uses.
fn read_crate(krate: &str) -> Engine {
    let src = repo().join("functions").join(krate).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut uses = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let is_mod_file =
            file.ends_with("mod.rs") || file.ends_with("lib.rs") || file.ends_with("main.rs");
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        let mut named = BTreeSet::new();
        for (at, keyword) in code
            .match_indices("crate::")
            .chain(code.match_indices("super::"))
        {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let base: Vec<String> = if keyword == "crate::" {
                Vec::new()
            } else {
                // `super` of a mod.rs is its directory's parent, of a.rs its directory.
                let mut m = module.clone();
                if is_mod_file || !m.is_empty() {
                    m.pop();
                }
                m
            };
            for rel in paths_from(&code[at + keyword.len()..]) {
                let mut path = base.clone();
                path.extend(rel);
                while !path.is_empty() && !modules.contains(&path) {
                    path.pop();
                }
                if path != module {
                    named.insert(path);
                }
            }
        }
        uses.insert(module, named);
    }
    Engine { modules, uses }
}

/// `a` is `b` or contains it.
fn is_within(b: &[String], a: &[String]) -> bool {
    b.len() >= a.len() && b[..a.len()] == *a
}

/// Within the directory `dir`, which child uses which (a child standing for its subtree).
fn child_graph(engine: &Engine, dir: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let child = |m: &[String]| -> Option<String> {
        (m.len() > dir.len() && is_within(m, dir)).then(|| m[dir.len()].clone())
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, named) in &engine.uses {
        let Some(from) = child(module) else { continue };
        let entry = graph.entry(from.clone()).or_default();
        for n in named {
            if let Some(to) = child(n) {
                if to != from {
                    entry.insert(to);
                }
            }
        }
    }
    graph
}

/// The nodes in an order where each comes after everything it uses, or the cycle found.
fn layers(graph: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<String>, Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), Vec<String>> {
        if done.contains(node) {
            return Ok(());
        }
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Err(cycle);
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, done, stack, order)?;
        }
        stack.pop();
        done.insert(node.to_string());
        order.push(node.to_string());
        Ok(())
    }
    let (mut done, mut order) = (BTreeSet::new(), Vec::new());
    for node in graph.keys() {
        visit(node, graph, &mut done, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// Every crate of ferry, not only the engine: the CLI and the steps read top-down too.
#[test]
fn no_crate_has_a_module_cycle() {
    let mut cycles = Vec::new();
    for krate in ["engine", "cli", "steps"] {
        cycles.extend(
            crate_cycles(krate)
                .into_iter()
                .map(|c| format!("{krate}: {c}")),
        );
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

/// The cycles within each directory of `krate`, printing the order where there is none.
fn crate_cycles(krate: &str) -> Vec<String> {
    let engine = read_crate(krate);
    let dirs: BTreeSet<Vec<String>> = engine
        .modules
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| m[..m.len() - 1].to_vec())
        .collect();
    let mut cycles = Vec::new();
    for dir in &dirs {
        let graph = child_graph(&engine, dir);
        match layers(&graph) {
            Ok(order) => {
                println!("{krate}: crate::{} bottom-up:", dir.join("::"));
                for m in order {
                    let uses: Vec<&str> = graph[&m].iter().map(String::as_str).collect();
                    println!("  {m:<16} uses {}", uses.join(", "));
                }
            }
            Err(cycle) => cycles.push(format!(
                "in crate::{}: {}",
                dir.join("::"),
                cycle.join(" -> ")
            )),
        }
    }
    cycles
}

/// The checker itself finds a cycle, reads `use` trees and resolves `super`.
#[test]
fn the_cycle_check_sees_cycles_trees_and_super() {
    assert_eq!(
        paths_from("a::{b, c::{d, e}}, f;"),
        vec![vec!["a", "b"], vec!["a", "c", "d"], vec!["a", "c", "e"]]
    );
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into_iter().map(String::from).collect()))
            .collect();
    assert_eq!(layers(&graph).unwrap_err(), vec!["a", "b", "c", "a"]);
    let engine = read_crate("engine");
    // The live tail's heal pass uses the verify pass: a real edge the parser must find.
    let graph = child_graph(&engine, &[]);
    assert!(graph.values().any(|uses| uses.len() > 3), "{graph:?}");
    assert!(code_only("x // crate::a\n\"crate::b\"")
        .find("crate")
        .is_none());
    assert!(code_only("/// [`crate::a`]").contains("crate::a"));
}

#[test]
fn no_source_file_is_longer_than_450_lines() {
    let mut files = Vec::new();
    for krate in ["engine", "cli", "steps"] {
        rust_files(
            &repo().join("functions").join(krate).join("src"),
            &mut files,
        );
    }
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{lines:5}  {}", f.display()))
        })
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}
