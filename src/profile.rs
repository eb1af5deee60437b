//! What each role and each Ubuntu release is, as data read from `profiles/`.
//! `profiles/common.yaml` applies to every machine, then the layers the role
//! names (`profiles/layers/<layer>.yaml`, what several roles share, stated
//! once), then `profiles/roles/<role>.yaml`;
//! `profiles/releases/<release>.yaml` describes an Ubuntu release's installer.
//! Adding a role is adding a file here and its templates, not code.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::assets::Tree;
use crate::yaml::parse_typed;

pub use types::*;

mod types;

/// All profiles, loaded once per run; a release profile on first use.
#[derive(Debug, Clone)]
pub struct Profiles {
    pub common: RoleProfile,
    pub roles: BTreeMap<String, RoleProfile>,
    /// Every release a profile exists for, named by its file
    /// (`releases/<release>.yaml`), parsed the first time it is asked for:
    /// a run needs one release, and parsing all of them was a third of
    /// `check`'s start-up.
    releases: BTreeMap<String, OnceLock<ReleaseProfile>>,
    /// Where the release profiles are read from on first use.
    tree: Tree,
    /// Shared parts of roles, by name (`profiles/layers/<name>.yaml`).
    pub layers: BTreeMap<String, RoleProfile>,
    /// Per role, its layers in the order they apply (resolved and checked
    /// once at load, so planning never meets a missing layer or a cycle).
    order: BTreeMap<String, Vec<String>>,
}

impl Profiles {
    /// `--release R` names no release profile: the error, listing those
    /// that exist.
    pub fn unknown_release(&self, r: &str) -> crate::diag::Diagnostic {
        crate::diag::Diagnostic::error(
            Path::new("--release"),
            Default::default(),
            "",
            format!(
                "unknown release {r:?}; expected one of {}",
                self.release_names().collect::<Vec<_>>().join(", ")
            ),
        )
    }

    /// The releases a profile exists for, sorted, from the file names alone.
    pub fn release_names(&self) -> impl Iterator<Item = &str> {
        self.releases.keys().map(String::as_str)
    }

    /// The profile of release `name` (`releases/<name>.yaml`), parsed and
    /// checked on first use; `None` when no such file exists. A profile
    /// that does not parse, or whose `release:` is not its file's name, is
    /// an error naming the file.
    pub fn release(&self, name: &str) -> Result<Option<&ReleaseProfile>> {
        let Some(cell) = self.releases.get(name) else {
            return Ok(None);
        };
        if let Some(r) = cell.get() {
            return Ok(Some(r));
        }
        let r = load_release(&self.tree, name)?;
        // Another thread may have won the race; its copy is the same file's.
        Ok(Some(cell.get_or_init(|| r)))
    }

    /// Every release profile, by name (for commands that act on all of
    /// them, such as `iso fetch` without `--release`).
    pub fn all_releases(&self) -> Result<BTreeMap<&str, &ReleaseProfile>> {
        let mut out = BTreeMap::new();
        for name in self.release_names() {
            if let Some(r) = self.release(name)? {
                out.insert(name, r);
            }
        }
        Ok(out)
    }

