//! Per-machine plan: the common profile, the role's layers and the role
//! profile applied to the validated cluster. File bodies are rendered from
//! the tera templates in `cloud-init/` here; the YAML documents around them
//! are built later, in [`crate::documents`], from typed structs.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::model::{Cidr, Cluster, Machine};
use crate::profile::{FirewallRule, Profiles, Proto, ReleaseProfile, RoleProfile, Routed};
use crate::secrets::Secrets;
use crate::staking::{self, StakingPlan};
use crate::templates::Templates;

/// A file to place on the machine at first boot.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedFile {
    pub path: String,
    pub content: String,
    pub mode: String,
    /// A body other machines of the run are likely to share (a template
    /// that reads nothing of the machine itself, such as /etc/hosts or a
    /// step's unit): [`crate::documents`] serializes each such text once
    /// per run instead of once per machine.
    #[serde(skip)]
    pub shared: bool,
}

/// An allow rule after templating: `from: None` means from anywhere.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rule {
    pub port: String,
    pub proto: Proto,
    pub from: Option<String>,
    pub comment: String,
}

/// The machine's whole firewall: allow rules, interfaces, routed policy.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Firewall {
    pub rules: Vec<Rule>,
    pub interfaces: Vec<String>,
    pub routed: Option<Routed>,
}

/// A first-boot step after templating, in profile order.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub name: String,
    pub description: String,
    pub run: Vec<String>,
    pub after: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub machine: Machine,
    pub packages: Vec<String>,
    pub firewall: Firewall,
    pub files: Vec<PlannedFile>,
    pub steps: Vec<PlannedStep>,
    pub runcmd: Vec<Vec<String>>,
    /// How the release's installer reads `autoinstall.network`.
    pub network_form: crate::profile::NetworkForm,
}

/// Templates of the step framework, rendered once per machine (the list)
/// or once per step (the unit).
const STEP_UNIT_TEMPLATE: &str = "microseed-step.service.tera";
const STEP_LIST_TEMPLATE: &str = "steps.tera";
const STEP_LIST_PATH: &str = "/etc/microseed/steps";

/// Characters a step name or argument may hold: it is written into a unit
/// file's ExecStart= and a file name, where systemd and the shell would
/// otherwise give other characters a meaning.
fn unit_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/._-=:,".contains(&c))
}

/// What templates see of the cluster; `machine` and `firewall` are added
/// per machine. Field names are the template interface.
#[derive(Serialize)]
struct ClusterCtx<'a> {
    cluster: &'a Cluster,
    /// Machines grouped by role name, in cluster-file order.
    roles: BTreeMap<&'a str, Vec<&'a Machine>>,
    release: &'a ReleaseProfile,
    secrets: &'a Secrets,
    /// The staking stack's objects and namespace.
    staking: StakingPlan,
}

/// Renders templates for every machine of one cluster; built once per run.
pub struct Planner<'a> {
    cluster: &'a Cluster,
    release: &'a ReleaseProfile,
    profiles: &'a Profiles,
    templates: Templates,
    /// The cluster-wide context, converted once: converting the whole
    /// cluster per machine made large fleets quadratic.
    ctx: tera::Context,
    /// Profile strings compiled as templates, by their text.
    snippets: std::collections::HashMap<String, String>,
    /// Output of templates that read nothing per machine (see
    /// [`machine_independent`]), by template name: rendered once per run.
    /// /etc/hosts lists every machine, so rendering it per machine made a
    /// fleet build quadratic in tera lookups.
    shared: std::collections::HashMap<String, String>,
    /// Output of templates that read some per-machine variables but not
    /// `machine` (a step's unit reads `step`, the firewall script
    /// `firewall`), by template name and those variables' values: machines
    /// of one role mostly have equal values, and rendering the same text
    /// again for each was a tenth of a fleet build.
    by_values: std::collections::HashMap<(String, String), String>,
}

