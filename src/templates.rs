//! The one tera setup every template user shares (the planner's file bodies
//! and profile snippets, the pxe menus): the same filters (`shq`), no HTML
//! autoescaping, the same error text. Templates are compiled on first use,
//! not all at start-up: a run that renders three pxe menus or one
//! machine's scripts parses only those (start-up was mostly parsing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

use crate::assets::Tree;

/// Compiled templates from `cloud-init/` (with `--templates DIR` over them).
pub struct Templates {
    tree: Tree,
    tera: tera::Tera,
    /// Template name -> where it came from (for error messages), once compiled.
    loaded: HashMap<String, PathBuf>,
    /// Every template of the tree is compiled (see [`Templates::load`]).
    all_loaded: bool,
    /// Per compiled template, the per-machine variables its output can
    /// depend on (see [`per_machine_reads`]); `None`: anything.
    reads: HashMap<String, Option<Vec<&'static str>>>,
}

impl Templates {
    /// Compiles nothing yet.
    pub fn new(dir: Option<&Path>) -> Templates {
        let mut tera = tera::Tera::default();
        tera.register_filter("shq", shq_filter);
        // Autoescaping is for HTML; our files are configs and scripts.
        tera.autoescape_on(vec![]);
        Templates {
            tree: Tree::templates(dir),
            tera,
            loaded: HashMap::new(),
            all_loaded: false,
            reads: HashMap::new(),
        }
    }

    /// Compiles `name` unless it is already. A template that pulls in
    /// others (`include`, `import`, `extends`; a site's `--templates` may)
    /// makes every template load, since tera resolves those by name.
    fn load(&mut self, name: &str) -> Result<()> {
        if self.loaded.contains_key(name) {
            return Ok(());
        }
        let asset = self
            .tree
            .get(name)?
            .with_context(|| format!("template {name} not found"))?;
        if pulls_in_others(&asset.text) && !self.all_loaded {
            return self.load_all();
        }
        self.reads
            .insert(name.to_string(), per_machine_reads(&asset.text));
        self.tera
            .add_raw_template(name, &asset.text)
            .map_err(|e| anyhow!("{}", chain(&e)))
            .with_context(|| format!("loading {}", asset.origin.display()))?;
        self.loaded.insert(name.to_string(), asset.origin);
        Ok(())
    }

    fn load_all(&mut self) -> Result<()> {
        let mut all = Vec::new();
        for name in self.tree.list("")? {
            let asset = self.tree.get(&name)?.context("template vanished")?;
            self.reads
                .insert(name.clone(), per_machine_reads(&asset.text));
            self.loaded.insert(name.clone(), asset.origin);
            all.push((name, asset.text));
        }
        self.tera
            .add_raw_templates(all)
            .map_err(|e| anyhow!("{}", chain(&e)))
            .context("loading templates")?;
        self.all_loaded = true;
        Ok(())
    }

    /// Renders the template `name` (a path under `cloud-init/`).
    pub fn render(&mut self, name: &str, ctx: &tera::Context) -> Result<String> {
        self.load(name)?;
        self.tera
            .render(name, ctx)
            .map_err(|e| anyhow!("{}", chain(&e)))
    }

    /// Where a compiled template came from: `embedded:NAME` or the
    /// `--templates` file.
    pub fn origin(&self, name: &str) -> String {
        self.loaded
            .get(name)
            .map_or_else(|| name.to_string(), |p| p.display().to_string())
    }

    /// The per-machine variables the output of template `name` can depend
    /// on (see [`per_machine_reads`]), compiling it first; `None`: anything,
    /// so it must be rendered for every machine.
    pub fn per_machine_reads(&mut self, name: &str) -> Result<Option<&[&'static str]>> {
        self.load(name)?;
        Ok(self.reads.get(name).and_then(|r| r.as_deref()))
    }

    /// Compiles a short template string (a profile value) under `name`.
    pub fn add_snippet(&mut self, name: &str, text: &str) -> Result<()> {
        self.tera
            .add_raw_template(name, text)
            .map_err(|e| anyhow!("{}", chain(&e)))
    }

    /// Renders a snippet added with [`Templates::add_snippet`].
    pub fn render_snippet(&self, name: &str, ctx: &tera::Context) -> Result<String> {
        self.tera
            .render(name, ctx)
            .map_err(|e| anyhow!("{}", chain(&e)))
    }
}

fn pulls_in_others(src: &str) -> bool {
    ["include", "import", "extends"].iter().any(|w| {
        src.match_indices("{%").any(|(i, _)| {
            src[i + 2..]
                .trim_start_matches(['-', ' ', '\t', '\n'])
                .starts_with(w)
        })
    })
}

/// The variables that differ between machines, in the planner's context.
pub const PER_MACHINE: &[&str] = &["machine", "firewall", "packages", "steps", "step"];

/// True when a template's output cannot depend on the machine it is
/// rendered for (see [`per_machine_reads`]).
pub fn machine_independent(src: &str) -> bool {
    per_machine_reads(src).is_some_and(|r| r.is_empty())
}

