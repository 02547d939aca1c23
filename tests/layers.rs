//! The module layers of docs/DESIGN.md, read from the code: every
//! `crate::` and `super::` path in src/ is an arrow from the module that
//! writes it to the module it names, and each arrow must point down the
//! list in the design's "Module layers" (or left along a `<`), with no
//! circle among the library's modules or among the files of one folder.
//! The list is parsed from the document, so the two cannot drift.
//!
//! A folder's `mod.rs` names its files by relative paths (`mod plan;`,
//! `pub use backend::GpuBackend;`): those are its table of contents, not
//! arrows, and are not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One arrow: `from` names `to` at `file:line`.
#[derive(Debug, Clone)]
struct Arrow {
    from: String,
    to: String,
    file: String,
    line: usize,
    text: String,
}

impl std::fmt::Display for Arrow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} → {} ({}:{}: `{}`)",
            show(&self.from),
            show(&self.to),
            self.file,
            self.line,
            self.text
        )
    }
}

/// A module path as the reader knows it (`crate` for the root).
fn show(module: &str) -> &str {
    if module.is_empty() { "crate" } else { module }
}

/// Where a top-level module stands: its line in the list (0 = lowest),
/// its group on the line (`|` separates groups, which do not import each
/// other) and its step in the group (`<`: each imports those left of it).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rank {
    line: usize,
    group: usize,
    step: usize,
}

impl Rank {
    fn may_import(self, below: Rank) -> bool {
        below.line < self.line
            || (below.line == self.line && below.group == self.group && below.step < self.step)
    }
}

/// The layers from the first indented block after `## Module layers`:
/// a line is `name  a < b | c/ ...`.
fn parse_layers(doc: &str) -> Result<BTreeMap<String, Rank>, String> {
    let start = doc
        .find("## Module layers")
        .ok_or("no `## Module layers` section")?;
    let mut ranks = BTreeMap::new();
    let mut line_no = 0;
    let mut in_block = false;
    for line in doc[start..].lines().skip(1) {
        if let Some(body) = line.strip_prefix("    ") {
            in_block = true;
            let mut words = body.split_whitespace();
            words.next().ok_or("an empty layer line")?;
            let entries: Vec<&str> = words.collect();
            for (group, members) in entries.join(" ").split('|').enumerate() {
                for (step, name) in members.split('<').enumerate() {
                    let name = name.trim().trim_end_matches('/');
                    if name.is_empty() || name.contains(' ') {
                        return Err(format!("cannot read layer entry {name:?} in {line:?}"));
                    }
                    let rank = Rank {
                        line: line_no,
                        group,
                        step,
                    };
                    if ranks.insert(name.to_string(), rank).is_some() {
                        return Err(format!("{name} is in two layers"));
                    }
                }
            }
            line_no += 1;
        } else if in_block {
            break;
        }
    }
    if ranks.is_empty() {
        return Err("the `## Module layers` section has no indented list".into());
    }
    Ok(ranks)
}

/// The module a file under src/ is (`gpu::plan`; `` for lib.rs).
fn module_of(path: &str) -> String {
    let path = path.trim_end_matches(".rs");
    let path = path.trim_end_matches("/mod");
    if path == "lib" {
        return String::new();
    }
    path.replace('/', "::")
}

/// The code of a file without comments (line comments cut where they
/// start outside a string; doc comments are comments), line by line.
fn code_lines(source: &str) -> Vec<String> {
    source
        .lines()
        .map(|line| {
            let bytes = line.as_bytes();
            let mut in_string = false;
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if in_string => i += 1,
                    b'"' => in_string = !in_string,
                    b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                        return line[..i].to_string();
                    }
                    _ => {}
                }
                i += 1;
            }
            line.to_string()
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifiers a path names after `at` in `code`: `a::b` gives
/// `[["a", "b"]]`, `{a::b, c}` gives `[["a", "b"], ["c"]]`.
fn paths_after(code: &str) -> Vec<Vec<String>> {
    let code = code.trim_start();
    if let Some(inner) = code.strip_prefix('{') {
        // The braced list, to its matching brace, split at top-level commas.
        let mut depth = 1;
        let mut items = vec![String::new()];
        for c in inner.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => {
                    items.push(String::new());
                    continue;
                }
                _ => {}
            }
            items.last_mut().unwrap().push(c);
        }
        return items
            .iter()
            .flat_map(|item| paths_after(item))
            .filter(|p| !p.is_empty())
            .collect();
    }
    let mut path = Vec::new();
    let mut rest = code;
    loop {
        let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        path.push(rest[..end].to_string());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(r) if r.starts_with('{') => {
                return paths_after(r)
                    .into_iter()
                    .map(|tail| path.iter().cloned().chain(tail).collect())
                    .collect();
            }
            Some(r) => rest = r,
            None => break,
        }
    }
    vec![path]
}

