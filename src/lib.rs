//! microseed: one cluster file in, a seed per machine out.
//!
//! Stages, each a module with a small surface: [`cluster`] (text to typed
//! file) -> [`validate`] (typed file to [`model`]) -> [`plan`] (role profile
//! applied, file bodies rendered) -> [`render`] (YAML documents) ->
//! packaging into [`output`] (directory, images) with a manifest.
//! [`build`] strings the stages together; [`commands`] is the CLI's side.
//! `docs/architecture.md` draws the data flow and says which module owns
//! what and where each kind of change goes.
pub mod assets;
pub mod build;
pub mod cleanup;
pub mod cluster;
pub mod commands;
pub mod diag;
pub mod flash;
pub mod image;
pub mod input;
pub mod iso;
pub mod microk8s;
pub mod model;
pub mod outdir;
pub mod output;
pub mod plan;
pub mod profile;
pub mod pxe;
pub mod render;
pub mod secrets;
pub mod serve;
pub mod staking;
pub mod status;
pub mod validate;
pub mod verify;

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
}
