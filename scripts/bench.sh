#!/usr/bin/env bash
# Benchmarks strata side by side with the peer tools, in one run, interleaved, and prints medians and
# ratios. Usage: scripts/bench.sh import|mount|mount-rss|commit|registry|run|build|dpkg|dpkg-profile|scale|rootless|startup [RUNS]
# The Debian bookworm minbase rootfs is built once with debootstrap and cached in $BENCH_CACHE, and so
# is fuse-overlayfs 2.0 (cargo install). dpkg, dpkg-profile: scripts/bench_dpkg.sh; scale:
# scripts/bench_scale.sh; rootless: scripts/bench_rootless.sh; startup: scripts/bench_startup.sh (all sourced from here, for the
# fixtures, timing and tools below).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh bench

what="${1:?usage: scripts/bench.sh import|mount|mount-rss|commit|registry|dpkg|dpkg-profile|scale [RUNS]}"
runs="${2:-5}"
cache="${BENCH_CACHE:-/var/cache/strata-bench}"
work="${BENCH_WORK:-/var/tmp/strata-bench}"
mkdir -p "$cache" "$work"
# One benchmark at a time per work dir: two runs would delete each other's files (and time each
# other). flock -o holds the lock in flock's own process, so mount daemons don't inherit it.
if [ -z "${BENCH_LOCKED:-}" ]; then
  rc=0; BENCH_LOCKED=1 flock -n -o -E 75 "$work.lock" "$PWD/scripts/bench.sh" "$@" || rc=$?
  [ "$rc" != 75 ] || echo "another scripts/bench.sh is using $work (lock $work.lock): wait, or set BENCH_WORK" >&2
  exit "$rc"
fi
# BENCH_TMPFS=1: run on a tmpfs, which shows the CPU cost of the code instead of the disk's.
# Everything a benchmark starts or mounts registers its undoing here; it runs, newest first, on exit.
cleanups=()
on_exit() { local i; for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do eval "${cleanups[i]}" || true; done; }
trap on_exit EXIT
trap 'exit 130' INT TERM
if [ "${BENCH_TMPFS:-0}" = 1 ]; then
  if ! mountpoint -q "$work"; then
    mount -t tmpfs -o size=6g strata-bench "$work"
    cleanups+=("umount '$work' 2>/dev/null")
  fi
fi

# STRATA_BIN=DIR: benchmark the strata and strata-overlay binaries in DIR instead of building these.
if [ -n "${STRATA_BIN:-}" ]; then
  bin="$STRATA_BIN"
else
  echo "+ cargo build --release" >&2
  cargo build --release --quiet
  bin="$PWD/target/release"
fi
strata="$bin/strata"
strata_overlay="$bin/strata-overlay"
# STRATA_BASE_BIN=DIR: the mount benchmark's strata-overlay-base column is the strata-overlay in
# DIR (an older build), for a before/after in one interleaved run
# (BENCH_MOUNT_TOOLS="strata-overlay strata-overlay-base ..."); the run benchmark times DIR's
# strata too, interleaved (a strata-base table).
strata_overlay_base="${STRATA_BASE_BIN:-}/strata-overlay"

