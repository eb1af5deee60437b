//! Fetch the Ubuntu ISO into a cache and prove it is Ubuntu's.
//!
//! What an ISO must hash to comes from one of two places ([`Trust`]): the
//! digest pinned in the release profile, or the line in Ubuntu's
//! `SHA256SUMS` once its detached signature checks out against the shipped
//! key ([`super::trust`]). A pinned release whose ISO is cached is used with
//! no network at all; an unpinned one keeps its verified `SHA256SUMS` and
//! signature in the cache so it can be re-verified offline too.
//!
//! Every use re-hashes the cached ISO (about a second per GiB), so a file
//! truncated or corrupted since it was verified is caught before it becomes
//! someone's installer. Downloads are hashed while streaming; an interrupted
//! one leaves a `.part` that the next run resumes with an HTTP Range request.
//! `--offline` ([`FetchOptions::offline`]) turns every network use into an
//! error that says how to fill the cache.
//!
//! A mirror is not trusted with sizes: `SHA256SUMS` and its signature are
//! read up to [`MAX_LIST_BYTES`], the ISO up to its pinned size or
//! [`MAX_ISO_BYTES`]. Files in the cache are opened without following
//! symbolic links: a `.part` link would have the download written into its
//! target.

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most `SHA256SUMS` or its signature may hold: Ubuntu's are about a
/// kilobyte.
pub const MAX_LIST_BYTES: u64 = 1 << 20;

/// The most an ISO download may hold when its size is not pinned: Ubuntu's
/// live-server ISOs are 1.5 to 3 GiB.
pub const MAX_ISO_BYTES: u64 = 8 << 30;

use super::trust::{GpgvMissing, TrustedKey, normalize_fingerprint, verify_detached};
use crate::profile::ReleaseProfile;
/// The cache directory: `$MICROSEED_CACHE_DIR`, else `$XDG_CACHE_HOME/microseed`,
/// else `~/.cache/microseed`.
pub fn default_cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("MICROSEED_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME").filter(|d| Path::new(d).is_absolute()) {
        return PathBuf::from(d).join("microseed");
    }
    let home = var("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("microseed")
}

/// What a downloaded or cached ISO must hash to.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The digest recorded in the release profile (`origin` names it),
    /// and the size where one is recorded too.
    Pinned {
        sha256: String,
        size: Option<u64>,
        origin: String,
    },
    /// The digest `SHA256SUMS` gives, once its signature by this key checks out.
    Signed(TrustedKey),
}

/// One release's ISO: where it comes from and how it is trusted.
#[derive(Debug, Clone)]
pub struct IsoSpec {
    pub release: String,
    pub file: String,
    pub url: String,
    pub sha256sums_url: String,
    pub signature_url: String,
    pub trust: Trust,
}

impl IsoSpec {
    /// The spec a release profile describes; the signing key is read from
    /// the profiles tree (`overlay` first, as for every profile file).
    pub fn for_release(r: &ReleaseProfile, overlay: Option<&Path>) -> Result<IsoSpec> {
        let origin = r.origin.display().to_string();
        let file = &r.iso.file;
        ensure!(
            !file.is_empty() && !file.contains('/') && file != "." && file != "..",
            "{origin}: iso.file {file:?} must be a plain file name"
        );
        let trust = match &r.iso.pin {
            Some(pin) => {
                let d = pin.sha256.to_ascii_lowercase();
                ensure!(
                    d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{origin}: iso.pin.sha256 {:?} is not 64 hex digits",
                    pin.sha256
                );
                Trust::Pinned {
                    sha256: d,
                    size: pin.size,
                    origin: format!("{origin}, checked {}", pin.checked_on),
                }
            }
            None => {
                let tree = crate::assets::Tree::profiles(overlay);
                let name = &r.signing_key.file;
                let asset = tree.get_bytes(name)?.with_context(|| {
                    format!("{origin}: signing_key.file {name} not found under profiles/")
                })?;
                ensure!(
                    normalize_fingerprint(&r.signing_key.fingerprint).is_some(),
                    "{origin}: signing_key.fingerprint {:?} is not 40 hex digits",
                    r.signing_key.fingerprint
                );
                Trust::Signed(TrustedKey::new(
                    &asset.1,
                    &r.signing_key.fingerprint,
                    &asset.0.display().to_string(),
                )?)
            }
        };
        Ok(IsoSpec {
            release: r.release.clone(),
            file: file.clone(),
            url: r.iso.url.clone(),
            sha256sums_url: r.iso.sha256sums_url.clone(),
            signature_url: r.iso.signature_url.clone(),
            trust,
        })
    }
}

