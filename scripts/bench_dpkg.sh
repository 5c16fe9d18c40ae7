# shellcheck shell=bash disable=SC2154  # cache, work, runs, strata...: set by scripts/bench.sh
# Sourced by scripts/bench.sh (its fixtures, timing and m_* tools): the package installation
# benchmark of issue 17, the workload every `RUN apt-get install` is.
#
#   scripts/bench.sh dpkg [RUNS]     `dpkg -i` of perl (perl-base, perl, libperl5.36, perl-modules-5.36,
#                                    libgdbm6, libgdbm-compat4: ~3,000 files, dpkg's write + fsync +
#                                    rename) in a chroot on the union over the Debian minbase rootfs,
#                                    each tool in turn, interleaved; medians and ratios.
#                                    BENCH_DPKG_TOOLS picks the tools (default: all five).
#   scripts/bench.sh dpkg-profile    one install per FUSE tool (BENCH_PROFILE_TOOLS, default
#                                    strata-overlay fuse-overlayfs-2.0) with the kernel's
#                                    fuse_request_send/end tracepoints on: requests by opcode and their
#                                    latency (from the kernel queueing the request to the daemon's
#                                    reply); then one more under `strace -f -c` on the daemon:
#                                    syscalls by name and per request.
#
# The chroot gets what a container runtime gives: /dev bound from the host (FUSE mounts are nodev)
# and a /proc. The .debs are fetched once with `apt-get download` into $cache/debs and copied into
# the union before each (untimed) run, as apt would have put them in /var/cache/apt/archives.

dpkg_pkgs=(perl-base perl libperl5.36 perl-modules-5.36 libgdbm6 libgdbm-compat4)

dpkg_debs() {
  local d="$cache/debs"
  if [ ! -f "$d/.complete" ]; then
    echo "+ apt-get download ${dpkg_pkgs[*]} (once)" >&2
    rm -rf "$d.tmp"; mkdir -p "$d.tmp"; chown _apt "$d.tmp" 2>/dev/null || true   # apt's sandbox user
    if ! (cd "$d.tmp" && apt-get download -q "${dpkg_pkgs[@]}" >&2); then
      apt-get update -qq >&2
      (cd "$d.tmp" && apt-get download -q "${dpkg_pkgs[@]}" >&2) || { echo "apt-get download failed" >&2; exit 1; }
    fi
    touch "$d.tmp/.complete"; rm -rf "$d"; mv "$d.tmp" "$d"
  fi
  echo "$d"
}

# The minbase image in a store of its own ($mstore); the peers get its one layer directory.
dpkg_fixture() {
  local layout id
  layout=$(debian_oci); debs=$(dpkg_debs)
  mstore="$work/dpkg-store"; mp="$work/mp"; m_image=debian:bookworm
  cleanups+=("m_cleanup; rm -rf '$mstore' '$work/upper' '$work/ovl-work'")
  rm -rf "$mstore"; mkdir -p "$mp" "$work/peer"
  echo "+ strata load --oci $layout:bookworm" >&2
  id=$("$strata" --root "$mstore" load --oci "$layout:bookworm" | loaded_id "$mstore")
  "$strata" --root "$mstore" tag "$id" "$m_image"
  peer_lower=$(layer_dirs "$mstore" "$m_image")
  deb_names=()
  local f
  for f in "$debs"/*.deb; do deb_names+=("/var/cache/apt/archives/${f##*/}"); done
  echo "debs: $(cd "$debs" && ls ./*.deb | tr '\n' ' ')($(du -ch "$debs"/*.deb | tail -1 | cut -f1))" >&2
  echo "lowerdir: $peer_lower" >&2
}

