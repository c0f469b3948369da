#!/bin/sh
# SPDX-License-Identifier: MIT
# The manual pages, as a user gets them: install the build into an empty root
# (meson install --destdir), then check that every function the installed
# library exports and every installed program has a page, that man(1) shows
# each, and that mandoc -Tlint and groff -ww find nothing to warn about.
set -eu
build=$1
root=$(mktemp -d "${TMPDIR:-/tmp}/sk-man.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM
fail() { echo "FAIL: $*"; exit 1; }

meson install -C "$build" --no-rebuild --destdir "$root" >"$root/install.log" 2>&1 ||
    { cat "$root/install.log"; fail "meson install --destdir"; }
man3=$(find "$root" -type d -name man3 -path '*/share/man/*')
[ -n "$man3" ] || fail "no man3 directory installed"
mandir=$(dirname "$man3")
lib=$(find "$root" -name 'libsockkit.so.*' -type f | head -n 1)
[ -n "$lib" ] || fail "no libsockkit.so installed"

# man -M MANDIR SECTION NAME shows the page, with its name at the top
# (what man says on stderr, a locale warning say, is not the page)
show() { # SECTION NAME
    out=$(MANPAGER=cat MANWIDTH=80 man -M "$mandir" "$1" "$2" 2>"$root/man.err") ||
        fail "man -M $mandir $1 $2: $(cat "$root/man.err")"
    echo "$out" | head -n 1 | grep -qi "^$2($1)" || fail "man $1 $2 shows: $(echo "$out" | head -n 1)"
    echo "$out" | grep -q "^NAME" || fail "man $1 $2 has no NAME section"
}

functions=$(nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' |
    grep '^sk_' | sort -u)
[ "$(echo "$functions" | wc -l)" -ge 100 ] || fail "only $(echo "$functions" | wc -l) exported functions found"
for f in $functions; do
    [ -f "$mandir/man3/$f.3" ] || fail "exported function $f has no page (man3/$f.3)"
    show 3 "$f"
done
programs=0
for p in $(find "$root" -type f -path '*/bin/*'); do
    name=$(basename "$p")
    [ -f "$mandir/man1/$name.1" ] || fail "installed program $name has no page (man1/$name.1)"
    show 1 "$name"
    programs=$((programs + 1))
done
show 7 sockkit

# every page lints clean
pages=$(find "$mandir" -type f -name '*.[137]')
for page in $pages; do
    warnings=$(groff -ww -z -man "$page" 2>&1) || fail "groff fails on $page: $warnings"
    [ -z "$warnings" ] || fail "groff -ww: $warnings"
done
if command -v mandoc >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    warnings=$(mandoc -Tlint -W warning $pages 2>&1 || true) # exit 2 on a warning: the text says
    [ -z "$warnings" ] || fail "mandoc -Tlint: $warnings"
    linted="mandoc -Tlint and groff -ww"
else
    linted="groff -ww (mandoc -Tlint SKIPPED: no mandoc; apt-get install mandoc)"
fi
echo "$(echo "$functions" | wc -l) function pages, $programs program pages and sockkit(7):" \
    "shown by man, clean under $linted"
