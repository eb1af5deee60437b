//! Command-line entry point: parses arguments and calls into the library.
//! Exit codes: 0 success, 1 failure, 2 bad input (nothing written).
// Output goes through outln!/errln! (commands.rs), which end quietly on a
// closed stdout or stderr; print!/eprint! would panic there.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use microseed::build::GlobalOptions;
use microseed::commands;
use microseed::documents::Target;

const EXAMPLES: &str = "\
Examples:
  microseed init mycluster
  microseed check mycluster/cluster.yaml
  microseed build mycluster/cluster.yaml -o out
  microseed build mycluster/cluster.yaml -o out --machine worker-1
  microseed render mycluster/cluster.yaml master user-data
  microseed build mycluster/cluster.yaml -o out --format dir,pxe --pxe-url http://172.20.10.5:8080
  microseed serve out/pxe --bind 0.0.0.0:8080
  microseed verify out
  microseed iso fetch --release 20.04
  microseed build mycluster/cluster.yaml -o out --format installer --offline
  microseed build mycluster/cluster.yaml -o out --check
  microseed flash out/worker-1 /dev/sdb
  microseed flash --list
  microseed discover /dev/sdb
  microseed discover /dev/sdb --cluster mycluster/cluster.yaml --machine worker-1=52:54:00:12:34:56
  microseed status mycluster/cluster.yaml --wait
  microseed completions bash > /etc/bash_completion.d/microseed

Exit codes: 0 success, 1 failure, 2 invalid input (nothing written).";

const STATUS_HELP: &str = "\
Examples:
  microseed status mycluster/cluster.yaml
  microseed status mycluster/cluster.yaml --wait=45m --machine worker-1
  microseed status mycluster/cluster.yaml --json
  microseed status mycluster/cluster.yaml --accept-new-host-key worker-1   # after a rebuild

Connects with the system's ssh (your keys, agent and ~/.ssh/config apply) as the
cluster's admin user on its ssh port. Host keys are recorded on first contact in
known_hosts beside the cluster file; a changed key is refused.

Exit codes: 0 every machine converged and every node Ready, 1 failure,
2 invalid input, 3 not converged (or nodes not Ready), 4 a machine unreachable
(or its host key changed).";

const DISCOVER_HELP: &str = "\
Examples:
  microseed discover /dev/sdb                          # the stick, read without mounting
  microseed discover /media/me/CIDATA                  # a mounted stick (or its microseed/reports)
  microseed discover out/installer.img --json
  microseed discover /dev/sdb --cluster mycluster/cluster.yaml \\
      --machine nfs=52:54:00:12:34:56 --machine master=52:54:00:12:34:57

A machine whose MAC is in no seed installs nothing when it boots the cluster
stick: it shows its network cards and disks and saves a report on the stick.
The flow: flash once, boot each machine once, discover, build, flash, boot each
machine again (docs/discover.md). With --cluster, mac, interface and disk are
written into the named machines in place (comments kept); a value already set
differently is refused unless --force; the file must still pass check.

Exit codes: 0 success, 1 failure, 2 invalid input (nothing written).";

#[derive(Parser)]
#[command(
    name = "microseed",
    version,
    about = "Turn one cluster file into an unattended Ubuntu install seed per machine",
    long_about = "microseed turns one cluster file into a seed per machine: Ubuntu Server \
autoinstall and cloud-init data for an NFS server, a MicroK8s master and MicroK8s workers, \
with static addresses, chrony, ufw and unattended joins baked in.",
    after_help = EXAMPLES
)]
struct Cli {
    /// Read role and release profiles from DIR, falling back to the built-in ones.
    #[arg(long, value_name = "DIR")]
    profiles: Option<PathBuf>,
    /// Read templates from DIR, falling back to the built-in ones.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Treat warnings (such as a group-readable secrets file) as errors.
    #[arg(long)]
    strict: bool,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Make any download an error: the installer ISO must already be in the
    /// cache (see `microseed iso fetch`).
    #[arg(long)]
    offline: bool,
    #[command(subcommand)]
    command: Command,
}

