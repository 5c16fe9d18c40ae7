# shellcheck shell=bash disable=SC2154  # cache, work, runs, strata...: set by scripts/bench.sh
# Sourced by scripts/bench.sh (its timing and m_* tools): cost as the work grows (issue 17).
#
#   scripts/bench.sh scale [RUNS]    three tables, each tool in turn, interleaved, medians of RUNS:
#     layers  stat of every entry (fresh mount), and the latency of one lookup of an existing name and
#             of a missing one (µs per name: 1,000 names stat'ed one by one from one process), with
#             1, 8, 32, 128 lower layers holding the same files (file I in layer I mod L, each in one
#             of 100 directories, so every directory is merged from up to 100 layers)
#     dirs    a directory of 1k, 100k, 1M empty files: `ls -f` and `find -printf %s` (each on a fresh
#             mount), the daemon's RSS and peak RSS after the find, and then, on that mount (every
#             entry known to the daemon), the latency of a rename (1,000 files renamed by one perl
#             process in a new directory): a cost that grows with what the daemon caches shows here
#     images  an image of 10k and 1M files (directories of 1,000): mount and umount time
#   BENCH_SCALE=quick: small sizes (a validation run of about a minute with RUNS=1).
#   BENCH_SCALE_LAYERS, BENCH_SCALE_LAYER_FILES, BENCH_SCALE_DIRS, BENCH_SCALE_IMAGES: the sizes
#   ("" skips a table); BENCH_SCALE_TOOLS: the tools (default strata fuse-overlayfs-2.0 kernel).
# The images are OCI layouts written by python (tar + gzip, no files on disk), cached in
# $cache/scale; strata loads them into a store of its own, and the peers get its layer directories
# (through short symlinks: 128 store paths would not fit in the one page of mount options).

# scale_layout NAME KIND N...: the cached OCI layout $cache/scale/NAME, tag "scale".
#   layers L N  N small files dNN/fI, file I in layer I mod L
#   wide N      /wide holding N empty files
#   image N     N empty files dNNNN/fI, 1,000 per directory
scale_layout() {
  local out="$cache/scale/$1"; shift
  if [ ! -f "$out/index.json" ]; then
    echo "+ writing the OCI layout $out ($*) (once)" >&2
    rm -rf "$out.tmp"; mkdir -p "$out.tmp/blobs/sha256"
    python3 - "$out.tmp" "$@" <<'PY' || { rm -rf "$out.tmp"; echo "writing $out failed" >&2; exit 1; }
import gzip, hashlib, io, json, os, sys, tarfile

out, kind, args = sys.argv[1], sys.argv[2], [int(a) for a in sys.argv[3:]]
if kind == "layers":
    nl, n = args
    layers = [[] for _ in range(nl)]
    for i in range(n):
        layers[i % nl].append((f"d{i % 100:02d}/f{i}", f"{i}\n".encode()))
elif kind == "wide":
    layers = [[(f"wide/entry-{i:07d}", b"") for i in range(args[0])]]
elif kind == "image":
    layers = [[(f"d{i // 1000:04d}/f{i}", b"") for i in range(args[0])]]
else:
    sys.exit(f"unknown layout kind {kind}")


class Hashing:
    """A file-like sink that hashes and counts what goes through it."""

    def __init__(self, inner):
        self.inner, self.h, self.n = inner, hashlib.sha256(), 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        self.inner.write(b)
        return len(b)

    def flush(self):
        self.inner.flush()

    def tell(self):
        return self.n


def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{d}", "size": len(data)}


descs, diff_ids = [], []
for k, files in enumerate(layers):
    tmp = f"{out}/layer.tmp"
    with open(tmp, "wb") as raw:
        packed = Hashing(raw)
        gz = gzip.GzipFile(fileobj=packed, mode="wb", compresslevel=1, mtime=0)
        plain = Hashing(gz)
        with tarfile.open(fileobj=plain, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for d in sorted({p.rsplit("/", 1)[0] for p, _ in files}):
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1700000000
                tar.addfile(ti)
            for p, data in files:
                ti = tarfile.TarInfo(p)
                ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
                tar.addfile(ti, io.BytesIO(data))
        gz.close()
    d = packed.h.hexdigest()
    os.rename(tmp, f"{out}/blobs/sha256/{d}")
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{d}", "size": packed.n})
    diff_ids.append(f"sha256:{plain.h.hexdigest()}")
config = {
    "created": "2023-11-14T22:13:20Z",
    "architecture": "amd64",
    "os": "linux",
    "config": {"Cmd": ["/bin/sh"]},
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
    "history": [{"created": "2023-11-14T22:13:20Z", "created_by": f"strata bench scale layer {k}"} for k in range(len(layers))],
}
cd = blob(json.dumps(config).encode())
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cd},
    "layers": descs,
}
md = blob(json.dumps(manifest).encode())
index = {
    "schemaVersion": 2,
    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **md, "annotations": {"org.opencontainers.image.ref.name": "scale"}}],
}
with open(f"{out}/index.json", "w") as f:
    json.dump(index, f)