/// How a fetch may behave.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchOptions {
    /// Any network use is an error.
    pub offline: bool,
    /// Draw a progress bar on stderr while downloading.
    pub progress: bool,
}

/// A verified ISO in the cache.
#[derive(Debug, Clone)]
pub struct CachedIso {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// "pinned in …" or "SHA256SUMS signed by …".
    pub verified_by: String,
    /// Whether this call downloaded it.
    pub downloaded: bool,
}

/// Cache paths of one ISO.
struct Paths {
    iso: PathBuf,
    marker: PathBuf,
    part: PathBuf,
    sums: PathBuf,
    sig: PathBuf,
}

fn paths(cache_dir: &Path, file: &str) -> Paths {
    let p = |suffix: &str| cache_dir.join(format!("{file}{suffix}"));
    Paths {
        iso: p(""),
        marker: p(".sha256"),
        part: p(".part"),
        sums: p(".SHA256SUMS"),
        sig: p(".SHA256SUMS.gpg"),
    }
}

/// Make sure the cache holds `spec`'s ISO, verified; return it.
pub fn ensure_iso(spec: &IsoSpec, cache_dir: &Path, opts: &FetchOptions) -> Result<CachedIso> {
    fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating the cache directory {}", cache_dir.display()))?;
    let p = paths(cache_dir, &spec.file);
    let mut net = Net::new(opts.offline, &spec.release);
    let (expected, verified_by) = expected_digest(spec, &p, &mut net)?;

    if p.iso.exists() {
        let (actual, size) = hash_file(&p.iso)?;
        if actual == expected {
            write_marker(&p.marker, &actual, size)?;
            return Ok(CachedIso {
                path: p.iso,
                sha256: actual,
                size,
                verified_by,
                downloaded: false,
            });
        }
        let since = if p.marker.exists() {
            "it was truncated or corrupted since it was verified"
        } else {
            "it is not the verified ISO"
        };
        let problem = format!(
            "the cached {} does not match: {verified_by} says {expected}, the file has {actual} \
             ({size} bytes); {since}",
            p.iso.display()
        );
        if opts.offline {
            bail!(
                "{problem}. --offline forbids fetching it again: run `microseed iso fetch \
                 --release {}` where the network is reachable, then rebuild",
                spec.release
            );
        }
        // Ask the mirror first: when it disagrees with the pin nothing will
        // replace the file, and the user keeps it to inspect.
        mirror_agrees_with_pin(spec, &mut net)?;
        crate::errln!("warning: {problem}; deleting it and downloading it again");
        fs::remove_file(&p.iso)
            .with_context(|| format!("removing the corrupt {}", p.iso.display()))?;
        let _ = fs::remove_file(&p.marker);
    }
    let _ = fs::remove_file(&p.marker);
    if opts.offline {
        bail!(
            "release {}: {} is not in the cache {} and --offline forbids downloading it; \
             fill the cache with `microseed iso fetch --release {}` where the network is \
             reachable (the cache directory can be copied between machines)",
            spec.release,
            spec.file,
            cache_dir.display(),
            spec.release
        );
    }
    mirror_agrees_with_pin(spec, &mut net)?;
    let client = net.client()?;
    let (actual, size) = download(client, spec, &p, &expected, &verified_by, opts.progress)?;
    write_marker(&p.marker, &actual, size)?;
    Ok(CachedIso {
        path: p.iso,
        sha256: actual,
        size,
        verified_by,
        downloaded: true,
    })
}

