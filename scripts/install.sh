#!/usr/bin/env bash
# Builds strata (release) and installs `strata` and `strata-overlay` into $PREFIX/bin
# (default /usr/local/bin). Usage: [PREFIX=DIR] scripts/install.sh
# `cargo install --path .` does the same into ~/.cargo/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${PREFIX:-/usr/local}"
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
command -v cargo >/dev/null || { echo "strata: needs a Rust toolchain (1.85 or newer, e.g. from rustup)" >&2; exit 1; }

echo "+ cargo build --release   (the first build takes about 6 minutes on 2 cores)"
cargo build --release
mkdir -p "$prefix/bin"
for b in strata strata-overlay; do
  echo "+ install -m 0755 target/release/$b $prefix/bin/$b"
  install -m 0755 "target/release/$b" "$prefix/bin/$b"
done
case ":$PATH:" in
  *":$prefix/bin:"*) echo "installed: $("$prefix/bin/strata" --version)" ;;
  *) echo "installed into $prefix/bin, which is not on PATH: add it (export PATH=\"$prefix/bin:\$PATH\")" ;;
esac
command -v fusermount3 >/dev/null || echo "note: mounts need fuse3 (apt-get install fuse3)"
