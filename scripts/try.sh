#!/usr/bin/env bash
# README's first command: installs what it needs, builds strata, makes a small sample image from the
# host's busybox-static, and runs strata's main job on it (mount, change, diff, commit), then runs
# containers with runc and builds an image from a Dockerfile, printing each command as it runs; then
# says where the binary is and how to install it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh try

bin="$PWD/target/release"
if [ -x "$bin/strata" ]; then
  echo "+ cargo build --release   (built before: only what changed is rebuilt)"
else
  echo "+ cargo build --release   (the first build compiles about 170 crates: about 6 minutes on 2 cores)"
fi
started=$SECONDS
cargo build --release
echo "built in $((SECONDS - started)) s: $bin/strata and $bin/strata-overlay"
export PATH="$bin:$PATH"
export STRATA_ROOT="${STRATA_ROOT:-/tmp/strata-try/store}"
work=/tmp/strata-try
mkdir -p "$work"

run() { printf '\n+'; printf ' %q' "$@"; printf '\n'; "$@"; }

# A sample rootfs: busybox with its applet links, an /etc, a home.
rootfs="$work/rootfs"
rm -rf "$rootfs" && mkdir -p "$rootfs"/{bin,etc,root,tmp,home/user}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\n' > "$rootfs/etc/group"
echo "strata sample" > "$rootfs/etc/motd"
chmod 1777 "$rootfs/tmp"
tar -C "$rootfs" --numeric-owner -czf "$work/sample.tar.gz" .

# Start from a clean sample: a container and image from an earlier run would be in the way.
mnt="$work/mnt"
mkdir -p "$mnt"
mountpoint -q "$mnt" && strata umount "$mnt"
strata rm -f try try-run try-web >/dev/null 2>&1 || true
strata rmi -f sample:built sample:changed sample:latest >/dev/null 2>&1 || true

run strata import "$work/sample.tar.gz" sample:latest -m "busybox sample rootfs" -c 'CMD ["/bin/sh"]'
run strata images
run strata history sample

# The main job: a writable container layer over the image, mounted with strata's FUSE union fs.
run strata create --name try sample
run strata mount try "$mnt"
trap 'mountpoint -q "$mnt" && strata umount "$mnt"' EXIT
printf '\n+ changing files through the mount at %s\n' "$mnt"
echo "changed by strata try" > "$mnt/etc/motd"
echo "a new file" > "$mnt/home/user/notes.txt"
rm "$mnt/bin/vi"
chmod 700 "$mnt/root"
run ls -l "$mnt/etc"
run strata ps
run strata diff try
run strata commit -m "try.sh changes" -a "strata try" try sample:changed
run strata history sample:changed
run strata umount try

# Running containers on the union mount (runc), and building an image from a Dockerfile.
run strata run --rm sample:changed cat /etc/motd
run strata run --name try-run sample:changed sh -c 'echo written by a container > /root/run.txt'
run strata diff try-run
run strata rm try-run
run strata run -d --name try-web sample:changed sh -c 'while true; do echo tick; sleep 1; done'
sleep 1.5
run strata ps
run strata logs try-web
run strata exec try-web ls /home/user
run strata stop -t 1 try-web
run strata rm try-web
ctx="$work/build"
rm -rf "$ctx" && mkdir -p "$ctx"
echo "copied from the build context" > "$ctx/hello.txt"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM sample:changed
COPY hello.txt /srv/hello.txt
RUN echo "made by RUN" > /srv/run.txt && rm /etc/motd
ENV GREETING=hi
CMD ["sh", "-c", "cat /srv/hello.txt /srv/run.txt; echo $GREETING"]
DOCKERFILE
run strata build -t sample:built "$ctx"
run strata run --rm sample:built
run strata history sample:built
run strata images
run strata system df

cat <<EOF

Done. What next:
- The binaries are in $bin (strata, strata-overlay).
- This run used a sample store in $STRATA_ROOT, not the default one
  (/var/lib/strata as root, else \$XDG_DATA_HOME/strata). To look at it again:
    STRATA_ROOT=$STRATA_ROOT $bin/strata images
- To put strata on PATH: scripts/install.sh (copies both binaries to /usr/local/bin; PREFIX=DIR
  for another place), or cargo install --path . (into ~/.cargo/bin).
- Commands and how-tos: README.md; how it works: docs/ARCHITECTURE.md.
EOF