/// The module that `base::segments` lands in: the longest run of
/// segments that is a module of `modules`.
fn resolve(base: &str, segments: &[String], modules: &BTreeSet<String>) -> String {
    let mut found = base.to_string();
    let mut at = base.to_string();
    for segment in segments {
        at = if at.is_empty() {
            segment.clone()
        } else {
            format!("{at}::{segment}")
        };
        if modules.contains(&at) {
            found = at.clone();
        } else {
            break;
        }
    }
    found
}

/// Every arrow of the files (`(path under src/, source)`).
fn arrows(files: &[(String, String)]) -> Vec<Arrow> {
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| module_of(p)).collect();
    let mut arrows = Vec::new();
    for (path, source) in files {
        let module = module_of(path);
        let lines = code_lines(source);
        // Inline modules (`mod tests {`) open at a brace depth; inside one,
        // `super` is the file's own module.
        let mut depth = 0usize;
        let mut inline: Vec<usize> = Vec::new();
        // A `use` may span lines: read each from where a path starts to
        // the end of its statement.
        let joined: Vec<String> = (0..lines.len())
            .map(|i| {
                let mut text = lines[i].clone();
                let mut j = i;
                while text.matches('{').count() > text.matches('}').count()
                    && text.trim_start().starts_with("use ")
                    && j + 1 < lines.len()
                {
                    j += 1;
                    text.push_str(&lines[j]);
                }
                text
            })
            .collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            if (trimmed.starts_with("mod ") || trimmed.starts_with("pub mod "))
                && trimmed.trim_end().ends_with('{')
            {
                inline.push(depth);
            }
            let text = &joined[i];
            for prefix in ["crate::", "super::"] {
                let mut from = 0;
                while let Some(at) = text[from..].find(prefix) {
                    let start = from + at;
                    from = start + prefix.len();
                    // `$crate::`, `x::crate::`, and the second `super::` of
                    // `super::super::` (climbed below) start no path.
                    if text[..start].ends_with(|c: char| is_ident(c) || c == ':' || c == '$') {
                        continue;
                    }
                    let mut rest = &text[from..];
                    let mut target_base = String::new();
                    if prefix == "super::" {
                        // `super` is the file's own module inside an inline
                        // module, else its parent.
                        let parent =
                            |m: &str| m.rsplit_once("::").map_or("", |(p, _)| p).to_string();
                        target_base = if inline.is_empty() {
                            parent(&module)
                        } else {
                            module.clone()
                        };
                        while let Some(r) = rest.strip_prefix("super::") {
                            target_base = parent(&target_base);
                            rest = r;
                        }
                    }
                    for segments in paths_after(rest) {
                        let to = resolve(&target_base, &segments, &modules);
                        if to == module || segments.first().is_some_and(|s| s == "self") {
                            continue;
                        }
                        arrows.push(Arrow {
                            from: module.clone(),
                            to,
                            file: format!("src/{path}"),
                            line: i + 1,
                            text: text.trim().to_string(),
                        });
                    }
                }
            }
            depth += line.matches('{').count();
            depth = depth.saturating_sub(line.matches('}').count());
            while inline.last().is_some_and(|&d| depth <= d) {
                inline.pop();
            }
        }
    }
    arrows
}

