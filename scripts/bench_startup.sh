# shellcheck shell=bash disable=SC2154,SC2016,SC2317  # work, runs, strata, fofs2, mp, rl_*: set by scripts/bench.sh
# and bench_rootless.sh; the user's loop is bash for the user, expanded there
# Sourced by scripts/bench.sh: the start-up of the short commands (issues 16 and 17), precisely.
#
#   scripts/bench.sh startup [RUNS]
#     RUNS x 10 interleaved rounds (each round times every tool once; the order rotates) of a mount
#     and an unmount of the bench image: as root, strata (a container), fuse-overlayfs 2.0 over the
#     same layer directories (+ fusermount3 -u once its mount shows: it can return before), and
#     kernel overlayfs (mount + umount); then, when the rootless user exists (see
#     bench_rootless.sh), the same from the user's shell: strata (its daemon joins the user's kept
#     namespace) against fuse-overlayfs 2.0 + umount(8) timed inside one `strata unshare` session
#     (what the rootless bench does), and `strata unshare true`. Timed with bash's $EPOCHREALTIME:
#     no process start inside the timer (a `date` adds about 1 ms to every 5-10 ms measurement).
#     Every binary is in the page cache first; a fuse-overlayfs daemon is gone before the next tool
#     (it lingers 35-75 ms after its unmount). BENCH_STARTUP_RAW=1 prints every measurement.

declare -A st_times
# st_case NAME CMD...: CMD timed (ms into st_times[NAME]); a failure ends the benchmark.
st_case() {
  local name="$1" t0 t1; shift
  t0=$EPOCHREALTIME
  "$@" >/dev/null 2>&1 || { echo "benchmark step failed: $name: $*" >&2; "$@"; exit 1; }
  t1=$EPOCHREALTIME
  st_times[$name]+="$(echo "(${t1/,/.} - ${t0/,/.}) * 1000" | bc -l) "
}
st_median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{a[NR]=$1} END {if (NR) printf "%.2f", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
st_ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f×'; }
st_fofs2_gone() { while pgrep -f -- "^$fofs2 .* $mp\$" >/dev/null; do sleep 0.001; done; }

bench_startup() {
  local layout id lower c r t rounds=$((runs * 10)) tools=(strata fuse-overlayfs-2.0 kernel)
  fofs2_install
  layout=$(bench_layout)
  local store="$work/startup-store"
  mp="$work/startup-mp"
  cleanups+=("umount '$mp' 2>/dev/null; fusermount3 -u -q '$mp' 2>/dev/null; rmdir '$mp'; rm -rf '$store' '$work/st-up' '$work/st-wk' '$work/st-kup' '$work/st-kwk'")
  rm -rf "$store"; mkdir -p "$mp" "$work/st-up" "$work/st-wk" "$work/st-kup" "$work/st-kwk"
  id=$("$strata" --root "$store" load --oci "$layout:bench" | loaded_id "$store")
  "$strata" --root "$store" tag "$id" bench:latest
  c=$("$strata" --root "$store" create bench:latest)
  lower=$(layer_dirs "$store" bench:latest)
  st_strata() { "$strata" --root "$store" mount "$c" "$mp" && "$strata" --root "$store" umount "$mp"; }
  st_fofs() { "$fofs2" -o "lowerdir=$lower,upperdir=$work/st-up,workdir=$work/st-wk" "$mp" && m_wait_mounted && fusermount3 -u "$mp"; }
  st_kernel() { mount -t overlay overlay -o "lowerdir=$lower,upperdir=$work/st-kup,workdir=$work/st-kwk" "$mp" && umount "$mp"; }
  # The image just unpacked is written back first: its writeback would slow every small write
  # (the mount records) of the rounds.
  sync
  warm_bins
  for r in $(seq "$rounds"); do
    local order=("${tools[@]:$(((r - 1) % 3))}" "${tools[@]:0:$(((r - 1) % 3))}")
    for t in "${order[@]}"; do
      case "$t" in
        strata) st_case "root|strata" st_strata ;;
        fuse-overlayfs-2.0) st_case "root|fuse-overlayfs-2.0" st_fofs; st_fofs2_gone ;;
        kernel) st_case "root|kernel" st_kernel ;;
      esac
    done
  done
  [ -z "${BENCH_STARTUP_RAW:-}" ] || for t in "${tools[@]}"; do echo "root|$t: ${st_times[root|$t]}" >&2; done
  if id "${BENCH_ROOTLESS_USER:-strata-rootless}" >/dev/null 2>&1; then
    source scripts/bench_rootless.sh
    st_rootless "$rounds"
  fi
  echo
  echo "startup benchmark: $rounds interleaved rounds, work dir $work ($(stat -f -c %T "$work")), $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); $(tool_versions)"
  printf '\n| case | strata (ms) | fuse-overlayfs 2.0 (ms) | kernel (ms) | strata / fofs 2.0 | strata / kernel |\n|---|---:|---:|---:|---:|---:|\n'
  local s f k
  s=$(st_median <<<"${st_times[root|strata]}"); f=$(st_median <<<"${st_times[root|fuse-overlayfs-2.0]}")
  k=$(st_median <<<"${st_times[root|kernel]}")
  echo "| mount+umount (root) | $s | $f | $k | $(st_ratio "$s" "$f") | $(st_ratio "$s" "$k") |"
  if [ -n "${st_times[rootless|strata]:-}" ]; then
    s=$(st_median <<<"${st_times[rootless|strata]}"); f=$(st_median <<<"${st_times[rootless|fuse-overlayfs-2.0]}")
    echo "| mount+umount (rootless, strata from the user's shell, fuse-overlayfs in the namespace) | $s | $f | | $(st_ratio "$s" "$f") | |"
    echo "| strata unshare true (rootless) | $(st_median <<<"${st_times[rootless|unshare]}") | | | | |"
  fi
}