/// For a pinned release, the mirror's own SHA256SUMS must agree with the pin
/// (asked once per fetch): a disagreement means a wrong pin or a wrong
/// mirror, and either needs a human. An unpinned release has nothing to
/// compare.
fn mirror_agrees_with_pin(spec: &IsoSpec, net: &mut Net) -> Result<()> {
    let Trust::Pinned { sha256, origin, .. } = &spec.trust else {
        return Ok(());
    };
    if net.pin_checked {
        return Ok(());
    }
    let sums = net.get(&spec.sha256sums_url)?;
    let sums = String::from_utf8_lossy(&sums);
    let listed = find_digest(&sums, &spec.file)
        .with_context(|| format!("{} has no line for {}", spec.sha256sums_url, spec.file))?;
    ensure!(
        &listed == sha256,
        "{} says {} has sha256 {listed}, but the release profile pins {sha256} \
         ({origin}); refusing to download: either the mirror serves another file or \
         the pin is wrong",
        spec.sha256sums_url,
        spec.file
    );
    net.pin_checked = true;
    Ok(())
}

/// The digest the ISO must have and a phrase saying who vouches for it.
fn expected_digest(spec: &IsoSpec, p: &Paths, net: &mut Net) -> Result<(String, String)> {
    let key = match &spec.trust {
        Trust::Pinned { sha256, origin, .. } => {
            return Ok((sha256.clone(), format!("the pin in {origin}")));
        }
        Trust::Signed(key) => key,
    };
    let vouch = format!("SHA256SUMS signed by {}", key.fingerprint);
    let context = || {
        format!(
            "release {} has no pinned digest, so its SHA256SUMS must carry a good signature \
             by {} before any digest in it is trusted (or pin iso.pin.sha256 in a --profiles \
             overlay, or pass --iso PATH)",
            spec.release, key.fingerprint
        )
    };
    // A signed SHA256SUMS kept from an earlier fetch is re-verified, offline.
    if let (Ok(sums), Ok(sig)) = (read_cached(&p.sums), read_cached(&p.sig)) {
        let what = format!("the cached {}", p.sums.display());
        match verify_detached(&sums, &sig, key, &what) {
            Ok(()) => {
                let digest = find_digest(&String::from_utf8_lossy(&sums), &spec.file)
                    .with_context(|| format!("{what} has no line for {}", spec.file))?;
                return Ok((digest, vouch));
            }
            Err(e) if e.is::<GpgvMissing>() || net.offline => return Err(e).with_context(context),
            Err(e) => {
                crate::errln!("warning: {e:#}; fetching SHA256SUMS again");
                let _ = fs::remove_file(&p.sums);
                let _ = fs::remove_file(&p.sig);
            }
        }
    }
    if net.offline {
        bail!(
            "release {} has no pinned digest and the cache holds no signed SHA256SUMS for {}; \
             --offline forbids fetching it: run `microseed iso fetch --release {}` where the \
             network is reachable",
            spec.release,
            spec.file,
            spec.release
        );
    }
    let sums = net.get(&spec.sha256sums_url)?;
    let sig = match net.get_status(&spec.signature_url)? {
        (s, body) if s.is_success() => body,
        (s, _) => bail!(
            "{}: no signature ({s}); refusing to trust an unsigned {}. {}",
            spec.signature_url,
            spec.sha256sums_url,
            context()
        ),
    };
    verify_detached(&sums, &sig, key, &spec.sha256sums_url).with_context(context)?;
    let digest = find_digest(&String::from_utf8_lossy(&sums), &spec.file)
        .with_context(|| format!("{} has no line for {}", spec.sha256sums_url, spec.file))?;
    // Kept only once verified, so the cache never holds an unchecked list.
    write_atomic(&p.sums, &sums)?;
    write_atomic(&p.sig, &sig)?;
    Ok((digest, vouch))
}

/// The HTTP client, made only when something really goes to the network.
struct Net {
    offline: bool,
    release: String,
    client: Option<reqwest::blocking::Client>,
    /// The mirror's SHA256SUMS was found to agree with the pin.
    pin_checked: bool,
}

impl Net {
    fn new(offline: bool, release: &str) -> Net {
        Net {
            offline,
            release: release.to_string(),
            client: None,
            pin_checked: false,
        }
    }