// Each subcommand takes, after its name, exactly the flags that apply to it
// (so its --help offers nothing it would refuse); the same flags before the
// subcommand name are still read, for scripts written that way.

/// `--profiles DIR`.
#[derive(clap::Args, Default)]
struct ProfilesFlag {
    /// Read role and release profiles from DIR, falling back to the built-in ones.
    #[arg(long, value_name = "DIR")]
    profiles: Option<PathBuf>,
}

/// `--templates DIR`, for the commands that render seeds.
#[derive(clap::Args, Default)]
struct TemplatesFlag {
    /// Read templates from DIR, falling back to the built-in ones.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

/// `--strict`, for the commands that read the secrets file.
#[derive(clap::Args, Default)]
struct StrictFlag {
    /// Treat warnings (such as a group-readable secrets file) as errors.
    #[arg(long)]
    strict: bool,
}

/// `--json`.
#[derive(clap::Args, Default)]
struct JsonFlag {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// The flags of the commands that render seeds and may download (build,
/// flash).
#[derive(clap::Args, Default)]
struct SeedFlags {
    #[command(flatten)]
    p: ProfilesFlag,
    #[command(flatten)]
    t: TemplatesFlag,
    #[command(flatten)]
    s: StrictFlag,
    #[command(flatten)]
    j: JsonFlag,
    #[command(flatten)]
    o: OfflineFlag,
}

/// `--offline`, for the commands that may download.
#[derive(clap::Args, Default)]
struct OfflineFlag {
    /// Make any download an error: the installer ISO must already be in the
    /// cache (see `microseed iso fetch`).
    #[arg(long)]
    offline: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create DIR/cluster.yaml (the staking guide's network) and DIR/secrets.yaml.
    #[command(
        after_help = "Examples:\n  microseed init mycluster --ssh-key ~/.ssh/id_ed25519.pub\n  microseed init mycluster --release 24.04    # that release's MicroK8s channel too"
    )]
    Init {
        #[command(flatten)]
        args: microseed::init::InitArgs,
        #[command(flatten)]
        p: ProfilesFlag,
        #[command(flatten)]
        j: JsonFlag,
    },
    /// Validate a cluster file (and its secrets file, when present).
    #[command(after_help = "Example:\n  microseed check mycluster/cluster.yaml")]
    Check {
        cluster: PathBuf,
        #[command(flatten)]
        p: ProfilesFlag,
        #[command(flatten)]
        s: StrictFlag,
        #[command(flatten)]
        j: JsonFlag,
    },
    /// Build every machine's seed into OUT, replacing it atomically.
    #[command(
        after_help = "Examples:\n  microseed build mycluster/cluster.yaml -o out\n  microseed build mycluster/cluster.yaml -o out --machine worker-1 --machine worker-2\n  microseed build mycluster/cluster.yaml -o vms --target cloud-image\n  microseed build mycluster/cluster.yaml -o out --format dir,pxe --pxe-url http://172.20.10.5:8080\n  microseed build mycluster/cluster.yaml -o out --check   # exit 1 if out has drifted\n  microseed build mycluster/cluster.yaml -o out --format installer --iso ubuntu-20.04.6-live-server-amd64.iso"
    )]
    Build {
        #[command(flatten)]
        args: commands::BuildArgs,
        #[command(flatten)]
        f: SeedFlags,
    },
    /// Serve DIR (usually OUT/pxe) read-only over HTTP for netbooting.
    #[command(
        after_help = "Examples:\n  microseed serve out/pxe\n  microseed serve out/pxe --bind 172.20.10.5:8080\n\nOne log line per request on stderr: <client-ip> <method> <path> <status> <bytes> [machine=<name>]."
    )]
    Serve {
        dir: PathBuf,
        /// Address and port to listen on (port 0 picks a free one).
        #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:8080")]
        bind: String,
        #[command(flatten)]
        j: JsonFlag,
    },
    /// Re-hash every file OUT/SHA256SUMS lists; name changed, missing and unlisted files.
    #[command(
        after_help = "Examples:\n  microseed verify out\n  microseed verify /media/usb --json\n\nExit codes: 0 all files match, 1 any file changed, missing or unlisted."
    )]
    Verify {
        out: PathBuf,
        #[command(flatten)]
        j: JsonFlag,
    },
    /// Write the cluster stick (or a machine's seed image) to a USB stick or SD card, then read it back.
    #[command(
        after_help = "Examples:\n  microseed flash --list\n  microseed flash out/worker-1 /dev/sdb\n  microseed flash mycluster/cluster.yaml /dev/sdb --machine worker-1   # streamed from the cached ISO\n  microseed flash out/worker-1 /dev/sdc --format seed-img --yes\n\nOnly a whole, removable, unmounted disk is accepted; a fixed disk needs --force\nand its name typed at the terminal. Exit codes: 0 written and verified (\"safe to\nremove\"), 1 refused, failed or interrupted, 2 invalid input."
    )]
    Flash {
        #[command(flatten)]
        args: commands::FlashArgs,
        #[command(flatten)]
        f: SeedFlags,
    },
    /// Turn the hardware reports on the cluster stick into `machines:` entries
    /// (mac, interface, disk), or fill them into the cluster file.
    #[command(after_help = DISCOVER_HELP)]
    Discover {
        #[command(flatten)]
        args: microseed::discover::DiscoverArgs,
        #[command(flatten)]
        p: ProfilesFlag,
        #[command(flatten)]
        j: JsonFlag,
    },
    /// Ask every machine over ssh whether its first boot converged.
    #[command(after_help = STATUS_HELP)]
    Status {
        #[command(flatten)]
        args: microseed::status::StatusArgs,
        #[command(flatten)]
        p: ProfilesFlag,
        #[command(flatten)]
        s: StrictFlag,
        #[command(flatten)]
        j: JsonFlag,
    },
    /// Print one document of one machine to stdout.
    #[command(
        after_help = "Examples:\n  microseed render mycluster/cluster.yaml worker-1 network-config\n  microseed render mycluster/cluster.yaml master staking | sudo microk8s kubectl apply --server-side --field-manager=microseed --force-conflicts -f -\n\n`staking` is the master's staking stack: the Kubernetes objects its first boot\napplied, as this cluster file now renders them (apply it to upgrade)."
    )]
    Render {
        cluster: PathBuf,
        machine: String,
        #[arg(value_parser = ["user-data", "meta-data", "network-config", "staking"], default_value = "user-data")]
        document: String,
        #[arg(long, value_enum, default_value = "installer")]
        target: Target,
        #[command(flatten)]
        p: ProfilesFlag,
        #[command(flatten)]
        t: TemplatesFlag,
        #[command(flatten)]
        s: StrictFlag,
        #[command(flatten)]
        j: JsonFlag,
    },
    /// Fill and inspect the installer ISO cache (for offline rebuilds).
    #[command(subcommand)]
    Iso(IsoCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  microseed completions bash > ~/.local/share/bash-completion/completions/microseed"
    )]
    Completions { shell: clap_complete::Shell },
    /// The machine names of a cluster file, one a line, for the completion
    /// scripts' `--machine` (nothing, quietly, for a file that does not
    /// validate).
    #[command(hide = true)]
    CompleteMachines { cluster: PathBuf },
}