    pub fn load(overlay: Option<&Path>) -> Result<Profiles> {
        let tree = Tree::profiles(overlay);
        let common: RoleProfile = load_one(&tree, "common.yaml")?;
        if !common.layers.is_empty() {
            bail!(
                "{}: layers: is for roles; common.yaml itself applies to every machine",
                origin(&tree, "common.yaml")?.display()
            );
        }
        let mut roles: BTreeMap<String, RoleProfile> = BTreeMap::new();
        for name in tree.list("roles")? {
            if let Some(role) = name
                .strip_prefix("roles/")
                .and_then(|n| n.strip_suffix(".yaml"))
            {
                roles.insert(role.to_string(), load_one(&tree, &name)?);
            }
        }
        let mut layers = BTreeMap::new();
        for name in tree.list("layers")? {
            if let Some(layer) = name
                .strip_prefix("layers/")
                .and_then(|n| n.strip_suffix(".yaml"))
            {
                let l: RoleProfile = load_one(&tree, &name)?;
                if l.count != Count::Any || l.count_note.is_some() {
                    bail!(
                        "{}: count and count_note belong in a role profile, not in a layer",
                        origin(&tree, &name)?.display()
                    );
                }
                layers.insert(layer.to_string(), l);
            }
        }
        let mut order = BTreeMap::new();
        for (role, p) in &roles {
            let from = origin(&tree, &format!("roles/{role}.yaml"))?;
            let mut out = Vec::new();
            resolve(&tree, &layers, &from, &p.layers, &mut Vec::new(), &mut out)
                .with_context(|| format!("resolving the layers of role {role}"))?;
            order.insert(role.clone(), out);
        }
        let releases = tree
            .list("releases")?
            .iter()
            .filter_map(|n| n.strip_prefix("releases/")?.strip_suffix(".yaml"))
            .map(|r| (r.to_string(), OnceLock::new()))
            .collect();
        if roles.is_empty() {
            return Err(anyhow!("no role profiles found under profiles/roles/"));
        }
        check_overlay_release_names(&tree, &releases)?;
        Ok(Profiles {
            common,
            roles,
            releases,
            layers,
            order,
            tree,
        })
    }

    /// A role's profiles in the order they apply, without `common`: its
    /// layers, then the role itself. `None` for an unknown role.
    pub fn stack(&self, role: &str) -> Option<Vec<&RoleProfile>> {
        let profile = self.roles.get(role)?;
        // `order` names only loaded layers, one entry per role (see `load`).
        let mut out: Vec<&RoleProfile> = self
            .order
            .get(role)?
            .iter()
            .filter_map(|l| self.layers.get(l))
            .collect();
        out.push(profile);
        Some(out)
    }
}

/// Appends to `out` the layers `names` (listed in the file `from`), each
/// after the layers it names itself. `path` is the chain being resolved:
/// meeting one of its names again is a cycle.
fn resolve(
    tree: &Tree,
    layers: &BTreeMap<String, RoleProfile>,
    from: &Path,
    names: &[String],
    path: &mut Vec<String>,
    out: &mut Vec<String>,
) -> Result<()> {
    for name in names {
        if path.contains(name) {
            let mut cycle = path.clone();
            cycle.push(name.clone());
            bail!(
                "{}: layers: {name} leads back to itself ({}); expected layers without a cycle",
                from.display(),
                cycle.join(" -> ")
            );
        }
        let Some(layer) = layers.get(name) else {
            let known: Vec<&str> = layers.keys().map(String::as_str).collect();
            bail!(
                "{}: layers: no layer {name:?} (no layers/{name}.yaml); expected one of: {}",
                from.display(),
                if known.is_empty() {
                    "(none)".to_string()
                } else {
                    known.join(", ")
                }
            );
        };
        if out.contains(name) {
            bail!(
                "{}: layers: {name} is applied twice (listed again here, or already through another layer); expected each layer once",
                from.display()
            );
        }
        path.push(name.clone());
        let own = origin(tree, &format!("layers/{name}.yaml"))?;
        resolve(tree, layers, &own, &layer.layers, path, out)?;
        path.pop();
        out.push(name.clone());
    }
    Ok(())
}

