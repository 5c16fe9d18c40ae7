# shellcheck shell=bash disable=SC2154,SC2016  # cache, work, runs, strata, fofs1...: set by scripts/bench.sh; the
# workloads are sh for the namespace, expanded there
# Sourced by scripts/bench.sh (its fixtures, timing and reports): strata as an ordinary user (issue 16).
#
#   scripts/bench.sh rootless [RUNS]
#     load   `strata load` of the Debian minbase image by the user (it unpacks in the user's
#            namespace, chowning for real) vs `umoci unpack --rootless` by the same user, each also
#            followed by a sync (strata makes the layer durable before renaming it in).
#     mount  the workloads of `scripts/bench.sh mount` on the bench image, as the user, strata vs
#            fuse-overlayfs 1.10 (Debian) and 2.0, each tool in turn, interleaved. The user has a
#            subordinate range, so the layers hold files of subordinate owners, which only a daemon
#            in the user's namespace can read: strata mounts through fusermount3 and its daemon then
#            enters the namespace; fuse-overlayfs runs in the namespace as Podman runs it (it
#            mounts there directly, since fusermount3's setuid does not work inside). The workloads
#            run in the namespace (`strata unshare`, as `podman unshare`) and are timed there. No
#            FUSE passthrough for a user: every read goes through the daemon.
#   BENCH_ROOTLESS_USER: the user (default strata-rootless; it needs /etc/subuid and /etc/subgid
#   ranges: `useradd -U strata-rootless && usermod --add-subuids 300000-365535 --add-subgids
#   300000-365535 strata-rootless`). BENCH_ROOTLESS_TOOLS: the mount tools (default
#   "strata fuse-overlayfs-1.10 fuse-overlayfs-2.0").

rl_user="${BENCH_ROOTLESS_USER:-strata-rootless}"

rl_setup() {
  id "$rl_user" >/dev/null 2>&1 || { echo "bench rootless: no user $rl_user (see scripts/bench_rootless.sh)" >&2; exit 1; }
  grep -q "^$rl_user:" /etc/subuid || { echo "bench rootless: $rl_user has no range in /etc/subuid" >&2; exit 1; }
  [ "$(stat -c %a /dev/fuse)" = 666 ] || { echo "bench rootless: /dev/fuse must be 0666 (chmod 0666 /dev/fuse)" >&2; exit 1; }
  rl_uid=$(id -u "$rl_user"); rl_gid=$(id -g "$rl_user")
  rl_home="$work/rootless"; rl_store="$rl_home/store"
  rm -rf "$rl_home"; mkdir -p "$rl_home"
  chown "$rl_uid:$rl_gid" "$rl_home"; chmod 0755 "$work"; chmod 0700 "$rl_home"
  rl_as mkdir -p "$rl_home/run" "$rl_home/mp"
  # Whatever is left mounted or stored comes off as the user (root can't stat a user's FUSE mount),
  # and the process keeping the user's namespace (in $rl_home/run) is ended.
  cleanups+=("rl_as '$strata' umount '$rl_home/mp' >/dev/null 2>&1; fusermount3 -u '$rl_home/mp' 2>/dev/null; rl_ns 'rm -rf $rl_home/store $rl_home/bundle $rl_home/upper $rl_home/wk' >/dev/null 2>&1; rl_as '$strata' system migrate >/dev/null 2>&1; rm -rf '$rl_home'")
}

# rl_as CMD...: CMD as the user, with a clean environment (its store is $rl_store).
rl_as() {
  setpriv --reuid="$rl_uid" --regid="$rl_gid" --init-groups -- env -i PATH=/usr/local/bin:/usr/bin:/bin \
    HOME="$rl_home" USER="$rl_user" XDG_RUNTIME_DIR="$rl_home/run" STRATA_ROOT="$rl_store" "$@"
}
# rl_layout LAYOUT: a copy of the cached OCI layout the user can read (umoci writes it 0600).
rl_layout() {
  local out; out="$rl_home/$(basename "$1")"
  [ -d "$out" ] || { cp -a "$1" "$out"; chown -R "$rl_uid:$rl_gid" "$out"; }
  echo "$out"
}
# rl_ns SCRIPT: SCRIPT (sh -eu) in the user's namespace, as root there.
rl_ns() { rl_as "$strata" unshare sh -euc "$1"; }