/// Which of the [`PER_MACHINE`] variables a template's tags name: its
/// output is a function of their values (and of the cluster-wide context),
/// so machines with equal values get equal text. `None` when it can depend
/// on anything: a tag names the whole context, pulls in another template,
/// or calls a function whose result varies between calls. Conservative: a
/// word in a string literal or a loop variable of that name counts too.
pub fn per_machine_reads(src: &str) -> Option<Vec<&'static str>> {
    const FORBIDDEN: &[&str] = &[
        "__tera_context",
        "include",
        "import",
        "extends",
        "macro",
        "block",
        "now",
        "get_random",
        "get_env",
    ];
    let mut reads: Vec<&'static str> = Vec::new();
    let mut rest = src;
    while let Some(open) = rest.find(['{']) {
        let after = &rest[open + 1..];
        let close = match after.chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            Some('#') => "#}",
            _ => {
                rest = after;
                continue;
            }
        };
        let end = after.find(close)?;
        let tag = &after[1..end];
        rest = &after[end + close.len()..];
        if close == "#}" {
            continue;
        }
        let bytes = tag.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_alphabetic() || c == b'_' {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &tag[start..i];
                let is_attr = tag[..start].trim_end().ends_with('.');
                if FORBIDDEN.contains(&word) {
                    return None;
                }
                if !is_attr
                    && let Some(v) = PER_MACHINE.iter().find(|v| **v == word)
                    && !reads.contains(v)
                {
                    reads.push(v);
                }
            } else {
                i += 1;
            }
        }
    }
    reads.sort_unstable();
    Some(reads)
}

/// Single-quotes a value for POSIX shells: the only quoting with no special
/// characters inside, so no user string can break out.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn shq_filter(
    value: &tera::Value,
    _args: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let s = match value {
        tera::Value::String(s) => s.clone(),
        tera::Value::Number(n) => n.to_string(),
        tera::Value::Bool(b) => b.to_string(),
        other => return Err(tera::Error::msg(format!("shq: cannot quote {other}"))),
    };
    Ok(tera::Value::String(shell_quote(&s)))
}

/// Tera hides the useful part of an error in its source chain.
fn chain(e: &tera::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_reading_the_machine_are_not_shared() {
        assert!(machine_independent(
            "# every machine\n{% for m in cluster.machines %}{{ m.ip }} {{ m.name }}\n{% endfor %}"
        ));
        assert!(machine_independent("{{ roles.master.0.ip }} {# machine #}"));
        assert!(!machine_independent("{{ machine.name }}"));
        assert!(!machine_independent("{% if firewall.routed %}x{% endif %}"));
        assert!(!machine_independent("{{ __tera_context }}"));
        assert!(!machine_independent("{% include \"x\" %}"));
        assert!(!machine_independent("{{ now() }}"));
        assert!(!machine_independent("{{ cluster.name }"));
        // `cluster.machine` is an attribute, not the per-machine variable.
        assert!(machine_independent("{{ cluster.machine }}"));
    }

    #[test]
    fn a_template_depends_on_the_per_machine_variables_it_names() {
        assert_eq!(per_machine_reads("{{ cluster.name }}"), Some(vec![]));
        assert_eq!(
            per_machine_reads("{{ step.name }}: {{ step.run | join(sep=\" \") }}"),
            Some(vec!["step"])
        );
        assert_eq!(
            per_machine_reads(
                "{% for r in firewall.rules %}{{ r.port }}{% endfor %}{{ packages }}"
            ),
            Some(vec!["firewall", "packages"])
        );
        assert_eq!(
            per_machine_reads("{{ machine.name }} {% for s in steps %}{{ s }}{% endfor %}"),
            Some(vec!["machine", "steps"])
        );
        // Attributes of cluster-wide values are not the variables.
        assert_eq!(
            per_machine_reads("{{ cluster.step }} {{ x.machine }}"),
            Some(vec![])
        );
        assert_eq!(per_machine_reads("{{ __tera_context }}"), None);
        assert_eq!(
            per_machine_reads("{{ step.name }}{% include \"x\" %}"),
            None
        );
        assert_eq!(per_machine_reads("{{ get_random(end=9) }}"), None);
        assert_eq!(per_machine_reads("{{ step.name }"), None, "an unclosed tag");
    }

    #[test]
    fn only_the_templates_a_run_renders_are_compiled() {
        let mut t = Templates::new(None);
        let mut ctx = tera::Context::new();
        ctx.insert("x", "a b");
        // A broken template elsewhere in the tree is never parsed.
        t.add_snippet("s", "{{ x | shq }}").unwrap();
        assert_eq!(t.render_snippet("s", &ctx).unwrap(), "'a b'");
        assert!(t.loaded.is_empty());
        assert!(t.render("pxe/grub.cfg.tera", &ctx).is_err());
        assert_eq!(t.loaded.len(), 1, "{:?}", t.loaded.keys());
        assert!(!t.all_loaded);
    }

    #[test]
    fn a_template_that_includes_another_finds_it() {
        // A directory of this test's own: never one a crashed earlier run
        // (same pid, other templates) left behind.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("outer.tera"), "[{% include \"inner.tera\" %}]").unwrap();
        std::fs::write(dir.join("inner.tera"), "{{ x | shq }}").unwrap();
        let mut t = Templates::new(Some(dir));
        let mut ctx = tera::Context::new();
        ctx.insert("x", "it's");
        let out = t.render("outer.tera", &ctx);
        assert_eq!(out.unwrap(), r"['it'\''s']");
    }

    #[test]
    fn a_missing_template_is_named() {
        let mut t = Templates::new(None);
        let e = t.render("nope.tera", &tera::Context::new()).unwrap_err();
        assert!(format!("{e:#}").contains("template nope.tera not found"));
    }
}
