//! Whether the cluster's Ubuntu release and MicroK8s track are still
//! supported: the dates are data (`standard_support_ends` in each release
//! profile, `profiles/microk8s-tracks.yaml`), "today" is the clock or
//! `MICROSEED_TODAY`, and the answer is only ever a warning. Nothing here
//! reaches a build's output, so its bytes never depend on the date.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use crate::diag::{Diagnostic, Pos};
use crate::model::Cluster;
use crate::profile::{Microk8sTracks, Profiles};
use crate::schema::ClusterFile;

/// Overrides today's date (YYYY-MM-DD) for the support checks, so tests
/// (and anyone asking "what will check say next year?") get a fixed answer.
pub const TODAY_ENV: &str = "MICROSEED_TODAY";

/// A calendar day; ordered by date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Day {
    /// `YYYY-MM-DD`, a real date (month 1-12, day within the month).
    pub fn parse(s: &str) -> Option<Day> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let digits = |r: std::ops::Range<usize>| {
            s.get(r)
                .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|t| t.parse::<u32>().ok())
        };
        let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        let d = Day {
            year: year as i32,
            month,
            day,
        };
        ((1..=12).contains(&month) && day >= 1 && day <= d.days_in_month()).then_some(d)
    }

    fn days_in_month(self) -> u32 {
        let leap = (self.year % 4 == 0 && self.year % 100 != 0) || self.year % 400 == 0;
        match self.month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// The civil date of a day count since 1970-01-01 (proleptic Gregorian;
    /// Howard Hinnant's `civil_from_days`).
    pub fn from_unix_days(z: i64) -> Day {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Day { year, month, day }
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

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
                "MicroK8s track {} left upstream support on {ends} (no more patch releases, security fixes included; {}); expected a supported track such as channel: {suggestion} (a running cluster moves one minor version at a time: docs/maintenance.md)",
                mk.track, tracks.source
            ),
        ));
    }
    w
}

/// Orders `20.04` < `22.04` and `1.9` < `1.35` by their numbers.
fn version_key(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_parses_only_real_dates_and_orders_by_date() {
        assert_eq!(
            Day::parse("2025-05-31"),
            Some(Day {
                year: 2025,
                month: 5,
                day: 31
            })
        );
        for bad in [
            "2025-5-31",
            "2025-06-31",
            "2023-02-29",
            "2025-13-01",
            "20250531",
            "2025-05-3x",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
        assert!(Day::parse("2024-02-29").is_some());
        assert!(Day::parse("2025-05-31") < Day::parse("2025-06-01"));
    }

    #[test]
    fn unix_days_become_the_civil_date() {
        assert_eq!(Day::from_unix_days(0).to_string(), "1970-01-01");
        assert_eq!(Day::from_unix_days(20_239).to_string(), "2025-05-31");
        assert_eq!(Day::from_unix_days(19_782).to_string(), "2024-02-29");
        assert_eq!(Day::from_unix_days(-1).to_string(), "1969-12-31");
    }
}
