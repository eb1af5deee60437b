//! `microseed flash`: writing a machine's image to a USB stick or SD card
//! without `dd`'s one-wrong-letter risk, then proving the stick holds it.
//!
//! Safety comes first and is decided from the kernel's own view of the
//! device: sysfs (`/sys/class/block/NAME`: whole disk or partition,
//! removable, size, vendor, model, serial, holders) and the mount tables
//! (`/proc/self/mountinfo`, `/proc/swaps`). Only a whole, removable (or USB,
//! or SD) disk that nothing mounts is accepted without `--force`; the device
//! is then opened with `O_EXCL`, so the kernel itself refuses it while a
//! filesystem or another exclusive user holds it.
//!
//! Tests need a removable, unmounted disk that is safe to overwrite: a loop
//! device, which sysfs reports as fixed. `MICROSEED_FLASH_SYSROOT=DIR` makes
//! the checks read `DIR/sys` and `DIR/proc` instead (a fake tree the test
//! writes). It cannot weaken safety on a real system: with it set, the
//! device opened must be a loop device by its real device number (checked
//! with `fstat` on the open descriptor, not in the fake tree), and the real
//! mount tables are checked as well as the fake ones. The worst a stray
//! variable can do is let microseed overwrite an unmounted loop device.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::{FileExt as _, FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// The environment variable naming a fake root for sysfs and procfs (tests only).
pub const SYSROOT_ENV: &str = "MICROSEED_FLASH_SYSROOT";

/// Linux's loop device major number (`LOOP_MAJOR` in `linux/major.h`).
const LOOP_MAJOR: u32 = 7;

/// Writes and reads in chunks this large: big enough for a USB stick's
/// erase blocks and to keep syscall overhead negligible.
const CHUNK: usize = 4 << 20;

/// Mount points whose device is the running system, not merely "mounted".
const SYSTEM_MOUNTS: &[&str] = &["/", "/boot", "/boot/efi", "/usr", "/var"];

/// Which image of a machine to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlashFormat {
    /// `installer.img`: the cluster stick, which installs every machine.
    Installer,
    /// `seed.img`: a second stick holding only the CIDATA seed.
    SeedImg,
}

impl FlashFormat {
    pub fn file_name(self) -> &'static str {
        match self {
            FlashFormat::Installer => "installer.img",
            FlashFormat::SeedImg => "seed.img",
        }
    }
    fn build_format(self) -> &'static str {
        match self {
            FlashFormat::Installer => "installer",
            FlashFormat::SeedImg => "seed-img",
        }
    }
}

/// Where sysfs and procfs are read from: `/`, or a test's fake tree.
#[derive(Debug, Clone)]
pub struct SysRoot {
    root: PathBuf,
    fake: bool,
}

impl SysRoot {
    /// The real system, unless [`SYSROOT_ENV`] names a fake tree.
    pub fn from_env() -> SysRoot {
        match std::env::var_os(SYSROOT_ENV) {
            Some(r) if !r.is_empty() => SysRoot {
                root: PathBuf::from(r),
                fake: true,
            },
            _ => SysRoot::real(),
        }
    }
    pub fn real() -> SysRoot {
        SysRoot {
            root: PathBuf::from("/"),
            fake: false,
        }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    /// The roots whose mount tables must all be clear: the fake one and,
    /// always, the real one.
    fn mount_roots(&self) -> Vec<SysRoot> {
        if self.fake {
            vec![self.clone(), SysRoot::real()]
        } else {
            vec![self.clone()]
        }
    }
}

/// What the kernel says about a whole disk.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub path: PathBuf,
    pub name: String,
    /// `MAJOR:MINOR`.
    pub dev: String,
    pub size: u64,
    pub vendor: String,
    pub model: String,
    pub serial: String,
    /// sysfs `removable` is 1.
    pub removable: bool,
    /// `usb`, `sd` (an SD card), or `other`.
    pub transport: String,
    pub read_only: bool,
}

impl Device {
    /// Accepted without `--force`: a removable disk, or one on USB or SD
    /// (many USB sticks and card readers report `removable` 0).
    pub fn is_removable_kind(&self) -> bool {
        self.removable || self.transport != "other"
    }

