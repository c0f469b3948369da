#!/bin/sh
# SPDX-License-Identifier: MIT
# Make the ABI baseline of a release: abi/sockkit-VERSION.abi (a libabigail
# dump of libsockkit.so built from that release's commit) and
# abi/VERSION/include/sockkit/ (its public headers, for the compatibility test).
#
#   abi/make-baseline.sh 1.0.0 5a948c1     # VERSION COMMIT (default COMMIT: HEAD)
#
# Needs git, meson, ninja, gcc and abigail-tools (abidw). See abi/README.md.
set -eu
cd "$(dirname "$0")/.."
version=$1
commit=${2:-HEAD}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sk-abi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

git archive "$commit" | tar -x -C "$tmp"
got=$(sed -n "s/^  version: '\(.*\)',$/\1/p" "$tmp/meson.build")
[ "$got" = "$version" ] || { echo "commit $commit is version $got, not $version" >&2; exit 1; }

# The release build: meson's defaults (debugoptimized: -O2 -g), gcc.
CC=gcc meson setup "$tmp/build" "$tmp" -Dtests=false -Dexamples=false -Dbench=false \
    -Ddocs=disabled >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; exit 1; }
meson compile -C "$tmp/build" >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; exit 1; }

headers=abi/$version/include/sockkit
rm -rf "abi/$version"
mkdir -p "$headers"
cp "$tmp"/include/sockkit/*.h "$tmp/build/include/sockkit/version.h" "$headers/"
abidw --headers-dir "$headers" --drop-private-types --no-corpus-path --no-comp-dir-path \
    --out-file "abi/sockkit-$version.abi" "$tmp/build/lib/libsockkit.so.$version"
echo "abi/sockkit-$version.abi and $headers/ made from $(git rev-parse --short "$commit")"