    fn client(&mut self) -> Result<&reqwest::blocking::Client> {
        ensure!(
            !self.offline,
            "release {}: --offline forbids network use",
            self.release
        );
        if self.client.is_none() {
            self.client = Some(
                reqwest::blocking::Client::builder()
                    .connect_timeout(Duration::from_secs(30))
                    // In reqwest's blocking client this bounds each read: a
                    // stalled server fails the download (the .part is kept)
                    // instead of hanging.
                    .timeout(Duration::from_secs(60))
                    .build()
                    .context("setting up the HTTP client")?,
            );
        }
        Ok(self.client.as_ref().expect("just set"))
    }

    /// A small file (`SHA256SUMS`, its signature): at most
    /// [`MAX_LIST_BYTES`], whatever the server sends or says it sends.
    fn get_status(&mut self, url: &str) -> Result<(reqwest::StatusCode, Vec<u8>)> {
        let r = self
            .client()?
            .get(url)
            .send()
            .with_context(|| format!("fetching {url}"))?;
        let status = r.status();
        let too_big = || {
            anyhow::anyhow!(
                "{url}: the answer is larger than {} KiB; a SHA256SUMS list or its signature \
                 is about one: not a mirror to trust",
                MAX_LIST_BYTES >> 10
            )
        };
        if r.content_length().is_some_and(|n| n > MAX_LIST_BYTES) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        r.take(MAX_LIST_BYTES + 1)
            .read_to_end(&mut body)
            .with_context(|| format!("reading {url}"))?;
        if body.len() as u64 > MAX_LIST_BYTES {
            return Err(too_big());
        }
        Ok((status, body))
    }

    fn get(&mut self, url: &str) -> Result<Vec<u8>> {
        match self.get_status(url)? {
            (s, body) if s.is_success() => Ok(body),
            (s, _) => bail!("fetching {url}: {s}"),
        }
    }
}

/// Downloads `spec.url` into the `.part` (resuming it), checks the digest,
/// renames it into place; returns the digest and size.
fn download(
    client: &reqwest::blocking::Client,
    spec: &IsoSpec,
    p: &Paths,
    expected: &str,
    verified_by: &str,
    show_progress: bool,
) -> Result<(String, u64)> {
    let url = &spec.url;
    let part = &p.part;
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    let limit = match &spec.trust {
        Trust::Pinned { size: Some(n), .. } => *n,
        _ => MAX_ISO_BYTES,
    };
    match open_cached(part) {
        Ok(mut f) => {
            have = hash_into(&mut f, &mut hasher)
                .with_context(|| format!("hashing {}", part.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("opening {}", part.display())),
    }
    if have > limit {
        // Resuming it would only grow it: junk from an earlier mirror.
        fs::remove_file(part).with_context(|| format!("removing {}", part.display()))?;
        hasher = Sha256::new();
        have = 0;
    }
    let mut request = client.get(url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().with_context(|| format!("fetching {url}"))?;
    let mut status = response.status();
    if have > 0 && status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
        // The part is as long as (or longer than) the file: start over.
        fs::remove_file(part).with_context(|| format!("removing {}", part.display()))?;
        hasher = Sha256::new();
        have = 0;
        response = client
            .get(url)
            .send()
            .with_context(|| format!("fetching {url}"))?;
        status = response.status();
    }
    let response_ok = response.error_for_status_ref().map(|_| ());
    response_ok.with_context(|| format!("fetching {url}"))?;
    let resumed = have > 0 && status == reqwest::StatusCode::PARTIAL_CONTENT;
    if resumed {
        let range = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        ensure!(
            range.starts_with(&format!("bytes {have}-")),
            "{url}: asked for bytes from {have} on, the server answered Content-Range {range:?}"
        );
    } else {
        // The server sent the whole file: start the hash and the part afresh.
        hasher = Sha256::new();
        have = 0;
    }
    let total = response.content_length().map(|n| n + have);
    let too_big = |got: u64| {
        let bound = match &spec.trust {
            Trust::Pinned { size: Some(_), .. } => "its pinned size",
            _ => "the most an installer ISO holds",
        };
        let _ = fs::remove_file(part);
        anyhow::anyhow!(
            "{url}: the server sends {got} bytes or more, more than {bound} ({limit} bytes); \
             the download was deleted: not a mirror to trust"
        )
    };
    if let Some(total) = total
        && total > limit
    {
        return Err(too_big(total));
    }
    // O_NOFOLLOW: a `.part` that is a symbolic link is an error, never a
    // way to write into the link's target.
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(part)
        .map_err(|e| link_error(part, e))?;
    ensure!(
        out.metadata()?.is_file(),
        "{} is not a regular file; remove it",
        part.display()
    );
    let bar = if show_progress {
        let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(spec.file.clone());
        bar.set_position(have);
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                out.flush().ok();
                bar.abandon();
                return Err(e).with_context(|| {
                    format!(
                        "download of {url} interrupted after {have} bytes; {} is kept and \
                         the next run resumes it",
                        part.display()
                    )
                });
            }
        };
        if have + n as u64 > limit {
            drop(out);
            bar.abandon();
            return Err(too_big(have + n as u64));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("writing {}", part.display()))?;
        have += n as u64;
        bar.set_position(have);
    }
    bar.finish_and_clear();
    out.sync_all()
        .with_context(|| format!("flushing {}", part.display()))?;
    drop(out);
    if let Some(total) = total
        && have < total
    {
        bail!(
            "download of {url} ended early ({have} of {total} bytes); {} is kept and the next run resumes it",
            part.display()
        );
    }
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        let _ = fs::remove_file(part);
        bail!(
            "{} from {url} failed verification: {verified_by} says {expected}, the download \
             has {actual}; the file was deleted",
            spec.file
        );
    }
    fs::rename(part, &p.iso)
        .with_context(|| format!("renaming {} to {}", part.display(), p.iso.display()))?;
    Ok((actual, have))
}

