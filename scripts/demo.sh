#!/usr/bin/env bash
# Builds piigate and runs the drop-folder job on the bundled sample
# (samples/): three profile files in, encrypted and pseudonymized CSVs with
# CleverTap manifests out. Works on a copy in target/demo/, so it can be run
# again and again. Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! pkg-config --exists openssl 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing libssl-dev pkg-config (needed to build the SSH library)"
    apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config >/dev/null
  else
    echo "piigate needs OpenSSL's headers to build: install libssl-dev and pkg-config (Debian/Ubuntu)" >&2
    exit 2
  fi
fi
echo "== building piigate (release; the first build takes a few minutes)"
cargo build --release --locked --quiet
bin=target/release/piigate
demo=target/demo
rm -rf "$demo"
mkdir -p "$demo"
cp -r samples/. "$demo/"
chmod 600 "$demo/keys/DEMO-keyring.toml"

echo "== piigate run --config $demo/piigate.toml"
status=0
"$bin" run --config "$demo/piigate.toml" || status=$?

echo
echo "== outbox ($demo/outbox)"
ls -l "$demo/outbox"
first=$(ls "$demo"/outbox/*.csv | head -n 1)
echo
echo "== first rows of $(basename "$first")"
head -n 3 "$first" | cut -c 1-200
echo
echo "== manifest"
cat "${first%.csv}.manifest"
echo
echo "== decrypt it back (an authorised look-up, recorded in the access log)"
"$bin" decrypt --config "$demo/piigate.toml" --reason "demo" --columns email,first_name "$first" -o "$demo/decrypted.csv"
head -n 3 "$demo/decrypted.csv" | cut -c 1-200
"$bin" access-log verify --config "$demo/piigate.toml"
echo
echo "archive: $(ls "$demo/archive" | tr '\n' ' ')"
echo "run report: $(ls "$demo"/state/runs/*.json)"
exit "$status"
