//! The installer image: Ubuntu's live-server ISO copied and patched in place so
//! one USB stick installs one machine unattended, plus fetching that ISO.
//!
//! [`iso9660`] finds files in the image, [`bootcfg`] rewrites kernel command
//! lines at equal length, [`parttable`] reads the hybrid layout and registers
//! the seed partition, [`patch`] puts it together, [`download`] fetches and
//! verifies the ISO into a cache, [`trust`] checks Ubuntu's signature,
//! [`identity`] checks that an ISO is the cluster's release, [`hashstate`]
//! keeps the image hash's state so a rebuild hashes only the seeds.
pub mod bootcfg;
pub mod download;
pub mod hashstate;
pub mod identity;
pub mod iso9660;
pub mod parttable;
pub mod patch;
pub mod trust;

pub use download::{
    CacheEntry, CachedIso, FetchOptions, IsoSpec, Trust, default_cache_dir, ensure_iso, list_cache,
};
pub use patch::{
    AddedPartition, DEFAULT_BOOT_CONFIGS, InstallerPlan, InstallerReport, PatchedConfig,
    make_installer_image, make_installer_image_cached, plan_installer_image,
};
pub use trust::TrustedKey;