/// The first circle of the graph `edges` (from, to, the arrow that made
/// the edge), as its arrows in order.
fn circle(edges: &[(String, String, Arrow)]) -> Option<Vec<Arrow>> {
    type Next<'a> = BTreeMap<&'a str, Vec<(&'a str, &'a Arrow)>>;
    let mut next: Next = BTreeMap::new();
    for (a, b, arrow) in edges {
        next.entry(a).or_default().push((b, arrow));
    }
    // Depth first; `on_path[n]`: true while n is on the current path, false
    // once every path from it was walked. A node met on the path closes a
    // circle: the arrows from it to here, and the one back.
    fn visit<'a>(
        node: &'a str,
        next: &Next<'a>,
        on_path: &mut BTreeMap<&'a str, bool>,
        path: &mut Vec<(&'a str, &'a Arrow)>,
    ) -> Option<Vec<Arrow>> {
        on_path.insert(node, true);
        for &(to, arrow) in next.get(node).into_iter().flatten() {
            match on_path.get(to) {
                Some(true) => {
                    let at = path
                        .iter()
                        .position(|(n, _)| *n == to)
                        .unwrap_or(path.len());
                    let mut found: Vec<Arrow> =
                        path[at..].iter().map(|(_, a)| (*a).clone()).collect();
                    found.push(arrow.clone());
                    return Some(found);
                }
                Some(false) => {}
                None => {
                    path.push((node, arrow));
                    if let Some(found) = visit(to, next, on_path, path) {
                        return Some(found);
                    }
                    path.pop();
                }
            }
        }
        on_path.insert(node, false);
        None
    }
    let mut on_path = BTreeMap::new();
    for &node in next.keys() {
        if !on_path.contains_key(node)
            && let Some(found) = visit(node, &next, &mut on_path, &mut Vec::new())
        {
            return Some(found);
        }
    }
    None
}

/// What is wrong with the imports of `files` against the layers of `doc`:
/// arrows up, modules in no layer, circles.
fn problems(files: &[(String, String)], doc: &str) -> Vec<String> {
    let ranks = match parse_layers(doc) {
        Ok(ranks) => ranks,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let top = |m: &str| m.split("::").next().unwrap_or("").to_string();
    for (path, _) in files {
        let module = top(&module_of(path));
        if !module.is_empty() && !ranks.contains_key(&module) {
            problems.push(format!(
                "src/{path}: module {module} is in no layer of the design"
            ));
        }
    }
    problems.dedup();
    let arrows = arrows(files);
    let mut top_edges = Vec::new();
    let mut folder_edges: BTreeMap<String, Vec<(String, String, Arrow)>> = BTreeMap::new();
    for arrow in &arrows {
        let (from, to) = (top(&arrow.from), top(&arrow.to));
        if arrow.from.is_empty() {
            continue; // lib.rs re-exports what it likes
        }
        if arrow.to.is_empty() {
            problems.push(format!("arrow up to the crate root: {arrow}"));
            continue;
        }
        if from != to {
            if let (Some(&a), Some(&b)) = (ranks.get(&from), ranks.get(&to))
                && !a.may_import(b)
            {
                problems.push(format!("arrow up (or across): {arrow}"));
            }
            top_edges.push((from, to, arrow.clone()));
        } else {
            // Two files of one folder: `gpu::plan` → `gpu::resources`.
            let (Some((folder, a)), Some((_, b))) =
                (arrow.from.rsplit_once("::"), arrow.to.rsplit_once("::"))
            else {
                continue;
            };
            if arrow.from.matches("::").count() == arrow.to.matches("::").count() && a != b {
                folder_edges.entry(folder.to_string()).or_default().push((
                    arrow.from.clone(),
                    arrow.to.clone(),
                    arrow.clone(),
                ));
            }
        }
    }
    let describe = |found: Vec<Arrow>| {
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    if let Some(found) = circle(&top_edges) {
        problems.push(format!("a circle among modules: {}", describe(found)));
    }
    for (folder, edges) in &folder_edges {
        if let Some(found) = circle(edges) {
            problems.push(format!(
                "a circle among the files of {folder}/: {}",
                describe(found)
            ));
        }
    }
    problems
}

/// Every .rs file under src/, as (path under src/, source).
fn library_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("src/ is readable")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((name, std::fs::read_to_string(&path).expect("a source file")));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files
}

fn design() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/DESIGN.md"))
        .expect("docs/DESIGN.md is readable")
}

