# shellcheck shell=bash
# Shared helpers for microseed's test scripts (sourced, never executed).
#
#   ms_log / ms_warn / ms_die   messages on stderr, prefixed with the script name
#   ms_cache_dir                ${MICROSEED_TEST_CACHE:-/var/cache/microseed-test}
#   ms_mirror                   Debian mirror URI read from the machine's apt sources
#   ms_need_root                fail unless root
#   ms_apt_deps FILE...         install missing host packages listed in FILE(s)
#   ms_timeout SECS CMD...      run CMD with a hard bound (TERM, then KILL 15 s later)
#   ms_tied CMD...              run CMD so that it dies with this shell
#   ms_recipe_hash FILE...      sha256 over the given files (the build recipe)
#   ms_cache_fresh DIR FILE...  true if DIR exists with a matching recipe hash
#   ms_cache_stamp DIR FILE...  record the recipe hash beside DIR (DIR.recipe-sha256)
#   ms_lock NAME [--shared]     lock (fd 9) $(ms_cache_dir)/.NAME.lock: exclusive to
#                               build, shared to use; ms_unlock releases it
#   ms_on_exit CMD              push a cleanup command (run in reverse order on EXIT)

if [[ -n "${MS_COMMON_SOURCED:-}" ]]; then
    return 0
fi
MS_COMMON_SOURCED=1

# scripts/lib (sourced helpers); its parent holds recipes/, vm/ and checks/.
MS_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MS_SCRIPTS_DIR="$(cd "$MS_LIB_DIR/.." && pwd)"
MS_REPO_DIR="$(cd "$MS_SCRIPTS_DIR/.." && pwd)"
MS_PROG="$(basename "${0:-microseed-test}")"
export MS_LIB_DIR MS_SCRIPTS_DIR MS_REPO_DIR

ms_log() { printf '%s: %s\n' "$MS_PROG" "$*" >&2; }
ms_warn() { printf '%s: warning: %s\n' "$MS_PROG" "$*" >&2; }
ms_die() {
    printf '%s: error: %s\n' "$MS_PROG" "$*" >&2
    exit 1
}

ms_need_root() {
    [[ "$(id -u)" -eq 0 ]] || ms_die "must run as root (namespaces, loop devices, chroots)"
}

ms_cache_dir() {
    local d="${MICROSEED_TEST_CACHE:-/var/cache/microseed-test}"
    mkdir -p "$d"
    printf '%s\n' "$d"
}

# Print the first non-security Debian mirror URI named by the machine's apt
# sources (deb822 files first, then one-line sources.list files).
ms_mirror() {
    local f uri
    if [[ -n "${MICROSEED_MIRROR:-}" ]]; then
        printf '%s\n' "$MICROSEED_MIRROR"
        return 0
    fi
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        uri="$(awk '
            function flush() {
                if (types ~ /(^|[ \t])deb([ \t]|$)/ && suites !~ /-security/ && uris != "" && enabled != "no") {
                    split(uris, u, /[ \t]+/); print u[1]; found = 1; exit
                }
                types = ""; suites = ""; uris = ""; enabled = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            tolower($1) == "types:"   { $1 = ""; types = $0 }
            tolower($1) == "suites:"  { $1 = ""; suites = $0 }
            tolower($1) == "uris:"    { $1 = ""; sub(/^[ \t]+/, ""); uris = $0 }
            tolower($1) == "enabled:" { enabled = tolower($2) }
            END { if (!found) flush() }
        ' "$f")"
        if [[ -n "$uri" ]]; then
            printf '%s\n' "$uri"
            return 0
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        uri="$(awk '$1 == "deb" && $0 !~ /-security/ {
                   for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i !~ /=/) { print $i; exit }
               }' "$f")"
        if [[ -n "$uri" ]]; then
            printf '%s\n' "$uri"
            return 0
        fi
    done
    ms_die "no Debian mirror found in /etc/apt/sources.list{,.d/*} (set MICROSEED_MIRROR to override)"
}

# Install the host packages listed (one per line, '#' comments) that are missing.
ms_apt_deps() {
    local f pkg missing=()
    for f in "$@"; do
        [[ -r "$f" ]] || ms_die "dependency list $f not found"
        while read -r pkg; do
            pkg="${pkg%%#*}"
            pkg="${pkg//[[:space:]]/}"
            [[ -n "$pkg" ]] || continue
            if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
                missing+=("$pkg")
            fi
        done <"$f"
    done
    if ((${#missing[@]})); then
        ms_log "installing host packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
            ms_die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
            ms_die "could not install host packages: ${missing[*]}"
    fi
}

# ms_timeout SECS CMD...: hard bound; rc 124 means it timed out. Both
# timeout and CMD are tied to their parent (ms_tied): a killed script does
# not leave CMD (a VM, say) running until the bound.
ms_timeout() {
    local secs="$1"
    shift
    ms_tied timeout --kill-after=15 "$secs" setpriv --pdeathsig KILL -- "$@"
}

# ms_tied CMD...: CMD gets SIGKILL when the shell that started it dies, even
# by SIGKILL, when no EXIT trap runs (the kernel's parent-death signal,
# kept across exec; unshare --kill-child passes it on to its child).
ms_tied() {
    setpriv --pdeathsig KILL -- "$@"
}

ms_recipe_hash() {
    cat "$@" | sha256sum | cut -d' ' -f1
}

ms_cache_fresh() {
    local dir="$1"
    shift
    [[ -d "$dir" && -r "$dir.recipe-sha256" ]] || return 1
    [[ "$(cat "$dir.recipe-sha256")" == "$(ms_recipe_hash "$@")" ]]
}

ms_cache_stamp() {
    local dir="$1"
    shift
    ms_recipe_hash "$@" >"$dir.recipe-sha256"
}

ms_lock() {
    local lock mode=-x
    lock="$(ms_cache_dir)/.$1.lock"
    [[ "${2:-}" == --shared ]] && mode=-s
    exec 9>>"$lock"
    if ! flock "$mode" -w 1800 9; then
        ms_die "timed out waiting for lock $lock"
    fi
}
ms_unlock() { flock -u 9 2>/dev/null || true; }

# Cleanup stack: commands run in reverse order on EXIT (and on INT/TERM).
MS_CLEANUPS=()
ms_on_exit() {
    MS_CLEANUPS+=("$1")
}
ms_run_cleanups() {
    local i
    for ((i = ${#MS_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${MS_CLEANUPS[$i]}" || true
    done
    MS_CLEANUPS=()
}
trap 'ms_run_cleanups' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Unmount everything at or below DIR (deepest first). Lazy as a last resort.
ms_umount_tree() {
    local dir="$1" m
    dir="$(realpath -m "$dir")"
    while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r)
}
