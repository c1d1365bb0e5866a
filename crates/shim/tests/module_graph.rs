//! The shim's modules form a DAG: no module reaches one that reaches it back (the order
//! is written in `src/lib.rs`). Read from the sources as text: an edge is a
//! `crate::name` (or, inside `hooks/`, `super::name`) outside comments and unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name (`loc`, `hooks`, `hooks::open`) -> the modules it uses.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                files.push(e.unwrap().path());
            }
        } else {
            files.push(p);
        }
    }
    let name_of = |p: &Path| {
        let rel = p.strip_prefix(&src).unwrap().with_extension("");
        let parts: Vec<_> = rel
            .iter()
            .map(|c| c.to_str().unwrap().to_string())
            .collect();
        match parts.as_slice() {
            [lib] if lib == "lib" => "crate".to_string(),
            [dir, m] if m == "mod" => dir.clone(),
            _ => parts.join("::"),
        }
    };
    let names: BTreeSet<String> = files.iter().map(|p| name_of(p)).collect();
    let mut g = BTreeMap::new();
    for p in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
    {
        let me = name_of(p);
        let text = std::fs::read_to_string(p).unwrap();
        // Unit tests may use anything.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let mut uses = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (prefix, parent) in [("crate::", None), ("super::", me.split_once("::"))] {
                if prefix == "super::" && parent.is_none() {
                    continue;
                }
                for (i, _) in line.match_indices(prefix) {
                    // `crate::{a, b}` as well as `crate::a`.
                    let rest = &line[i + prefix.len()..];
                    let group = match rest.strip_prefix('{') {
                        Some(g) => g.split('}').next().unwrap_or(""),
                        None => rest,
                    };
                    for item in group.split(',') {
                        let word: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                            .collect();
                        let target = match parent {
                            Some((dir, _)) if prefix == "super::" => {
                                let sub = format!("{dir}::{word}");
                                if names.contains(&sub) {
                                    sub
                                } else {
                                    dir.to_string()
                                }
                            }
                            _ if word == "hooks" => {
                                let sub = rest
                                    .strip_prefix("hooks::")
                                    .map(|r| {
                                        r.chars()
                                            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                                            .collect::<String>()
                                    })
                                    .map(|s| format!("hooks::{s}"));
                                sub.filter(|s| names.contains(s)).unwrap_or(word)
                            }
                            _ => word,
                        };
                        if target != me && names.contains(&target) {
                            uses.insert(target);
                        }
                    }
                }
            }
        }
        g.insert(me, uses);
    }
    g
}

/// A cycle through `start`, as a path, if there is one.
fn cycle_from(g: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in g.get(&at).into_iter().flatten() {
            if next == start {
                let mut p = path.clone();
                p.push(next.clone());
                return Some(p);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycles() {
    let g = graph();
    // The reader sees the modules it must (a broken reader would find no edges at all).
    assert!(
        g["loc"].contains("path") && g["hydrate"].contains("agent"),
        "{g:#?}"
    );
    assert!(g["hooks::syscall"].contains("hooks::fsync"), "{g:#?}");
    let cycles: Vec<_> = g.keys().filter_map(|m| cycle_from(&g, m)).collect();
    assert!(
        cycles.is_empty(),
        "import cycles in crates/shim/src: {:#?}",
        cycles.iter().map(|c| c.join(" -> ")).collect::<Vec<_>>()
    );
}

#[test]
fn a_cycle_is_found() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        cycle_from(&g, "a").unwrap().join(" -> "),
        "a -> b -> c -> a"
    );
    g.insert("c".to_string(), BTreeSet::new());
    assert_eq!(cycle_from(&g, "a"), None);
}