#[test]
fn the_library_imports_only_down_its_layers_and_in_no_circle() {
    let files = library_files();
    assert!(
        files.len() > 30,
        "found only {} files under src/",
        files.len()
    );
    // The check reads real arrows: these exist today and must be seen.
    let arrows = arrows(&files);
    for (from, to) in [
        ("gpu::plan", "gpu::resources"),
        ("train", "backend"),
        ("io", "checkpoint"),
    ] {
        assert!(
            arrows.iter().any(|a| a.from == from && a.to == to),
            "the check no longer sees {from} → {to}: is it still reading the imports?"
        );
    }
    let problems = problems(&files, &design());
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn no_library_file_is_past_900_lines() {
    let long: Vec<String> = library_files()
        .iter()
        .filter(|(_, source)| source.lines().count() > 900)
        .map(|(path, source)| format!("src/{path}: {} lines", source.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "files past 900 lines (one idea each): {long:?}"
    );
}

/// A made-up crate and its layers, for the check itself.
fn made_up(files: &[(&str, &str)]) -> Vec<String> {
    let doc = "# x\n\n## Module layers\n\n    definitions   error < model\n    data          data\n    engines       cpu/ | gpu/\n    trainer       train\n\nprose\n";
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect();
    problems(&files, doc)
}

const CLEAN: &[(&str, &str)] = &[
    ("lib.rs", "pub mod error;\npub use error::Error;\n"),
    ("error.rs", "pub enum Error {}\n"),
    ("model.rs", "use crate::error::Error;\n"),
    (
        "data.rs",
        "use crate::model::{self, Mlp};\nuse crate::error::{Error, Result};\n",
    ),
    ("cpu/mod.rs", "mod a;\npub use a::A;\n"),
    ("cpu/a.rs", "use super::b::B;\nuse crate::data::Dataset;\n"),
    (
        "cpu/b.rs",
        "// use super::a::A; a comment is no arrow\nfn f() -> crate::error::Result<()> { Ok(()) }\n",
    ),
    ("gpu/mod.rs", "mod p;\n"),
    (
        "gpu/p.rs",
        "pub struct P;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
    ),
    ("train.rs", "use crate::{cpu::A, gpu, data::Dataset};\n"),
];

#[test]
fn the_check_passes_a_made_up_crate_that_imports_only_downward() {
    assert_eq!(made_up(CLEAN), Vec::<String>::new());
}

#[test]
fn the_check_names_a_circle_between_modules_and_the_arrow_up_in_it() {
    let mut files = CLEAN.to_vec();
    files.push(("error.rs", "use crate::data::Dataset;\n"));
    files.remove(1);
    let problems = made_up(&files);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("arrow up") && p.contains("error → data")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("a circle among modules") && p.contains("src/error.rs:1")),
        "{problems:?}"
    );
}

#[test]
fn the_check_names_a_circle_among_the_files_of_a_folder() {
    let mut files = CLEAN.to_vec();
    files.retain(|(p, _)| *p != "cpu/b.rs");
    files.push(("cpu/b.rs", "use super::{a::A, b};\n"));
    let problems = made_up(&files);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("a circle among the files of cpu/")
                && p.contains("cpu::a → cpu::b")
                && p.contains("cpu::b → cpu::a")),
        "{problems:?}"
    );
}

#[test]
fn the_check_names_arrows_across_a_layer_to_the_root_and_modules_in_no_layer() {
    let mut files = CLEAN.to_vec();
    files.push((
        "gpu/q.rs",
        "use crate::cpu::A;\nfn f() -> crate::Error { todo!() }\n",
    ));
    files.push(("extra.rs", "\n"));
    let problems = made_up(&files);
    for wanted in [
        "gpu::q → cpu",
        "arrow up to the crate root: gpu::q → crate",
        "module extra is in no layer",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(wanted)),
            "no {wanted:?} in {problems:?}"
        );
    }
}