    pub fn describe(&self) -> String {
        format!(
            "{}: {} {}, {} ({} bytes), serial {}, {}{}",
            self.path.display(),
            or_unknown(&self.vendor),
            or_unknown(&self.model),
            human(self.size),
            self.size,
            or_unknown(&self.serial),
            match (self.removable, self.transport.as_str()) {
                (_, "usb") => "USB",
                (_, "sd") => "SD card",
                (true, _) => "removable",
                (false, _) => "FIXED disk",
            },
            if self.read_only { ", read-only" } else { "" }
        )
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "(unknown)" } else { s }
}

/// Sizes as a person reads them (binary units, one decimal).
pub fn human(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn read_attr(p: &Path) -> String {
    fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The device node's name and `MAJOR:MINOR`, from the real `/dev`.
fn node(path: &Path) -> Result<(PathBuf, String, String)> {
    let canon =
        fs::canonicalize(path).with_context(|| format!("{}: no such device", path.display()))?;
    let meta = fs::metadata(&canon).with_context(|| format!("reading {}", canon.display()))?;
    if !meta.file_type().is_block_device() {
        bail!(
            "{} is not a block device; expected a whole disk such as /dev/sdb (see `microseed flash --list`)",
            path.display()
        );
    }
    let rdev = meta.rdev();
    let dev = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    let name = canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((canon, name, dev))
}

/// Describes the whole disk at `path`, refusing partitions and anything
/// sysfs does not know as a disk.
pub fn inspect(sys: &SysRoot, path: &Path) -> Result<Device> {
    let (canon, name, dev) = node(path)?;
    let class = sys.path("sys/class/block").join(&name);
    let sys_dev = read_attr(&class.join("dev"));
    if sys_dev.is_empty() {
        bail!(
            "{}: {} does not know this device",
            path.display(),
            class.display()
        );
    }
    if sys_dev != dev {
        bail!(
            "{}: device number {dev} does not match {}'s {sys_dev}",
            path.display(),
            class.display()
        );
    }
    if class.join("partition").exists() {
        let parent = fs::canonicalize(&class)
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "its disk".into());
        bail!(
            "{} is a partition, not a whole disk; an image holds its own partition table, so write it to /dev/{parent}",
            path.display()
        );
    }
    describe(sys, &name, canon, dev)
}

fn describe(sys: &SysRoot, name: &str, path: PathBuf, dev: String) -> Result<Device> {
    let class = sys.path("sys/class/block").join(name);
    let sectors: u64 = read_attr(&class.join("size")).parse().unwrap_or(0);
    let real = fs::canonicalize(&class).unwrap_or_else(|_| class.clone());
    let real_str = real.to_string_lossy();
    let device = class.join("device");
    let transport = if real_str.contains("/usb") {
        "usb"
    } else if name.starts_with("mmcblk") && read_attr(&device.join("type")) == "SD" {
        "sd"
    } else {
        "other"
    };
    Ok(Device {
        path,
        name: name.to_string(),
        dev,
        // sysfs `size` counts 512-byte sectors whatever the logical block size.
        size: sectors * 512,
        vendor: read_attr(&device.join("vendor")),
        model: read_attr(&device.join("model")),
        serial: serial(sys, &device),
        removable: read_attr(&class.join("removable")) == "1",
        transport: transport.to_string(),
        read_only: read_attr(&class.join("ro")) == "1",
    })
}

/// The first `serial` on the way up from the block device's device: a USB
/// stick's is on the USB device, several levels above the SCSI disk.
fn serial(sys: &SysRoot, device: &Path) -> String {
    let Ok(mut dir) = fs::canonicalize(device) else {
        return String::new();
    };
    let stop = sys.path("sys");
    for _ in 0..10 {
        let s = read_attr(&dir.join("serial"));
        if !s.is_empty() {
            return s;
        }
        if !dir.pop() || dir == stop || !dir.starts_with(&stop) {
            break;
        }
    }
    String::new()
}

/// What holds a disk: its own name and number, its partitions', and those of
/// whatever is stacked on them (LVM, dm-crypt, md), transitively.
#[derive(Debug, Default)]
struct Owned {
    names: BTreeSet<String>,
    devs: BTreeSet<String>,
}

fn owned(roots: &[SysRoot], name: &str) -> Owned {
    let mut o = Owned::default();
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        if !o.names.insert(n.clone()) {
            continue;
        }
        for sys in roots {
            let class = sys.path("sys/class/block").join(&n);
            let d = read_attr(&class.join("dev"));
            if !d.is_empty() {
                o.devs.insert(d);
            }
            // Partitions are subdirectories holding a `partition` file.
            if let Ok(rd) = fs::read_dir(&class) {
                for e in rd.flatten() {
                    if e.path().join("partition").exists() {
                        todo.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            if let Ok(rd) = fs::read_dir(class.join("holders")) {
                for e in rd.flatten() {
                    todo.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    o
}

/// Who uses a disk: mount points (and swap) on it or on anything stacked on it.
#[derive(Debug, Default)]
pub struct Usage {
    pub mounts: Vec<String>,
    pub swap: Vec<String>,
}

impl Usage {
    pub fn is_system(&self) -> bool {
        !self.swap.is_empty()
            || self
                .mounts
                .iter()
                .any(|m| SYSTEM_MOUNTS.contains(&m.as_str()))
    }
    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty() && self.swap.is_empty()
    }
}

/// The name a mount source or swap file names: `/dev/mapper/x` resolves
/// to `dm-N` through the real `/dev` when it exists there.
fn source_name(src: &str) -> Option<String> {
    if !src.starts_with("/dev/") {
        return None;
    }
    let p = fs::canonicalize(src).unwrap_or_else(|_| PathBuf::from(src));
    p.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Every mount and swap area on the disk called `name`.
pub fn usage(sys: &SysRoot, name: &str) -> Result<Usage> {
    let roots = sys.mount_roots();
    let o = owned(&roots, name);
    let mut u = Usage::default();
    for r in &roots {
        let mi = r.path("proc/self/mountinfo");
        let text = fs::read_to_string(&mi).with_context(|| format!("reading {}", mi.display()))?;
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let Some(sep) = f.iter().position(|x| *x == "-") else {
                continue;
            };
            if f.len() < 5 || f.len() < sep + 3 {
                continue;
            }
            let (dev, mountpoint, source) = (
                f[2],
                crate::outdir::unescape_mount(f[4]),
                crate::outdir::unescape_mount(f[sep + 2]),
            );
            // btrfs reports an anonymous device number: match the source too.
            let hit =
                o.devs.contains(dev) || source_name(&source).is_some_and(|n| o.names.contains(&n));
            if hit && !u.mounts.contains(&mountpoint) {
                u.mounts.push(mountpoint);
            }
        }
        let sw = r.path("proc/swaps");
        let text = fs::read_to_string(&sw).unwrap_or_default();
        for line in text.lines().skip(1) {
            let Some(file) = line.split_whitespace().next() else {
                continue;
            };
            let file = crate::outdir::unescape_mount(file);
            if source_name(&file).is_some_and(|n| o.names.contains(&n)) && !u.swap.contains(&file) {
                u.swap.push(file);
            }
        }
    }
    Ok(u)
}

/// The disks `flash` would accept without `--force`: whole, removable (or
/// USB/SD), not read-only, not mounted, not in use by the system.
pub fn list(sys: &SysRoot) -> Result<Vec<Device>> {
    let dir = sys.path("sys/block");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let class = sys.path("sys/class/block").join(&name);
        let dev = read_attr(&class.join("dev"));
        let d = describe(sys, &name, PathBuf::from("/dev").join(&name), dev)?;
        if d.size == 0 || d.read_only || !d.is_removable_kind() {
            continue;
        }
        if !usage(sys, &name)?.is_empty() {
            continue;
        }
        out.push(d);
    }
    Ok(out)
}

/// Where an image's bytes come from.
pub enum Source {
    /// A file `build` wrote.
    File(File),
    /// Built in memory (a seed image is a few hundred KiB).
    Bytes(Vec<u8>),
    /// The cached ISO with the machine's patches and seed partition laid
    /// over it: no 1.4 GiB image file per machine.
    Installer(Box<crate::iso::InstallerPlan>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::File(_) => "File",
            Source::Bytes(_) => "Bytes",
            Source::Installer(_) => "Installer",
        })
    }
}

impl Source {
    /// Fills `buf` with the image's bytes at `at` (the caller stays inside
    /// the image).
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        match self {
            Source::File(f) => f.read_exact_at(buf, at),
            Source::Bytes(b) => {
                buf.copy_from_slice(&b[at as usize..at as usize + buf.len()]);
                Ok(())
            }
            Source::Installer(p) => p.read_at(buf, at),
        }
    }
}

/// What to write, and the digest it must have.
#[derive(Debug)]
pub struct Image {
    /// What the user is told: a file's path, or where a streamed image comes from.
    pub what: String,
    /// The image's name (`installer.img`, `worker-1/seed.img`, as `SHA256SUMS` lists it).
    pub key: String,
    /// Where `sha256` comes from: the output tree's `SHA256SUMS`, or, for an
    /// image streamed from its inputs, `None` (its digest is computed while
    /// it is written, and the device must match that).
    pub manifest: Option<PathBuf>,
    pub sha256: Option<String>,
    pub size: u64,
    pub source: Source,
}

impl Image {
    /// What the read-back is compared with, for messages.
    fn reference(&self) -> String {
        match &self.manifest {
            Some(m) => m.display().to_string(),
            None => format!("the bytes streamed from {}", self.what),
        }
    }
}

/// An image built in memory from the cluster file: a machine's seed image
/// (`seed_files` are its documents), or the cluster stick streamed from
/// `iso` with its patches (`boot_configs`) and CIDATA partition (`seed_files`
/// are the stick's files) laid over it. `name` is what the image holds.
pub fn image_streamed(
    name: &str,
    seed_files: &[(&str, &[u8])],
    format: FlashFormat,
    iso: Option<(&Path, &[&str])>,
) -> Result<Image> {
    let epoch = crate::image::source_date_epoch()?;
    match (format, iso) {
        (FlashFormat::SeedImg, _) => {
            let key = format!("{name}/{}", format.file_name());
            let img = crate::image::seed_image(seed_files, epoch)
                .with_context(|| format!("making the seed image of {name}"))?;
            Ok(Image {
                what: format!("{key} (built in memory)"),
                key,
                manifest: None,
                sha256: None,
                size: img.len() as u64,
                source: Source::Bytes(img),
            })
        }
        (FlashFormat::Installer, Some((iso, configs))) => {
            let plan = crate::iso::plan_installer_image(iso, seed_files, configs, epoch)
                .with_context(|| format!("planning the installer image of {name}"))?;
            Ok(Image {
                what: format!("{} with the stick of {name}", iso.display()),
                key: format.file_name().to_string(),
                manifest: None,
                sha256: None,
                size: plan.total,
                source: Source::Installer(Box::new(plan)),
            })
        }
        (FlashFormat::Installer, None) => bail!("the installer needs an ISO"),
    }
}

/// Finds the image `build` wrote and its line in the output tree's
/// `SHA256SUMS`: the cluster stick `OUT/installer.img` (`dir` is OUT), or a
/// machine's `OUT/MACHINE/seed.img` (`dir` is the machine's directory).
pub fn image_in(dir: &Path, format: FlashFormat) -> Result<Image> {
    // `.` or `out/worker-1/..` name the directory only once resolved.
    let dir =
        &fs::canonicalize(dir).with_context(|| format!("{}: no such directory", dir.display()))?;
    let file = format.file_name();
    let path = dir.join(file);
    let (out, key) = match format {
        FlashFormat::Installer => {
            // A machine's directory given, as before the stick was one image.
            if !path.exists()
                && let Some(parent) = dir.parent()
                && parent.join(file).is_file()
            {
                bail!(
                    "{}: no such file; the installer image is one stick for the whole cluster \
                     now: microseed flash {} DEVICE",
                    path.display(),
                    parent.display()
                );
            }
            (dir.as_path(), file.to_string())
        }
        FlashFormat::SeedImg => {
            let machine = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let out = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (out, format!("{machine}/{file}"))
        }
    };
    let meta = fs::metadata(&path).map_err(|e| {
        let machine = match format {
            FlashFormat::Installer => String::new(),
            FlashFormat::SeedImg => format!(" --machine {}", key.split('/').next().unwrap_or("")),
        };
        anyhow::anyhow!(
            "{}: {e}; build it first: microseed build CLUSTER -o {}{machine} --format {}",
            path.display(),
            out.display(),
            format.build_format()
        )
    })?;
    let sums = crate::verify::read_manifest(out)?;
    let manifest = out.join(crate::output::MANIFEST);
    let Some(sha256) = sums.get(&key).cloned() else {
        bail!(
            "{} does not list {key}: is {} a microseed output tree?",
            manifest.display(),
            out.display()
        );
    };
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Image {
        what: path.display().to_string(),
        key,
        manifest: Some(manifest),
        sha256: Some(sha256),
        size: meta.len(),
        source: Source::File(file),
    })
}

/// Everything checked before anything is asked or written.
#[derive(Debug)]
pub struct Plan {
    pub image: Image,
    pub device: Device,
}

/// The refusals that need no question: partitions, mounted or system disks,
/// read-only or too small devices, fixed disks without `--force`.
pub fn check(sys: &SysRoot, image: Image, device_path: &Path, force: bool) -> Result<Plan> {
    let device = inspect(sys, device_path)?;
    let u = usage(sys, &device.name)?;
    if u.is_system() {
        let mut what: Vec<String> = u.mounts.clone();
        what.extend(u.swap.iter().map(|s| format!("swap {s}")));
        bail!(
            "refusing {}: it holds the running system ({})",
            device.path.display(),
            what.join(", ")
        );
    }
    if !u.is_empty() {
        bail!(
            "refusing {}: it is mounted at {}; unmount it (and each of its partitions) first",
            device.path.display(),
            u.mounts.join(", ")
        );
    }
    if device.read_only {
        bail!(
            "refusing {}: the device is read-only (a lock switch on an SD card?)",
            device.path.display()
        );
    }
    if !device.is_removable_kind() && !force {
        bail!(
            "refusing {}: it is a fixed disk ({} {}), not a removable USB stick or SD card; \
             pass --force only if you really mean to erase it (see `microseed flash --list`)",
            device.path.display(),
            or_unknown(&device.vendor),
            or_unknown(&device.model)
        );
    }
    if device.size < image.size {
        bail!(
            "refusing {}: the device holds {} ({} bytes), smaller than {} ({} bytes)",
            device.path.display(),
            human(device.size),
            device.size,
            image.key,
            image.size
        );
    }
    Ok(Plan { image, device })
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT, SIGTERM and SIGHUP into a flag the copy loop checks, so
/// an interrupted flash ends with an error that says the stick is unusable
/// rather than dying silently mid-write.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; the sigaction struct is fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn check_interrupt(stage: &str, at: u64, plan: &Plan) -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!(
            "interrupted by a signal while {stage} at byte {at} of {}: {} holds a partial image and must not be booted; flash it again",
            plan.image.size,
            plan.device.path.display()
        );
    }
    Ok(())
}

