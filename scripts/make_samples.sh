#!/bin/sh
# Regenerate samples/inbox/ (deterministic: fixed seeds) and the list of the
# deliberately bad rows in samples/expected/.  Run from anywhere.
set -eu
cd "$(dirname "$0")/.."
gen="python3 scripts/gen_profiles.py"
mkdir -p samples/inbox samples/expected
$gen --rows 300 --seed 20261128 -o samples/inbox/profiles-2026-11-28.csv
$gen --rows 250 --seed 20261129 --bad-rows 3 --crlf --bom -o samples/inbox/profiles-2026-11-29.csv
mv samples/inbox/profiles-2026-11-29.csv.bad.json samples/expected/profiles-2026-11-29.csv.bad.json
$gen --rows 200 --seed 42 --countries GB,DE,FR,ES,PL,DK -o samples/inbox/crm-export-eu.csv
