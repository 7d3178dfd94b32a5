#!/usr/bin/env bash
# Runs every check piigate's CI runs: formatting, clippy, and the whole test
# suite (unit tests, known-answer vectors, the real binary on real files, and
# SFTP against a real OpenSSH server on 127.0.0.1).
#
# On a fresh Debian machine as root it first installs what the tests need
# (openssh-server, Python's cryptography and phonenumbers) via
# scripts/ci-setup.sh. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ci-setup.sh
if [[ -f target/ci-sftp-env.sh ]]; then
  # shellcheck disable=SC1091
  . target/ci-sftp-env.sh
fi

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test --locked"
cargo test --locked
if [[ -n "${CI:-}" ]] && git rev-parse --git-dir >/dev/null 2>&1; then
  echo "== git diff --exit-code (the tests must leave the tree clean)"
  git diff --exit-code
fi
