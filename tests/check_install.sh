#!/bin/sh
# SPDX-License-Identifier: MIT
# Install into a temporary prefix, then build consumers the way users do:
# with pkg-config only (shared and static), as a meson subproject, and with
# CMake's find_package().
set -eu
src=$(cd "$1" && pwd)
cc=${CC:-cc}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sk-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

quiet() { "$@" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }; }

quiet meson setup "$tmp/build" "$src" --prefix="$tmp/prefix" -Ddefault_library=both \
    -Dtests=false -Dexamples=false -Ddocs=disabled
quiet meson install -C "$tmp/build"

pc=$(find "$tmp/prefix" -name sockkit.pc)
[ -n "$pc" ] || { echo "FAIL: no sockkit.pc installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"
for h in sockkit.h common.h version.h error.h addr.h socket.h io.h server.h backend.h; do
    [ -f "$tmp/prefix/include/sockkit/$h" ] || { echo "FAIL: include/sockkit/$h not installed"; exit 1; }
done

cat >"$tmp/prog.c" <<'PROG'
#include <sockkit/sockkit.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void)
{
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    if (l < 0) { fprintf(stderr, "listen: %s\n", sk_strerror(l)); return 1; }
    char addr[SK_ADDR_STRLEN];
    sk_local_addr(l, addr, sizeof(addr));
    int c = sk_connect(addr, 1000), s = sk_accept(l, NULL);
    char buf[5] = {0};
    if (c < 0 || s < 0 || sk_write_all(c, "hello", 5, 1000) != 5 ||
        sk_read_full(s, buf, 5, 1000) != 5 || memcmp(buf, "hello", 5) != 0)
        return 1;
    if (strcmp(sk_version(), PROG_VERSION) != 0) return 2;
    printf("ok %s\n", sk_version());
    return 0;
}
PROG
version=$(pkg-config --modversion sockkit)

# shared, with nothing but pkg-config (the .pc carries an rpath for this non-system prefix)
"$cc" -DPROG_VERSION="\"$version\"" "$tmp/prog.c" -o "$tmp/prog" $(pkg-config --cflags --libs sockkit)
"$tmp/prog" | grep -q "^ok $version$" || { echo "FAIL: shared consumer"; exit 1; }
ldd "$tmp/prog" | grep -q "$tmp/prefix/.*libsockkit.so.1" || { echo "FAIL: not linked to the install"; exit 1; }

# static
"$cc" -DPROG_VERSION="\"$version\"" "$tmp/prog.c" -o "$tmp/prog-static" -static-libgcc \
    $(pkg-config --cflags sockkit) "$(dirname "$pc")/../libsockkit.a" $(pkg-config --static --libs-only-other --libs-only-l sockkit | sed 's/-lsockkit//')
"$tmp/prog-static" | grep -q "^ok $version$" || { echo "FAIL: static consumer"; exit 1; }
if ldd "$tmp/prog-static" | grep -q libsockkit; then echo "FAIL: static consumer uses the .so"; exit 1; fi

# as a meson subproject, through meson.override_dependency
mkdir -p "$tmp/consumer/subprojects"
ln -s "$src" "$tmp/consumer/subprojects/sockkit"
cp "$tmp/prog.c" "$tmp/consumer/prog.c"
cat >"$tmp/consumer/meson.build" <<MESON
project('consumer', 'c')
sockkit = dependency('sockkit', fallback: ['sockkit'],
                     default_options: ['tests=false', 'examples=false', 'docs=disabled'])
executable('prog', 'prog.c', dependencies: sockkit, c_args: '-DPROG_VERSION="$version"')
MESON
quiet meson setup "$tmp/consumer/build" "$tmp/consumer" --force-fallback-for=sockkit
quiet meson compile -C "$tmp/consumer/build"
"$tmp/consumer/build/prog" | grep -q "^ok $version$" || { echo "FAIL: subproject consumer"; exit 1; }
# CMake: find_package(sockkit 1.1) and the sockkit::sockkit target; a
# version of another major is refused
if ! command -v cmake >/dev/null 2>&1; then
    echo "install, pkg-config (shared and static) and subproject consumers: ok;" \
        "CMake consumer: SKIPPED, no cmake (apt-get install cmake)"
    exit 0
fi
mkdir -p "$tmp/cmake"
cp "$tmp/prog.c" "$tmp/cmake/prog.c"
cmake_project() { # VERSION-ASKED [CMAKE OPTIONS...]
    cat >"$tmp/cmake/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.13)
project(consumer C)
find_package(sockkit $1 REQUIRED)
add_executable(prog prog.c)
target_compile_definitions(prog PRIVATE PROG_VERSION="$version")
target_link_libraries(prog PRIVATE sockkit::sockkit)
CMAKE
    rm -rf "$tmp/cmake/build"
    shift
    cmake -S "$tmp/cmake" -B "$tmp/cmake/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" "$@" >"$tmp/log" 2>&1
}
cmake_project 1.1 || { cat "$tmp/log"; echo "FAIL: find_package(sockkit 1.1)"; exit 1; }
quiet cmake --build "$tmp/cmake/build"
"$tmp/cmake/build/prog" | grep -q "^ok $version$" || { echo "FAIL: CMake consumer"; exit 1; }
ldd "$tmp/cmake/build/prog" | grep -q "$tmp/prefix/.*libsockkit.so.1" ||
    { echo "FAIL: CMake consumer not linked to the install"; exit 1; }
cmake_project 1.0 || { cat "$tmp/log"; echo "FAIL: find_package(sockkit 1.0) refused"; exit 1; }
if cmake_project 2.0; then echo "FAIL: find_package(sockkit 2.0) accepted $version"; exit 1; fi
if cmake_project 1.99; then echo "FAIL: find_package(sockkit 1.99) accepted $version"; exit 1; fi
# CMake against a static-only install: sockkit::sockkit is libsockkit.a and
# brings the libraries it was built with
quiet meson setup "$tmp/build-static" "$src" --prefix="$tmp/prefix-static" \
    -Ddefault_library=static -Dtests=false -Dexamples=false -Ddocs=disabled -Dman=false
quiet meson install -C "$tmp/build-static"
cmake_project 1.1 -DCMAKE_PREFIX_PATH="$tmp/prefix-static" ||
    { cat "$tmp/log"; echo "FAIL: find_package(sockkit 1.1), static install"; exit 1; }
quiet cmake --build "$tmp/cmake/build"
"$tmp/cmake/build/prog" | grep -q "^ok $version$" || { echo "FAIL: static CMake consumer"; exit 1; }
if ldd "$tmp/cmake/build/prog" | grep -q libsockkit; then
    echo "FAIL: static CMake consumer uses a libsockkit.so"; exit 1
fi
echo "install, pkg-config (shared and static), subproject and CMake (shared and static) consumers: ok"