/// A page-aligned buffer, as `O_DIRECT` requires.
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let layout = std::alloc::Layout::from_size_align(len, 4096).expect("valid layout");
        // SAFETY: len is non-zero (a constant chunk size).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Aligned { ptr, layout }
    }
    fn buf(&mut self) -> &mut [u8] {
        // SAFETY: ptr points to layout.size() initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in new with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// `BLKSSZGET` from `linux/fs.h`: the logical block size, which `O_DIRECT`
/// transfers must be multiples of.
const BLKSSZGET: libc::c_ulong = 0x1268;

fn logical_block_size(f: &File) -> u64 {
    use std::os::fd::AsRawFd as _;
    let mut v: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), BLKSSZGET as _, &mut v) };
    if rc == 0 && v > 0 { v as u64 } else { 512 }
}

fn progress(len: u64, msg: &str, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(msg.to_string());
    bar
}

/// Opens the device for writing, exclusively and bypassing the page cache,
/// and checks that it is the device that was inspected.
fn open_device(sys: &SysRoot, plan: &Plan) -> Result<(File, bool)> {
    let open = |direct: bool| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_EXCL | libc::O_CLOEXEC | if direct { libc::O_DIRECT } else { 0 })
            .open(&plan.device.path)
    };
    let (f, direct) = match open(true) {
        Ok(f) => (f, true),
        // Some drivers refuse O_DIRECT; fall back to the page cache, which
        // the read-back then has to drop first.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(false)?, false),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => bail!(
            "refusing {}: the kernel reports it busy (mounted, or held by another program)",
            plan.device.path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("opening {}", plan.device.path.display()));
        }
    };
    let meta = f.metadata()?;
    let rdev = meta.rdev();
    let dev = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    if !meta.file_type().is_block_device() || dev != plan.device.dev {
        bail!(
            "{} changed while it was being checked (now {dev}); nothing was written",
            plan.device.path.display()
        );
    }
    if sys.fake && libc::major(rdev) != LOOP_MAJOR {
        bail!(
            "{SYSROOT_ENV} is set (a test's fake sysfs), and {} is not a loop device: refusing to write a real disk from a fake view of it",
            plan.device.path.display()
        );
    }
    Ok((f, direct))
}