#[derive(Subcommand)]
enum IsoCommand {
    /// Download and verify each release's installer ISO into the cache.
    #[command(
        after_help = "Examples:\n  microseed iso fetch --release 20.04        # on a laptop, before going to the rack\n  microseed iso fetch --offline              # re-verify the cache, no network\n\nA pinned release is checked against the digest in its profile; an unpinned one\nagainst SHA256SUMS after gpgv verifies SHA256SUMS.gpg with Ubuntu's key."
    )]
    Fetch {
        /// Release to fetch (repeatable; default: every release profile).
        #[arg(long = "release", value_name = "R", value_parser = commands::ReleaseName)]
        releases: Vec<String>,
        /// Where ISOs are cached.
        #[arg(long, value_name = "DIR", env = "MICROSEED_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        #[command(flatten)]
        p: ProfilesFlag,
        #[command(flatten)]
        j: JsonFlag,
        #[command(flatten)]
        o: OfflineFlag,
    },
    /// List the cache: each ISO re-hashed, verified or not, its size.
    #[command(after_help = "Examples:\n  microseed iso list\n  microseed iso list --json")]
    List {
        /// Where ISOs are cached.
        #[arg(long, value_name = "DIR", env = "MICROSEED_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        #[command(flatten)]
        p: ProfilesFlag,
        #[command(flatten)]
        j: JsonFlag,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A flag counts whether it came before the subcommand or after it.
    let top = (
        cli.profiles,
        cli.templates,
        cli.strict,
        cli.json,
        cli.offline,
    );
    let src =
        |p: Option<ProfilesFlag>, t: Option<TemplatesFlag>, s: Option<StrictFlag>| GlobalOptions {
            profiles: p.and_then(|p| p.profiles).or(top.0.clone()),
            templates: t.and_then(|t| t.templates).or(top.1.clone()),
            strict: top.2 || s.is_some_and(|s| s.strict),
        };
    let json_of = |j: &JsonFlag| top.3 || j.json;
    let offline_of = |o: &OfflineFlag| top.4 || o.offline;
    let mut json = top.3;
    let result = match cli.command {
        Command::Init { args, p, j } => {
            json = json_of(&j);
            let src = src(Some(p), None, None);
            microseed::init::init(&args, src.profiles.as_deref(), json)
        }
        Command::Check { cluster, p, s, j } => {
            json = json_of(&j);
            commands::check(&cluster, &src(Some(p), None, Some(s)), json)
        }
        Command::Build { mut args, f } => {
            json = json_of(&f.j);
            args.offline = offline_of(&f.o);
            commands::build(&src(Some(f.p), Some(f.t), Some(f.s)), &args, json)
        }
        Command::Iso(IsoCommand::Fetch {
            releases,
            cache_dir,
            p,
            j,
            o,
        }) => {
            json = json_of(&j);
            let offline = offline_of(&o);
            commands::iso_fetch(
                &src(Some(p), None, None),
                &releases,
                cache_dir.as_deref(),
                offline,
                json,
            )
        }
        Command::Iso(IsoCommand::List { cache_dir, p, j }) => {
            json = json_of(&j);
            commands::iso_list(&src(Some(p), None, None), cache_dir.as_deref(), json)
        }
        Command::Serve { dir, bind, j } => {
            json = json_of(&j);
            commands::serve(&dir, &bind, json)
        }
        Command::Verify { out, j } => {
            json = json_of(&j);
            commands::verify(&out, json)
        }
        Command::Flash { mut args, f } => {
            json = json_of(&f.j);
            args.offline = offline_of(&f.o);
            commands::flash(&src(Some(f.p), Some(f.t), Some(f.s)), &args, json)
        }
        // status exists to reach the machines over ssh: --offline cannot
        // mean anything for it, and ignoring the flag would surprise. Only
        // the form before the subcommand reaches here; `status --offline`
        // is not one of status's flags at all.
        Command::Status { .. } if top.4 => Err(microseed::diag::option_error(
            "--offline",
            "status reaches every machine over ssh, which is network use; \
             --offline applies to downloads (build, flash, iso fetch)",
        )),
        Command::Status { args, p, s, j } => {
            json = json_of(&j);
            match microseed::status::run(&src(Some(p), None, Some(s)), &args, json) {
                Ok(0) => Ok(()),
                Ok(code) => return ExitCode::from(code),
                Err(e) => Err(e),
            }
        }
        Command::Render {
            cluster,
            machine,
            document,
            target,
            p,
            t,
            s,
            j,
        } => {
            json = json_of(&j);
            let src = src(Some(p), Some(t), Some(s));
            commands::render(&cluster, &src, &machine, &document, target, json)
        }
        Command::Discover { args, p, j } => {
            json = json_of(&j);
            let src = src(Some(p), None, None);
            microseed::discover::run(&args, src.profiles.as_deref(), json)
        }
        Command::Completions { shell } => commands::completions(shell, &mut Cli::command()),
        Command::CompleteMachines { cluster } => commands::complete_machines(&cluster),
    };
    commands::exit(result, json)
}