/// A release file of the `--profiles` overlay whose `release:` names
/// another release: before releases were found by file name, such a file
/// (a `focal.yaml` saying "20.04") replaced that release; now nothing would
/// read it, and the site's changes would be dropped without a word. So
/// every run with an overlay refuses it. Overlay files alone are parsed
/// here (a site has a few, the built-in ones stay parsed on first use),
/// and one that does not parse is left to the runs that use it.
fn check_overlay_release_names(
    tree: &Tree,
    releases: &BTreeMap<String, OnceLock<ReleaseProfile>>,
) -> Result<()> {
    for name in releases.keys() {
        let file = format!("releases/{name}.yaml");
        if !tree.overridden(&file) {
            continue;
        }
        let Ok(r) = load_one::<ReleaseProfile>(tree, &file) else {
            continue;
        };
        if r.release != *name {
            bail!(
                "{}: release: got {:?}; expected {name:?}, the file's name (a release profile is found by its file name: rename it to releases/{}.yaml to change release {:?})",
                origin(tree, &file)?.display(),
                r.release,
                r.release,
                r.release
            );
        }
    }
    Ok(())
}

/// Parses and checks `releases/<name>.yaml`. Its `release:` must be its
/// name: the name is how a cluster file's `release:` finds it, so a copy
/// renamed without editing (or the reverse) would otherwise describe one
/// release under another's name.
fn load_release(tree: &Tree, name: &str) -> Result<ReleaseProfile> {
    let file = format!("releases/{name}.yaml");
    let mut r: ReleaseProfile = load_one(tree, &file)?;
    r.origin = origin(tree, &file)?;
    if r.release != name {
        bail!(
            "{}: release: got {:?}; expected {name:?}, the file's name (a release profile is found by its file name, releases/<release>.yaml)",
            r.origin.display(),
            r.release
        );
    }
    check_release_microk8s(&r)?;
    if let Some(d) = &r.standard_support_ends
        && crate::day::Day::parse(d).is_none()
    {
        bail!(
            "{}: standard_support_ends: got {d:?}; expected a date YYYY-MM-DD",
            r.origin.display()
        );
    }
    Ok(r)
}

/// `microk8s-tracks.yaml`: each MicroK8s track's end of support, every
/// date checked (a profile error names the file).
pub fn load_tracks(profiles: &Profiles) -> Result<Microk8sTracks> {
    let name = "microk8s-tracks.yaml";
    let t: Microk8sTracks = load_one(&profiles.tree, name)?;
    let at = origin(&profiles.tree, name)?;
    for (track, ends) in &t.tracks {
        if channel_version(&format!("{track}/stable")).is_none() || track == "latest" {
            bail!(
                "{}: tracks: got track {track:?}; expected major.minor such as \"1.35\"",
                at.display()
            );
        }
        if crate::day::Day::parse(ends).is_none() {
            bail!(
                "{}: tracks.{track}: got {ends:?}; expected a date YYYY-MM-DD",
                at.display()
            );
        }
    }
    Ok(t)
}

/// A release's MicroK8s default must be a channel, its `min_track` a
/// track, and the default must not be older than the minimum: a cluster
/// file that names no channel gets the default, and must pass validation.
fn check_release_microk8s(r: &ReleaseProfile) -> Result<()> {
    let at = r.origin.display();
    let m = &r.microk8s;
    let Some(default) = channel_version(&m.default_channel) else {
        bail!(
            "{at}: microk8s.default_channel: got {:?}; expected <track>/<risk> such as \"1.35/stable\"",
            m.default_channel
        );
    };
    if let Some(min) = &m.min_track {
        let Some(min_v) = channel_version(&format!("{min}/stable")) else {
            bail!("{at}: microk8s.min_track: got {min:?}; expected a track such as \"1.22\"");
        };
        if default < min_v {
            bail!(
                "{at}: microk8s.default_channel {:?} is older than min_track {min}; expected a default the release can run",
                m.default_channel
            );
        }
    }
    Ok(())
}