/// What a finished flash did.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub bytes: u64,
    pub write_seconds: f64,
    pub verify_seconds: f64,
    pub sha256: String,
}

/// Writes the image, flushes, reads the device back and compares it with
/// the manifest's digest. Returns only when the device holds the image.
pub fn write(sys: &SysRoot, plan: &Plan, show_progress: bool) -> Result<Outcome> {
    INTERRUPTED.store(false, Ordering::SeqCst);
    catch_signals();
    let (dev, direct) = open_device(sys, plan)?;
    let real_size = {
        use std::io::Seek as _;
        let mut d = &dev;
        d.seek(std::io::SeekFrom::End(0))?
    };
    if real_size < plan.image.size {
        bail!(
            "refusing {}: the device holds {real_size} bytes, smaller than {} ({} bytes)",
            plan.device.path.display(),
            plan.image.key,
            plan.image.size
        );
    }
    let block = logical_block_size(&dev);
    let src = &plan.image.source;
    let mut buf = Aligned::new(CHUNK);
    let len = plan.image.size;

    let started = Instant::now();
    let bar = progress(len, "writing", show_progress);
    let mut src_hash = Sha256::new();
    let mut at = 0u64;
    while at < len {
        check_interrupt("writing", at, plan)?;
        let want = CHUNK.min((len - at) as usize);
        let b = buf.buf();
        src.read_at(&mut b[..want], at)
            .with_context(|| format!("reading {} at byte {at}", plan.image.what))?;
        src_hash.update(&b[..want]);
        // O_DIRECT needs whole logical blocks: pad the image's tail with
        // zeros. The device is at least that large (its size is a whole
        // number of blocks and not less than the image).
        let n = if direct {
            (want as u64).div_ceil(block) * block
        } else {
            want as u64
        } as usize;
        b[want..n].fill(0);
        dev.write_all_at(&b[..n], at)
            .with_context(|| format!("writing {} at byte {at}", plan.device.path.display()))?;
        at += want as u64;
        bar.set_position(at);
    }
    check_interrupt("flushing", at, plan)?;
    dev.sync_all()
        .with_context(|| format!("flushing {}", plan.device.path.display()))?;
    bar.finish_and_clear();
    let write_seconds = started.elapsed().as_secs_f64();
    let src_digest = hex::encode(src_hash.finalize());
    let expected = match &plan.image.sha256 {
        Some(want) if *want != src_digest => bail!(
            "{} changed since it was built: sha256 {src_digest}, {} says {want}; rebuild it and flash again",
            plan.image.what,
            plan.image.reference(),
        ),
        Some(want) => want.clone(),
        None => src_digest,
    };

    let started = Instant::now();
    if !direct {
        // Without O_DIRECT the read-back would see our own cached pages.
        use std::os::fd::AsRawFd as _;
        // SAFETY: plain syscall on an open descriptor.
        unsafe { libc::posix_fadvise(dev.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    let bar = progress(len, "verifying", show_progress);
    let mut want_buf = vec![0u8; CHUNK];
    let mut dev_hash = Sha256::new();
    let mut first_bad: Option<u64> = None;
    let mut at = 0u64;
    while at < len {
        if INTERRUPTED.load(Ordering::SeqCst) {
            // The write and the flush finished: the device may well hold
            // the whole image, but nobody has checked it.
            let bad = first_bad.map_or_else(String::new, |o| {
                format!(" (it already differs from the image at byte {o}: do not boot it)")
            });
            bail!(
                "interrupted by a signal while reading back at byte {at} of {len}: {} was written and flushed whole, but it is not verified{bad}; flash it again to write and check it",
                plan.device.path.display()
            );
        }
        let want = CHUNK.min((len - at) as usize);
        let n = if direct {
            (want as u64).div_ceil(block) * block
        } else {
            want as u64
        } as usize;
        let b = buf.buf();
        dev.read_exact_at(&mut b[..n], at)
            .with_context(|| format!("reading back {} at byte {at}", plan.device.path.display()))?;
        dev_hash.update(&b[..want]);
        if first_bad.is_none() {
            src.read_at(&mut want_buf[..want], at)?;
            if b[..want] != want_buf[..want] {
                first_bad = (0..want)
                    .find(|&i| b[i] != want_buf[i])
                    .map(|i| at + i as u64);
            }
        }
        at += want as u64;
        bar.set_position(at);
    }
    bar.finish_and_clear();
    let digest = hex::encode(dev_hash.finalize());
    if digest != expected || first_bad.is_some() {
        bail!(
            "read-back of {} does not match {}: first bad byte at offset {}; sha256 {digest}, expected {expected} ({}). \
             The device is faulty or was changed while being written: do not boot it",
            plan.device.path.display(),
            plan.image.key,
            first_bad.map_or_else(|| "unknown".to_string(), |o| o.to_string()),
            plan.image.reference()
        );
    }
    Ok(Outcome {
        bytes: len,
        write_seconds,
        verify_seconds: started.elapsed().as_secs_f64(),
        sha256: digest,
    })
}

/// Asks a yes/no question on the terminal; anything but "y"/"yes" is no.
pub fn confirm(question: &str) -> Result<bool> {
    Ok(matches!(
        ask(
            question,
            "stdin is not a terminal, so nobody can confirm; pass --yes to flash from a script"
        )?
        .to_ascii_lowercase()
        .as_str(),
        "y" | "yes"
    ))
}

/// Reads one answer from the terminal; without one (stdin is not a
/// terminal), fails with `no_terminal`, which says what to do instead.
pub fn ask(question: &str, no_terminal: &str) -> Result<String> {
    if !stdin_is_tty() {
        bail!("{no_terminal}");
    }
    // Not eprint!: a closed stderr must not panic (the answer still counts).
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} ");
    let _ = err.flush();
    drop(err);
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty on a descriptor number has no memory effects.
    unsafe { libc::isatty(0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_decodes_octal_spaces_in_mount_points() {
        assert_eq!(
            crate::outdir::unescape_mount("/media/my\\040stick"),
            "/media/my stick"
        );
        assert_eq!(crate::outdir::unescape_mount("/plain"), "/plain");
    }

    /// A tree with disk sda: partition sda2 holds an LVM volume dm-0.
    fn lvm_tree(mountinfo: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        let w = |rel: &str, text: &str| {
            let p = r.join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, text).expect("write");
        };
        // As in sysfs: devices under /sys/devices, class/block links to each.
        w("sys/devices/v/block/sda/dev", "8:0\n");
        w("sys/devices/v/block/sda/sda2/dev", "8:2\n");
        w("sys/devices/v/block/sda/sda2/partition", "2\n");
        fs::create_dir_all(r.join("sys/devices/v/block/sda/sda2/holders/dm-0")).expect("mkdir");
        w("sys/devices/virtual/block/dm-0/dev", "253:0\n");
        fs::create_dir_all(r.join("sys/class/block")).expect("mkdir");
        for (name, target) in [
            ("sda", "v/block/sda"),
            ("sda2", "v/block/sda/sda2"),
            ("dm-0", "virtual/block/dm-0"),
        ] {
            std::os::unix::fs::symlink(
                format!("../../devices/{target}"),
                r.join("sys/class/block").join(name),
            )
            .expect("symlink");
        }
        w("proc/self/mountinfo", mountinfo);
        w("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
        t
    }

    fn root_of(t: &tempfile::TempDir) -> SysRoot {
        SysRoot {
            root: t.path().to_path_buf(),
            fake: false,
        }
    }

    #[test]
    fn a_root_filesystem_on_lvm_over_a_partition_makes_the_disk_the_system_disk() {
        let t = lvm_tree("25 1 253:0 / / rw - ext4 /dev/mapper/vg-root rw\n");
        let u = usage(&root_of(&t), "sda").expect("usage");
        assert!(u.is_system(), "{u:?}");
    }

    #[test]
    fn btrfs_anonymous_device_numbers_are_matched_by_the_mount_source() {
        let t = lvm_tree("25 1 0:31 / /home rw - btrfs /dev/sda2 rw\n");
        let u = usage(&root_of(&t), "sda").expect("usage");
        assert_eq!(u.mounts, vec!["/home".to_string()]);
        assert!(!u.is_system());
    }

    #[test]
    fn human_sizes_use_binary_units() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536 << 20), "1.5 GiB");
    }
}
