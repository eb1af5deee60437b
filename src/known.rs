//! What already exists on the machines microseed installs, as data the
//! cluster file is checked against: the system's own accounts and
//! directories (which a cluster value must not take over), the locales glibc
//! can build and the MicroK8s add-on names. The lists are text files in
//! `src/known/`, each saying where it comes from; `validate` asks here and
//! turns a refusal into an error or a warning at the value's place.
//! `docs/input-checks.md` says what is refused and why.

use std::collections::HashSet;
use std::sync::OnceLock;

const SYSTEM_ACCOUNTS: &str = include_str!("known/system-accounts.txt");
const LOCALES: &str = include_str!("known/locales.txt");
const ADDONS: &str = include_str!("known/microk8s-addons.txt");

/// The words of a data file, comments (`#` lines) left out.
fn words(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
}

fn set(
    cell: &'static OnceLock<HashSet<&'static str>>,
    text: &'static str,
) -> &'static HashSet<&'static str> {
    cell.get_or_init(|| words(text).collect())
}

/// Why `name` cannot be the admin's user name, when it cannot: a user or
/// group the installed system already has.
pub fn system_account(name: &str) -> Option<&'static str> {
    static CELL: OnceLock<HashSet<&'static str>> = OnceLock::new();
    set(&CELL, SYSTEM_ACCOUNTS).contains(name).then_some(
        "a user or group the installed Ubuntu system already has (a system account \
         or a service's group): cloud-init could not create the admin under that name, \
         or would hand the login to an account a service owns",
    )
}

/// Whether glibc can make `locale` (as the installer's and cloud-init's
/// `locale-gen` must): a name from `SUPPORTED` as written (`aa_DJ`,
/// `en_US.UTF-8`, `aa_ER@saaho`), or a listed name with its listed charset
/// added (`aa_ER.UTF-8`, `aa_ER.UTF-8@saaho`; `utf8` for `UTF-8`).
pub fn locale_exists(locale: &str) -> bool {
    static CELL: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    let table = CELL.get_or_init(|| {
        LOCALES
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .collect()
    });
    // `en_US.UTF-8@mod` -> (`en_US`, Some(`utf8`), Some(`mod`)).
    fn parts(l: &str) -> (&str, Option<String>, Option<&str>) {
        let (head, modifier) = match l.split_once('@') {
            Some((h, m)) => (h, Some(m)),
            None => (l, None),
        };
        match head.split_once('.') {
            Some((b, c)) => (b, Some(c.to_ascii_lowercase().replace('-', "")), modifier),
            None => (head, None, modifier),
        }
    }
    let (base, charset, modifier) = parts(locale);
    table.iter().any(|&(name, cs)| {
        if name == locale {
            return true;
        }
        let Some(charset) = &charset else {
            return false;
        };
        // A listed name with or without its charset (`en_GB.UTF-8 UTF-8`,
        // `aa_ER UTF-8`): the charset written must be the listed one.
        let (b, c, m) = parts(name);
        let listed = c.unwrap_or_else(|| cs.to_ascii_lowercase().replace('-', ""));
        b == base && m == modifier && listed == *charset
    })
}

/// Locale names to suggest for a misspelt one (the common UTF-8 forms).
pub fn locale_names() -> Vec<&'static str> {
    LOCALES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' ').map(|(n, _)| n))
        .collect()
}

/// Whether `name` is an add-on some MicroK8s track or add-on repository has.
pub fn addon_known(name: &str) -> bool {
    static CELL: OnceLock<HashSet<&'static str>> = OnceLock::new();
    set(&CELL, ADDONS).contains(name)
}

/// Every known add-on name, for a "did you mean".
pub fn addon_names() -> Vec<&'static str> {
    words(ADDONS).collect()
}

/// Top-level directories of an Ubuntu system (the FHS's and Ubuntu's own):
/// each holds more than one cluster's data, so none is an export root.
const TOP_LEVEL: &[&str] = &[
    "bin",
    "boot",
    "cdrom",
    "dev",
    "etc",
    "home",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "lost+found",
    "media",
    "mnt",
    "opt",
    "proc",
    "root",
    "run",
    "sbin",
    "snap",
    "srv",
    "sys",
    "tmp",
    "usr",
    "var",
];

