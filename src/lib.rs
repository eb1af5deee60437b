//! microseed: one cluster file in, a seed per machine out.
//!
//! Stages, each a module with a small surface: [`cluster`] (text to typed
//! file) -> [`validate`] (typed file to [`model`]) -> [`plan`] (role profile
//! applied, file bodies rendered) -> [`render`] (YAML documents) ->
//! packaging into [`output`] (directory, images) with a manifest.
//! [`build`] strings the stages together; [`commands`] is the CLI's side.
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
pub mod validate;
pub mod verify;