with open(f"{out}/oci-layout", "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
PY
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

# scale_fixture NAME KIND N...: the layout loaded into $mstore as NAME:latest, which becomes
# $m_image; $peer_lower is its layer directories (top first) through symlinks $lo/I (a short
# directory under /tmp made by bench_scale).
scale_fixture() {
  local name="$1" layout id lower l i=0; shift
  layout=$(scale_layout "$name" "$@")
  echo "+ strata load --oci $layout:scale" >&2
  id=$("$strata" --root "$mstore" load --oci "$layout:scale" | loaded_id "$mstore")
  "$strata" --root "$mstore" tag "$id" "$name:latest"
  m_image="$name:latest"
  lower=$(layer_dirs "$mstore" "$m_image")
  rm -f "$lo"/*
  peer_lower=""
  IFS=: read -ra l <<<"$lower"
  for d in "${l[@]}"; do
    ln -s "$d" "$lo/$i"; peer_lower+="${peer_lower:+:}$lo/$i"; i=$((i + 1))
  done
  local o="lowerdir=$peer_lower,upperdir=$work/upper,workdir=$work/ovl-work"
  [ "${#o}" -lt 4000 ] || { echo "the overlay options for $name are ${#o} bytes: more than mount(2) takes (a shorter BENCH_WORK helps)" >&2; exit 1; }
}

# Rotates the tools from run to run (as bench_mount does): sets the array order.
rotate_tools() { order=("${tools[@]:$((($1 - 1) % ${#tools[@]}))}" "${tools[@]:0:$((($1 - 1) % ${#tools[@]}))}"); }

# The workloads.
w_lookup() {
  local f
  while IFS= read -r f; do
    [ -e "$mp/$f" ] || { echo "lookup: $(stat "$mp/$f" 2>&1) (found again: $(stat -c %n "$mp/$f" 2>&1))" >&2; return 1; }
  done <"$work/lookup.list"
}
# The missing names must be missing, and the mount alive after (a dead one answers ENOTCONN).
w_missing() {
  local f
  while IFS= read -r f; do [ ! -e "$mp/$f" ] || { echo "lookup: $mp/$f exists" >&2; return 1; }; done <"$work/missing.list"
  stat "$mp/d00" >/dev/null
}
w_ls_wide() { ls -f "$mp/wide" >/dev/null; }
w_stat_wide() { find "$mp/wide" -printf '%s\n' >/dev/null; }
renames_setup() { mkdir "$mp/renames" && (cd "$mp/renames" && seq -f 'a%g' 1000 | xargs touch); }
w_renames() { perl -e 'for (1 .. 1000) { rename("$ARGV[0]/a$_", "$ARGV[0]/b$_") or die "rename a$_: $!\n" }' "$mp/renames"; }
mib() { echo "$(vm "$1" "$2") / 1024" | bc -l; }

scale_layers() {
  local nl r t n="$layer_files" cases_stat=() cases_look=() cases_miss=() order i lookups
  for nl in $layer_counts; do
    scale_fixture "scale-l$nl-f$n" layers "$nl" "$n"
    # 1,000 names spread over all the files (or every file), and 1,000 missing names.
    awk -v n="$n" 'BEGIN {s = int(n / 1000); if (s < 1) s = 1; for (i = 0; i < n && c < 1000; i += s) {printf "d%02d/f%d\n", i % 100, i; c++}}' >"$work/lookup.list"
    seq -f 'missing%g' 1000 | awk '{printf "d%02d/%s\n", NR % 100, $0}' >"$work/missing.list"
    lookups=$(wc -l <"$work/lookup.list")
    cases_stat+=("$nl layers: stat all, fresh mount"); cases_look+=("$nl layers: lookup"); cases_miss+=("$nl layers: missing name")
    for r in $(seq "$runs"); do
      echo "layers $nl: run $r/$runs" >&2
      rotate_tools "$r"
      for t in "${order[@]}"; do
        m_up "$t"; drop_caches; time_case "$nl layers: stat all, fresh mount|$t" : w_stat; m_down "$t"
        m_up "$t"; drop_caches; time_case "$nl layers: lookup|$t" : w_lookup; m_down "$t"
        m_up "$t"; drop_caches; time_case "$nl layers: missing name|$t" : w_missing; m_down "$t"
      done
    done
    "$strata" --root "$mstore" rmi "$m_image" >/dev/null
  done
  printf '\n#### Lower layers (%s files spread over them): stat of every entry, fresh mount\n' "$n"
  report_matrix "${tools[*]}" "${cases_stat[@]}"
  printf '\n#### Lower layers: one lookup of an existing name (µs per name, %s names)\n' "$lookups"
  MATRIX_UNIT="µs" MATRIX_SCALE="1000000 / $lookups" MATRIX_FMT="%.1f" report_matrix "${tools[*]}" "${cases_look[@]}"
  printf '\n#### Lower layers: one lookup of a missing name (µs per name, 1000 names)\n'
  MATRIX_UNIT="µs" MATRIX_SCALE="1000000 / 1000" MATRIX_FMT="%.1f" report_matrix "${tools[*]}" "${cases_miss[@]}"
  # The growth the issue bounds: lookup cost at the most layers over that at the fewest.
  local first last a b
  first=$(echo $layer_counts | awk '{print $1}'); last=$(echo $layer_counts | awk '{print $NF}')
  if [ "$first" != "$last" ]; then
    printf '\n'
    for t in "${tools[@]}"; do
      for i in lookup "missing name"; do
        a=$(echo "${times["$first layers: $i|$t"]:-}" | median); b=$(echo "${times["$last layers: $i|$t"]:-}" | median)
        [ -z "$a" ] || [ -z "$b" ] || printf -- '- %s, %s: %s layers cost %.2f× %s layer(s)\n' "$t" "$i" "$last" "$(echo "$b / $a" | bc -l)" "$first"
      done
    done
  fi
}

scale_dirs() {
  local n r t pid cases=() rcases=() order
  declare -A rss=()
  for n in $dir_sizes; do
    scale_fixture "scale-wide-$n" wide "$n"
    cases+=("$n entries: ls -f" "$n entries: find -printf %s"); rcases+=("$n entries: rename")
    for r in $(seq "$runs"); do
      echo "directory of $n: run $r/$runs" >&2
      rotate_tools "$r"
      for t in "${order[@]}"; do
        m_up "$t"; drop_caches; time_case "$n entries: ls -f|$t" : w_ls_wide; m_down "$t"
        m_up "$t"; drop_caches; time_case "$n entries: find -printf %s|$t" : w_stat_wide
        if [ "$t" != kernel ]; then
          pid=$(daemon_pid "$t")
          rss["$n|$t"]=$(printf '%.1f / %.1f' "$(mib "$pid" VmRSS)" "$(mib "$pid" VmHWM)")
        fi
        time_case "$n entries: rename|$t" renames_setup w_renames
        m_down "$t"
      done
    done
    "$strata" --root "$mstore" rmi "$m_image" >/dev/null
  done
  printf '\n#### A directory of N entries: ls -f and find -printf %%s, each on a fresh mount\n'
  report_matrix "${tools[*]}" "${cases[@]}"
  printf '\n#### Then one rename on that mount (µs per rename, 1,000 renames)\n'
  MATRIX_UNIT="µs" MATRIX_SCALE="1000000 / 1000" MATRIX_FMT="%.1f" report_matrix "${tools[*]}" "${rcases[@]}"
  printf '\n#### Daemon memory after the find (RSS / peak, MiB; last run)\n\n| entries |'
  for t in "${tools[@]}"; do [ "$t" = kernel ] || printf ' %s |' "$t"; done
  printf '\n|---:|'; for t in "${tools[@]}"; do [ "$t" = kernel ] || printf -- '---:|'; done; printf '\n'
  for n in $dir_sizes; do
    printf '| %s |' "$n"
    for t in "${tools[@]}"; do [ "$t" = kernel ] || printf ' %s |' "${rss["$n|$t"]:-–}"; done
    printf '\n'
  done
}

scale_images() {
  local n r t cases=() order
  for n in $image_sizes; do
    scale_fixture "scale-image-$n" image "$n"
    cases+=("$n files: mount" "$n files: umount")
    for r in $(seq "$runs"); do
      echo "image of $n files: run $r/$runs" >&2
      rotate_tools "$r"
      for t in "${order[@]}"; do
        m_prepare "$t"
        time_case "$n files: mount|$t" : m_mount "$t"
        ls "$mp" >/dev/null
        time_case "$n files: umount|$t" : m_umount "$t"
        m_discard "$t"
      done
    done
    "$strata" --root "$mstore" rmi "$m_image" >/dev/null
  done
  printf '\n#### An image of N files: mount and umount\n'
  report_matrix "${tools[*]}" "${cases[@]}"
}

bench_scale() {
  local tools
  tools_from BENCH_SCALE_TOOLS "strata fuse-overlayfs-2.0 kernel"
  if [ "${BENCH_SCALE:-full}" = quick ]; then
    layer_counts=${BENCH_SCALE_LAYERS-1 8 32 128}; layer_files=${BENCH_SCALE_LAYER_FILES:-1000}
    dir_sizes=${BENCH_SCALE_DIRS-1000 10000}; image_sizes=${BENCH_SCALE_IMAGES-1000 10000}
  else
    layer_counts=${BENCH_SCALE_LAYERS-1 8 32 128}; layer_files=${BENCH_SCALE_LAYER_FILES:-10000}
    dir_sizes=${BENCH_SCALE_DIRS-1000 100000 1000000}; image_sizes=${BENCH_SCALE_IMAGES-10000 1000000}
  fi
  mstore="$work/scale-store"; mp="$work/mp"; lo=$(mktemp -d /tmp/sbl.XXXXXX)
  cleanups+=("m_cleanup; rm -rf '$mstore' '$lo' '$work/upper' '$work/ovl-work' '$work/lookup.list' '$work/missing.list'")
  rm -rf "$mstore"; mkdir -p "$mp" "$work/peer"
  echo
  echo "scale benchmark: $runs runs, work dir $work ($(stat -f -c %T "$work")), $(nproc) cores, kernel $(uname -r); $(tool_versions)"
  [ -z "$layer_counts" ] || scale_layers
  [ -z "$dir_sizes" ] || scale_dirs
  [ -z "$image_sizes" ] || scale_images
}
