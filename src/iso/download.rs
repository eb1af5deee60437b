//! Fetch the Ubuntu ISO into a cache, verified against its SHA256SUMS.
//!
//! The digest is computed while streaming; an interrupted download leaves a
//! `.part` file that the next run resumes with an HTTP Range request (the part
//! is hashed first, then the rest goes through the same hasher). A verified
//! file gets a `.sha256` marker beside it, so later runs reuse it without
//! downloading or re-hashing; a file found without a marker is hashed and
//! kept if it matches. SHA256SUMS itself is not GPG-checked here; see
//! the README for `gpg --verify SHA256SUMS.gpg SHA256SUMS`.

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Make sure `cache_dir/file_name` holds the file at `url`, verified against
/// the line for `file_name` in the SHA256SUMS at `sha256sums_url`; return its path.
pub fn ensure_iso(
    url: &str,
    sha256sums_url: &str,
    file_name: &str,
    cache_dir: &Path,
    show_progress: bool,
) -> Result<PathBuf> {
    ensure!(
        !file_name.is_empty() && !file_name.contains('/') && file_name != "." && file_name != "..",
        "file name {file_name:?} must be a plain file name"
    );
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        // In reqwest's blocking client this bounds each read: a stalled
        // server fails the download (the .part is kept) instead of hanging.
        .timeout(Duration::from_secs(60))
        .build()
        .context("setting up the HTTP client")?;
    let sums = client
        .get(sha256sums_url)
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .with_context(|| format!("fetching {sha256sums_url}"))?
        .text()
        .with_context(|| format!("reading {sha256sums_url}"))?;
    let expected = find_digest(&sums, file_name)
        .with_context(|| format!("{sha256sums_url} has no line for {file_name}"))?;

    fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating the cache directory {}", cache_dir.display()))?;
    let path = cache_dir.join(file_name);
    let marker = cache_dir.join(format!("{file_name}.sha256"));
    let part = cache_dir.join(format!("{file_name}.part"));
    if let (Ok(meta), Ok(mark)) = (fs::metadata(&path), fs::read_to_string(&marker))
        && mark.split_whitespace().collect::<Vec<_>>()
            == [expected.as_str(), &meta.len().to_string()]
    {
        return Ok(path);
    }
    let _ = fs::remove_file(&marker);
    // A file put there by hand (or whose marker was lost): adopt it if its
    // digest is right, else replace it.
    if let Ok(mut f) = File::open(&path) {
        let mut h = Sha256::new();
        let n = hash_into(&mut f, &mut h).with_context(|| format!("hashing {}", path.display()))?;
        if hex::encode(h.finalize()) == expected {
            fs::write(&marker, format!("{expected}  {n}\n"))
                .with_context(|| format!("writing {}", marker.display()))?;
            return Ok(path);
        }
        fs::remove_file(&path)
            .with_context(|| format!("removing unverified {}", path.display()))?;
    }

    let mut hasher = Sha256::new();
    let mut have = 0u64;
    if let Ok(mut f) = File::open(&part) {
        have = hash_into(&mut f, &mut hasher)
            .with_context(|| format!("hashing {}", part.display()))?;
    }
    let mut request = client.get(url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().with_context(|| format!("fetching {url}"))?;
    let status = response.status();
    if have > 0 && status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
        // The part is as long as (or longer than) the file: start over.
        fs::remove_file(&part).with_context(|| format!("removing {}", part.display()))?;
        return ensure_iso(url, sha256sums_url, file_name, cache_dir, show_progress);
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
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .with_context(|| format!("opening {}", part.display()))?;

    let total = response.content_length().map(|n| n + have);
    let bar = if show_progress {
        let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(file_name.to_string());
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
        let _ = fs::remove_file(&part);
        bail!(
            "{file_name} from {url} failed verification: SHA256SUMS says {expected}, the download \
             has {actual}; the file was deleted"
        );
    }
    fs::rename(&part, &path)
        .with_context(|| format!("renaming {} to {}", part.display(), path.display()))?;
    fs::write(&marker, format!("{actual}  {have}\n"))
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(path)
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
