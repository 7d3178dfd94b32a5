#!/usr/bin/env bash
# Per-person keys benchmark: `piigate process` with [keys] dek_scope = "identity"
# into a key vault pre-filled with millions of persons, against dek_scope = "file".
#
#   scripts/bench_vault.sh [--rows N] [--prefill N] [--runs N] [--known] [--bin PATH]
#
# What it does (everything lands under target/bench-vault/):
#  1. cargo build --release --locked.
#  2. Uses target/bench/profiles-N.csv (scripts/bench.sh's cache) or generates it
#     with scripts/gen_profiles.py --seed 1 (about 228 bytes per row, every row a
#     new person).
#  3. Makes a keyring (kept, with the vault templates made under it) and two
#     configs from scripts/bench/bench.toml: one as it is (dek_scope = "file"),
#     one with dek_scope = "identity".
#  4. Pre-fills a vault template with --prefill persons, or reuses
#     target/bench-vault/vault-template-N.sqlite from an earlier run: piigate
#     creates the vault (schema and pragmas) on a 1-row file, then sqlite3
#     inserts filler rows directly (random pseudonyms, slots, dek_ids, nonces,
#     wrapped keys and identities: the right shapes and sizes, but not keys
#     anything can unwrap, so never run `keys rewrap` on such a vault). The
#     filler rows are inserted in slot order (10M: a few minutes; cached
#     afterwards), which packs the table's pages fuller than years of random
#     inserts would.
#  5. Times, as the median of --runs runs (default 3) under GNU time, the
#     file-scope run and the identity-scope run. Without --known, before each
#     identity run the template is copied fresh, so every run adds N new persons
#     to a vault of --prefill persons ("all new"). With --known, the file is
#     processed once, untimed, into a fresh copy of the template, and the timed
#     runs process the same file again: every person is known ("all known").
#
# Options: --rows N (default 1000000), --prefill N (default 10000000), --runs N,
# --known, --bin PATH (time this piigate binary instead of building the release
# one). Delete target/bench-vault/ after changing the vault schema.
# Needs: cargo, python3, sqlite3 (the CLI), GNU time at /usr/bin/time.
set -euo pipefail

die() { echo "bench_vault.sh: error: $*" >&2; exit 1; }
say() { echo "bench_vault.sh: $*" >&2; }

ROWS=1000000
PREFILL=10000000
RUNS=3
BIN=
KNOWN=
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) ROWS=$2; shift 2 ;;
        --prefill) PREFILL=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --known) KNOWN=1; shift ;;
        --bin) BIN=$(realpath "$2"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
command -v sqlite3 >/dev/null || die "needs the sqlite3 command-line shell (apt-get install sqlite3)"
[ -x /usr/bin/time ] || die "needs GNU time at /usr/bin/time (apt-get install time)"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "$BIN" ]; then
    cargo build --release --locked --quiet
    BIN=$PWD/target/release/piigate
fi
B=$PWD/target/bench-vault
mkdir -p "$B" target/bench
IN=target/bench/profiles-$ROWS.csv
if [ ! -s "$IN" ]; then
    say "generating $IN"
    python3 scripts/gen_profiles.py --rows "$ROWS" --seed 1 -o "$IN"
fi
IN=$PWD/$IN

rm -rf "$B/state-file" "$B/state-id" "$B/out"
[ -s "$B/keys/keyring.toml" ] || { rm -f "$B"/vault-template-*; "$BIN" --quiet keygen --keyring "$B/keys/keyring.toml"; }
{ cat scripts/bench/bench.toml; printf '\n[state]\ndir = "state-file"\n'; } > "$B/file.toml"
{ sed 's/^\[keys\]$/[keys]\ndek_scope = "identity"/' scripts/bench/bench.toml; printf '\n[state]\ndir = "state-id"\n'; } > "$B/identity.toml"
grep -q 'dek_scope = "identity"' "$B/identity.toml" || die "could not set dek_scope in $B/identity.toml"

TEMPLATE=$B/vault-template-$PREFILL.sqlite
# Person keys in a vault: merged and staged.
persons() { sqlite3 "$1" 'SELECT (SELECT count(*) FROM person_keys) + (SELECT count(*) FROM person_keys_staged)'; }
if [ -s "$TEMPLATE" ]; then
    say "reusing $TEMPLATE ($(du -h "$TEMPLATE" | cut -f1))"
