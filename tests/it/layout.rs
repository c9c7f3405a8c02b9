//! No import circle anywhere in `src/`, inside folders included.
//!
//! Every path a module names (`use crate::…`, `super::…`, `self::…`, and such paths in code) is an
//! edge from that module to the module the path lands in, re-exports followed to where the item
//! lives. An edge between two modules is an edge between the two siblings that hold them, under
//! their lowest common folder (`lane::attempt` → `lane::request` is `attempt` → `request` in
//! `lane/`; `worker::gate` → `lane::pacing` is `worker` → `lane` at the top). A module and the
//! folder it sits in may name each other (a `mod.rs` is the folder's face); at every level the
//! siblings' graph must be acyclic, so each folder can be read in an order where nothing points
//! back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module's path from the crate root (`[]` is `lib.rs`).
type ModPath = Vec<String>;

/// One use of another module: where it is named, for the message.
#[derive(Clone, Debug)]
struct Edge {
    from: ModPath,
    to: ModPath,
    at: String,
}

/// The modules of a crate and what each names.
#[derive(Default)]
struct Crate {
    modules: BTreeSet<ModPath>,
    /// `module::Name` → the module a `pub use` there takes it from.
    reexports: BTreeMap<(ModPath, String), ModPath>,
    /// `pub use` lines as written: module, name, path.
    written_reexports: Vec<(ModPath, String, Vec<String>)>,
    /// Paths as written, resolved once every module and re-export is known.
    named: Vec<(ModPath, Vec<String>, String)>,
}

impl Crate {
    /// Reads a source tree: `lib.rs`, `x.rs` or `x/mod.rs`, and inline `mod x { … }`.
    fn read(root: &Path) -> Self {
        let mut krate = Crate::default();
        let mut files = Vec::new();
        collect(root, &mut files);
        for file in files {
            let rel = file.strip_prefix(root).unwrap();
            let mut path: ModPath = rel
                .with_extension("")
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(path.last().map(String::as_str), Some("mod" | "lib")) {
                path.pop();
            }
            if path == ["main"] {
                continue; // the binary: another crate, it names this one as `offboard::`
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let parsed =
                syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            krate.add(path, rel.display().to_string(), &parsed);
        }
        krate
    }

    /// Adds one file's module (and its inline modules) from its syntax tree.
    fn add(&mut self, path: ModPath, file: String, parsed: &syn::File) {
        let mut walker = Walker {
            krate: self,
            module: path,
            file,
        };
        walker.krate.modules.insert(walker.module.clone());
        walker.visit_file(parsed);
    }

    /// Resolves a path as written in `module` to the module it lands in, if it is in this crate.
    fn resolve(&self, module: &ModPath, segments: &[String]) -> Option<ModPath> {
        let mut base = match segments.first()?.as_str() {
            "crate" => Vec::new(),
            "self" | "super" => module.clone(),
            _ => return None,
        };
        let mut rest = &segments[1..];
        if segments[0] == "super" {
            base.pop()?;
        }
        while rest.first().map(String::as_str) == Some("super") {
            base.pop()?;
            rest = &rest[1..];
        }
        // The longest prefix that is a module, then re-exports followed.
        for segment in rest {
            let mut next = base.clone();
            next.push(segment.clone());
            if self.modules.contains(&next) {
                base = next;
            } else if let Some(source) = self.reexports.get(&(base.clone(), segment.clone())) {
                base = source.clone();
            } else {
                break;
            }
        }
        Some(base)
    }

    /// Every edge between two modules, resolved.
    fn edges(&self) -> Vec<Edge> {
        self.named
            .iter()
            .filter_map(|(from, segments, at)| {
                let to = self.resolve(from, segments)?;
                (to != *from).then(|| Edge {
                    from: from.clone(),
                    to,
                    at: at.clone(),
                })
            })
            .collect()
    }
}

/// Walks one file, keeping the module an item sits in.
struct Walker<'a> {
    krate: &'a mut Crate,
    module: ModPath,
    file: String,
}

impl Walker<'_> {
    fn name(&mut self, segments: Vec<String>) {
        let at = format!("{}: {}", self.file, segments.join("::"));
        self.krate.named.push((self.module.clone(), segments, at));
    }
}

impl<'ast> Visit<'ast> for Walker<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.content.is_some() {
            self.module.push(item.ident.to_string());
            self.krate.modules.insert(self.module.clone());
            syn::visit::visit_item_mod(self, item);
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut leaves = Vec::new();
        flatten(&item.tree, Vec::new(), &mut leaves);
        for (segments, name) in leaves {
            {
                // Resolved later, when every module is known: a re-export's source is where
                // the names through it land. A private `use` counts too: a module's children
                // see it, and may name it as `super::Name`.
                if let Some(name) = name {
                    let module = self.module.clone();
                    self.krate
                        .written_reexports
                        .push((module, name, segments.clone()));
                }
            }
            self.name(segments);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if matches!(
            segments.first().map(String::as_str),
            Some("crate" | "super" | "self")
        ) {
            self.name(segments);
        }
        syn::visit::visit_path(self, path);
    }
}

/// Resolves the re-exports now that every module is known; a few rounds settle re-exports of
/// re-exports.
fn finish(krate: &mut Crate) {
    for _ in 0..4 {
        for (module, name, segments) in krate.written_reexports.clone() {
            // `pub use self::x::Name`, or `pub use x::Name` (a child, as 2018 paths allow).
            let written: Vec<String> = match segments.first().map(String::as_str) {
                Some("crate" | "super" | "self") => segments,
                _ => std::iter::once("self".to_owned()).chain(segments).collect(),
            };
            let Some(source) = krate.resolve(&module, &written[..written.len() - 1]) else {
                continue;
            };
            if source != module {
                krate.reexports.insert((module, name), source);
            }
        }
    }
}

