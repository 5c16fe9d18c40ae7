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

echo "+ cargo fmt --check"
cargo fmt --all -- --check
echo "+ cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  echo "+ cargo nextest run"
  # One retry: a FUSE test that fails once and then passes is reported as FLAKY, not hidden.
  cargo nextest run --no-fail-fast --retries 1 --failure-output final "$@"
else
  echo "+ cargo test"
  cargo test --no-fail-fast "$@"
fi