else
    say "creating a vault of $PREFILL persons"
    head -2 "$IN" > "$B/one.csv"
    "$BIN" --quiet process --config "$B/identity.toml" -o "$B/out" "$B/one.csv"
    KEK=$(sqlite3 "$B/state-id/vault.sqlite" "SELECT kek_id FROM person_keys UNION ALL SELECT kek_id FROM person_keys_staged LIMIT 1")
    T0=$(date +%s)
    # The dek_id index is dropped for the bulk insert and built again after
    # (a sort, instead of millions of random inserts).
    sqlite3 "$B/state-id/vault.sqlite" >/dev/null <<SQL
PRAGMA journal_mode = DELETE;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -2000000;
PRAGMA temp_store = FILE;
BEGIN;
DROP INDEX person_keys_dek_id;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $PREFILL)
INSERT INTO person_identities (id, pseudonym, identity, created)
SELECT 1000 + i, 'u_' || substr(lower(hex(randomblob(16))), 1, 26), randomblob(12 + 24 + 16), '2026-01-01T00:00:00Z'
FROM n;
INSERT OR IGNORE INTO person_keys (slot, tag, dek_id, kek_id, nonce, wrapped, person)
SELECT s, random(), lower(hex(randomblob(8))), '$KEK', randomblob(12), randomblob(48), id
FROM (SELECT random() & 1152921504606846975 AS s, id FROM person_identities WHERE id > 1000) ORDER BY s;
CREATE UNIQUE INDEX person_keys_dek_id ON person_keys (dek_id);
COMMIT;
PRAGMA journal_mode = WAL;
SQL
    say "pre-filled in $(( $(date +%s) - T0 )) s: $(persons "$B/state-id/vault.sqlite") persons, $(du -h "$B/state-id/vault.sqlite" | cut -f1)"
    mv "$B/state-id/vault.sqlite" "$TEMPLATE.partial"
    mv "$TEMPLATE.partial" "$TEMPLATE"
    rm -f "$B/state-id/vault.sqlite-wal" "$B/state-id/vault.sqlite-shm"
fi
mkdir -p "$B/state-id"
fresh_vault() {
    cp "$TEMPLATE" "$B/state-id/vault.sqlite"
    rm -f "$B/state-id/vault.sqlite-wal" "$B/state-id/vault.sqlite-shm"
    sync
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
measure() { # name config
    local name=$1 cfg=$2 walls=() rss=()
    for i in $(seq "$RUNS"); do
        rm -rf "$B/out"
        if [ "$name" = identity ] && [ -z "$KNOWN" ]; then
            fresh_vault
        fi
        /usr/bin/time -f '%e %M' -o "$B/time.txt" "$BIN" --quiet --progress never process --config "$cfg" -o "$B/out" "$IN"
        read -r wall kb < "$B/time.txt"
        say "$name run $i: $wall s, $((kb / 1024)) MB"
        walls+=("$wall"); rss+=("$kb")
    done
    W=$(printf '%s\n' "${walls[@]}" | median)
    R=$(printf '%s\n' "${rss[@]}" | median)
    printf '%s\t%s\t%s\n' "$name" "$W" "$R" >> "$B/results.tsv"
}
: > "$B/results.tsv"
measure file "$B/file.toml"
if [ -n "$KNOWN" ]; then
    fresh_vault
    T0=$(date +%s)
    "$BIN" --quiet --progress never process --config "$B/identity.toml" -o "$B/out" "$IN"
    say "filled the vault with the file's persons in $(( $(date +%s) - T0 )) s (untimed)"
fi
measure identity "$B/identity.toml"
AFTER=$(persons "$B/state-id/vault.sqlite")

echo
echo "| dek_scope | vault persons before | rows | median wall s | rows/s | peak RSS MB |"
echo "|---|---:|---:|---:|---:|---:|"
while IFS=$'\t' read -r name wall kb; do
    before=-; [ "$name" = identity ] && before=$PREFILL
    [ "$name" = identity ] && [ -n "$KNOWN" ] && { name="identity (all known)"; before="$PREFILL + the file's"; }
    [ "$name" = identity ] && name="identity (all new)"
    printf '| %s | %s | %s | %s | %.0f | %.1f |\n' "$name" "$before" "$ROWS" "$wall" "$(echo "$ROWS / $wall" | bc -l)" "$(echo "$kb / 1024" | bc -l)"
done < "$B/results.tsv"
FW=$(awk -F'\t' '$1=="file"{print $2}' "$B/results.tsv")
IW=$(awk -F'\t' '$1=="identity"{print $2}' "$B/results.tsv")
echo
echo "identity / file throughput: $(echo "scale=2; $FW / $IW" | bc -l) (target: at least 0.5); vault after the last run: $AFTER persons"
echo "command: scripts/bench_vault.sh --rows $ROWS --prefill $PREFILL --runs $RUNS${KNOWN:+ --known}; binary $BIN; $(nproc) cores, $(git rev-parse --short HEAD)"
