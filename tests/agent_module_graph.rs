//! The agent's modules (the files of `src/agent/` beside `mod.rs`) form a DAG: none
//! reaches one that reaches it back. Read from the sources as text: an edge is a
//! `super::name` naming a sibling, or a call of a `Ctx` method defined in a sibling's
//! `impl Ctx` (`self.m(`, `ctx.m(`, `me.m(`). Unit tests are left out. `mod.rs` (which
//! holds `Ctx` and the socket server, and so meets every file) is not a node yet; a
//! folder (`s3/`) is one node, and its own files form a DAG too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The code (unit tests left out) of each module in `dir` but `mod.rs`; a folder with a
/// `mod.rs` is one module, all its files together.
fn sources(dir: &str) -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let code = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap();
        text.split("#[cfg(test)]").next().unwrap().to_string()
    };
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let Some(name) = p.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if p.extension().is_some_and(|x| x == "rs") && name != "mod" {
            out.insert(name.to_string(), code(&p));
        } else if p.join("mod.rs").exists() {
            let mut all = String::new();
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|x| x == "rs") {
                    all.push_str(&code(&f));
                }
            }
            out.insert(name.to_string(), all);
        }
    }
    out
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

fn graph(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = sources(dir);
    // Ctx method -> the file whose `impl Ctx` defines it.
    let mut defined = BTreeMap::new();
    for (file, code) in &src {
        for block in code.split("impl Ctx {").skip(1) {
            let body = block.split("\n}").next().unwrap_or("");
            for line in body.lines() {
                if let Some(i) = line.find("fn ") {
                    if line.starts_with("    ") && !line.starts_with("     ") {
                        if let Some(m) = words(&line[i + 3..]).next() {
                            defined.insert(m.to_string(), file.clone());
                        }
                    }
                }
            }
        }
    }
    let mut g = BTreeMap::new();
    for (file, code) in &src {
        let mut uses = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("super::") {
                let rest = &line[i + "super::".len()..];
                let group = match rest.strip_prefix('{') {
                    Some(g) => g.split('}').next().unwrap_or(""),
                    None => rest
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or(""),
                };
                uses.extend(
                    words(group)
                        .filter(|w| src.contains_key(*w))
                        .map(String::from),
                );
            }
            for recv in ["self.", "ctx.", "me."] {
                for (i, _) in line.match_indices(recv) {
                    let rest = &line[i + recv.len()..];
                    let m = words(rest).next().unwrap_or("");
                    if rest[m.len()..].starts_with('(') {
                        if let Some(f) = defined.get(m) {
                            uses.insert(f.clone());
                        }
                    }
                }
            }
        }
        uses.remove(file);
        g.insert(file.clone(), uses);
    }
    g
}

fn reaches(g: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(n) = todo.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n.clone()) {
            todo.extend(g.get(&n).into_iter().flatten().cloned());
        }
    }
    false
}

fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    g.iter()
        .flat_map(|(a, uses)| uses.iter().map(move |b| (a.clone(), b.clone())))
        .filter(|(a, b)| reaches(g, b, a))
        .collect()
}

#[test]
fn the_agents_modules_form_a_dag() {
    let g = graph("src/agent");
    assert!(g.len() > 10, "the sources were read: {g:?}");
    assert!(
        g["hydrate"].contains("ignore")
            && g["sync"].contains("hydrate")
            && g["hydrate"].contains("locks")
            && g.contains_key("s3"),
        "edges are seen: {g:?}"
    );
    let cycles = cycles(&g);
    assert!(cycles.is_empty(), "edges on a cycle: {cycles:?}\n{g:#?}");
}

/// The S3 client's files (client, classify, read, write, list) too.
#[test]
fn the_s3_clients_files_form_a_dag() {
    let g = graph("src/agent/s3");
    assert!(
        g["write"].contains("classify") && g.len() >= 5,
        "the sources were read: {g:?}"
    );
    let cycles = cycles(&g);
    assert!(cycles.is_empty(), "edges on a cycle: {cycles:?}\n{g:#?}");
}