impl<'a> Planner<'a> {
    pub fn new(
        cluster: &'a Cluster,
        profiles: &'a Profiles,
        secrets: &'a Secrets,
        templates: Option<&Path>,
    ) -> Result<Planner<'a>> {
        let release = &cluster.release;
        let mut roles: BTreeMap<&str, Vec<&Machine>> = BTreeMap::new();
        for m in &cluster.machines {
            roles.entry(m.role.as_str()).or_default().push(m);
        }
        let ctx = tera::Context::from_serialize(ClusterCtx {
            cluster,
            roles,
            release,
            secrets,
            staking: staking::plan(cluster, &secrets.wallet_passwords)
                .context("rendering the staking objects")?,
        })?;
        Ok(Planner {
            cluster,
            release,
            profiles,
            templates: Templates::new(templates),
            ctx,
            snippets: Default::default(),
            shared: Default::default(),
            by_values: Default::default(),
        })
    }

    pub fn plan(&mut self, machine: &Machine) -> Result<Plan> {
        let profiles = self.profiles;
        // common, then the role's layers, then the role: later ones add to
        // (and for firewall_routed, override) earlier ones.
        let mut layers: Vec<&RoleProfile> = vec![&profiles.common];
        layers.extend(
            profiles
                .stack(&machine.role)
                .with_context(|| format!("no profile for role {}", machine.role))?,
        );
        self.ctx.insert("machine", machine);
        self.ctx.insert("firewall", &Firewall::default());

        let mut firewall = Firewall::default();
        for layer in &layers {
            for r in &layer.firewall {
                if self.when(r.when.as_deref())? {
                    let rule = self.rule(r)?;
                    if !firewall.rules.contains(&rule) {
                        firewall.rules.push(rule);
                    }
                }
            }
            for i in &layer.firewall_interfaces {
                if i.is_empty()
                    || !i
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b".+_-".contains(&c))
                {
                    bail!("firewall interface {i:?} is not an interface name");
                }
                if !firewall.interfaces.contains(i) {
                    firewall.interfaces.push(i.clone());
                }
            }
            if layer.firewall_routed.is_some() {
                firewall.routed = layer.firewall_routed;
            }
        }
        self.ctx.insert("firewall", &firewall);

        let mut packages: Vec<String> = Vec::new();
        for layer in &layers {
            for p in &layer.packages {
                if !packages.contains(p) {
                    packages.push(p.clone());
                }
            }
        }
        self.ctx.insert("packages", &packages);
        let steps = self.steps(&layers)?;
        self.ctx.insert("steps", &steps);
        let mut files = Vec::new();
        let mut runcmd = Vec::new();
        for layer in &layers {
            for f in &layer.files {
                if !self.when(f.when.as_deref())? {
                    continue;
                }
                let (content, shared) = self
                    .render_file(&f.template)
                    .with_context(|| format!("rendering template {} for {}", f.template, f.path))?;
                files.push(PlannedFile {
                    path: f.path.clone(),
                    content,
                    mode: f.mode.clone(),
                    shared,
                });
            }
        }
        // The step framework's own files: the list microseed-status reads
        // and one unit per step.
        if !steps.is_empty() {
            let (list, shared) = self
                .render_file(STEP_LIST_TEMPLATE)
                .context("rendering the step list")?;
            files.push(PlannedFile {
                path: STEP_LIST_PATH.into(),
                content: list,
                mode: "0644".into(),
                shared,
            });
        }
        let mut units = Vec::new();
        for step in &steps {
            self.ctx.insert("step", step);
            let unit = format!("microseed-{}.service", step.name);
            let (content, shared) = self
                .render_file(STEP_UNIT_TEMPLATE)
                .with_context(|| format!("rendering the unit of step {}", step.name))?;
            files.push(PlannedFile {
                path: format!("/etc/systemd/system/{unit}"),
                content,
                mode: "0644".into(),
                shared,
            });
            units.push(unit);
        }
        for layer in &layers {
            for u in &layer.enable {
                if !unit_safe(u) {
                    bail!("unit name {u:?} in enable: has characters a unit name cannot");
                }
                units.push(u.clone());
            }
        }
        // The units are enabled first, before anything long or fallible:
        // from then on, a reboot at any moment resumes the work at boot.
        if !units.is_empty() {
            runcmd.push(vec!["systemctl".into(), "daemon-reload".into()]);
            runcmd.push(
                ["systemctl", "enable"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(units.iter().cloned())
                    .collect(),
            );
            // --no-block: steps wait and retry for as long as they must, and
            // must not hold up the rest of first boot.
            runcmd.push(
                ["systemctl", "start", "--no-block"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(units.iter().cloned())
                    .collect(),
            );
        }
        for layer in &layers {
            for step in &layer.runcmd {
                if self.when(step.when.as_deref())? {
                    let argv = step
                        .run
                        .iter()
                        .map(|a| self.expand(a))
                        .collect::<Result<Vec<_>>>()?;
                    runcmd.push(argv);
                }
            }
        }
        Ok(Plan {
            machine: machine.clone(),
            packages,
            firewall,
            files,
            steps,
            runcmd,
            network_form: self.release.autoinstall.network,
        })
    }

    /// The machine's steps, conditions applied, checked: unique names,
    /// dependencies on earlier steps only (so there is no cycle), values
    /// safe in a unit file.
    fn steps(&mut self, layers: &[&RoleProfile]) -> Result<Vec<PlannedStep>> {
        let mut steps: Vec<PlannedStep> = Vec::new();
        for layer in layers {
            for spec in &layer.steps {
                if !self.when(spec.when.as_deref())? {
                    continue;
                }
                let run = spec
                    .run
                    .iter()
                    .map(|a| self.expand(a))
                    .collect::<Result<Vec<_>>>()?;
                if !unit_safe(&spec.name) || spec.name.contains(['/', '=', ':', ',']) {
                    bail!("step name {:?} is not a plain name", spec.name);
                }
                if steps.iter().any(|s| s.name == spec.name) {
                    bail!("step {} is defined twice", spec.name);
                }
                if let Some(bad) = run.iter().find(|a| !unit_safe(a)) {
                    bail!(
                        "step {}: argument {bad:?} has characters a unit's ExecStart= would reinterpret",
                        spec.name
                    );
                }
                if run.is_empty() {
                    bail!("step {} has nothing to run", spec.name);
                }
                if spec.description.contains(['\n', '%', '|']) {
                    bail!(
                        "step {}: description may not hold newlines, % or |",
                        spec.name
                    );
                }
                for dep in &spec.after {
                    if !steps.iter().any(|s| &s.name == dep) {
                        bail!(
                            "step {} runs after {dep}, which is not an earlier step of this machine",
                            spec.name
                        );
                    }
                }
                steps.push(PlannedStep {
                    name: spec.name.clone(),
                    description: spec.description.clone(),
                    run,
                    after: spec.after.clone(),
                });
            }
        }
        Ok(steps)
    }

    /// Renders a file template for the current machine, reusing the output
    /// of an earlier machine when the template reads nothing that differs
    /// between the two (see [`crate::templates::per_machine_reads`]); true
    /// with the output when other machines are likely to get the same text
    /// ([`PlannedFile::shared`]).
    fn render_file(&mut self, name: &str) -> Result<(String, bool)> {
        if let Some(out) = self.shared.get(name) {
            return Ok((out.clone(), true));
        }
        let key = match self.templates.per_machine_reads(name)? {
            Some([]) => {
                let out = self.templates.render(name, &self.ctx)?;
                self.shared.insert(name.to_string(), out.clone());
                return Ok((out, true));
            }
            Some(reads) if !reads.contains(&"machine") => {
                // The values as JSON: equal text exactly when the values
                // the template can see are equal.
                let values: Vec<Option<&tera::Value>> =
                    reads.iter().map(|v| self.ctx.get(v)).collect();
                (name.to_string(), serde_json::to_string(&values)?)
            }
            _ => return Ok((self.templates.render(name, &self.ctx)?, false)),
        };
        if let Some(out) = self.by_values.get(&key) {
            return Ok((out.clone(), true));
        }
        let out = self.templates.render(name, &self.ctx)?;
        self.by_values.insert(key, out.clone());
        Ok((out, true))
    }

    /// Expands a short template string from a profile.
    fn expand(&mut self, s: &str) -> Result<String> {
        if !s.contains("{{") && !s.contains("{%") {
            return Ok(s.to_string());
        }
        // Compiled once per distinct string, not once per machine.
        let name = match self.snippets.get(s) {
            Some(n) => n.clone(),
            None => {
                let n = format!("__profile_snippet_{}", self.snippets.len());
                self.templates
                    .add_snippet(&n, s)
                    .with_context(|| format!("compiling profile value {s:?}"))?;
                self.snippets.insert(s.to_string(), n.clone());
                n
            }
        };
        self.templates
            .render_snippet(&name, &self.ctx)
            .with_context(|| format!("expanding profile value {s:?}"))
    }

    fn when(&mut self, cond: Option<&str>) -> Result<bool> {
        match cond {
            None => Ok(true),
            Some(c) => Ok(self.expand(&format!("{{% if {c} %}}yes{{% endif %}}"))? == "yes"),
        }
    }

    fn rule(&mut self, r: &FirewallRule) -> Result<Rule> {
        let port = self.expand(&r.port)?;
        let valid_port = |p: &str| p.parse::<u16>().is_ok_and(|n| n > 0);
        let port_ok = match port.split_once(':') {
            Some((a, b)) => valid_port(a) && valid_port(b),
            None => valid_port(&port),
        };
        if !port_ok {
            bail!(
                "firewall rule port {port:?} (from {:?}) is not a port or range",
                r.port
            );
        }
        let from = self.expand(&r.from)?;
        let from = match from.as_str() {
            "anywhere" | "" => None,
            "cluster" => Some(self.cluster.network.subnet.to_string()),
            // One machine's address (a master's dqlite peer): ufw takes it
            // as is.
            ip if ip.parse::<std::net::Ipv4Addr>().is_ok() => Some(ip.to_string()),
            cidr => match Cidr::parse(cidr) {
                Some(c) => Some(format!("{}/{}", c.network(), c.prefix)),
                None => bail!(
                    "firewall rule source {cidr:?} is not anywhere, cluster, an address or a CIDR"
                ),
            },
        };
        let comment = r.comment.clone().unwrap_or_default();
        if !comment
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b" -_.,()/".contains(&c))
        {
            bail!("firewall comment {comment:?} has characters ufw comments cannot carry");
        }
        Ok(Rule {
            port,
            proto: r.proto,
            from,
            comment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A planner renders a template that reads only per-machine values
    /// such as `step` or `firewall` once per distinct value; every machine
    /// must still get exactly the text a planner of its own renders.
    #[test]
    fn a_planner_reusing_renders_gives_each_machine_its_own_text() {
        let text = include_str!("../examples/eth2-staking/cluster.yaml");
        let file = Path::new("cluster.yaml");
        let raw = crate::schema::parse(file, text).expect("parses");
        let profiles = Profiles::load(None).expect("embedded profiles");
        let cluster = crate::validate::validate(file, &raw, &profiles).expect("valid");
        let secrets = crate::secrets::generate().expect("secrets");
        let mut one = Planner::new(&cluster, &profiles, &secrets, None).expect("planner");
        // Twice round: the second time every reusable text comes from the
        // first, across roles too.
        for m in cluster.machines.iter().chain(&cluster.machines) {
            let reused = one.plan(m).expect("plan");
            let mut own = Planner::new(&cluster, &profiles, &secrets, None).expect("planner");
            let fresh = own.plan(m).expect("plan");
            assert_eq!(reused.files.len(), fresh.files.len(), "{}", m.name);
            for (a, b) in reused.files.iter().zip(&fresh.files) {
                assert_eq!(a.path, b.path, "{}", m.name);
                assert_eq!(a.content, b.content, "{} {}", m.name, a.path);
            }
        }
        assert!(
            !one.by_values.is_empty(),
            "step units are rendered once per step"
        );
        let roles: std::collections::BTreeSet<&str> =
            cluster.machines.iter().map(|m| m.role.as_str()).collect();
        assert!(
            roles.len() >= 2,
            "the example has machines of several roles"
        );
    }
}
