#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting and lints, runs every test.
# FUSE tests need root and /dev/fuse; under CI=true their absence is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh test

if [ "${CI:-}" = "true" ] && [ ! -c /dev/fuse ]; then
  echo "strata: CI=true but /dev/fuse is missing: the FUSE tests cannot run" >&2
  exit 1
fi

# Rootless tests run strata as an ordinary user through fusermount3, which needs /dev/fuse open to
# everyone, as Debian ships it (0666); some machines make it 0600.
if [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ] && [ "$(id -u)" -eq 0 ]; then
  echo "+ chmod 0666 /dev/fuse   (was $(stat -c %a /dev/fuse); Debian ships 0666: the rootless tests need it)"
  chmod 0666 /dev/fuse
fi

echo "+ cargo fmt --check"
cargo fmt --all -- --check
echo "+ cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
# The vendored fuser's own unit tests (its reply encoding, which patch 3 changed, and the
# request parser): a package of its own, with its lock file, built beside strata's.
echo "+ cargo test --manifest-path vendor/fuser/Cargo.toml --lib"
cargo test --quiet --manifest-path vendor/fuser/Cargo.toml --lib --target-dir target/fuser-unit
if cargo nextest --version >/dev/null 2>&1; then
  echo "+ cargo nextest run"
  # One retry: a FUSE test that fails once and then passes is reported as FLAKY, not hidden; its
  # failed try's output is printed when it happens (with `final` alone a flaky try left no trace
  # of why), and every final failure's again at the end.
  cargo nextest run --no-fail-fast --retries 1 --failure-output immediate-final "$@"
else
  echo "+ cargo test"
  cargo test --no-fail-fast "$@"
fi
