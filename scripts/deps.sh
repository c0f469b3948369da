# SPDX-License-Identifier: MIT
# Sourced by scripts/demo and scripts/test: install the Debian packages that are
# missing, saying so; never touch what is already there.

# installed PACKAGE[:COMMAND]: a command on PATH counts (a meson from pip, say);
# without one, dpkg decides.
installed() {
    case "$1" in
        *:*) command -v "${1#*:}" >/dev/null 2>&1 ;;
        *) dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" ;;
    esac
}

ensure_packages() {
    missing=""
    for spec in "$@"; do
        installed "$spec" || missing="$missing ${spec%%:*}"
    done
    [ -z "$missing" ] && return 0
    echo "==> installing missing packages:$missing"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=sudo
        else
            echo "error: need root to run: apt-get install -y$missing" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# libssl-dev: TLS (meson option tls, auto); openssl: the TLS tests make their certificates.
BUILD_PACKAGES="meson:meson ninja-build:ninja pkg-config:pkg-config gcc:gcc libc6-dev python3:python3
    libssl-dev openssl:openssl liburing-dev"