# dpkg_enter TOOL: the union mounted, the debs in it, /dev and /proc in the chroot (untimed).
dpkg_enter() {
  m_up "$1"
  mkdir -p "$mp/var/cache/apt/archives"
  cp "$debs"/*.deb "$mp/var/cache/apt/archives/"
  mount --bind /dev "$mp/dev"
  mount -t proc proc "$mp/proc"
}
dpkg_leave() { umount "$mp/proc"; umount "$mp/dev"; m_down "$1"; }
# The state each install starts from: settled (see settle), the rootfs and the debs in the page cache.
dpkg_settle() { m_settle; cat "$mp"/var/cache/apt/archives/*.deb >/dev/null; }
dpkg_install() {
  chroot "$mp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C DEBIAN_FRONTEND=noninteractive \
    dpkg -i "${deb_names[@]}"
}
# The install really happened: every package installed, and the new perl runs.
dpkg_check() {
  local p st
  for p in "${dpkg_pkgs[@]}"; do
    st=$(chroot "$mp" dpkg-query -W -f '${Status}' "$p" 2>&1) || true
    [ "$st" = "install ok installed" ] || { echo "$1: $p is not installed after dpkg -i ($st)" >&2; exit 1; }
  done
  [ "$(chroot "$mp" perl -MPOSIX -e 'print floor(2.5)')" = 2 ] || { echo "$1: perl does not run after dpkg -i" >&2; exit 1; }
}

bench_dpkg() {
  local tools t r
  tools_from BENCH_DPKG_TOOLS "strata strata-overlay fuse-overlayfs-2.0 fuse-overlayfs-1.10 kernel"
  dpkg_fixture
  for r in $(seq "$runs"); do
    echo "run $r/$runs" >&2
    local order=("${tools[@]:$(((r - 1) % ${#tools[@]}))}" "${tools[@]:0:$(((r - 1) % ${#tools[@]}))}")
    for t in "${order[@]}"; do
      dpkg_enter "$t"
      time_case "dpkg -i perl (6 debs)|$t" dpkg_settle dpkg_install
      dpkg_check "$t"
      dpkg_leave "$t"
    done
  done
  echo
  echo "dpkg benchmark: $runs runs, work dir $work ($(stat -f -c %T "$work")), $(nproc) cores, kernel $(uname -r); $(tool_versions)"
  report_matrix "${tools[*]}" "dpkg -i perl (6 debs)"
}

# ---- profile ----------------------------------------------------------------------------------
tracefs=/sys/kernel/tracing
tinst=""
# fuse_trace_start: the fuse_request_send/end tracepoints, for the connection of $mp only, in a
# tracing instance of our own (nothing else on the machine is disturbed), into its ring buffer.
fuse_trace_start() {
  if [ ! -d "$tracefs/events" ]; then
    mount -t tracefs nodev "$tracefs"; cleanups+=("umount '$tracefs'")
  fi
  [ -d "$tracefs/events/fuse/fuse_request_send" ] || {
    echo "this kernel has no fuse_request_send/end tracepoints (Linux 6.15 or newer has them)" >&2; exit 1; }
  # The connection is the superblock's kernel dev_t: MKDEV(major, minor) = major << 20 | minor.
  local conn e
  conn=$(($(stat -c %Hd "$mp") << 20 | $(stat -c %Ld "$mp")))
  if [ -z "$tinst" ]; then
    tinst="$tracefs/instances/strata-bench-$$"
    mkdir "$tinst"; cleanups+=("fuse_trace_stop; rmdir '$tinst' 2>/dev/null")
    echo 32768 >"$tinst/buffer_size_kb"
  fi
  echo >"$tinst/trace"
  for e in fuse_request_send fuse_request_end; do
    echo "connection == $conn" >"$tinst/events/fuse/$e/filter"
    echo 1 >"$tinst/events/fuse/$e/enable"
  done
  echo 1 >"$tinst/tracing_on"
}
# fuse_trace_stop [OUT]: tracing off; the events copied to OUT (a lost event makes the profile void).
fuse_trace_stop() {
  [ -n "$tinst" ] && [ -d "$tinst" ] || return 0
  echo 0 >"$tinst/tracing_on"
  echo 0 >"$tinst/events/fuse/enable"
  if [ -n "${1:-}" ]; then
    cat "$tinst/trace" >"$1"
    if grep -h '^overrun:' "$tinst"/per_cpu/cpu*/stats | awk '$2 > 0 {bad = 1} END {exit !bad}'; then
      echo "the trace buffer overflowed: raise buffer_size_kb in fuse_trace_start" >&2; exit 1
    fi
  fi
  echo >"$tinst/trace"
}
# fuse_trace_report FILE: requests by opcode, their count and latency (kernel send to reply), as a
# table sorted by total time. Also prints "requests N" on stderr's last line for the caller.
fuse_trace_report() {
  python3 - "$1" <<'PY'
import re, sys
pat = re.compile(r'\s(\d+\.\d+): fuse_request_(send|end): connection \d+ req (\d+)(?: opcode (\d+) \((\w+)\))?')
pending, lat, count = {}, {}, {}
for line in open(sys.argv[1]):
    m = pat.search(line)
    if not m:
        continue
    t, kind, req = float(m.group(1)), m.group(2), m.group(3)
    if kind == "send":
        op = m.group(5).removeprefix("FUSE_")
        pending[req] = (op, t)
        count[op] = count.get(op, 0) + 1
    elif req in pending:
        op, t0 = pending.pop(req)
        lat.setdefault(op, []).append((t - t0) * 1e6)
total = sum(count.values())
def pct(v, p):
    return v[min(len(v) - 1, int(p * len(v)))]
print("\n| opcode | requests | share | total (ms) | mean (µs) | p50 (µs) | p99 (µs) | max (µs) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
rows = sorted(count, key=lambda o: -sum(lat.get(o, [])))
for op in rows:
    v = sorted(lat.get(op, []))
    if v:
        print(f"| {op} | {count[op]} | {100 * count[op] / total:.1f}% | {sum(v) / 1e3:.1f} | {sum(v) / len(v):.1f} | {pct(v, .5):.1f} | {pct(v, .99):.1f} | {v[-1]:.1f} |")
    else:  # FORGET and BATCH_FORGET have no reply
        print(f"| {op} | {count[op]} | {100 * count[op] / total:.1f}% | – | – | – | – | – |")
alll = [x for v in lat.values() for x in v]
print(f"| all | {total} | 100% | {sum(alll) / 1e3:.1f} | {sum(alll) / max(1, len(alll)):.1f} | | | |")
print(f"requests {total}", file=sys.stderr)
PY
}

bench_dpkg_profile() {
  local tools t pid spid t0 t1 n calls
  tools_from BENCH_PROFILE_TOOLS "strata-overlay fuse-overlayfs-2.0"
  for t in "${tools[@]}"; do
    [ "$t" != kernel ] || { echo "dpkg-profile: kernel overlayfs has no daemon to profile" >&2; exit 2; }
  done
  dpkg_fixture
  echo
  echo "dpkg profile: work dir $work ($(stat -f -c %T "$work")), $(nproc) cores, kernel $(uname -r); $(tool_versions)"
  for t in "${tools[@]}"; do
    # 1. Requests by opcode, with nothing attached to the daemon.
    dpkg_enter "$t"; dpkg_settle
    fuse_trace_start
    t0=$(now); dpkg_install >/dev/null 2>&1 || { echo "dpkg -i failed on $t" >&2; dpkg_install; exit 1; }; t1=$(now)
    fuse_trace_stop "$work/fuse.trace"
    dpkg_check "$t"; dpkg_leave "$t"
    printf '\n### %s: dpkg -i perl, %.2f s, FUSE requests by opcode (kernel send → reply)\n' "$t" "$(echo "$t1 - $t0" | bc -l)"
    fuse_trace_report "$work/fuse.trace" 2>/dev/null
    # 2. The same under strace -f -c on the daemon (all its threads), requests counted again.
    dpkg_enter "$t"; dpkg_settle
    pid=$(daemon_pid "$t")
    strace -f -c -o "$work/strace.txt" -p "$pid" 2>/dev/null & spid=$!
    sleep 1   # strace attaches to every thread before the workload starts
    fuse_trace_start
    t0=$(now); dpkg_install >/dev/null 2>&1 || { echo "dpkg -i failed on $t under strace" >&2; exit 1; }; t1=$(now)
    fuse_trace_stop "$work/fuse.trace"
    kill -INT "$spid"; wait "$spid" || true
    dpkg_check "$t"; dpkg_leave "$t"
    n=$(fuse_trace_report "$work/fuse.trace" 2>&1 >/dev/null | awk '/^requests/ {print $2}')
    calls=$(awk '$NF == "total" {print $4}' "$work/strace.txt")
    printf '\n### %s under strace -f -c (%.2f s): %s syscalls for %s requests, %.1f per request\n\n```\n' \
      "$t" "$(echo "$t1 - $t0" | bc -l)" "$calls" "$n" "$(echo "$calls / $n" | bc -l)"
    head -n 22 "$work/strace.txt"
    printf '```\n'
  done
  rm -f "$work/fuse.trace" "$work/strace.txt"
}
