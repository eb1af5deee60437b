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
    #[arg(long, global = true, value_name = "DIR")]
    profiles: Option<PathBuf>,
    /// Read templates from DIR, falling back to the built-in ones.
    #[arg(long, global = true, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Treat warnings (such as a group-readable secrets file) as errors.
    #[arg(long, global = true)]
    strict: bool,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Make any download an error: the installer ISO must already be in the
    /// cache (see `microseed iso fetch`). `status`, which needs ssh to the
    /// machines, refuses it.
    #[arg(long, global = true)]
    offline: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create DIR/cluster.yaml (the staking guide's network) and DIR/secrets.yaml.
    #[command(
        after_help = "Examples:\n  microseed init mycluster --ssh-key ~/.ssh/id_ed25519.pub\n  microseed init mycluster --release 24.04    # that release's MicroK8s channel too"
    )]
    Init(microseed::init::InitArgs),
    /// Validate a cluster file (and its secrets file, when present).
    #[command(after_help = "Example:\n  microseed check mycluster/cluster.yaml")]
    Check { cluster: PathBuf },
    /// Build every machine's seed into OUT, replacing it atomically.
    #[command(
        after_help = "Examples:\n  microseed build mycluster/cluster.yaml -o out\n  microseed build mycluster/cluster.yaml -o out --machine worker-1 --machine worker-2\n  microseed build mycluster/cluster.yaml -o vms --target cloud-image\n  microseed build mycluster/cluster.yaml -o out --format dir,pxe --pxe-url http://172.20.10.5:8080\n  microseed build mycluster/cluster.yaml -o out --check   # exit 1 if out has drifted\n  microseed build mycluster/cluster.yaml -o out --format installer --iso ubuntu-20.04.6-live-server-amd64.iso"
    )]
    Build(commands::BuildArgs),
    /// Serve DIR (usually OUT/pxe) read-only over HTTP for netbooting.
    #[command(
        after_help = "Examples:\n  microseed serve out/pxe\n  microseed serve out/pxe --bind 172.20.10.5:8080\n\nOne log line per request on stderr: <client-ip> <method> <path> <status> <bytes> [machine=<name>]."
    )]
    Serve {
        dir: PathBuf,
        /// Address and port to listen on (port 0 picks a free one).
        #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:8080")]
        bind: String,
    },
    /// Re-hash every file OUT/SHA256SUMS lists; name changed, missing and unlisted files.
    #[command(
        after_help = "Examples:\n  microseed verify out\n  microseed verify /media/usb --json\n\nExit codes: 0 all files match, 1 any file changed, missing or unlisted."
    )]
    Verify { out: PathBuf },
    /// Write a machine's installer (or seed image) to a USB stick or SD card, then read it back.
    #[command(
        after_help = "Examples:\n  microseed flash --list\n  microseed flash out/worker-1 /dev/sdb\n  microseed flash mycluster/cluster.yaml /dev/sdb --machine worker-1   # streamed from the cached ISO\n  microseed flash out/worker-1 /dev/sdc --format seed-img --yes\n\nOnly a whole, removable, unmounted disk is accepted; a fixed disk needs --force\nand its name typed at the terminal. Exit codes: 0 written and verified (\"safe to\nremove\"), 1 refused, failed or interrupted, 2 invalid input."
    )]
    Flash(commands::FlashArgs),
    /// Ask every machine over ssh whether its first boot converged.
    #[command(after_help = STATUS_HELP)]
    Status(microseed::status::StatusArgs),
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
    },
    /// Fill and inspect the installer ISO cache (for offline rebuilds).
    #[command(subcommand)]
    Iso(IsoCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  microseed completions bash > ~/.local/share/bash-completion/completions/microseed"
    )]
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum IsoCommand {
    /// Download and verify each release's installer ISO into the cache.
    #[command(
        after_help = "Examples:\n  microseed iso fetch --release 20.04        # on a laptop, before going to the rack\n  microseed iso fetch --offline              # re-verify the cache, no network\n\nA pinned release is checked against the digest in its profile; an unpinned one\nagainst SHA256SUMS after gpgv verifies SHA256SUMS.gpg with Ubuntu's key."
    )]
    Fetch {
        /// Release to fetch (repeatable; default: every release profile).
        #[arg(long = "release", value_name = "R")]
        releases: Vec<String>,
        /// Where ISOs are cached.
        #[arg(long, value_name = "DIR", env = "MICROSEED_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// List the cache: each ISO re-hashed, verified or not, its size.
    #[command(after_help = "Examples:\n  microseed iso list\n  microseed iso list --json")]
    List {
        /// Where ISOs are cached.
        #[arg(long, value_name = "DIR", env = "MICROSEED_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let src = GlobalOptions {
        profiles: cli.profiles,
        templates: cli.templates,
        strict: cli.strict,
    };
    let json = cli.json;
    let offline = cli.offline;
    let result = match cli.command {
        Command::Init(args) => microseed::init::init(&args, src.profiles.as_deref(), json),
        Command::Check { cluster } => commands::check(&cluster, &src, json),
        Command::Build(mut args) => {
            args.offline = offline;
            commands::build(&src, &args, json)
        }
        Command::Iso(IsoCommand::Fetch {
            releases,
            cache_dir,
        }) => commands::iso_fetch(&src, &releases, cache_dir.as_deref(), offline, json),
        Command::Iso(IsoCommand::List { cache_dir }) => {
            commands::iso_list(&src, cache_dir.as_deref(), json)
        }
        Command::Serve { dir, bind } => commands::serve(&dir, &bind, json),
        Command::Verify { out } => commands::verify(&out, json),
        Command::Flash(mut args) => {
            args.offline = offline;
            commands::flash(&src, &args, json)
        }
        // status exists to reach the machines over ssh: --offline cannot
        // mean anything for it, and ignoring the flag would surprise.
        Command::Status(_) if offline => Err(microseed::diag::option_error(
            "--offline",
            "status reaches every machine over ssh, which is network use; \
             --offline applies to downloads (build, flash, iso fetch)",
        )),
        Command::Status(args) => match microseed::status::run(&src, &args, json) {
            Ok(0) => Ok(()),
            Ok(code) => return ExitCode::from(code),
            Err(e) => Err(e),
        },
        Command::Render {
            cluster,
            machine,
            document,
            target,
        } => commands::render(&cluster, &src, &machine, &document, target),
        Command::Completions { shell } => commands::completions(shell, &mut Cli::command()),
    };
    commands::exit(result, json)
}
