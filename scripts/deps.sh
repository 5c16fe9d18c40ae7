#!/usr/bin/env bash
# Installs the Debian packages strata's scripts need, only when something is missing.
# Usage: scripts/deps.sh try|test|bench
set -euo pipefail

case "${1:-test}" in
  try)   pkgs=(fuse3 busybox-static runc) ;;
  test)  pkgs=(fuse3 busybox-static skopeo umoci docker-registry runc crun buildah tini util-linux attr apache2-utils fuse-overlayfs uidmap tar gzip zstd python3 strace) ;;
  bench) pkgs=(bc fuse3 busybox-static skopeo umoci docker-registry runc fuse-overlayfs debootstrap attr hyperfine time curl python3 procps) ;;
  *) echo "usage: $0 try|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "strata: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "+ apt-get install -y ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packaged registry starts a service listening on all interfaces: tests run their own on 127.0.0.1.
if systemctl is-active --quiet docker-registry 2>/dev/null; then systemctl stop docker-registry || true; fi

if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || { echo "strata: needs a Rust toolchain (1.85 or newer, e.g. from rustup)" >&2; exit 1; }