# The peers: Debian's fuse-overlayfs 1.10 (C), and fuse-overlayfs 2.0, its Rust rewrite (passthrough,
# one thread per CPU), which Debian does not package: installed once from crates.io into $cache (or
# FUSE_OVERLAYFS2=PATH), built in a temporary target dir that is removed whatever happens.
fofs1=$(command -v fuse-overlayfs)
fofs2_version=2.0.0
fofs2=""
fofs2_install() {
  [ -z "$fofs2" ] || return 0
  if [ -n "${FUSE_OVERLAYFS2:-}" ]; then fofs2="$FUSE_OVERLAYFS2"; return 0; fi
  local root="$cache/fuse-overlayfs-$fofs2_version" tmp rc=0
  if [ ! -x "$root/bin/fuse-overlayfs" ]; then
    echo "+ cargo install --locked fuse-overlayfs@$fofs2_version --root $root (once)" >&2
    tmp=$(mktemp -d "$cache/fofs2-build.XXXXXX"); cleanups+=("rm -rf '$tmp'")   # also when interrupted
    CARGO_TARGET_DIR="$tmp/target" cargo install --locked --quiet "fuse-overlayfs@$fofs2_version" --root "$tmp/root" >&2 || rc=$?
    if [ "$rc" = 0 ]; then rm -rf "$root"; mv "$tmp/root" "$root"; fi
    rm -rf "$tmp"
    [ "$rc" = 0 ] || { echo "cargo install fuse-overlayfs@$fofs2_version failed (exit $rc): see above" >&2; exit 1; }
  fi
  fofs2="$root/bin/fuse-overlayfs"
}
# tools_from VAR DEFAULT: the tool list (an array named tools); "fuse-overlayfs" means 1.10, and
# fuse-overlayfs 2.0 is installed when listed.
tools_from() {
  read -ra tools <<<"${!1:-$2}"
  local i
  for i in "${!tools[@]}"; do [ "${tools[i]}" != fuse-overlayfs ] || tools[i]=fuse-overlayfs-1.10; done
  if [[ " ${tools[*]} " == *" fuse-overlayfs-2.0 "* ]]; then fofs2_install; fi
}
# One line naming the versions compared (for the table headers).
tool_versions() {
  local v="strata $("$strata" --version 2>/dev/null | head -1 | awk '{print $NF}')"
  [[ " ${tools[*]} " != *" fuse-overlayfs-1.10 "* ]] || v+=", $("$fofs1" --version 2>&1 | grep -m1 '^fuse-overlayfs: version')"
  [[ " ${tools[*]} " != *" fuse-overlayfs-2.0 "* ]] || v+=", $("$fofs2" --version 2>&1 | grep -m1 '^fuse-overlayfs: version')"
  echo "$v"
}

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
# bash's clock, not date(1): a process start adds about 1 ms to every measurement, which flattered
# the ratios of the short cases (run, mount+umount) where both tools pay it.
now() { echo "${EPOCHREALTIME/,/.}"; }
# time_case NAME SETUP_FN CMD...: runs SETUP_FN (untimed), then times CMD.
time_case() {
  local name="$1" setup="$2"; shift 2
  $setup
  sync
  local t0 t1
  t0=${EPOCHREALTIME/,/.}
  "$@" >/dev/null 2>&1 || { echo "benchmark step failed: $name: $*" >&2; "$@"; exit 1; }
  t1=${EPOCHREALTIME/,/.}
  times[$name]+="$(echo "$t1 - $t0" | bc -l) "
}
# settle [FILE...]: the state every unpacking case starts from. This machine's ext4 has no journal,
# and without one ext4 skips inodes freed in the last 60 s whose inode-table block is still cached,
# re-scanning them on every allocation: creating a tree just after deleting one costs seconds of
# system time, more the sooner it follows (that is what made strata load take 5 s here while it
# takes 0.8 s with nothing freed recently). So: flush, drop the caches (no freed inode stays
# "recent"), and read the inputs back into the page cache so that no case reads them from disk.
settle() { sync; echo 3 >/proc/sys/vm/drop_caches; [ "$#" = 0 ] || cat "$@" >/dev/null; }
# warm_bins: every tool's executable in the page cache. The mount+umount cases time process
# starts; after another case's settle dropped the caches, the first start of a big binary (strata:
# 12 MB) would read it from disk and a small one (fuse-overlayfs: 1-3 MB) much less.
warm_bins() { cat "$strata" "$strata_overlay" "$fofs1" ${fofs2:+"$fofs2"} "$(command -v fusermount3)" >/dev/null 2>&1 || true; }
# warm_tree DIR...: every file below DIR (but the 512 MiB bench file) read into the page cache.
warm_tree() { find "$@" -type f ! -name big.bin -exec cat {} + >/dev/null; }
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{a[NR]=$1} END {if (NR == 0) exit; if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
report() {
  local base="$1"; shift
  printf '\n| case | median (s) | ratio to %s |\n|---|---|---|\n' "$base"
  local b; b=$(echo "${times[$base]:-}" | median)
  for name in "$@"; do
    local m; m=$(echo "${times[$name]:-}" | median)
    if [ -z "$m" ]; then printf '| %s | – | – |\n' "$name"
    elif [ -z "$b" ]; then printf '| %s | %.3f | – |\n' "$name" "$m"
    else printf '| %s | %.3f | %.2f× |\n' "$name" "$m" "$(echo "$m / $b" | bc -l)"; fi
  done
}

# ---- benchmarks -------------------------------------------------------------------------------
bench_import() {
  local layout blob; layout=$(debian_oci); blob=$(debian_layer_blob "$layout")
  echo "layer blob: $(du -h "$blob" | cut -f1) compressed, rootfs $(du -sh "$cache/rootfs" | cut -f1)" >&2
  clean() { rm -rf "$work/store" "$work/bundle" "$work/tar"; mkdir -p "$work/tar"; settle "$layout"/blobs/sha256/*; }
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

# A table with one row per workload and one column per tool, then strata's ratio to each other tool
# (strata-overlay's when strata is not in the list).
# report_matrix "TOOL TOOL..." CASE... reads times["CASE|TOOL"]. MATRIX_UNIT and MATRIX_SCALE (a factor
# applied to every median, e.g. 1e6/COUNT for µs per name) and MATRIX_FMT change the figures.
report_matrix() {
  local -a tools cases; read -ra tools <<<"$1"; shift; cases=("$@")
  local t c s="${MATRIX_BASE:-strata}" others=() unit="${MATRIX_UNIT:-s}" scale="${MATRIX_SCALE:-1}" fmt="${MATRIX_FMT:-%.3f}"
  [[ " ${tools[*]} " == *" $s "* ]] || s="strata-overlay"
  [[ " ${tools[*]} " == *" $s "* ]] || s=""   # no strata in the run: no ratios
  for t in "${tools[@]}"; do [ -z "$s" ] || [ "$t" = "$s" ] || others+=("$t"); done
  printf '\n| workload |'; for t in "${tools[@]}"; do printf ' %s (%s) |' "$t" "$unit"; done
  for t in "${others[@]}"; do printf ' %s / %s |' "$s" "$t"; done
  printf '\n|---|'; for t in "${tools[@]}" "${others[@]}"; do printf -- '---:|'; done; printf '\n'
  for c in "${cases[@]}"; do
    declare -A med=()
    printf '| %s |' "$c"
    for t in "${tools[@]}"; do
      med[$t]=$(echo "${times["$c|$t"]:-}" | median)
      [ -z "${med[$t]}" ] || med[$t]=$(echo "${med[$t]} * $scale" | sed 's/e\([-+]*[0-9]*\)/*10^\1/g' | bc -l)
      if [ -n "${med[$t]}" ]; then printf " $fmt |" "${med[$t]}"; else printf ' – |'; fi
    done
    for t in "${others[@]}"; do
      if [ -n "${med[$s]:-}" ] && [ -n "${med[$t]}" ] && [ "$(echo "${med[$t]} > 0" | bc -l)" = 1 ]; then
        printf ' %.2f× |' "$(echo "${med[$s]} / ${med[$t]}" | bc -l)"
      else printf ' – |'; fi
    done
    printf '\n'
    unset med
  done
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$@"; }
# The id of the image `load` just printed: `Loaded image ID: ID`, or `Loaded image: NAME` (a
# bare-tag OCI layout is named DIR:TAG) looked up with `images -q` in store $1.
loaded_id() {
  local loaded_root="$1" out name; out=$(cat)
  name=$(printf '%s\n' "$out" | sed -n 's/^Loaded image: //p' | tail -1)
  if [ -n "$name" ]; then "$strata" --root "$loaded_root" images -q --no-trunc "$name" | sed 's/^sha256://'
  else printf '%s\n' "$out" | sed -n 's/^Loaded image ID: sha256:\([0-9a-f]*\).*/\1/p' | tail -1; fi
}
# Layer directories of an image in a store, top first, colon-separated (overlay's lowerdir order).
layer_dirs() {
  local store="$1" image="$2"
  "$strata" --root "$store" inspect "$image" \
    | json '":".join(sys.argv[2] + "/layers/" + l.split(":")[1] + "/fs" for l in reversed(d[0]["RootFS"]["Layers"]))' "$store"
}
vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }   # vm PID VmHWM → kB

every_nth() { awk -v k="$1" '{a[NR] = $0} END {s = int(NR / k); for (i = 1; i <= k; i++) print a[i * s]}'; }

# ---- mount: fixtures --------------------------------------------------------------------------
# What the bench layers delete or replace wholesale; the copy-up list avoids these paths.
bench_hidden_re='^usr/share/(man/(de|fr|ja|pl)|locale/(de|fr|ja)|doc/(bash|dpkg|tar|util-linux|coreutils)|zoneinfo)(/|$)|^usr/bin/rgrep$'

# tar_dir DIR OUT: a layer tar of DIR's children (not of DIR itself, so / keeps the base's metadata).
tar_dir() { (cd "$1" && tar --numeric-owner --owner=0 --group=0 -cf "$2" $(ls -A)); }

# An OCI layout (cached) with tag "bench": the minbase layer plus three small layers made by
# `umoci raw add-layer` from tars written here:
#   big: bench/big.bin, 512 MiB
#   app: overwrites in /etc and of 60 /usr/share/doc/*/copyright files; a new /app tree (300 + 10
#        files); OCI whiteouts of whole directories (man/{de,fr,ja,pl}, locale/{de,fr,ja},
#        doc/{tar,util-linux,coreutils}) and of a file (/usr/bin/rgrep); an opaque
#        /usr/share/zoneinfo holding two files
#   fix: overwrites, whiteouts of 20 files the app layer added and of doc/{bash,dpkg}, an opaque
#        /app/data (deleted and recreated directory)
bench_layout() {
  local layout="$cache/bench-oci"
  if [ ! -f "$layout/index.json" ]; then
    local base rootfs st a f d i; base=$(debian_oci); rootfs=$(debian_rootfs)
    echo "+ building the bench layers with umoci raw add-layer (once)" >&2
    st="$cache/layers.tmp"; rm -rf "$layout.tmp" "$st"; cp -a "$base" "$layout.tmp"
    mkdir -p "$st/big/bench" "$st/app" "$st/fix"
    yes 'strata bench: a 512 MiB file in a lower layer .............................' | head -c 512M >"$st/big/bench/big.bin"
    a="$st/app"
    mkdir -p "$a/etc" "$a/usr/share/man" "$a/usr/share/locale" "$a/usr/share/doc" "$a/usr/bin" \
      "$a/usr/share/zoneinfo/Etc" "$a/app/lib" "$a/app/data"
    { cat "$rootfs/etc/os-release"; echo 'VARIANT="strata bench"'; } >"$a/etc/os-release"
    echo bench-app >"$a/etc/hostname"
    for d in $(ls "$rootfs/usr/share/doc" | grep -Ev '^(bash|dpkg|tar|util-linux|coreutils)$' | head -60); do
      [ -f "$rootfs/usr/share/doc/$d/copyright" ] || continue
      mkdir -p "$a/usr/share/doc/$d"
      { cat "$rootfs/usr/share/doc/$d/copyright"; echo "changed by the app layer"; } >"$a/usr/share/doc/$d/copyright"
    done
    for d in de fr ja pl; do : >"$a/usr/share/man/.wh.$d"; done
    for d in de fr ja; do : >"$a/usr/share/locale/.wh.$d"; done
    for d in tar util-linux coreutils; do : >"$a/usr/share/doc/.wh.$d"; done
    : >"$a/usr/bin/.wh.rgrep"
    : >"$a/usr/share/zoneinfo/.wh..wh..opq"
    cp "$rootfs/usr/share/zoneinfo/Etc/UTC" "$a/usr/share/zoneinfo/UTC"
    cp "$rootfs/usr/share/zoneinfo/Etc/UTC" "$a/usr/share/zoneinfo/Etc/UTC"
    for i in $(seq 300); do echo "module $i" >"$a/app/lib/m$i.py"; done
    for i in $(seq 10); do echo "data $i" >"$a/app/data/d$i"; done
    echo '{"layer": "app"}' >"$a/app/config.json"
    f="$st/fix"
    mkdir -p "$f/etc" "$f/app/lib" "$f/app/data" "$f/usr/share/doc"
    echo bench-fix >"$f/etc/hostname"
    echo 'added by the fix layer' >"$f/etc/bench-fix"
    echo '{"layer": "fix"}' >"$f/app/config.json"
    for i in $(seq 20); do : >"$f/app/lib/.wh.m$i.py"; done
    : >"$f/app/data/.wh..wh..opq"; echo "new data" >"$f/app/data/only"
    for d in bash dpkg; do : >"$f/usr/share/doc/.wh.$d"; done
    for d in big app fix; do tar_dir "$st/$d" "$st/$d.tar"; done
    umoci raw add-layer --image "$layout.tmp:bookworm" --tag bench "$st/big.tar"
    umoci raw add-layer --image "$layout.tmp:bench" "$st/app.tar"
    umoci raw add-layer --image "$layout.tmp:bench" "$st/fix.tar"
    rm -rf "$st"; mv "$layout.tmp" "$layout"
  fi
  echo "$layout"
}

# 100 regular files spread evenly over /usr of the minbase tree (sorted, every (n/100)th), none that
# the bench layers hide: the files the copy-up case appends to.
copyup_list() {
  (cd "$(debian_rootfs)" && find usr -type f) | LC_ALL=C sort | grep -Ev "$bench_hidden_re" | every_nth 100
}

# convert_whiteouts SRC DST: a copy of layer SRC with OCI whiteouts turned into overlayfs ones (char
# device 0/0, trusted.overlay.opaque=y), which fuse-overlayfs and kernel overlayfs understand.
convert_whiteouts() {
  cp -a "$1" "$2"
  local w dir name
  while IFS= read -r -d '' w; do
    dir="${w%/*}"; name="${w##*/}"
    if [ "$name" = .wh..wh..opq ]; then setfattr -n trusted.overlay.opaque -v y "$dir"
    else mknod "$dir/${name#.wh.}" c 0 0; fi
    rm -f "$w"
  done < <(find "$2" -name '.wh.*' -print0)
}

# ---- mount: the tools -------------------------------------------------------------------------
# m_prepare TOOL (a fresh writable layer), m_mount TOOL, m_umount TOOL, m_discard TOOL.
# strata: a new container of the bench image ($m_image) in its store. The peers: the same layer
# directories of that store (whiteouts converted where a layer has any), fresh upper and work
# directories. Tools: strata, strata-uring, strata-overlay, fuse-overlayfs-1.10, fuse-overlayfs-2.0,
# kernel. strata and strata-overlay serve through /dev/fuse (STRATA_IO_URING=0); strata-uring is
# strata through FUSE over io_uring (the run sets the fuse module's enable_uring and restores it),
# strata-uring-nopin the same with its queue threads left unpinned (STRATA_IO_URING_PIN=0).
# strata-overlay-base: the strata-overlay of $STRATA_BASE_BIN (see above).
m_image=bench:latest
m_prepare() {
  case "$1" in
    strata|strata-uring*) cur_c=$("$strata" --root "$mstore" create "$m_image") ;;
    *) rm -rf "$work/upper" "$work/ovl-work"; mkdir -p "$work/upper" "$work/ovl-work" ;;
  esac
}
m_mount() {
  local o="lowerdir=$peer_lower,upperdir=$work/upper,workdir=$work/ovl-work"
  case "$1" in
    strata) STRATA_IO_URING=0 "$strata" --root "$mstore" mount "$cur_c" "$mp" ;;
    strata-uring) STRATA_IO_URING=1 "$strata" --root "$mstore" mount "$cur_c" "$mp" ;;
    strata-uring-nopin) STRATA_IO_URING=1 STRATA_IO_URING_PIN=0 "$strata" --root "$mstore" mount "$cur_c" "$mp" ;;
    strata-overlay) STRATA_IO_URING=0 "$strata_overlay" -o "$o" "$mp" ;;
    strata-overlay-base) STRATA_IO_URING=0 "$strata_overlay_base" -o "$o" "$mp" ;;
    fuse-overlayfs-1.10) "$fofs1" -o "$o" "$mp" ;;
    fuse-overlayfs-2.0) "$fofs2" -o "$o" "$mp" ;;
    kernel) mount -t overlay overlay -o "$o" "$mp" ;;
    *) echo "unknown tool $1" >&2; return 1 ;;
  esac
}
# fuse-overlayfs 2.0 can return before its mount exists (a `fusermount3 -u` right after it then
# fails with EINVAL): its unmount first waits for the mount, up to 2 s, reading mountinfo in bash.
m_wait_mounted() {
  local l end=$((SECONDS + 2))
  while [ "$SECONDS" -le "$end" ]; do
    while IFS= read -r l; do [[ "$l" != *" $mp "* ]] || return 0; done </proc/self/mountinfo
  done
  return 1
}
m_umount() {
  case "$1" in
    strata|strata-uring*) "$strata" --root "$mstore" umount "$mp" ;;
    fuse-overlayfs-2.0) m_wait_mounted; fusermount3 -u "$mp" ;;
    strata-overlay*|fuse-overlayfs-*) fusermount3 -u "$mp" ;;
    kernel) umount "$mp" ;;
  esac
}
m_discard() {
  case "$1" in
    strata|strata-uring*) "$strata" --root "$mstore" rm "$cur_c" >/dev/null ;;
    *) rm -rf "$work/upper" "$work/ovl-work" ;;
  esac
}
m_up() { m_prepare "$1" && m_mount "$1" && { [[ "$1" != strata-uring* ]] || uring_check; }; }
m_settle() { settle; warm_tree "$mstore/layers" "$work/peer"; }
# The big file read through the mount is in the page cache for every tool (a settle may have
# dropped it): the case measures the mount, not the disk.
m_warm_big() { find "$mstore/layers" -path '*/fs/bench/big.bin' -exec cat {} + >/dev/null; }
m_down() { m_umount "$1" && m_discard "$1"; }
m_mount_umount() { m_mount "$1" && m_umount "$1"; }
# daemon_pid TOOL: the pid of the FUSE daemon serving $mp (strata: the one its mount.json names).
daemon_pid() {
  local exe p
  case "$1" in
    strata|strata-uring*) json 'd["pid"]' <"$mstore/containers/$cur_c/mount.json"; return ;;
    strata-overlay) exe="$strata_overlay" ;;
    strata-overlay-base) exe="$strata_overlay_base" ;;
    fuse-overlayfs-1.10) exe="$fofs1" ;;
    fuse-overlayfs-2.0) exe="$fofs2" ;;
    *) return 1 ;;
  esac
  exe=$(readlink -f "$exe")
  for p in $(pgrep -f -- " $mp\$"); do
    [ "$(readlink -f "/proc/$p/exe" 2>/dev/null)" != "$exe" ] || { echo "$p"; return 0; }
  done
  echo "no $1 daemon found for $mp" >&2; return 1
}
# Whatever is still mounted on $mp (a failed run) comes off, and whatever is mounted below it first.
m_cleanup() {
  local i
  findmnt -rn -o TARGET | grep -F "$mp/" | sort -r | xargs -r -d '\n' umount -l 2>/dev/null || true
  for i in 1 2 3; do
    mountpoint -q "$mp" 2>/dev/null || break
    "$strata" --root "$mstore" umount "$mp" 2>/dev/null || fusermount3 -u "$mp" 2>/dev/null || umount "$mp" 2>/dev/null || umount -l "$mp"
  done
}
drop_caches() { [ "${BENCH_DROP_CACHES:-0}" = 1 ] && { sync; echo 3 >/proc/sys/vm/drop_caches; } || true; }

