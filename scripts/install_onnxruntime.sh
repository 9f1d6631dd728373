#!/usr/bin/env bash
# Installs the onnxruntime shared library that cvedge's optional onnxruntime engine loads at run
# time (cvedge links nothing at build time; without the library cvedge runs on its built-in tract
# engine). Needs only bash, curl, GNU tar and coreutils: no Node.js, no Python, no compiler.
#
#   scripts/install_onnxruntime.sh [PREFIX]     (or PREFIX=... in the environment)
#
# Installs PREFIX/lib/cvedge/libonnxruntime.so.1 (a regular file). PREFIX defaults to /usr/local
# when run as root, else $HOME/.local. Re-running with the library already in place does nothing.
#
# Where the library comes from: Microsoft's npm package onnxruntime-node ships the plain C-API
# libonnxruntime.so.1 for Linux x64 and arm64 (bin/napi-v6/linux/{x64,arm64}/, regular files, no
# symlinks). The version is pinned to 1.30.0 because cvedge's `ort` crate is built against C API
# 30; the tarball is checked against the registry's sha512 `dist.integrity` and the extracted
# library against its own sha256, both pinned below, so a changed download fails loudly.
# There is no 32-bit ARM (armv6l/armv7l, 32-bit Raspberry Pi OS) build: there the script says so
# and exits 0, and cvedge keeps using tract.
#
# glibc: both libraries need at most GLIBC_2.28 and GLIBCXX_3.4.22 (checked with
# `objdump -T libonnxruntime.so.1 | grep -o 'GLIBC_[0-9.]*' | sort -uV`): Debian 10 / Raspberry
# Pi OS Buster or newer, Ubuntu 18.10 or newer.
#
# CVEDGE_ORT_ARCH=x64|arm64 installs that architecture's library instead of this machine's (e.g.
# into a Raspberry Pi's mounted root file system: CVEDGE_ORT_ARCH=arm64 ... /mnt/rootfs/usr/local).
set -euo pipefail

VERSION=1.30.0
URL="https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-$VERSION.tgz"
# https://registry.npmjs.org/onnxruntime-node/1.30.0 -> dist.integrity (113,507,888 bytes)
INTEGRITY="sha512-twhs1C2C/BFkz1yc5OY0KIU2GUq6DURO7hD4bx5Q2Qy3nAMJwRXW8xU3NVczE29VA9lolLOYepoD8fjTGOfIqw=="
SHA256_x64=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
SHA256_arm64=1f549d46250b005580b597f4164984aaf75b3bcb9f3aeb07c7f8a8fe60b23c76
GLIBC_MIN=2.28

die() { echo "install_onnxruntime: error: $*" >&2; exit 1; }

case "${1:-}" in
  -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
if [ "$(id -u)" = 0 ]; then default_prefix=/usr/local; else default_prefix="$HOME/.local"; fi
PREFIX="${1:-${PREFIX:-$default_prefix}}"
DEST_DIR="$PREFIX/lib/cvedge"
DEST="$DEST_DIR/libonnxruntime.so.1"

# Architecture: the userland's, not just the kernel's (a 64-bit kernel can run 32-bit Raspberry
# Pi OS, where uname -m says aarch64 but a 64-bit library cannot be loaded).
if [ -n "${CVEDGE_ORT_ARCH:-}" ]; then
  arch="$CVEDGE_ORT_ARCH"
  case "$arch" in x64|arm64) ;; *) die "CVEDGE_ORT_ARCH=$arch: use x64 or arm64" ;; esac
  cross=1
else
  cross=0
  machine="$(uname -m)"
  bits="$(getconf LONG_BIT 2>/dev/null || echo 64)"
  case "$machine" in
    x86_64|amd64) arch=x64 ;;
    aarch64|arm64) arch=arm64 ;;
    armv6l|armv7l|armv8l|armhf|arm) arch=arm32 ;;
    *) die "unsupported machine '$machine': onnxruntime-node $VERSION has Linux libraries for x86_64 and aarch64 only; cvedge's built-in tract engine needs nothing installed" ;;
  esac
  what="$machine"
  if [ "$arch" = arm64 ] && [ "$bits" = 32 ]; then arch=arm32; what="$machine kernel, 32-bit userland"; fi
  if [ "$arch" = arm32 ]; then
    echo "onnxruntime has no 32-bit ARM build ($what): nothing installed."
    echo "cvedge uses its built-in tract engine here, which needs no library. (A 64-bit OS, e.g."
    echo "64-bit Raspberry Pi OS on a Pi 3/4/5/Zero 2, can run the onnxruntime engine.)"
    exit 0
  fi
  [ "$(uname -s)" = Linux ] || die "this script installs the Linux library; this is $(uname -s)"