/// A use tree's leaves: each full path, and the name it brings in (none for a glob).
fn flatten(tree: &syn::UseTree, prefix: Vec<String>, out: &mut Vec<(Vec<String>, Option<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            let mut next = prefix;
            next.push(p.ident.to_string());
            flatten(&p.tree, next, out);
        }
        syn::UseTree::Name(n) => {
            let mut full = prefix;
            if n.ident != "self" {
                full.push(n.ident.to_string());
            }
            let name = full.last().cloned();
            out.push((full, name));
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix;
            full.push(r.ident.to_string());
            out.push((full, Some(r.rename.to_string())));
        }
        syn::UseTree::Glob(_) => {
            let mut full = prefix;
            full.push("*".to_owned());
            out.push((full, None));
        }
        syn::UseTree::Group(g) => {
            for item in &g.items {
                flatten(item, prefix.clone(), out);
            }
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The circles among siblings: for each folder with one, the modules on it and a use per edge.
fn circles(edges: &[Edge]) -> Vec<String> {
    // folder → sibling → sibling → first use seen.
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, String>>> = BTreeMap::new();
    for edge in edges {
        let common = edge
            .from
            .iter()
            .zip(&edge.to)
            .take_while(|(a, b)| a == b)
            .count();
        if common == edge.from.len() || common == edge.to.len() {
            continue; // a module and a folder it sits in
        }
        graphs
            .entry(edge.from[..common].to_vec())
            .or_default()
            .entry(edge.from[common].clone())
            .or_default()
            .entry(edge.to[common].clone())
            .or_insert_with(|| edge.at.clone());
    }
    let mut found = Vec::new();
    for (folder, graph) in &graphs {
        if let Some(cycle) = find_cycle(graph) {
            let shown: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} → {} ({})", w[0], w[1], graph[&w[0]][&w[1]]))
                .collect();
            found.push(format!(
                "in crate::{}: {}",
                folder.join("::"),
                shown.join(", ")
            ));
        }
    }
    found
}

/// One cycle of a directed graph, as its nodes with the first repeated at the end.
fn find_cycle(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn walk(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            match marks.get(next.as_str()) {
                Some(Mark::Open) => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = walk(next, graph, marks, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node) {
            if let Some(cycle) = walk(node, graph, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

fn circles_in(krate: &mut Crate) -> Vec<String> {
    finish(krate);
    circles(&krate.edges())
}

#[test]
fn no_module_of_the_library_imports_in_a_circle() {
    let mut krate = Crate::read(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")));
    assert!(krate.modules.len() > 50, "the source tree was not read");
    let found = circles_in(&mut krate);
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

/// A planted tree: `a/x.rs` names `a/y.rs` through the folder's re-export, `y` names `x` back.
#[test]
fn a_circle_inside_a_folder_is_found_through_a_reexport() {
    let mut krate = Crate::default();
    let file = |src: &str| syn::parse_file(src).unwrap();
    let m = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<ModPath>();
    krate.add(m(&[]), "lib.rs".into(), &file("pub mod a; pub mod b;"));
    krate.add(
        m(&["a"]),
        "a/mod.rs".into(),
        &file("mod x; mod y; pub use y::Why;"),
    );
    krate.add(m(&["a", "x"]), "a/x.rs".into(), &file("use super::Why;"));
    krate.add(
        m(&["a", "y"]),
        "a/y.rs".into(),
        &file("pub struct Why; fn f() { super::x::g(); }"),
    );
    krate.add(m(&["b"]), "b.rs".into(), &file("use crate::a::Why;"));
    let found = circles_in(&mut krate);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("in crate::a: x → y"), "{found:?}");

    // The same tree without the way back has none, and a parent naming its child is no circle.
    let mut krate = Crate::default();
    krate.add(m(&[]), "lib.rs".into(), &file("pub mod a; pub mod b;"));
    krate.add(
        m(&["a"]),
        "a/mod.rs".into(),
        &file("mod x; mod y; pub use y::Why; fn f() { x::g(); }"),
    );
    krate.add(m(&["a", "x"]), "a/x.rs".into(), &file("use super::Why;"));
    krate.add(m(&["a", "y"]), "a/y.rs".into(), &file("pub struct Why;"));
    krate.add(m(&["b"]), "b.rs".into(), &file("use crate::a::Why;"));
    assert_eq!(circles_in(&mut krate), Vec::<String>::new());
}

/// Two top-level modules naming each other, one of them only in a function body's path.
#[test]
fn a_circle_between_top_level_modules_is_found_in_code_paths() {
    let mut krate = Crate::default();
    let file = |src: &str| syn::parse_file(src).unwrap();
    let m = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<ModPath>();
    krate.add(
        m(&[]),
        "lib.rs".into(),
        &file("pub mod lane; pub mod sink;"),
    );
    krate.add(
        m(&["lane"]),
        "lane.rs".into(),
        &file("fn f() { let _ = crate::sink::write(); }"),
    );
    krate.add(
        m(&["sink"]),
        "sink.rs".into(),
        &file("#[cfg(test)] mod tests { use crate::lane::Lane; }"),
    );
    let found = circles_in(&mut krate);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("lane → sink"), "{found:?}");
}