/// Records that the ISO was verified: `DIGEST  SIZE`, read back by `iso list`
/// to tell "changed since it was verified" from "never verified".
fn write_marker(marker: &Path, digest: &str, size: u64) -> Result<()> {
    write_atomic(marker, format!("{digest}  {size}\n").as_bytes())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A new file (O_EXCL never follows a link): whatever stood there before
    // (a crashed run's file, a planted link) goes first.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", tmp.display()));
        }
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Opens a file of the cache for reading: not followed if a symbolic link,
/// and only a regular file (a FIFO would hang the hash).
fn open_cached(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::other(format!(
                "{} is a symbolic link; microseed follows no links in its cache: remove it",
                path.display()
            )),
            _ => e,
        })?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file; remove it",
            path.display()
        )));
    }
    Ok(f)
}

/// A cached list (`SHA256SUMS`, its signature), bounded like a download.
fn read_cached(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_cached(path)?
        .take(MAX_LIST_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_LIST_BYTES {
        return Err(std::io::Error::other(format!(
            "{} is larger than a SHA256SUMS list",
            path.display()
        )));
    }
    Ok(bytes)
}

fn link_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        anyhow::anyhow!(
            "{} is a symbolic link; microseed follows no links in its cache: remove it",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("opening {}", path.display()))
    }
}

/// The sha256 and length of a file.
fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = open_cached(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let n = hash_into(&mut f, &mut h).with_context(|| format!("hashing {}", path.display()))?;
    Ok((hex::encode(h.finalize()), n))
}

/// What `iso list` says about one file in the cache.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheEntry {
    pub file: String,
    /// Releases whose profile names this file.
    pub releases: Vec<String>,
    pub size: u64,
    /// `verified`: an offline build uses it as it is. `mismatch`: it does not
    /// hash to what its release says (changed since it was verified, or never
    /// the right file). `unverified`: nothing to check it against offline.
    /// `partial`: an interrupted download. `unknown`: no release names it.
    /// `missing`: a release's ISO is not in the cache (size 0).
    pub status: &'static str,
    pub sha256: Option<String>,
    pub expected: Option<String>,
    /// Who vouches for `expected`, or why nothing does.
    pub detail: String,
}

