//! microseed: one cluster file in, a seed per machine out.
//!
//! Stages, each a module with a small surface: [`schema`] (text to the
//! typed file format) -> [`validate`] (typed file to [`model`]) -> [`plan`] (role profile
//! applied, file bodies rendered through [`templates`]) -> [`documents`] (YAML
//! documents) -> [`package`] (one module per output format, chosen by one
//! table) into [`output`] (the staged tree) with a manifest.
//! [`build`] strings the stages together; [`commands`] is the CLI's side.
//! `docs/architecture.md` draws the data flow and says which module owns
//! what and where each kind of change goes.
// Output goes through outln!/errln! (commands.rs), which end quietly on a
// closed stdout or stderr; print!/eprint! would panic there.
#![deny(clippy::print_stdout, clippy::print_stderr)]
pub mod assets;
pub mod build;
pub mod cleanup;
pub mod commands;
pub mod day;
pub mod diag;
pub mod discover;
pub mod diskid;
pub mod documents;
pub mod flash;
pub mod image;
pub mod init;
pub mod input;
pub mod iso;
pub mod known;
pub mod microk8s;
pub mod model;
pub mod mounts;
pub mod outdir;
pub mod output;
pub mod package;
pub mod plan;
pub mod profile;
pub mod pxe;
pub mod schema;
pub mod secrets;
pub mod serve;
pub mod staking;
pub mod status;
pub mod stick;
pub mod support;
pub mod templates;
pub mod validate;
pub mod verify;
pub mod yaml;

#[cfg(test)]
mod tests {
    /// docs/architecture.md answers "which module owns this": a module
    /// added under src/ without a row there would leave it answering wrong.
    #[test]
    fn every_module_has_a_row_in_the_architecture_doc() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/architecture.md"))
            .expect("docs/architecture.md");
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(root.join("src")).expect("src/") {
            let path = entry.expect("entry").path();
            let name = if path.is_dir() {
                path.join("mod.rs")
                    .is_file()
                    .then(|| path.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .flatten()
            } else {
                path.extension()
                    .is_some_and(|e| e == "rs")
                    .then(|| path.file_stem().map(|n| n.to_string_lossy().into_owned()))
                    .flatten()
            };
            if let Some(name) = name
                && !doc.contains(&format!("\n| `{name}` |"))
            {
                missing.push(name);
            }
        }
        missing.sort();
        assert!(
            missing.is_empty(),
            "modules without a row in docs/architecture.md: {missing:?}"
        );
    }

    /// Each stage imports only earlier ones (docs/architecture.md draws
    /// them in order): a module reaching back into one that imports it
    /// would tangle the pipeline again. Top-level modules, non-test code,
    /// `crate::NAME` paths outside comments.
    #[test]
    fn the_module_import_graph_has_no_cycle() {
        use std::collections::{BTreeMap, BTreeSet};
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src/") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let rel = path.strip_prefix(&src).expect("under src");
                let top = rel
                    .components()
                    .next()
                    .expect("a file")
                    .as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string();
                if top == "main" || top == "lib" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("source");
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                let set = deps.entry(top.clone()).or_default();
                for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    let mut rest = line;
                    while let Some(i) = rest.find("crate::") {
                        rest = &rest[i + 7..];
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() && name != top {
                            set.insert(name);
                        }
                    }
                    // `use crate::{a, b::C};`
                    if let Some(group) = line.trim().strip_prefix("use crate::{") {
                        for part in group.trim_end_matches("};").split(',') {
                            let name = part.trim().split("::").next().unwrap_or("").to_string();
                            if !name.is_empty() && name != top {
                                set.insert(name);
                            }
                        }
                    }
                }
            }
        }
        let reach = |from: &str| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.to_string()];
            while let Some(m) = todo.pop() {
                for d in deps.get(&m).into_iter().flatten() {
                    if seen.insert(d.clone()) {
                        todo.push(d.clone());
                    }
                }
            }
            seen
        };
        let cycles: Vec<String> = deps
            .iter()
            .flat_map(|(m, ds)| ds.iter().map(move |d| (m, d)))
            .filter(|(m, d)| reach(d).contains(*m))
            .map(|(m, d)| format!("{m} -> {d}"))
            .collect();
        assert!(cycles.is_empty(), "imports that lead back: {cycles:?}");
    }
}
