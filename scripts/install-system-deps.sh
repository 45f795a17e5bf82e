#!/usr/bin/env bash
# Installs what londiste-rs needs from Debian when it is missing: PostgreSQL server programs,
# python3-venv, and the Rust lint components. Safe to re-run; does nothing when all is there.
set -euo pipefail

need_apt=()
have_pg_server() {
    [ -n "${PGBIN:-}" ] && [ -x "$PGBIN/initdb" ] && return 0
    command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_pg_server || need_apt+=(postgresql-15)
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

if command -v rustup >/dev/null; then
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
fi
