#!/usr/bin/env bash
# Packages cvedge binaries as a .deb and a plain tarball per architecture:
#
#   scripts/package.sh                         every binary that exists: target/release (amd64),
#                                              target/aarch64/... (arm64), target/armv7/... (armhf)
#   scripts/package.sh arm64=PATH amd64=PATH   these binaries
#
# Writes $CVEDGE_PACKAGE_DIR (default target/packages)/cvedge_<version>_<arch>.deb and
# cvedge-<version>-<triple>.tar.gz, and VERSION (read by scripts/install.sh). The version is
# Cargo.toml's unless CVEDGE_VERSION is set.
# Needs only dpkg-deb (files are owned by root through --root-owner-group, no fakeroot) and objdump.
#
# The .deb installs /usr/bin/cvedge, /etc/cvedge/cvedge.toml (a conffile: an upgrade keeps the
# admin's edits), the systemd unit, and /usr/share/cvedge/install_onnxruntime.sh (the optional
# engine's library, arm64/amd64 only); postinst makes the `cvedge` system user (in group video)
# and /var/lib/cvedge/{data,iterations}, which nothing ever removes (packaging/debian/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${CVEDGE_PACKAGE_DIR:-$ROOT/target/packages}"
VERSION="${CVEDGE_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}"
[[ "$VERSION" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || { echo "package.sh: '$VERSION' is not a Debian version; set CVEDGE_VERSION to e.g. 0.1.0" >&2; exit 2; }

triple_of() { case "$1" in amd64) echo x86_64-unknown-linux-gnu ;; arm64) echo aarch64-unknown-linux-gnu ;; armhf) echo armv7-unknown-linux-gnueabihf ;; esac; }
# The binutils that read the binary's architecture (strip), from the cross gcc packages.
tool_of() { case "$1" in amd64) echo "$2" ;; arm64) echo "aarch64-linux-gnu-$2" ;; armhf) echo "arm-linux-gnueabihf-$2" ;; esac; }

PAIRS=("$@")
if [ ${#PAIRS[@]} -eq 0 ]; then
  for pair in amd64=target/release/cvedge arm64=target/aarch64/aarch64-unknown-linux-gnu/release/cvedge \
              armhf=target/armv7/armv7-unknown-linux-gnueabihf/release/cvedge; do
    [ -x "${pair#*=}" ] && PAIRS+=("$pair")
  done
  [ ${#PAIRS[@]} -gt 0 ] || { echo "package.sh: no binaries under target/; build them (cargo build --release, cross/build.sh) or name them: scripts/package.sh arm64=PATH" >&2; exit 2; }
fi

mkdir -p "$OUT"
# scripts/install.sh reads the release's version from here.
echo "$VERSION" > "$OUT/VERSION"
for pair in "${PAIRS[@]}"; do
  arch="${pair%%=*}"; bin="${pair#*=}"
  triple="$(triple_of "$arch")"
  [ -n "$triple" ] || { echo "package.sh: unknown architecture '$arch'; use amd64, arm64 or armhf (as ARCH=BINARY)" >&2; exit 2; }
  [ -x "$bin" ] || { echo "package.sh: $bin is not an executable; build it first or name another" >&2; exit 2; }

  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  root="$stage/root"
  install -D -m 0755 "$bin" "$root/usr/bin/cvedge"
  strip_tool="$(tool_of "$arch" strip)"
  # Debug info is most of a binary's size; a Pi's SD card does not need it.
  command -v "$strip_tool" >/dev/null && "$strip_tool" "$root/usr/bin/cvedge"
  install -D -m 0644 cross/cvedge.toml "$root/etc/cvedge/cvedge.toml"
  install -D -m 0644 cross/systemd/cvedge.service "$root/lib/systemd/system/cvedge.service"
  install -D -m 0755 scripts/install_onnxruntime.sh "$root/usr/share/cvedge/install_onnxruntime.sh"
  install -D -m 0644 README.md "$root/usr/share/doc/cvedge/README.md"
  printf 'cvedge\nLicense: MIT\n' > "$stage/copyright"
  install -D -m 0644 "$stage/copyright" "$root/usr/share/doc/cvedge/copyright"

  # libc6 at least the newest GLIBC_ symbol version the binary asks for.
  glibc="$(objdump -T "$root/usr/bin/cvedge" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
  mkdir -p "$root/DEBIAN"
  cat > "$root/DEBIAN/control" <<CONTROL
Package: cvedge
Version: $VERSION
Architecture: $arch
Maintainer: cvedge <cvedge@users.noreply.github.com>
Depends: libc6 (>= $glibc), libgcc-s1, passwd
Recommends: mosquitto-clients
Section: video
Priority: optional
Installed-Size: $(du -sk "$root" --exclude=DEBIAN | cut -f1)
Homepage: https://github.com/cvedge/cvedge
Description: Azure Custom Vision classifier exports on cameras, published over MQTT
 Runs the image classifiers exported from Azure Custom Vision's compact domains (ONNX,
 TensorFlow, TensorFlow Lite) on V4L2 cameras and streams, publishing predictions over MQTT
 (systemd service cvedge, configured in /etc/cvedge/cvedge.toml); also captures training
 data, trains new heads and quantizes on the device.
CONTROL
  echo /etc/cvedge/cvedge.toml > "$root/DEBIAN/conffiles"
  install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
  deb="$OUT/cvedge_${VERSION}_${arch}.deb"
  # CVEDGE_DEB_COMPRESSION="gzip 1" makes a quick package for checks; releases use xz.
  read -r ztype zlevel <<< "${CVEDGE_DEB_COMPRESSION:-xz 6}"
  dpkg-deb --root-owner-group "-Z$ztype" "-z${zlevel:-6}" --build "$root" "$deb" >/dev/null

  # The tarball: the same files for a by-hand install (its INSTALL lines say where they go).
  name="cvedge-$VERSION-$triple"
  tdir="$stage/$name"
  mkdir -p "$tdir"
  cp "$root/usr/bin/cvedge" cross/cvedge.toml cross/systemd/cvedge.service scripts/install_onnxruntime.sh README.md "$tdir/"
  cat > "$tdir/INSTALL" <<'INSTALL'
sudo install -m755 cvedge /usr/bin/ && sudo install -Dm644 cvedge.toml /etc/cvedge/cvedge.toml
sudo install -m644 cvedge.service /etc/systemd/system/
sudo useradd --system --user-group --groups video --home-dir /var/lib/cvedge --shell /usr/sbin/nologin cvedge
sudo install -d -o cvedge -g cvedge /var/lib/cvedge /var/lib/cvedge/data /var/lib/cvedge/iterations
sudo systemctl daemon-reload && sudo systemctl enable --now cvedge
INSTALL
  tar -C "$stage" --owner=0 --group=0 -czf "$OUT/$name.tar.gz" "$name"
  rm -rf "$stage"; trap - EXIT
  printf '%s  (%s KB, libc6 >= %s)\n%s\n' "$deb" "$(( $(stat -c %s "$deb") / 1024 ))" "$glibc" "$OUT/$name.tar.gz"
done