# st_rootless ROUNDS: the user's loop (bash, $EPOCHREALTIME), printing "NAME T0 T1" lines.
st_rootless() {
  local rounds="$1" layout c out name t0 t1
  rl_setup
  layout=$(rl_layout "$(bench_layout)")
  rl_as "$strata" load --oci "$layout:bench" >/dev/null
  c=$(rl_as "$strata" create bench-oci:bench)
  local lower
  lower=$(rl_as "$strata" inspect bench-oci:bench \
    | json '":".join(sys.argv[2] + "/layers/" + l.split(":")[1] + "/fs" for l in reversed(d[0]["RootFS"]["Layers"]))' "$rl_store")
  rl_as mkdir -p "$rl_home/upper" "$rl_home/wk"
  sync
  warm_bins
  out=$(rl_as bash -euc '
    S=$1; C=$2; MP=$3; FO=$4; L=$5; UP=$6; WK=$7; N=$8
    tools=(strata fofs2 unshare)
    for r in $(seq "$N"); do
      order=("${tools[@]:$(((r - 1) % 3))}" "${tools[@]:0:$(((r - 1) % 3))}")
      for t in "${order[@]}"; do
        case $t in
          strata) t0=$EPOCHREALTIME; "$S" mount "$C" "$MP"; "$S" umount "$MP"; echo "strata $t0 $EPOCHREALTIME" ;;
          fofs2) "$S" unshare bash -euc "t0=\$EPOCHREALTIME; $FO -o lowerdir=$L,upperdir=$UP,workdir=$WK $MP >/dev/null 2>&1; for ((i = 0; i < 100000; i++)); do umount $MP 2>/dev/null && break; done; echo fuse-overlayfs-2.0 \$t0 \$EPOCHREALTIME" ;;
          unshare) t0=$EPOCHREALTIME; "$S" unshare true; echo "unshare $t0 $EPOCHREALTIME" ;;
        esac
      done
    done' _ "$strata" "$c" "$rl_home/mp" "$fofs2" "$lower" "$rl_home/upper" "$rl_home/wk" "$rounds")
  while read -r name t0 t1; do
    st_times["rootless|$name"]+="$(echo "(${t1/,/.} - ${t0/,/.}) * 1000" | bc -l) "
  done <<<"$out"
  [ -z "${BENCH_STARTUP_RAW:-}" ] || printf '%s\n' "$out" >&2
  rl_as "$strata" rm "$c" >/dev/null
}