/// Trees the system owns as a whole: the operating system's files, kernel
/// interfaces, root's home, and the state packages keep under /var. Nothing
/// at or beneath them is an export root. /var's other children (/var/nfs),
/// /srv/NAME, /mnt/NAME, /media/NAME, /opt/NAME and /home/NAME (but the
/// admin's own home) are left to the user.
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/lost+found",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/sys",
    "/tmp",
    "/usr",
    "/var/backups",
    "/var/cache",
    "/var/crash",
    "/var/lib",
    "/var/local",
    "/var/lock",
    "/var/log",
    "/var/mail",
    "/var/opt",
    "/var/run",
    "/var/snap",
    "/var/spool",
    "/var/tmp",
];

/// Why `path` (absolute) cannot be the NFS export root, when it cannot: the
/// NFS server hands it to the chart's uid and gid (`chown -R`), exports it
/// read-write to the subnet, and with `data_volume` mounts an empty volume
/// over it. `admin` is the admin's user name (its home holds `~/.ssh`).
pub fn system_directory(path: &str, admin: &str) -> Option<String> {
    // As the kernel reads it: `//etc/` is /etc.
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let norm = format!("/{}", parts.join("/"));
    if parts.is_empty() {
        return Some("the root directory, which holds the whole system".into());
    }
    if let Some(tree) = SYSTEM_TREES
        .iter()
        .find(|t| norm == **t || norm.starts_with(&format!("{t}/")))
    {
        return Some(if norm == *tree {
            "a directory the system owns".to_string()
        } else {
            format!("inside {tree}, which the system owns")
        });
    }
    if parts.len() == 1 && TOP_LEVEL.contains(&parts[0]) {
        return Some(
            "a top-level system directory, which holds more than the cluster's data".into(),
        );
    }
    if parts.len() == 2 && parts[0] == "home" && parts[1] == admin {
        return Some("the admin's home directory (its ~/.ssh would be exported read-write)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_directories_and_their_ancestors_are_refused_and_data_directories_are_not() {
        for p in [
            "/",
            "//",
            "/etc",
            "//etc/",
            "/etc/nfs",
            "/usr",
            "/usr/local/data",
            "/proc",
            "/var",
            "/var/lib",
            "/var/lib/data",
            "/var/snap/microk8s",
            "/home",
            "/home/ubuntu",
            "/root",
            "/boot",
            "/srv",
            "/opt",
            "/tmp/x",
            "/run/data",
            "/sys",
            "/dev/shm",
        ] {
            assert!(
                system_directory(p, "ubuntu").is_some(),
                "{p} must be refused"
            );
        }
        for p in [
            "/data",
            "/data/prysm",
            "/srv/nfs",
            "/var/nfs",
            "/mnt/data",
            "/home/eth",
            "/opt/eth",
            "/export",
            "/ubuntu/home",
        ] {
            assert_eq!(system_directory(p, "ubuntu"), None, "{p} must be accepted");
        }
    }

    #[test]
    fn locales_are_glibcs_names_with_or_without_their_charset() {
        for l in [
            "en_US.UTF-8",
            "en_US.utf8",
            "C.UTF-8",
            "C",
            "POSIX",
            "de_DE.UTF-8",
            "de_DE",
            "de_DE@euro",
            "aa_ER.UTF-8@saaho",
            "nb_NO.UTF-8",
        ] {
            assert!(locale_exists(l), "{l}");
        }
        for l in [
            "xx_YY.UTF-8",
            "en_US.UTF-9",
            "en_XX",
            "english",
            "de_DE.ISO-8859-1@foo",
        ] {
            assert!(!locale_exists(l), "{l}");
        }
    }

    #[test]
    fn system_accounts_include_base_passwd_and_the_services_ubuntu_adds() {
        for n in [
            "root", "daemon", "nobody", "sshd", "microk8s", "sudo", "syslog", "_chrony",
        ] {
            assert!(system_account(n).is_some(), "{n}");
        }
        for n in ["ubuntu", "eth", "admin", "staker"] {
            assert_eq!(system_account(n), None, "{n}");
        }
    }

    #[test]
    fn the_guides_add_ons_are_known() {
        assert!(addon_known("dns") && addon_known("helm3") && addon_known("metallb"));
        assert!(!addon_known("dnss") && !addon_known("helm4"));
    }
}