/// (major, minor) of a `<track>/<risk>` channel, `latest` as the newest;
/// a profile's own check (the cluster file's channel goes through
/// `validate::parse_channel`, which this module must not import).
fn channel_version(channel: &str) -> Option<(u32, u32)> {
    let (track, risk) = channel.split_once('/')?;
    if !["stable", "candidate", "beta", "edge"].contains(&risk) {
        return None;
    }
    if track == "latest" {
        return Some((u32::MAX, u32::MAX));
    }
    let (major, minor) = track.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Where a profile file is read from (`embedded:…` or the overlay path).
fn origin(tree: &Tree, name: &str) -> Result<std::path::PathBuf> {
    Ok(tree.origin(name).unwrap_or_else(|| name.into()))
}

/// The shipped profiles, parsed from YAML into these types when microseed
/// was built (build.rs) and stored as JSON, which decodes in a fraction of
/// the time: YAML parsing was half of `check`'s own time.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/profiles.rs"));

    /// The parsed form of embedded profile `name`, if build.rs made one.
    pub(super) fn get(name: &str) -> Option<&'static str> {
        PARSED
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| PARSED[i].1)
    }
}

/// Profile `name`: the overlay's file parsed as YAML when there is one,
/// else the embedded profile as build.rs parsed it.
fn load_one<T: serde::de::DeserializeOwned>(tree: &Tree, name: &str) -> Result<T> {
    if !tree.overridden(name)
        && let Some(json) = embedded::get(name)
    {
        return serde_json::from_str(json)
            .with_context(|| format!("decoding the built-in profile {name}"));
    }
    let asset = tree
        .get(name)?
        .with_context(|| format!("profile {name} not found"))?;
    parse_asset(&asset)
}

