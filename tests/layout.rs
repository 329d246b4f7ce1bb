//! The shape of `src/`: folders are layers and arrows point one way.
//!
//! Reads every source file, resolves the `crate::`, `super::` and `self::`
//! paths it uses (in `use` items and inline) to the files that define
//! them, and checks that
//! - no two files reach each other through such paths (no cycles),
//! - a folder uses only folders below it in [`LAYERS`],
//! - `src/` has at most four files of its own.
//!
//! Test modules are left out: they may look anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level folders from the top down; each may use only those after it.
/// `config` (a file) is below them all.
const LAYERS: &[&[&str]] = &[
    &["server"],
    &["admin", "doctor"],
    &["session"],
    &["shard"],
    &["cluster"],
    &["conn"],
    &["access"],
    &["proto"],
    &["config"],
];

/// A module path (`["shard", "home", "room"]`) and the file it lives in.
struct Module {
    path: Vec<String>,
    file: PathBuf,
    /// The file's code: no comments, no test module.
    text: String,
}

fn modules(src: &Path) -> Vec<Module> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if p.is_dir() {
                if name != "tests" {
                    stack.push(p);
                }
                continue;
            }
            if !name.ends_with(".rs") || name == "tests.rs" {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let mut path: Vec<String> = rel
                .iter()
                .map(|s| s.to_str().unwrap().trim_end_matches(".rs").to_string())
                .collect();
            if matches!(
                path.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                path.pop();
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let text = match text.match_indices("#[cfg(test)]\n").find(|(i, _)| {
                text[i + 13..]
                    .lines()
                    .next()
                    .is_some_and(|l| l.contains("mod tests"))
            }) {
                Some((i, _)) => &text[..i],
                None => &text[..],
            };
            // Comments (doc links among them) name paths without using them.
            let text: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            out.push(Module {
                path,
                file: p,
                text,
            });
        }
    }
    out
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.trim_end_matches("::").to_string()
            } else {
                format!("{prefix}{p}")
            }
        })
        .collect()
}

/// Every path a module names: its `use` items expanded, and inline
/// `crate::`/`super::` paths.
fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("use ") {
        let before = &rest[..i];
        let at_item = before.is_empty() || before.ends_with('\n') || before.ends_with("pub ");
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        if at_item {
            out.extend(expand(&after[..end]));
        }
        rest = &after[end.min(after.len())..];
    }
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        if word.starts_with("crate::") || word.starts_with("super::") {
            out.push(word.trim_end_matches(':').to_string());
        }
    }
    out
}

/// Resolves a path named in module `from` to the module that defines it.
fn resolve(from: &[String], children: &BTreeSet<String>, path: &str) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let first = *segs.first()?;
    let mut abs: Vec<String> = match first {
        "crate" => Vec::new(),
        "self" => from.to_vec(),
        "super" => {
            let mut p = from.to_vec();
            p.pop();
            p
        }
        name if children.contains(name) => {
            let mut p = from.to_vec();
            p.push(name.to_string());
            p.extend(segs[1..].iter().map(|s| s.to_string()));
            return Some(p);
        }
        _ => return None,
    };
    let mut i = 1;
    while i < segs.len() && segs[i] == "super" {
        abs.pop();
        i += 1;
    }
    abs.extend(segs[i..].iter().map(|s| s.to_string()));
    Some(abs)
}

struct Graph {
    edges: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
    top: BTreeMap<PathBuf, String>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let by_path: BTreeMap<Vec<String>, &Module> =
        mods.iter().map(|m| (m.path.clone(), m)).collect();
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    let mut top = BTreeMap::new();
    for m in &mods {
        top.insert(m.file.clone(), m.path.first().cloned().unwrap_or_default());
        let children: BTreeSet<String> = m
            .text
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let l = l.strip_prefix("pub ").unwrap_or(l);
                let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
                l.strip_prefix("mod ")?
                    .strip_suffix(';')
                    .map(str::to_string)
            })
            .collect();
        for p in named_paths(&m.text) {
            let Some(abs) = resolve(&m.path, &children, &p) else {
                continue;
            };
            // The longest prefix that is a module.
            let target = (0..=abs.len())
                .rev()
                .find_map(|n| by_path.get(&abs[..n]).copied());
            if let Some(t) = target {
                if t.file != m.file {
                    edges
                        .entry(m.file.clone())
                        .or_default()
                        .insert(t.file.clone());
                }
            }
        }
    }
    Graph { edges, top }
}

fn short(p: &Path) -> String {
    let s = p.to_string_lossy();
    s[s.find("/src/").map_or(0, |i| i + 1)..].to_string()
}

#[test]
fn no_two_files_import_each_other_even_through_others() {
    let g = graph();
    // Depth-first search for a cycle, reporting the first one found.
    fn visit(
        n: &PathBuf,
        g: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        on_stack: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(i) = on_stack.iter().position(|x| x == n) {
            let mut cycle = on_stack[i..].to_vec();
            cycle.push(n.clone());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        on_stack.push(n.clone());
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, g, on_stack, done) {
                return Some(c);
            }
        }
        on_stack.pop();
        done.insert(n.clone());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.edges.keys() {
        if let Some(cycle) = visit(n, &g.edges, &mut Vec::new(), &mut done) {
            let names: Vec<String> = cycle.iter().map(|p| short(p)).collect();
            panic!("import cycle: {}", names.join(" -> "));
        }
    }
}

#[test]
fn folders_use_only_the_layers_below_them() {
    let g = graph();
    let rank = |top: &str| LAYERS.iter().position(|l| l.contains(&top));
    let mut wrong = Vec::new();
    for (from, tos) in &g.edges {
        let Some(rf) = rank(&g.top[from]) else {
            continue; // lib.rs, main.rs
        };
        for to in tos {
            let Some(rt) = rank(&g.top[to]) else { continue };
            if g.top[from] != g.top[to] && rt <= rf {
                wrong.push(format!("{} -> {}", short(from), short(to)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows pointing up or sideways:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn src_has_at_most_four_files_of_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(files.len() <= 4, "{files:?}");
}

#[test]
fn the_checker_sees_paths() {
    assert_eq!(
        expand("crate::a::{self, b, c::{d as e, f}}"),
        [
            "crate::a",
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::f"
        ]
    );
    assert_eq!(
        resolve(&["x".into(), "y".into()], &BTreeSet::new(), "super::z::W"),
        Some(vec!["x".to_string(), "z".into(), "W".into()])
    );
    // The graph is not empty: the checks above check something.
    let g = graph();
    assert!(g.edges.values().map(BTreeSet::len).sum::<usize>() > 50);
}