fi
expected_sha256="SHA256_$arch"; expected_sha256="${!expected_sha256}"

# Already installed? (the very same file: compared by content, so a different build is replaced)
if [ -f "$DEST" ] && [ "$(sha256sum "$DEST" | cut -d' ' -f1)" = "$expected_sha256" ]; then
  echo "onnxruntime $VERSION ($arch) is already installed: $DEST (nothing to do)"
  exit 0
fi

if [ "$cross" = 0 ]; then
  glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')" || true
  [ -n "$glibc" ] || die "no glibc found (musl? Alpine?): the onnxruntime library needs glibc >= $GLIBC_MIN; cvedge's tract engine works without it"
  if [ "$(printf '%s\n%s\n' "$GLIBC_MIN" "$glibc" | sort -V | head -1)" != "$GLIBC_MIN" ]; then
    die "glibc $glibc is too old: onnxruntime $VERSION needs glibc >= $GLIBC_MIN (Debian 10 / Raspberry Pi OS Buster or newer); cvedge's tract engine works without it"
  fi
fi
for tool in curl tar sha256sum sha512sum base64 od; do
  command -v "$tool" >/dev/null || die "'$tool' is needed (Debian / Raspberry Pi OS: sudo apt-get install curl tar coreutils)"
done
mkdir -p "$DEST_DIR" 2>/dev/null && [ -w "$DEST_DIR" ] \
  || die "cannot write to $DEST_DIR: run as root (sudo $0) or give a PREFIX you own, e.g. $0 \$HOME/.local"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/cvedge-ort.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "downloading onnxruntime-node $VERSION (about 110 MB) from registry.npmjs.org ..."
curl --fail --location --show-error --silent --retry 3 --output "$tmp/ort.tgz" "$URL" \
  || die "download failed: $URL"

# npm's integrity is "sha512-" + base64 of the raw digest; compare it as hex (coreutils only).
want="$(printf '%s' "${INTEGRITY#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')"
got="$(sha512sum "$tmp/ort.tgz" | cut -d' ' -f1)"
if [ "$got" != "$want" ]; then
  die "the download does not match the pinned integrity of onnxruntime-node $VERSION (expected sha512 $want, got $got): not installed"
fi

tar -xzf "$tmp/ort.tgz" -C "$tmp" --wildcards "package/bin/napi-v*/linux/$arch/libonnxruntime.so*" \
  || die "the package has no package/bin/napi-v*/linux/$arch/libonnxruntime.so*"
lib="$(find "$tmp/package/bin" -path "*/linux/$arch/libonnxruntime.so.1" | head -1)"
[ -n "$lib" ] || die "the package has no linux/$arch/libonnxruntime.so.1"
# cp -L: should a later package make the .so.1 a symlink to .so.1.x.y, install the real file.
cp -L "$lib" "$tmp/lib"
[ "$(sha256sum "$tmp/lib" | cut -d' ' -f1)" = "$expected_sha256" ] \
  || die "the extracted library's sha256 differs from the pinned $expected_sha256: not installed"

# Atomic replace: a running cvedge keeps its mapped copy of an older file intact.
chmod 0644 "$tmp/lib"
cp "$tmp/lib" "$DEST.tmp.$$"
mv -f "$DEST.tmp.$$" "$DEST"

echo "installed onnxruntime $VERSION ($arch): $DEST"
echo "check it:  cvedge bench --engine onnxruntime --model YOUR_EXPORT --image A_PHOTO.jpg"
case "$PREFIX" in
  /usr/local|"$HOME/.local") ;;
  *) echo "(not a default location: tell cvedge where it is with ORT_DYLIB_PATH=$DEST)" ;;
esac
