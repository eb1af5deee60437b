//! `--format pxe`: a tree to netboot the installer from, under `pxe/`
//! (seeds per machine, GRUB and iPXE menus, dnsmasq.conf). What the tree
//! holds and why is [`crate::pxe`]'s; this is its place in the table.

use anyhow::{Context, Result};

use super::{Packager, Run, Spec};
use crate::documents::Documents;
use crate::model::Machine;
use crate::output::Staging;
use crate::pxe::PxeOptions;

pub const SPEC: Spec = Spec {
    name: "pxe",
    help: "`pxe/`: nocloud-net seeds, GRUB and iPXE menus, dnsmasq.conf (needs `--pxe-url`)",
    // The kernel and initrd (from the ISO's `casper/`), the release ISO and
    // the boot loaders: see docs/pxe.md.
    provided: &["pxe/boot/", "pxe/iso/", "pxe/tftp/"],
    start,
};

fn start(run: &Run<'_>) -> Result<Box<dyn Packager>> {
    let opts = run
        .options
        .pxe
        .clone()
        .context("the pxe format needs --pxe-url")?;
    Ok(Box::new(Pxe { opts }))
}

struct Pxe {
    opts: PxeOptions,
}

impl Packager for Pxe {
    fn machine(
        &mut self,
        _run: &Run<'_>,
        m: &Machine,
        docs: &Documents,
        staging: &mut Staging,
    ) -> Result<()> {
        crate::pxe::write_seed(staging, m, docs)
    }

    fn finish(self: Box<Self>, run: &Run<'_>, staging: &mut Staging) -> Result<()> {
        crate::pxe::write_menus(
            staging,
            run.cluster,
            run.machines,
            &self.opts,
            run.templates,
        )
    }
}
