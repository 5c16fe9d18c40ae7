#!/usr/bin/env bash
# Benchmarks strata side by side with the peer tools, in one run, interleaved, and prints medians and
# ratios. Usage: scripts/bench.sh import|mount|commit|registry [RUNS]
# The Debian bookworm minbase rootfs is built once with debootstrap and cached in $BENCH_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh bench

what="${1:?usage: scripts/bench.sh import|mount|commit|registry [RUNS]}"
runs="${2:-5}"
cache="${BENCH_CACHE:-/var/cache/strata-bench}"
work="${BENCH_WORK:-/var/tmp/strata-bench}"
mkdir -p "$cache" "$work"
# BENCH_TMPFS=1: run on a tmpfs, which shows the CPU cost of the code instead of the disk's.
if [ "${BENCH_TMPFS:-0}" = 1 ]; then
  mountpoint -q "$work" || mount -t tmpfs -o size=6g strata-bench "$work"
  trap 'umount "$work" 2>/dev/null || true' EXIT
fi

echo "+ cargo build --release" >&2
cargo build --release --quiet
strata="$PWD/target/release/strata"

# ---- fixtures ---------------------------------------------------------------------------------
debian_rootfs() {
  if [ ! -d "$cache/rootfs" ]; then
    echo "+ debootstrap --variant=minbase bookworm (once)" >&2
    rm -rf "$cache/rootfs.tmp"
    debootstrap --variant=minbase bookworm "$cache/rootfs.tmp" http://deb.debian.org/debian >&2
    mv "$cache/rootfs.tmp" "$cache/rootfs"
  fi
  echo "$cache/rootfs"
}

# An OCI layout with the minbase rootfs as one gzip layer, made by umoci.
debian_oci() {
  local layout="$cache/debian-oci"
  if [ ! -f "$layout/index.json" ]; then
    local rootfs; rootfs=$(debian_rootfs)
    echo "+ umoci: packing the minbase rootfs as an OCI layout (once)" >&2
    rm -rf "$layout" "$cache/bundle"
    umoci init --layout "$layout"
    umoci new --image "$layout:bookworm"
    umoci unpack --image "$layout:bookworm" "$cache/bundle" >/dev/null
    cp -a "$rootfs/." "$cache/bundle/rootfs/"
    umoci repack --image "$layout:bookworm" "$cache/bundle" >/dev/null
    rm -rf "$cache/bundle"
  fi
  echo "$layout"
}

# The one layer blob of that layout (for tar -xzf).
debian_layer_blob() {
  local layout="$1" manifest
  manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]+"/index.json"))["manifests"][0]["digest"].split(":")[1])' "$layout")
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/blobs/sha256/"+sys.argv[2])); print(sys.argv[1]+"/blobs/sha256/"+m["layers"][-1]["digest"].split(":")[1])' "$layout" "$manifest"
}

# ---- timing -----------------------------------------------------------------------------------
declare -A times
now() { date +%s.%N; }
# time_case NAME SETUP_FN CMD...: runs SETUP_FN (untimed), then times CMD.
time_case() {
  local name="$1" setup="$2"; shift 2
  $setup
  sync
  local t0 t1
  t0=$(now)
  "$@" >/dev/null 2>&1 || { echo "benchmark step failed: $name: $*" >&2; "$@"; exit 1; }
  t1=$(now)
  times[$name]+="$(echo "$t1 - $t0" | bc -l) "
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
report() {
  local base="$1"; shift
  printf '\n| case | median (s) | ratio to %s |\n|---|---|---|\n' "$base"
  local b; b=$(echo "${times[$base]}" | median)
  for name in "$@"; do
    local m; m=$(echo "${times[$name]}" | median)
    printf '| %s | %.3f | %.2f× |\n' "$name" "$m" "$(echo "$m / $b" | bc -l)"
  done
}

# ---- benchmarks -------------------------------------------------------------------------------
bench_import() {
  local layout blob; layout=$(debian_oci); blob=$(debian_layer_blob "$layout")
  echo "layer blob: $(du -h "$blob" | cut -f1) compressed, rootfs $(du -sh "$cache/rootfs" | cut -f1)" >&2
  clean() { rm -rf "$work/store" "$work/bundle" "$work/tar"; mkdir -p "$work/tar"; }
  for i in $(seq "$runs"); do
    echo "run $i/$runs" >&2
    # strata makes the layer durable (syncfs) before it renames it in; the peers do not, so each
    # peer is timed twice: as it is, and followed by the same sync (equal durability).
    time_case "strata load" clean "$strata" --root "$work/store" load --oci "$layout:bookworm"
    time_case "umoci unpack" clean umoci unpack --image "$layout:bookworm" "$work/bundle"
    time_case "umoci unpack + sync" clean sh -c "umoci unpack --image '$layout:bookworm' '$work/bundle' && sync -f '$work'"
    time_case "tar -xzf + sha256sum" clean sh -c "tar -xzf '$blob' -C '$work/tar' && sha256sum '$blob'"
    time_case "tar -xzf + sha256sum + sync" clean sh -c "tar -xzf '$blob' -C '$work/tar' && sha256sum '$blob' && sync -f '$work'"
  done
  clean
  report "umoci unpack + sync" "strata load" "umoci unpack + sync" "umoci unpack"
  report "tar -xzf + sha256sum + sync" "strata load" "tar -xzf + sha256sum + sync" "tar -xzf + sha256sum"
}

case "$what" in
  import) bench_import ;;
  *) echo "unknown benchmark $what (have: import)" >&2; exit 2 ;;
esac