# ---- load -------------------------------------------------------------------------------------
bench_rootless_load() {
  local layout i; layout=$(rl_layout "$(debian_oci)")
  rl_clean() { rl_ns "rm -rf $rl_store $rl_home/bundle"; settle "$layout"/blobs/sha256/*; }
  for i in $(seq "$runs"); do
    echo "load run $i/$runs" >&2
    time_case "strata load (rootless)" rl_clean rl_as "$strata" load --oci "$layout:bookworm"
    time_case "umoci unpack --rootless" rl_clean rl_as umoci unpack --rootless --image "$layout:bookworm" "$rl_home/bundle"
    time_case "umoci unpack --rootless + sync" rl_clean rl_as sh -c "umoci unpack --rootless --image '$layout:bookworm' '$rl_home/bundle' && sync -f '$rl_home'"
  done
  rl_clean
  report "umoci unpack --rootless + sync" "strata load (rootless)" "umoci unpack --rootless + sync" "umoci unpack --rootless"
}

# ---- mount ------------------------------------------------------------------------------------
# The workloads, as sh for the namespace ($MP the mount; the same as bench.sh's w_*).
rl_w_stat='find "$MP" -printf "%s\n" >/dev/null'
rl_w_read='tar -C "$MP" --exclude=./bench/big.bin -cf - . | cat >/dev/null'
rl_w_bigread='dd if="$MP/bench/big.bin" of=/dev/null bs=1M 2>/dev/null'
rl_w_bigwrite='dd if=/dev/zero of="$MP/bench/new.bin" bs=1M count=512 conv=fdatasync 2>/dev/null'
rl_w_create='mkdir "$MP/many"; cd "$MP/many"; for i in $(seq 10000); do echo "$i" >"f$i"; done; cd /'
rl_w_append='while IFS= read -r f; do echo appended >>"$MP/$f"; done <"$LIST"'
rl_w_rm='rm -rf "$MP/usr/share"'

# rl_case TOOL NAME WORKLOAD...: a fresh writable layer and mount for TOOL, then each WORKLOAD in
# turn in one namespace session, timed there (times[NAME|TOOL], then times[NAME2|TOOL]...); the
# names and workloads alternate: NAME1 W1 NAME2 W2...
rl_case() {
  local tool="$1"; shift
  local script="MP='$rl_home/mp'; LIST='$rl_home/copyup.list'; " names=() c="" out t0 t1 n
  while [ "$#" -gt 0 ]; do
    names+=("$1"); script+="t=\$(date +%s.%N); $2; echo \"T \$t \$(date +%s.%N)\"; "; shift 2
  done
  case "$tool" in
    strata)
      c=$(rl_as "$strata" create bench:latest)
      rl_as "$strata" mount "$c" "$rl_home/mp"
      out=$(rl_ns "$script")
      rl_as "$strata" umount "$rl_home/mp"; rl_as "$strata" rm "$c" >/dev/null ;;
    fuse-overlayfs-*)
      local fo="$fofs1"; [ "$tool" = fuse-overlayfs-1.10 ] || fo="$fofs2"
      out=$(rl_ns "rm -rf $rl_home/upper $rl_home/wk; mkdir $rl_home/upper $rl_home/wk
        $fo -o lowerdir=$rl_lower,upperdir=$rl_home/upper,workdir=$rl_home/wk $rl_home/mp >/dev/null 2>&1
        $script umount $rl_home/mp; rm -rf $rl_home/upper $rl_home/wk") ;;
  esac
  n=0
  while read -r _ t0 t1; do
    times["${names[n]}|$tool"]+="$(echo "$t1 - $t0" | bc -l) "; n=$((n + 1))
  done < <(printf '%s\n' "$out" | grep '^T ')
  [ "$n" = "${#names[@]}" ] || { echo "bench rootless: $tool: ${names[*]}: $n timings of ${#names[@]}" >&2; exit 1; }
}

# mount+umount, timed as the user runs it: strata's commands from the user's shell; fuse-overlayfs
# and umount in the namespace session (what Podman does). Both are timed by a shell already
# running as the user (not around setpriv and env, which would add two process starts to strata's
# time and none to fuse-overlayfs').
rl_mount_umount() {
  local tool="$1" t0 t1 t2 t3 c out
  warm_bins # (see bench.sh: the binaries are read back after the previous case's settle)
  case "$tool" in
    strata)
      c=$(rl_as "$strata" create bench:latest)
      out=$(rl_as sh -euc "t=\$(date +%s.%N); '$strata' mount '$c' '$rl_home/mp'; '$strata' umount '$rl_home/mp'
        echo \"T \$t \$(date +%s.%N)\"")
      read -r _ t0 t1 < <(printf '%s\n' "$out" | grep '^T ')
      # And where fuse-overlayfs is timed, in the namespace session: there strata mounts with
      # mount(2) itself and serves from where it is, no fusermount3 and no namespace to enter.
      out=$(rl_ns "t=\$(date +%s.%N); '$strata' mount '$c' '$rl_home/mp'; '$strata' umount '$rl_home/mp'
        echo \"T \$t \$(date +%s.%N)\"")
      read -r _ t2 t3 < <(printf '%s\n' "$out" | grep '^T ')
      times["$rl_in_ns|$tool"]+="$(echo "$t3 - $t2" | bc -l) "
      rl_as "$strata" rm "$c" >/dev/null ;;
    fuse-overlayfs-*)
      local fo="$fofs1"; [ "$tool" = fuse-overlayfs-1.10 ] || fo="$fofs2"
      out=$(rl_ns "rm -rf $rl_home/upper $rl_home/wk; mkdir $rl_home/upper $rl_home/wk
        t=\$(date +%s.%N); $fo -o lowerdir=$rl_lower,upperdir=$rl_home/upper,workdir=$rl_home/wk $rl_home/mp >/dev/null 2>&1
        umount $rl_home/mp; echo \"T \$t \$(date +%s.%N)\"; rm -rf $rl_home/upper $rl_home/wk")
      read -r _ t0 t1 < <(printf '%s\n' "$out" | grep '^T ')
      times["$rl_in_ns|$tool"]+="$(echo "$t1 - $t0" | bc -l) " ;;
  esac
  times["mount+umount|$tool"]+="$(echo "$t1 - $t0" | bc -l) "
}
# The row of mount+umount with every tool run in the namespace session (fuse-overlayfs' is the
# same measurement as its mount+umount row; strata's is timed there too).
rl_in_ns="mount+umount, all in the namespace"

rl_settle() { settle; warm_tree "$rl_store/layers"; }

bench_rootless_mount() {
  local layout id r t
  tools_from BENCH_ROOTLESS_TOOLS "strata fuse-overlayfs-1.10 fuse-overlayfs-2.0"
  layout=$(rl_layout "$(bench_layout)")
  echo "+ strata load --oci $layout:bench (as $rl_user)" >&2
  id=$(rl_as "$strata" load --oci "$layout:bench" | sed -n 's/^Loaded image ID: sha256:\([0-9a-f]*\).*/\1/p; s/^Loaded image: //p' | tail -1)
  rl_as "$strata" tag "$id" bench:latest
  # strata's own layer directories, top first, for fuse-overlayfs (it reads OCI whiteouts too).
  rl_lower=$(rl_as "$strata" inspect bench:latest \
    | json '":".join(sys.argv[2] + "/layers/" + l.split(":")[1] + "/fs" for l in reversed(d[0]["RootFS"]["Layers"]))' "$rl_store")
  copyup_list >"$rl_home/copyup.list"; chmod 0644 "$rl_home/copyup.list"
  for r in $(seq "$runs"); do
    echo "mount run $r/$runs" >&2
    local order=("${tools[@]:$(((r - 1) % ${#tools[@]}))}" "${tools[@]:0:$(((r - 1) % ${#tools[@]}))}")
    for t in "${order[@]}"; do
      rl_mount_umount "$t"
      rl_case "$t" "stat all, fresh mount" "$rl_w_stat" "stat all, warm" "$rl_w_stat"
      rl_case "$t" "read all (tar | cat)" "$rl_w_read"
      # The big file is in the page cache for every tool: the case measures the mount.
      find "$rl_store/layers" -path '*/fs/bench/big.bin' -exec cat {} + >/dev/null
      rl_case "$t" "512 MiB lower file read" "$rl_w_bigread"
      # The cases that allocate inodes in the upper start settled (see settle in bench.sh).
      rl_settle; rl_case "$t" "512 MiB write + fdatasync" "$rl_w_bigwrite"
      rl_settle; rl_case "$t" "create 10,000 files" "$rl_w_create"
      rl_settle; rl_case "$t" "append to 100 lower files" "$rl_w_append"
      rl_settle; rl_case "$t" "rm -rf /usr/share" "$rl_w_rm"
    done
  done
  echo
  echo "rootless mount benchmark: $runs runs as $rl_user, work dir $work ($(stat -f -c %T "$work")), $(nproc) cores, kernel $(uname -r); $(tool_versions)"
  report_matrix "${tools[*]}" "${mount_cases[0]}" "$rl_in_ns" "${mount_cases[@]:1}"
}

bench_rootless() {
  rl_setup
  bench_rootless_load
  bench_rootless_mount
}
