//! microseed: one cluster file in, a seed per machine out.
//!
//! Stages, each a module: [`cluster`] (text to typed file) -> validate
//! (typed file to model) -> plan (role profile applied) -> render (documents)
//! -> packaging (directory, seed image, installer image, PXE tree) -> manifest.
pub mod cluster;
pub mod diag;
pub mod iso;
