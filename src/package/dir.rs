//! `--format dir`: `<machine>/{user-data,meta-data,network-config}`, the
//! NoCloud files as they are.

use anyhow::Result;

use super::{Packager, Run, Spec};
use crate::documents::Documents;
use crate::model::Machine;
use crate::output::Staging;

pub const SPEC: Spec = Spec {
    name: "dir",
    help: "`<machine>/{user-data,meta-data,network-config}`",
    provided: &[],
    start: |_| Ok(Box::new(Dir)),
};

struct Dir;

impl Packager for Dir {
    fn machine(
        &mut self,
        _run: &Run<'_>,
        m: &Machine,
        docs: &Documents,
        staging: &mut Staging,
    ) -> Result<()> {
        for ((name, bytes), sum) in docs.files().into_iter().zip(docs.sha256()) {
            staging.write_hashed(&format!("{}/{name}", m.name), bytes, *sum)?;
        }
        Ok(())
    }
}
