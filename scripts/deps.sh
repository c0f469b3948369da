# SPDX-License-Identifier: MIT
# Sourced by scripts/demo and scripts/test: install the Debian packages that are
# missing, saying so; never touch what is already there.

# ensure_packages PACKAGE:PROBE ...   PROBE is a command name, or pc:NAME for a pkg-config module
ensure_packages() {
    missing=""
    for spec in "$@"; do
        pkg=${spec%%:*}
        probe=${spec#*:}
        case "$probe" in
            pc:*) pkg-config --exists "${probe#pc:}" 2>/dev/null && continue ;;
            file:*) [ -e "${probe#file:}" ] && continue ;;
            *) command -v "$probe" >/dev/null 2>&1 && continue ;;
        esac
        missing="$missing $pkg"
    done
    [ -z "$missing" ] && return 0
    echo "==> installing missing packages:$missing"
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=sudo
        else
            echo "error: need root to run: apt-get install -y$missing" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    ${SUDO:-} apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    ${SUDO:-} apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

BUILD_PACKAGES="meson:meson ninja-build:ninja pkg-config:pkg-config gcc:gcc libc6-dev:file:/usr/include/stdio.h python3:python3"