fn parse_asset<T: for<'de> Deserialize<'de>>(asset: &crate::assets::Asset) -> Result<T> {
    parse_typed(&asset.origin, &asset.text)
        .map_err(|e| anyhow!("invalid profile: {e}"))
        .with_context(|| format!("loading profile {}", asset.origin.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `--profiles` overlay holding `files` (path under profiles/, text).
    fn overlay(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            let p = d.path().join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        d
    }

    fn error(files: &[(&str, &str)]) -> String {
        let d = overlay(files);
        format!(
            "{:#}",
            Profiles::load(Some(d.path())).expect_err("load must fail")
        )
    }

    /// The error loading release `name` from an overlay of `files` (the
    /// other profiles load).
    fn release_error(files: &[(&str, &str)], name: &str) -> String {
        let d = overlay(files);
        match Profiles::load(Some(d.path())) {
            Ok(p) => format!("{:#}", p.release(name).expect_err("the release must fail")),
            Err(e) => format!("{e:#}"),
        }
    }

    fn ports(p: &RoleProfile) -> Vec<&str> {
        p.firewall.iter().map(|r| r.port.as_str()).collect()
    }

    #[test]
    fn microk8s_rules_are_written_once_and_applied_to_master_and_worker() {
        let p = Profiles::load(None).expect("embedded profiles");
        let layer = &p.layers["microk8s"];
        assert!(ports(layer).contains(&"16443"), "{:?}", ports(layer));
        // A role names a layer's port again only where the two split it
        // by channel (16443, 25000, 19001: every node's before 1.23, the
        // masters' from then), each under its own condition.
        for (name, role) in &p.roles {
            for r in &role.firewall {
                if let Some(l) = layer.firewall.iter().find(|l| l.port == r.port) {
                    assert!(
                        l.when.is_some() && r.when.is_some(),
                        "role {name} repeats MicroK8s rule {} unconditionally",
                        r.port
                    );
                }
            }
        }
        for role in ["master", "worker"] {
            let stack = p.stack(role).expect("role");
            assert_eq!(stack.len(), 2, "{role}: the layer, then the role");
            assert!(std::ptr::eq(stack[0], layer), "{role}");
            assert!(std::ptr::eq(stack[1], &p.roles[role]), "{role}");
        }
        assert_eq!(p.stack("nfs").expect("nfs").len(), 1);
        assert!(p.stack("nosuchrole").is_none());
    }

    #[test]
    fn the_master_opens_the_port_its_fingerprint_socket_listens_on() {
        let p = Profiles::load(None).expect("embedded profiles");
        let port = crate::microk8s::FINGERPRINT_PORT.to_string();
        assert!(ports(&p.roles["master"]).contains(&port.as_str()));
        assert!(
            p.roles["master"]
                .enable
                .iter()
                .any(|u| u == "microseed-fingerprint.socket")
        );
    }

    #[test]
    fn a_layer_applies_after_the_layers_it_names() {
        let d = overlay(&[
            (
                "layers/a.yaml",
                "description: a\nlayers: [b]\npackages: [pa]\n",
            ),
            ("layers/b.yaml", "description: b\npackages: [pb]\n"),
            (
                "roles/x.yaml",
                "description: x\nlayers: [a]\npackages: [px]\n",
            ),
        ]);
        let p = Profiles::load(Some(d.path())).expect("load");
        let order: Vec<&str> = p
            .stack("x")
            .expect("x")
            .iter()
            .map(|l| l.packages[0].as_str())
            .collect();
        assert_eq!(order, ["pb", "pa", "px"]);
    }

    #[test]
    fn an_overlay_replaces_a_shipped_layer_file_by_file() {
        let d = overlay(&[(
            "layers/microk8s.yaml",
            "description: site\npackages: [site-pkg]\n",
        )]);
        let p = Profiles::load(Some(d.path())).expect("load");
        for role in ["master", "worker"] {
            assert_eq!(p.stack(role).expect("role")[0].packages, ["site-pkg"]);
        }
    }

    #[test]
    fn a_layer_cycle_is_an_error_naming_the_file_and_the_chain() {
        let e = error(&[
            ("layers/a.yaml", "description: a\nlayers: [b]\n"),
            ("layers/b.yaml", "description: b\nlayers: [a]\n"),
            ("roles/x.yaml", "description: x\nlayers: [a]\n"),
        ]);
        assert!(e.contains("resolving the layers of role x"), "{e}");
        assert!(
            e.contains("layers/b.yaml: layers: a leads back to itself (a -> b -> a)"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_layer_is_an_error_naming_the_role_file_and_the_known_layers() {
        let e = error(&[("roles/x.yaml", "description: x\nlayers: [nope]\n")]);
        assert!(e.contains("roles/x.yaml: layers: no layer \"nope\" (no layers/nope.yaml); expected one of: microk8s"), "{e}");
    }

    #[test]
    fn a_layer_applied_twice_is_an_error() {
        let e = error(&[(
            "roles/x.yaml",
            "description: x\nlayers: [microk8s, microk8s]\n",
        )]);
        assert!(
            e.contains("roles/x.yaml: layers: microk8s is applied twice"),
            "{e}"
        );
        // Also when it comes again through another layer.
        let e = error(&[
            ("layers/a.yaml", "description: a\nlayers: [microk8s]\n"),
            ("roles/x.yaml", "description: x\nlayers: [microk8s, a]\n"),
        ]);
        assert!(
            e.contains("layers/a.yaml: layers: microk8s is applied twice"),
            "{e}"
        );
    }

    #[test]
    fn every_shipped_release_defaults_to_a_channel_it_can_run() {
        let p = Profiles::load(None).expect("embedded profiles");
        let all = p.all_releases().expect("every shipped release loads");
        for (name, r) in &all {
            let (_, v) = crate::validate::parse_channel(&r.microk8s.default_channel)
                .unwrap_or_else(|| panic!("{name}: default channel"));
            if let Some(min) = &r.microk8s.min_track {
                let (_, m) =
                    crate::validate::parse_channel(&format!("{min}/stable")).expect("min_track");
                assert!(v >= m, "{name}");
            }
        }
        assert_eq!(all["20.04"].microk8s.default_channel, "1.20/stable");
        assert_eq!(all["20.04"].autoinstall.network, NetworkForm::Nested);
        assert!(all["24.04"].ssh.socket_activated);
        assert!(!all["22.04"].ssh.socket_activated);
    }

    #[test]
    fn a_release_profile_from_before_these_keys_still_loads_as_before() {
        // An overlay written for 20.04 (a mirror's URLs) names none of them.
        let focal = include_str!("../profiles/releases/20.04.yaml");
        let old = &focal[..focal.find("autoinstall:").expect("autoinstall key")];
        let d = overlay(&[("releases/20.04.yaml", old)]);
        let p = Profiles::load(Some(d.path())).expect("load");
        let r = p.release("20.04").expect("load").expect("20.04");
        assert_eq!(r.microk8s.default_channel, "1.20/stable");
        assert!(r.microk8s.min_track.is_none() && !r.ssh.socket_activated);
        assert_eq!(r.autoinstall.network, NetworkForm::Nested);
    }

    #[test]
    fn a_release_whose_default_channel_it_cannot_run_is_a_profile_error() {
        let noble = include_str!("../profiles/releases/24.04.yaml");
        let e = release_error(
            &[(
                "releases/24.04.yaml",
                &noble.replace(
                    "default_channel: 1.35/stable",
                    "default_channel: 1.21/stable",
                ),
            )],
            "24.04",
        );
        assert!(
            e.contains("releases/24.04.yaml: microk8s.default_channel \"1.21/stable\" is older than min_track 1.22"),
            "{e}"
        );
        let e = release_error(
            &[(
                "releases/24.04.yaml",
                &noble.replace("min_track: \"1.22\"", "min_track: \"one\""),
            )],
            "24.04",
        );
        assert!(
            e.contains("microk8s.min_track: got \"one\"; expected a track"),
            "{e}"
        );
    }

    #[test]
    fn count_belongs_to_roles_and_layers_to_roles_only() {
        let e = error(&[("layers/a.yaml", "description: a\ncount: exactly-one\n")]);
        assert!(
            e.contains("layers/a.yaml: count and count_note belong in a role profile"),
            "{e}"
        );
        let e = error(&[("common.yaml", "description: c\nlayers: [microk8s]\n")]);
        assert!(e.contains("common.yaml: layers: is for roles"), "{e}");
    }

    #[test]
    fn a_release_is_found_by_its_file_name_and_parsed_only_when_asked_for() {
        // A site's release beside a broken one it does not use: the other
        // file is never parsed, so runs for 20.04 or "site" are unaffected.
        let focal = include_str!("../profiles/releases/20.04.yaml");
        let d = overlay(&[
            (
                "releases/site.yaml",
                &focal.replace("release: \"20.04\"", "release: site"),
            ),
            ("releases/broken.yaml", "release: [not a profile\n"),
        ]);
        let p = Profiles::load(Some(d.path())).expect("load parses no release");
        let names: Vec<&str> = p.release_names().collect();
        assert_eq!(names, ["20.04", "22.04", "24.04", "broken", "site"]);
        let site = p.release("site").expect("load").expect("site");
        assert_eq!(site.release, "site");
        assert_eq!(site.origin, d.path().join("releases/site.yaml"));
        assert!(p.release("19.10").expect("no file is no error").is_none());
        let e = format!("{:#}", p.release("broken").expect_err("broken"));
        assert!(e.contains("releases/broken.yaml"), "{e}");
        // Every release at once (iso fetch) meets the broken one.
        assert!(p.all_releases().is_err());
    }

    #[test]
    fn a_release_profile_whose_release_is_not_its_file_name_is_an_error_naming_the_file() {
        let focal = include_str!("../profiles/releases/20.04.yaml");
        let e = release_error(&[("releases/focal.yaml", focal)], "focal");
        assert!(
            e.contains(
                "releases/focal.yaml: release: got \"20.04\"; expected \"focal\", the file's name"
            ),
            "{e}"
        );
        // An overlay replacing a shipped release must keep its name too.
        let e = release_error(
            &[(
                "releases/22.04.yaml",
                &focal.replace("release: \"20.04\"", "release: \"22.10\""),
            )],
            "22.04",
        );
        assert!(
            e.contains("releases/22.04.yaml: release: got \"22.10\"; expected \"22.04\""),
            "{e}"
        );
    }

    #[test]
    fn an_overlay_release_file_named_for_another_release_fails_every_run() {
        // Once it replaced 20.04; unread now, it must not be dropped silently.
        let focal = include_str!("../profiles/releases/20.04.yaml");
        let d = overlay(&[("releases/focal.yaml", focal)]);
        let e = format!("{:#}", Profiles::load(Some(d.path())).expect_err("refused"));
        assert!(
            e.contains("releases/focal.yaml: release: got \"20.04\"; expected \"focal\"")
                && e.contains("rename it to releases/20.04.yaml"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_release_error_lists_every_release_file_without_parsing_them() {
        let d = overlay(&[("releases/site.yaml", "not: [a release profile\n")]);
        let p = Profiles::load(Some(d.path())).expect("load");
        let msg = p.unknown_release("19.10").message;
        assert_eq!(
            msg,
            "unknown release \"19.10\"; expected one of 20.04, 22.04, 24.04, site"
        );
    }

    /// The JSON build.rs wrote for `name` against the YAML parsed now.
    fn built_and_parsed<T>(tree: &Tree, name: &str) -> (serde_json::Value, serde_json::Value)
    where
        T: serde::de::DeserializeOwned + serde::Serialize,
    {
        let json = embedded::get(name).unwrap_or_else(|| panic!("{name} was not parsed at build"));
        let built: T = serde_json::from_str(json).expect("decodes");
        let asset = tree.get(name).expect("read").expect("embedded");
        let parsed: T = parse_asset(&asset).expect("the embedded YAML parses");
        (
            serde_json::to_value(&built).expect("json"),
            serde_json::to_value(&parsed).expect("json"),
        )
    }

    #[test]
    fn every_shipped_profile_parsed_at_build_equals_its_yaml_parsed_now() {
        let tree = Tree::profiles(None);
        let mut checked = Vec::new();
        for name in tree.list("").expect("list") {
            let (built, parsed) = if name.starts_with("releases/") {
                built_and_parsed::<ReleaseProfile>(&tree, &name)
            } else if name == "microk8s-tracks.yaml" {
                built_and_parsed::<Microk8sTracks>(&tree, &name)
            } else if name == "common.yaml"
                || name.starts_with("roles/")
                || name.starts_with("layers/")
            {
                built_and_parsed::<RoleProfile>(&tree, &name)
            } else {
                continue;
            };
            assert_eq!(built, parsed, "{name}");
            checked.push(name);
        }
        let all: Vec<&str> = embedded::PARSED.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            checked, all,
            "every profile, and nothing else, parsed at build"
        );
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted for the lookup");
        assert!(all.contains(&"roles/master.yaml") && all.contains(&"releases/20.04.yaml"));
    }

    #[test]
    fn an_overlay_file_is_read_as_yaml_instead_of_the_built_in_profile() {
        let d = overlay(&[(
            "roles/nfs.yaml",
            "description: site nfs\ncount: exactly-one\n",
        )]);
        let p = Profiles::load(Some(d.path())).expect("load");
        assert_eq!(p.roles["nfs"].description, "site nfs");
        let json = |r: &RoleProfile| serde_json::to_value(r).expect("json");
        let built_in = Profiles::load(None).expect("built-in");
        assert_eq!(json(&p.roles["master"]), json(&built_in.roles["master"]));
        // A broken overlay file is parsed, and its error names it.
        let e = error(&[("roles/nfs.yaml", "description: [x\n")]);
        assert!(e.contains("roles/nfs.yaml"), "{e}");
    }
}