# The workloads (MP = the mount).
w_stat() { find "$mp" -printf '%s\n'; }
w_read() { tar -C "$mp" --exclude=./bench/big.bin -cf - . | cat >/dev/null; }
w_bigread() { dd if="$mp/bench/big.bin" of=/dev/null bs=1M; }
w_bigwrite() { dd if=/dev/zero of="$mp/bench/new.bin" bs=1M count=512 conv=fdatasync; }
w_create() { mkdir "$mp/many" && (cd "$mp/many" && for i in {1..10000}; do echo "$i" >"f$i"; done); }
w_append() { local f; while IFS= read -r f; do echo appended >>"$mp/$f"; done <"$work/copyup.list"; }
w_rm() { rm -rf "$mp/usr/share"; }

mount_cases=("mount+umount" "stat all, fresh mount" "stat all, warm" "read all (tar | cat)" "512 MiB lower file read"
  "512 MiB write + fdatasync" "create 10,000 files" "append to 100 lower files" "rm -rf /usr/share")

bench_mount() {
  local layout id lower l hex tools t i r
  tools_from BENCH_MOUNT_TOOLS "strata strata-uring strata-overlay fuse-overlayfs-2.0 fuse-overlayfs-1.10 kernel"
  [[ " ${tools[*]} " != *" strata-uring"* ]] || uring_param_on
  [[ " ${tools[*]} " != *" strata-overlay-base "* ]] || [ -x "$strata_overlay_base" ] \
    || { echo "strata-overlay-base: set STRATA_BASE_BIN to a directory holding an older strata-overlay" >&2; exit 1; }
  layout=$(bench_layout)
  mstore="$work/mount-store"; mp="$work/mp"
  cleanups+=("m_cleanup; rm -rf '$mstore' '$work/peer' '$work/upper' '$work/ovl-work'")
  rm -rf "$mstore" "$work/peer"; mkdir -p "$mp" "$work/peer"
  echo "+ strata load --oci $layout:bench" >&2
  id=$("$strata" --root "$mstore" load --oci "$layout:bench" | loaded_id "$mstore")
  "$strata" --root "$mstore" tag "$id" bench:latest
  lower=$(layer_dirs "$mstore" bench:latest)
  # The peers get the same directories, except that a layer with OCI whiteouts is given to them as a
  # copy with overlayfs whiteouts.
  peer_lower=""
  IFS=: read -ra l <<<"$lower"
  for d in "${l[@]}"; do
    if [ -n "$(find "$d" -name '.wh.*' -print -quit)" ]; then
      hex=$(basename "$(dirname "$d")"); convert_whiteouts "$d" "$work/peer/$hex"; d="$work/peer/$hex"
    fi
    peer_lower+="${peer_lower:+:}$d"
  done
  echo "strata layers (top first): $lower" >&2
  echo "peer lowerdir: $peer_lower" >&2
  copyup_list >"$work/copyup.list"
  [ "$(wc -l <"$work/copyup.list")" = 100 ] || { echo "copy-up list is not 100 files" >&2; exit 1; }

  for r in $(seq "$runs"); do
    echo "run $r/$runs" >&2
    # Rotate the order of the tools from run to run.
    local order=("${tools[@]:$(((r - 1) % ${#tools[@]}))}" "${tools[@]:0:$(((r - 1) % ${#tools[@]}))}")
    for t in "${order[@]}"; do
      m_prepare "$t"; time_case "mount+umount|$t" warm_bins m_mount_umount "$t"; m_discard "$t"
      m_up "$t"; drop_caches
      time_case "stat all, fresh mount|$t" : w_stat
      time_case "stat all, warm|$t" : w_stat
      m_down "$t"
      m_up "$t"; time_case "read all (tar | cat)|$t" : w_read; m_down "$t"
      m_up "$t"; time_case "512 MiB lower file read|$t" m_warm_big w_bigread; m_down "$t"
      # The cases that allocate inodes in the upper start settled (see settle).
      m_up "$t"; time_case "512 MiB write + fdatasync|$t" m_settle w_bigwrite; m_down "$t"
      m_up "$t"; time_case "create 10,000 files|$t" m_settle w_create; m_down "$t"
      m_up "$t"; time_case "append to 100 lower files|$t" m_settle w_append; m_down "$t"
      m_up "$t"; time_case "rm -rf /usr/share|$t" m_settle w_rm; m_down "$t"
    done
  done
  echo
  echo "mount benchmark: $runs runs, work dir $work ($(stat -f -c %T "$work")), $(nproc) cores, kernel $(uname -r); $(tool_versions)"
  report_matrix "${tools[*]}" "${mount_cases[@]}"
  if [[ " ${tools[*]} " == *" strata-uring "* ]]; then
    echo; echo "The same, as strata-uring's ratios:"
    MATRIX_BASE=strata-uring report_matrix "${tools[*]}" "${mount_cases[@]}"
  fi
  [ "${BENCH_RSS:-1}" = 0 ] || bench_rss
}
# A strata-uring daemon holds its io_uring instances (one per CPU queue): else it fell back.
# Checked after every untimed mount (python's start-up would weigh in the mount+umount case).
uring_check() {
  local pid fd n=0
  pid=$(json 'd["pid"]' <"$mstore/containers/$cur_c/mount.json")
  for fd in /proc/"$pid"/fd/*; do [ "$(readlink "$fd")" != "anon_inode:[io_uring]" ] || n=$((n + 1)); done
  [ "$n" -gt 0 ] || { echo "strata-uring: daemon $pid holds no io_uring: not served through io_uring" >&2; return 1; }
}
# FUSE over io_uring is the admin's choice (the fuse module's enable_uring): a run with
# strata-uring turns it on and puts the old value back when it ends.
uring_param_on() {
  local p=/sys/module/fuse/parameters/enable_uring
  [ -w "$p" ] || { echo "strata-uring: $p missing or not writable (kernel without CONFIG_FUSE_IO_URING?)" >&2; exit 1; }
  cleanups+=("echo '$(cat "$p")' >'$p'")
  echo Y >"$p"
}

# The daemons' memory for a directory of 100,000 entries (issue 3): an image whose one layer holds
# /wide with 100,000 empty files, mounted as a container; VmRSS/VmHWM of the daemon after mounting,
# after listing the directory (readdir only: ls -f), and after stat of every entry (find -printf %s,
# which makes the kernel look up every name, so the daemon holds an inode for each), twice.
# fuse-overlayfs 2.0 and 1.10 over the same layer directory for comparison.
bench_rss() {
  local st="$work/rss-store" src="$work/rss-src" layer pid c t0 t1 t fofs
  fofs2_install
  cleanups+=("m_cleanup; rm -rf '$st' '$src' '$work/rss.tar' '$work/upper' '$work/ovl-work'")
  rm -rf "$st" "$src"; mkdir -p "$src/wide" "$mp"
  (cd "$src/wide" && seq -f 'entry-%06g' 100000 | xargs touch)
  tar_dir "$src" "$work/rss.tar"
  "$strata" --root "$st" import "$work/rss.tar" wide:latest >/dev/null
  layer=$(layer_dirs "$st" wide:latest)
  printf '\n| daemon, directory of 100,000 entries | after mount | ls -f (s) | after ls -f | find -printf %%s (s) | after find | find again (s) | after find again |\n|---|---:|---:|---:|---:|---:|---:|---:|\n'
  for t in strata fuse-overlayfs-2.0 fuse-overlayfs-1.10; do
    rm -rf "$work/upper" "$work/ovl-work"; mkdir -p "$work/upper" "$work/ovl-work"
    if [ "$t" = strata ]; then
      c=$("$strata" --root "$st" create wide:latest)
      "$strata" --root "$st" mount "$c" "$mp"
      pid=$(json 'd["pid"]' <"$st/containers/$c/mount.json")
    else
      fofs="$fofs1"; [ "$t" = fuse-overlayfs-1.10 ] || fofs="$fofs2"
      "$fofs" -o "lowerdir=$layer,upperdir=$work/upper,workdir=$work/ovl-work" "$mp"
      pid=$(daemon_pid "$t")
      echo "$t daemon: $(tr '\0' ' ' <"/proc/$pid/cmdline")" >&2
    fi
    mem() { printf 'RSS %.1f MiB, peak %.1f MiB' "$(echo "$(vm "$pid" VmRSS) / 1024" | bc -l)" "$(echo "$(vm "$pid" VmHWM) / 1024" | bc -l)"; }
    local m0 m1 m2 m3 s1 s2 s3
    m0=$(mem)
    t0=$(now); ls -f "$mp/wide" >/dev/null; t1=$(now); s1=$(echo "$t1 - $t0" | bc -l); m1=$(mem)
    t0=$(now); find "$mp/wide" -printf '%s\n' >/dev/null; t1=$(now); s2=$(echo "$t1 - $t0" | bc -l); m2=$(mem)
    t0=$(now); find "$mp/wide" -printf '%s\n' >/dev/null; t1=$(now); s3=$(echo "$t1 - $t0" | bc -l); m3=$(mem)
    printf '| %s | %s | %.3f | %s | %.3f | %s | %.3f | %s |\n' "$t" "$m0" "$s1" "$m1" "$s2" "$m2" "$s3" "$m3"
    if [ "$t" = strata ]; then "$strata" --root "$st" umount "$mp"; "$strata" --root "$st" rm "$c" >/dev/null
    else fusermount3 -u "$mp"; fi
  done
}

# ---- commit -----------------------------------------------------------------------------------
# The change: 100 files spread evenly over /etc and /usr of the minbase tree (sorted, every (n/100)th),
# each rewritten as its old content plus one line. On Debian that modifies 100 files; on busybox
# the same paths are created with the same content (the same 100-file change set).
change_list() { (cd "$(debian_rootfs)" && find etc usr -type f) | LC_ALL=C sort | every_nth 100; }
make_change() {
  local rootfs p; rootfs=$(debian_rootfs); rm -rf "$work/change"; mkdir -p "$work/change"
  change_list >"$work/change.list"
  while IFS= read -r p; do
    mkdir -p "$work/change/$(dirname "$p")"
    { cat "$rootfs/$p"; echo "changed by the commit benchmark"; } >"$work/change/$p"
  done <"$work/change.list"
}
apply_change() {   # apply_change ROOT
  local p
  while IFS= read -r p; do mkdir -p "$1/$(dirname "$p")"; cat "$work/change/$p" >"$1/$p"; done <"$work/change.list"
}
busybox_tar() {   # a busybox-static rootfs: /bin/busybox and a symlink per applet
  local d="$work/busybox-rootfs" a
  rm -rf "$d"; mkdir -p "$d/bin" "$d/etc" "$d/tmp"
  cp "$(command -v busybox)" "$d/bin/busybox"
  for a in $("$d/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$d/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$d/etc/passwd"
  tar_dir "$d" "$work/busybox.tar"; rm -rf "$d"
}

# A strata container of IMAGE with the change applied through the mount, then unmounted.
commit_setup_strata() {
  cur_c=$("$strata" --root "$cstore" create "$1")
  "$strata" --root "$cstore" mount "$cur_c" "$mp"
  apply_change "$mp"
  "$strata" --root "$cstore" umount "$mp"
}
commit_strata() { "$strata" --root "$cstore" commit "$cur_c" "bench-commit:latest"; }
commit_done_strata() {
  "$strata" --root "$cstore" rm "$cur_c" >/dev/null
  "$strata" --root "$cstore" rmi bench-commit:latest >/dev/null
}
# umoci: a copy of the layout unpacked to a bundle, the change applied to bundle/rootfs.
commit_setup_umoci() {
  rm -rf "$work/umoci-layout" "$work/bundle"
  cp -a "$layout" "$work/umoci-layout"
  umoci unpack --image "$work/umoci-layout:bookworm" "$work/bundle" >/dev/null
  apply_change "$work/bundle/rootfs"
}
commit_umoci() { umoci repack --image "$work/umoci-layout:bookworm" "$work/bundle"; }
commit_umoci_sync() { commit_umoci && sync -f "$work"; }

bench_commit() {
  local id r
  layout=$(debian_oci)
  cstore="$work/commit-store"; mp="$work/mp"; mstore="$cstore"
  cleanups+=("m_cleanup; rm -rf '$cstore' '$work/umoci-layout' '$work/bundle' '$work/change' '$work/busybox.tar'")
  rm -rf "$cstore"; mkdir -p "$mp"
  id=$("$strata" --root "$cstore" load --oci "$layout:bookworm" | loaded_id "$cstore")
  "$strata" --root "$cstore" tag "$id" debian:bookworm
  busybox_tar; "$strata" --root "$cstore" import "$work/busybox.tar" busybox:latest >/dev/null
  make_change
  echo "change: $(wc -l <"$work/change.list") files, $(du -sh "$work/change" | cut -f1)" >&2
  for r in $(seq "$runs"); do
    echo "run $r/$runs" >&2
    commit_setup_strata debian:bookworm
    time_case "strata commit (Debian)" : commit_strata; commit_done_strata
    commit_setup_umoci; time_case "umoci repack" : commit_umoci
    commit_setup_strata busybox:latest
    time_case "strata commit (busybox)" : commit_strata; commit_done_strata
    commit_setup_umoci; time_case "umoci repack + sync" : commit_umoci_sync
  done
  rm -rf "$work/umoci-layout" "$work/bundle"
  echo
  echo "commit benchmark: $runs runs, work dir $work ($(stat -f -c %T "$work")), $(nproc) cores"
  report "umoci repack + sync" "strata commit (Debian)" "umoci repack + sync" "umoci repack"
  report "strata commit (busybox)" "strata commit (Debian)" "strata commit (busybox)"
}

# ---- registry ---------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# reg_start NAME: the CNCF registry on 127.0.0.1 (a config of our own; storage $work/reg-NAME,
# emptied), on a new port each time (so skopeo's blob cache has no hints for it). Sets reg_port.
declare -A reg_pids
reg_start() {
  local name="$1" dir="$work/reg-$1" i
  reg_stop "$name"
  rm -rf "$dir"; mkdir -p "$dir/storage"
  reg_port=$(free_port)
  cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$reg_port
YML
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  reg_pids[$name]=$!
  for i in $(seq 100); do
    curl -sf "http://127.0.0.1:$reg_port/v2/" >/dev/null && return 0
    sleep 0.1
  done
  echo "registry did not start:" >&2; cat "$dir/log" >&2; exit 1
}
reg_stop() {
  local pid="${reg_pids[$1]:-}"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  reg_pids[$1]=""
}

pull_clean() { rm -rf "$work/pull-store" "$work/sk-oci" "$work/bundle"; settle; warm_tree "$work/reg-src"; }
push_fresh() { reg_start push; }

bench_registry() {
  local id r src have_strata=1
  layout=$(debian_oci)
  cleanups+=("reg_stop src; reg_stop push; rm -rf '$work/reg-src' '$work/reg-push' '$work/pull-store' '$work/sk-oci' '$work/bundle' '$work/push-store'")
  if ! "$strata" pull --help >/dev/null 2>&1; then
    have_strata=0
    echo "NOTE: this strata has no pull/push yet (the registry client is not in this build): timing the peers only" >&2
  fi
  reg_start src; src="127.0.0.1:$reg_port"
  echo "+ skopeo copy oci:$layout:bookworm docker://$src/debian:bookworm" >&2
  skopeo copy -q --dest-tls-verify=false "oci:$layout:bookworm" "docker://$src/debian:bookworm" >&2
  rm -rf "$work/push-store"
  id=$("$strata" --root "$work/push-store" load --oci "$layout:bookworm" | loaded_id "$work/push-store")
  "$strata" --root "$work/push-store" tag "$id" debian:bookworm
  for r in $(seq "$runs"); do
    echo "run $r/$runs" >&2
    [ "$have_strata" = 0 ] || time_case "strata pull" pull_clean "$strata" --root "$work/pull-store" pull --insecure "$src/debian:bookworm"
    time_case "skopeo copy + umoci unpack" pull_clean sh -c "skopeo copy -q --src-tls-verify=false docker://$src/debian:bookworm oci:$work/sk-oci:bookworm && umoci unpack --image $work/sk-oci:bookworm $work/bundle"
    time_case "skopeo copy + umoci unpack + sync" pull_clean sh -c "skopeo copy -q --src-tls-verify=false docker://$src/debian:bookworm oci:$work/sk-oci:bookworm && umoci unpack --image $work/sk-oci:bookworm $work/bundle && sync -f $work"
    if [ "$have_strata" = 1 ]; then
      push_fresh
      "$strata" --root "$work/push-store" tag debian:bookworm "127.0.0.1:$reg_port/debian:bookworm"
      time_case "strata push" : "$strata" --root "$work/push-store" push --insecure "127.0.0.1:$reg_port/debian:bookworm"
      "$strata" --root "$work/push-store" rmi "127.0.0.1:$reg_port/debian:bookworm" >/dev/null
    fi
    push_fresh
    time_case "skopeo copy (push)" : skopeo copy -q --dest-tls-verify=false "oci:$layout:bookworm" "docker://127.0.0.1:$reg_port/debian:bookworm"
  done
  pull_clean
  echo
  echo "registry benchmark: $runs runs, work dir $work ($(stat -f -c %T "$work")), $(nproc) cores, registry on loopback"
  report "skopeo copy + umoci unpack + sync" "strata pull" "skopeo copy + umoci unpack + sync" "skopeo copy + umoci unpack"
  report "skopeo copy (push)" "strata push" "skopeo copy (push)"
}

# ---- run ----------------------------------------------------------------------------------------
# `strata run --rm IMAGE true` (busybox and Debian) against (a) the floor: `runc run` on a ready
# bundle over an already-mounted kernel overlayfs of the same layers, and (b) what rootful Podman
# does with fuse-overlayfs storage, by hand: mount + `runc run` + unmount. Plus the time from
# `strata run -d` to the first line of `strata logs`. All without a network namespace, as strata's
# default (host) network.
bench_run() {
  local store="$work/run-store" bb="$work/run-bb" id lowers img t
  rm -rf "$store" "$bb" "$work/run"; mkdir -p "$bb/bin" "$bb/etc" "$work/run"
  cp /bin/busybox "$bb/bin/"; for a in sh true echo sleep; do ln -s busybox "$bb/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$bb/etc/passwd"
  tar -C "$bb" -cf "$work/run/bb.tar" .
  "$strata" --root "$store" import "$work/run/bb.tar" bb:1 >/dev/null
  id=$("$strata" --root "$store" load --oci "$(debian_oci):bookworm" | loaded_id "$store")
  "$strata" --root "$store" tag "$id" debian:1
  cleanups+=("umount -l '$work'/run/*/floor-mnt 2>/dev/null; fusermount3 -u '$work'/run/*/fuse-mnt 2>/dev/null")
  for img in bb:1 debian:1; do
    t="$work/run/${img%%:*}"; mkdir -p "$t"/{floor-upper,floor-work,floor-mnt,fuse-upper,fuse-work,fuse-mnt,floor,fuse}
    lowers=$(layer_dirs "$store" "$img")
    mount -t overlay overlay -o "lowerdir=$lowers,upperdir=$t/floor-upper,workdir=$t/floor-work" "$t/floor-mnt"
    for b in floor fuse; do
      (cd "$t/$b" && runc spec)
      python3 - "$t/$b/config.json" "$t/$b-mnt" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["root"] = {"path": sys.argv[2], "readonly": False}
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
json.dump(c, open(sys.argv[1], "w"))
PY
    done
  done
  # Each case starts once the previous one's stragglers are gone, for every tool alike: strata's
  # mount daemon and background rm, fuse-overlayfs' daemon (35-75 ms after fusermount3 -u), a
  # removed container's monitor. Otherwise the case after them (the floor after strata, strata
  # after fuse-overlayfs) is timed while they still run on one of the two CPUs.
  settled() {
    local n=0
    while pgrep -f -- "$work/run" >/dev/null && [ "$n" -lt 500 ]; do sleep 0.005; n=$((n + 1)); done
    [ "$n" -lt 500 ] || echo "bench run: processes of an earlier case still run after 2.5 s" >&2
  }
  fresh_fuse() { settled; rm -rf "$t/fuse-upper" "$t/fuse-work"; mkdir -p "$t/fuse-upper" "$t/fuse-work"; }
  for i in $(seq "$runs"); do
    echo "run $i/$runs" >&2
    for img in bb:1 debian:1; do
      t="$work/run/${img%%:*}"; lowers=$(layer_dirs "$store" "$img")
      time_case "$img|strata" settled "$strata" --root "$store" run --rm "$img" true
      [ -z "${STRATA_BASE_BIN:-}" ] || time_case "$img|strata-base" settled "$STRATA_BASE_BIN/strata" --root "$store" run --rm "$img" true
      time_case "$img|runc on overlayfs" settled runc --root "$work/run/runc-root" run --bundle "$t/floor" "floor-$i"
      time_case "$img|fuse-overlayfs + runc" fresh_fuse sh -c "fuse-overlayfs -o 'lowerdir=$lowers,upperdir=$t/fuse-upper,workdir=$t/fuse-work' '$t/fuse-mnt' && runc --root '$work/run/runc-root' run --bundle '$t/fuse' 'fuse-$i' && fusermount3 -u '$t/fuse-mnt'"
    done
    # Up to the first line of `logs`; the removal of the running container is a case of its own.
    time_case "run -d to first log line|strata" settled sh -c "id=\$('$strata' --root '$store' run -d bb:1 sh -c 'echo first; sleep 5'); until '$strata' --root '$store' logs \$id | grep -q first; do :; done; echo \$id >'$work/run/detached-id'"
    time_case "rm -f of a running container|strata" : "$strata" --root "$store" rm -f "$(cat "$work/run/detached-id")"
  done
  echo
  echo "run benchmark: $runs runs, work dir $work ($(stat -f -c %T "$work")), $(nproc) cores"
  printf '\n| workload | strata (s) | runc on overlayfs (s) | fuse-overlayfs + runc (s) | strata / floor | strata / fuse-overlayfs + runc |\n|---|---:|---:|---:|---:|---:|\n'
  for img in bb:1 debian:1; do
    local a b c
    a=$(echo "${times["$img|strata"]}" | median); b=$(echo "${times["$img|runc on overlayfs"]}" | median)
    c=$(echo "${times["$img|fuse-overlayfs + runc"]}" | median)
    printf '| run --rm %s true | %.3f | %.3f | %.3f | %.2f× | %.2f× |\n' "$img" "$a" "$b" "$c" "$(echo "$a / $b" | bc -l)" "$(echo "$a / $c" | bc -l)"
  done
  printf '| run -d to first log line | %.3f | – | – | – | – |\n' "$(echo "${times["run -d to first log line|strata"]}" | median)"
  printf '| rm -f of that running container | %.3f | – | – | – | – |\n' "$(echo "${times["rm -f of a running container|strata"]}" | median)"
  # STRATA_BASE_BIN=DIR: the strata of DIR (an older build) ran interleaved on the same store.
  if [ -n "${STRATA_BASE_BIN:-}" ]; then
    printf '\n| workload | strata (s) | strata-base (s) | strata-base / floor | strata / strata-base |\n|---|---:|---:|---:|---:|\n'
    for img in bb:1 debian:1; do
      local a b f
      a=$(echo "${times["$img|strata"]}" | median); b=$(echo "${times["$img|strata-base"]}" | median)
      f=$(echo "${times["$img|runc on overlayfs"]}" | median)
      printf '| run --rm %s true | %.3f | %.3f | %.2f× | %.2f× |\n' "$img" "$a" "$b" "$(echo "$b / $f" | bc -l)" "$(echo "$a / $b" | bc -l)"
    done
  fi
  for img in bb debian; do umount "$work/run/$img/floor-mnt"; done
}


# ---- build ------------------------------------------------------------------------------------
# The same Dockerfiles through strata build and buildah bud (runc, overlay storage): a 10-step
# busybox build (RUN steps that create, change and delete files, COPY of a 1,000-file context,
# ENV/LABEL) cold and fully cached, and one RUN that creates 10,000 files.
build_ctx() {
  local c="$work/build-ctx" i
  rm -rf "$c"; mkdir -p "$c/files"
  for i in $(seq 1000); do echo "file $i" >"$c/files/f$i"; done
  cat >"$c/Dockerfile" <<'DF'
ARG BASE
FROM $BASE
ENV APP=/app VERSION=1
LABEL bench=build
RUN mkdir -p /app/data && for i in $(seq 200); do echo $i > /app/data/$i; done
COPY files /app/files
RUN rm /app/data/1* && echo changed >> /app/files/f1
WORKDIR /app
RUN for i in $(seq 100); do echo $i > /app/more$i; done && rm /etc/passwd
ENV DONE=1
CMD ["sh"]
DF
  mkdir -p "$work/build-many"
  printf 'ARG BASE\nFROM $BASE\nRUN mkdir /many && cd /many && for i in $(seq 10000); do echo $i > f$i; done\n' >"$work/build-many/Dockerfile"
}
bench_build() {
  local bstore="$work/build-store" r t
  for t in buildah runc; do command -v "$t" >/dev/null || { echo "bench build needs $t (apt-get install $t)" >&2; exit 1; }; done
  local B=(buildah --root "$work/buildah-root" --runroot "$work/buildah-run" --storage-driver overlay)
  cleanups+=("rm -rf '$bstore' '$work/build-ctx' '$work/build-many' '$work/busybox.tar' '$work/busybox-oci.tar'; ${B[*]} rmi -a -f >/dev/null 2>&1; rm -rf '$work/buildah-root' '$work/buildah-run'")
  rm -rf "$bstore"
  busybox_tar; "$strata" --root "$bstore" import "$work/busybox.tar" busybox:latest >/dev/null
  "$strata" --root "$bstore" save --format oci-archive -o "$work/busybox-oci.tar" busybox:latest
  build_ctx
  local sb=("$strata" --root "$bstore" build -q --build-arg BASE=busybox:latest)
  local bb=("${B[@]}" bud -q --isolation oci --runtime runc --layers --build-arg "BASE=oci-archive:$work/busybox-oci.tar")
  for r in $(seq "$runs"); do
    echo "run $r/$runs" >&2
    time_case "strata build (cold)" : "${sb[@]}" --no-cache -t bench:cold "$work/build-ctx"
    time_case "strata build (cached)" : "${sb[@]}" -t bench:cached "$work/build-ctx"
    time_case "buildah bud (cold)" : "${bb[@]}" --no-cache -t bench-cold "$work/build-ctx"
    time_case "buildah bud (cached)" : "${bb[@]}" -t bench-cached "$work/build-ctx"
    time_case "strata build (10k-file RUN)" : "${sb[@]}" --no-cache -t bench:many "$work/build-many"
    time_case "buildah bud (10k-file RUN)" : "${bb[@]}" --no-cache -t bench-many "$work/build-many"
  done
  echo
  echo "build benchmark: $runs runs, work dir $work ($(stat -f -c %T "$work")), $(nproc) cores"
  report "buildah bud (cold)" "strata build (cold)" "buildah bud (cold)"
  report "buildah bud (cached)" "strata build (cached)" "buildah bud (cached)"
  report "buildah bud (10k-file RUN)" "strata build (10k-file RUN)" "buildah bud (10k-file RUN)"
}

case "$what" in
  import) bench_import ;;
  mount) bench_mount ;;
  mount-rss) mp="$work/mp"; mstore="$work/rss-store"; bench_rss ;;
  commit) bench_commit ;;
  registry) bench_registry ;;
  run) bench_run ;;
  build) bench_build ;;
  dpkg) source scripts/bench_dpkg.sh; bench_dpkg ;;
  dpkg-profile) source scripts/bench_dpkg.sh; bench_dpkg_profile ;;
  scale) source scripts/bench_scale.sh; bench_scale ;;
  rootless) source scripts/bench_rootless.sh; bench_rootless ;;
  startup) source scripts/bench_startup.sh; bench_startup ;;
  *) echo "unknown benchmark $what (have: import, mount, mount-rss, commit, registry, run, build, dpkg, dpkg-profile, scale, rootless, startup)" >&2; exit 2 ;;
esac
