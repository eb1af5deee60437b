//! Whether the cluster's Ubuntu release and MicroK8s track are still
//! supported: the dates are data (`standard_support_ends` in each release
//! profile, `profiles/microk8s-tracks.yaml`), "today" is the clock or
//! `MICROSEED_TODAY`, and the answer is only ever a warning. Nothing here
//! reaches a build's output, so its bytes never depend on the date.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use crate::day::Day;
use crate::diag::{Diagnostic, Pos};
use crate::model::Cluster;
use crate::profile::{Microk8sTracks, Profiles};
use crate::schema::ClusterFile;

/// Overrides today's date (YYYY-MM-DD) for the support checks, so tests
/// (and anyone asking "what will check say next year?") get a fixed answer.
pub const TODAY_ENV: &str = "MICROSEED_TODAY";

/// Today (UTC), or `MICROSEED_TODAY` when set; a malformed override is an
/// error rather than a silent fall back to the clock.
pub fn today() -> Result<Day> {
    if let Some(v) = std::env::var_os(TODAY_ENV) {
        let v = v.to_string_lossy();
        return match Day::parse(&v) {
            Some(d) => Ok(d),
            None => bail!("{TODAY_ENV}: got {v:?}; expected a date YYYY-MM-DD"),
        };
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(Day::from_unix_days(secs.div_euclid(86_400)))
}

/// Warnings for a release past its standard support and a MicroK8s track
/// past its upstream support, on `today`, each naming the date and what
/// is still supported.
pub fn warnings(
    file: &Path,
    raw: &ClusterFile,
    cluster: &Cluster,
    profiles: &Profiles,
    tracks: &Microk8sTracks,
    today: Day,
) -> Vec<Diagnostic> {
    let mut w = Vec::new();
    let release = &cluster.release;
    if let Some(ends) = release
        .standard_support_ends
        .as_deref()
        .and_then(Day::parse)
        && today > ends
    {
        // The newest release still supported, by version order.
        let mut supported: Vec<(String, Day)> = profiles
            .release_names()
            .filter_map(|n| profiles.release(n).ok().flatten())
            .filter_map(|r| {
                let d = Day::parse(r.standard_support_ends.as_deref()?)?;
                (d >= today).then(|| (r.release.clone(), d))
            })
            .collect();
        supported.sort_by_key(|a| version_key(&a.0));
        let instead = match supported.last() {
            Some((r, d)) => format!(
                "; expected a supported release such as release: \"{r}\" (standard support until {d})"
            ),
            None => String::new(),
        };
        w.push(Diagnostic::warning(
            file,
            Pos::from_location(raw.release.referenced),
            "release",
            format!(
                "Ubuntu {} ({}) left standard support on {ends}: no more security updates for main without Ubuntu Pro (ESM){instead}",
                release.release, release.codename
            ),
        ));
    }
    let mk = &cluster.microk8s;
    if let Some(ends) = tracks.tracks.get(&mk.track).and_then(|d| Day::parse(d))
        && today > ends
    {
        // The newest track the data knows to be supported, or the release's
        // default when that is newer.
        let newest = tracks
            .tracks
            .iter()
            .filter(|(_, d)| Day::parse(d).is_some_and(|d| d >= today))
            .map(|(t, _)| t.clone())
            .max_by_key(|t| version_key(t));
        let default = &release.microk8s.default_channel;
        let suggestion = match newest {
            Some(t) => format!("{t}/stable"),
            None => default.clone(),
        };
        let at = raw
            .microk8s
            .channel
            .as_ref()
            .map(|c| Pos::from_location(c.referenced))
            .unwrap_or_else(|| Pos::from_location(raw.release.referenced));
        w.push(Diagnostic::warning(
            file,
            at,
            "microk8s.channel",
            format!(
                "MicroK8s track {} left upstream support on {ends} (MicroK8s follows upstream Kubernetes: no more patch releases, security fixes included); expected a supported track such as channel: {suggestion} (a running cluster moves one minor version at a time: docs/maintenance.md)",
                mk.track
            ),
        ));
    }
    w
}

/// Orders `20.04` < `22.04` and `1.9` < `1.35` by their numbers.
fn version_key(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}