/// Every ISO (and partial download) in `cache_dir`, each re-hashed and
/// checked against its release without any network use, then a `missing`
/// row for each release whose ISO is not there.
pub fn list_cache(cache_dir: &Path, specs: &[IsoSpec]) -> Result<Vec<CacheEntry>> {
    let mut names = Vec::new();
    match fs::read_dir(cache_dir) {
        Ok(rd) => {
            for e in rd {
                let e = e.with_context(|| format!("listing {}", cache_dir.display()))?;
                if let Some(n) = e.file_name().to_str()
                    && (n.ends_with(".iso") || n.ends_with(".iso.part"))
                    && e.file_type().map(|t| t.is_file()).unwrap_or(false)
                {
                    names.push(n.to_string());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("listing {}", cache_dir.display())),
    }
    names.sort();
    let mut out = Vec::new();
    for name in &names {
        let path = cache_dir.join(name);
        let iso_name = name.strip_suffix(".part").unwrap_or(name);
        let mine: Vec<&IsoSpec> = specs.iter().filter(|s| s.file == iso_name).collect();
        let releases = mine.iter().map(|s| s.release.clone()).collect();
        let mut entry = CacheEntry {
            file: name.clone(),
            releases,
            size: fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            status: "unknown",
            sha256: None,
            expected: None,
            detail: String::new(),
        };
        if name.ends_with(".part") {
            entry.status = "partial";
            entry.detail = "an interrupted download; `microseed iso fetch` resumes it".into();
            out.push(entry);
            continue;
        }
        let Some(spec) = mine.first() else {
            entry.detail = "no release profile names this file".into();
            out.push(entry);
            continue;
        };
        let (actual, _) = hash_file(&path)?;
        entry.sha256 = Some(actual.clone());
        let p = paths(cache_dir, &spec.file);
        let mut net = Net::new(true, &spec.release);
        match expected_digest(spec, &p, &mut net) {
            Ok((expected, by)) => {
                entry.status = if expected == actual {
                    "verified"
                } else {
                    "mismatch"
                };
                entry.detail = if expected == actual {
                    format!("matches {by}")
                } else if p.marker.exists() {
                    format!("does not match {by}: truncated or corrupted since it was verified")
                } else {
                    format!("does not match {by}")
                };
                entry.expected = Some(expected);
            }
            Err(e) => {
                entry.status = "unverified";
                entry.detail = format!("{e:#}");
            }
        }
        out.push(entry);
    }
    // A release with nothing cached is what an offline rebuild trips on:
    // say so before the rack, not at it.
    for spec in specs {
        if names.iter().any(|n| n == &spec.file) {
            continue;
        }
        if let Some(e) = out
            .iter_mut()
            .find(|e| e.status == "missing" && e.file == spec.file)
        {
            e.releases.push(spec.release.clone());
            continue;
        }
        out.push(CacheEntry {
            file: spec.file.clone(),
            releases: vec![spec.release.clone()],
            size: 0,
            status: "missing",
            sha256: None,
            expected: None,
            detail: format!(
                "not cached: an offline build for release {} fails; `microseed iso fetch \
                 --release {}` fills it",
                spec.release, spec.release
            ),
        });
    }
    Ok(out)
}

/// The digest on the SHA256SUMS line for `name` (`HEX *name` or `HEX  name`).
fn find_digest(sums: &str, name: &str) -> Option<String> {
    sums.lines().find_map(|line| {
        let (digest, rest) = line.trim().split_once(char::is_whitespace)?;
        let file = rest
            .trim_start()
            .trim_start_matches('*')
            .trim_start_matches("./");
        (file == name && digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| digest.to_ascii_lowercase())
    })
}

fn hash_into(f: &mut File, hasher: &mut Sha256) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        hasher.update(&buf[..k]);
        n += k as u64;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_binary_and_text_mode_lines() {
        let d = "a".repeat(64);
        let sums = format!("{d} *ubuntu.iso\n{} other.iso\n", "b".repeat(64));
        assert_eq!(super::find_digest(&sums, "ubuntu.iso"), Some(d));
        assert_eq!(super::find_digest(&sums, "other.iso"), Some("b".repeat(64)));
        assert_eq!(super::find_digest(&sums, "missing.iso"), None);
    }
}
