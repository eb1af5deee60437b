//! `--format seed-img`: `<machine>/seed.img`, a GPT disk image whose FAT
//! partition is labelled CIDATA (see [`crate::image`]).

use anyhow::{Context, Result};

use super::{Packager, Run, Spec};
use crate::documents::Documents;
use crate::model::Machine;
use crate::output::Staging;

pub const SPEC: Spec = Spec {
    name: "seed-img",
    help: "`<machine>/seed.img`: a GPT disk image with a FAT partition labelled CIDATA, \
           for a USB stick or a VM disk",
    provided: &[],
    start: |_| Ok(Box::new(SeedImg)),
};

struct SeedImg;

impl Packager for SeedImg {
    fn machine(
        &mut self,
        run: &Run<'_>,
        m: &Machine,
        docs: &Documents,
        staging: &mut Staging,
    ) -> Result<()> {
        let docs = docs.clone();
        let (epoch, name) = (run.epoch, m.name.clone());
        staging.write_sparse_with(&format!("{}/seed.img", m.name), move || {
            crate::image::seed_image_hashed(&docs.files(), docs.sha256(), epoch)
                .with_context(|| format!("making the seed image of {name}"))
        })
    }
}
