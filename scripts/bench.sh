#!/usr/bin/env bash
# Reproducible piigate benchmark: rerun it on your own machine.
#
#   scripts/bench.sh [--large] [--runs N] [--rows-list "100000 1000000"]
#                    [--skip-pandas-1m] [--skip-pandas] [--skip-sftp]
#                    [--flat-rows N] [--sftp-rows N] [--no-verify]
#
# What it does (everything lands under target/bench/):
#  1. cargo build --release --locked (piigate and the csv_copy example).
#  2. Generates profile files with scripts/gen_profiles.py --seed 1, cached as
#     target/bench/profiles-N.csv: every size in --rows-list (default 100k and
#     1M; --large adds 10M), plus 2M for a memory-flatness check.
#  3. Makes a fresh keyring (piigate keygen) and copies scripts/bench/bench.toml
#     (5 encrypted columns, 1 pseudonymized identity, 10 kept) beside it.
#  4. Times, as the median of --runs runs (default 5) under GNU time
#     (wall seconds and peak RSS):
#       csv_copy                  plain csv-crate read + write, one thread: the floor
#       piigate process -j 1      one worker thread
#       piigate process           all cores
#       piigate run (SFTP)        SFTP source and sink against a throwaway OpenSSH
#                                 sshd on 127.0.0.1 (--sftp-rows, default 1M only)
#       pandas baseline           scripts/bench/pandas_baseline.py, the same job in
#                                 pandas + cryptography (100k and 1M; never above 1M)
#  5. Prints a Markdown table (also written to target/bench/results.md, raw runs to
#     target/bench/runs.tsv), the command line and the machine.
#
# Options:
#   --runs N            runs per measurement (default 5); the median is reported
#   --rows-list "A B"   row counts to measure (default "100000 1000000")
#   --large             also 10,000,000 rows (no pandas there)
#   --flat-rows N       row count of the memory-flatness check (default 2000000; 0: skip)
#   --sftp-rows N       row count of the SFTP run (default 1000000; 0: skip)
#   --skip-sftp         same as --sftp-rows 0
#   --skip-pandas-1m    run the pandas baseline on 100k rows only (1M takes minutes)
#   --skip-pandas       no pandas baseline at all
#   --no-verify         skip checking the smallest outputs with tests/vectors/verify_output.py
#
# Needs: cargo, python3 (pandas, cryptography, phonenumbers: pip-installed if
# missing), GNU time at /usr/bin/time and OpenSSH's sshd/ssh-keygen (apt-installed
# if missing and running as root). Default run: about 10-15 minutes on 2 cores.
set -euo pipefail

die() { echo "bench.sh: error: $*" >&2; exit 1; }
say() { echo "bench.sh: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

CMDLINE=$(printf '%q' "$0")
INVOKED_FROM=$PWD
for a in "$@"; do CMDLINE+=" $(printf '%q' "$a")"; done

RUNS=5
ROWS_LIST="100000 1000000"
LARGE=0
FLAT_ROWS=2000000
SFTP_ROWS=1000000
PANDAS=1
PANDAS_MAX=1000000
VERIFY=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) [ $# -ge 2 ] || die "--runs needs a number"; RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --rows-list) [ $# -ge 2 ] || die "--rows-list needs a list"; ROWS_LIST=$2; shift 2 ;;
        --rows-list=*) ROWS_LIST=${1#*=}; shift ;;
        --large) LARGE=1; shift ;;
        --flat-rows) [ $# -ge 2 ] || die "--flat-rows needs a number"; FLAT_ROWS=$2; shift 2 ;;
        --sftp-rows) [ $# -ge 2 ] || die "--sftp-rows needs a number"; SFTP_ROWS=$2; shift 2 ;;
        --skip-sftp) SFTP_ROWS=0; shift ;;
        --skip-pandas-1m) PANDAS_MAX=999999; shift ;;
        --skip-pandas) PANDAS=0; shift ;;
        --no-verify) VERIFY=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
is_count() { [[ $1 =~ ^[0-9]+$ ]]; }
is_count "$RUNS" && [ "$RUNS" -ge 1 ] || die "--runs must be a positive integer, not '$RUNS'"
is_count "$FLAT_ROWS" || die "--flat-rows must be a non-negative integer, not '$FLAT_ROWS'"
is_count "$SFTP_ROWS" || die "--sftp-rows must be a non-negative integer, not '$SFTP_ROWS'"
[ "$RUNS" -ge 5 ] || say "warning: --runs $RUNS: medians of fewer than 5 runs are noisy"
# shellcheck disable=SC2206
ROWS=($ROWS_LIST)
[ "${#ROWS[@]}" -gt 0 ] || die "--rows-list is empty"
for r in "${ROWS[@]}"; do is_count "$r" && [ "$r" -ge 1 ] || die "--rows-list: '$r' is not a positive integer"; done
[ "$LARGE" = 1 ] && ROWS+=(10000000)
LIST_ROWS=("${ROWS[@]}")   # the sizes that get every tool
[ "$FLAT_ROWS" -gt 0 ] && ROWS+=("$FLAT_ROWS")
[ "$SFTP_ROWS" -gt 0 ] && ROWS+=("$SFTP_ROWS")
# Sorted, unique.
mapfile -t ROWS < <(printf '%s\n' "${ROWS[@]}" | sort -n -u)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
B="$ROOT/target/bench"
BIN="$ROOT/target/release/piigate"
COPY="$ROOT/target/release/examples/csv_copy"
START_TIME=$(date +%s)

# ---------------------------------------------------------------- tools

as_root() { [ "$(id -u)" = 0 ]; }
apt_install() {
    as_root || return 1
    command -v apt-get >/dev/null || return 1
    say "installing $* with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >&2
}

if ! { [ -x /usr/bin/time ] && /usr/bin/time --version 2>&1 | grep -q GNU; }; then
    apt_install time || die "GNU time is needed at /usr/bin/time: apt-get install -y time (as root)"
fi
command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup.rs)"
command -v python3 >/dev/null || die "python3 not found"

SSHD=""
if [ "$SFTP_ROWS" -gt 0 ]; then
    find_sshd() { for p in /usr/sbin/sshd /usr/local/sbin/sshd /sbin/sshd "$(command -v sshd || true)"; do
        [ -n "$p" ] && [ -x "$p" ] && { echo "$p"; return 0; }; done; return 1; }
    if ! SSHD=$(find_sshd) || ! command -v ssh-keygen >/dev/null; then
        apt_install openssh-server openssh-client \
            || die "the SFTP run needs OpenSSH: apt-get install -y openssh-server openssh-client (or --skip-sftp)"
        SSHD=$(find_sshd) || die "sshd still not found after installing openssh-server"
    fi
fi

py_missing=()
py_need=(cryptography)
[ "$PANDAS" = 1 ] && py_need+=(pandas)
[ "$VERIFY" = 1 ] && py_need+=(phonenumbers)
for m in "${py_need[@]}"; do python3 -c "import $m" 2>/dev/null || py_missing+=("$m"); done
if [ "${#py_missing[@]}" -gt 0 ]; then
    say "installing Python packages: ${py_missing[*]} (python3 -m pip install)"
    python3 -m pip install --quiet "${py_missing[@]}" >&2 \
        || die "could not pip-install ${py_missing[*]}; install them yourself (a venv, or apt-get install python3-pandas python3-cryptography python3-phonenumbers), or use --skip-pandas --no-verify"
fi

# ---------------------------------------------------------------- build

say "building (cargo build --release --locked, and the csv_copy example)"
cargo build --release --locked
cargo build --release --locked --example csv_copy
[ -x "$BIN" ] && [ -x "$COPY" ] || die "build did not produce $BIN and $COPY"

# ---------------------------------------------------------------- inputs

mkdir -p "$B"
profile() { echo "$B/profiles-$1.csv"; }
for r in "${ROWS[@]}"; do
    f=$(profile "$r")
    if [ -s "$f" ]; then
        say "using cached $(basename "$f") ($(( $(stat -c %s "$f") / 1000000 )) MB)"
    else
        say "generating $(basename "$f") ($r rows)"
        python3 scripts/gen_profiles.py --rows "$r" --seed 1 -o "$f"
    fi
done

# ---------------------------------------------------------------- fresh work dir

# Everything but the cached profiles is made afresh.
rm -rf "$B/keys" "$B/state" "$B/out" "$B/logs" "$B/sftp" "$B/bench.toml" "$B/runs.tsv" "$B/results.md"
mkdir -p "$B/keys" "$B/out" "$B/logs"
cp scripts/bench/bench.toml "$B/bench.toml"
"$BIN" --quiet keygen --keyring "$B/keys/keyring.toml"
export PIIGATE_KEYRING="$B/keys/keyring.toml"   # absolute: works whatever the cwd
CFG="$B/bench.toml"

# ---------------------------------------------------------------- sshd (SFTP run)

SSHD_PID=""
S="$B/sftp"
stop_sshd() {
    [ -n "$SSHD_PID" ] || return 0
    # Per-connection sshd processes first (children of ours), then ours.
    local kids
    kids=$(ps -o pid= --ppid "$SSHD_PID" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -n "$kids" ] && kill $kids 2>/dev/null || true
    kill "$SSHD_PID" 2>/dev/null || true
    wait "$SSHD_PID" 2>/dev/null || true
    SSHD_PID=""
}
trap 'stop_sshd' EXIT
trap 'echo "bench.sh: interrupted" >&2; exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_sshd() {
    mkdir -p "$S/inbox" "$S/outbox" "$S/archive" "$S/quarantine" "$S/state"
    mkdir -p /run/sshd 2>/dev/null || true   # privilege separation dir (root sshd)
    ssh-keygen -q -t ed25519 -N '' -C piigate-bench-host -f "$S/ssh_host_ed25519_key" </dev/null
    ssh-keygen -q -t ed25519 -N '' -C piigate-bench-client -f "$S/client_ed25519" </dev/null
    chmod 600 "$S/client_ed25519"
    cp "$S/client_ed25519.pub" "$S/authorized_keys"
    local attempt
    for attempt in 1 2 3 4 5; do
        PORT=$(free_port)
        cat >"$S/sshd_config" <<EOF
# piigate benchmark sshd (throwaway; killed when bench.sh exits)
ListenAddress 127.0.0.1
Port $PORT
AddressFamily inet
HostKey $S/ssh_host_ed25519_key
PidFile $S/sshd.pid
AuthorizedKeysFile $S/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
LogLevel INFO
UseDNS no
PrintMotd no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
EOF
        : >"$S/sshd.log"
        "$SSHD" -D -f "$S/sshd_config" -E "$S/sshd.log" </dev/null >/dev/null 2>>"$S/sshd.stderr" &
        SSHD_PID=$!
        local i
        for i in $(seq 100); do
            if grep -q "Server listening on 127.0.0.1 port $PORT\." "$S/sshd.log" 2>/dev/null; then
                echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$S/ssh_host_ed25519_key.pub")" >"$S/known_hosts"
                say "sshd (pid $SSHD_PID) listening on 127.0.0.1:$PORT"
                return 0
            fi
            kill -0 "$SSHD_PID" 2>/dev/null || break
            sleep 0.1
        done
        stop_sshd
        say "sshd attempt $attempt on port $PORT failed: $(tail -n 3 "$S/sshd.log" "$S/sshd.stderr" 2>/dev/null | tr '\n' ' ')"
    done
    die "could not start sshd ($SSHD); see $S/sshd.log"
}

write_sftp_config() {
    local user
    user=$(id -un)
    {
        cat "$CFG"
        cat <<EOF

# ---- added by scripts/bench.sh for the SFTP run
[state]
dir = "$S/state"

[source]
type = "sftp"
path = "$S/inbox"
pattern = "*.csv"
archive = "$S/archive"
quarantine = "$S/quarantine"
min_age_seconds = 0

[source.sftp]
host = "127.0.0.1"
port = $PORT
user = "$user"
key_file = "$S/client_ed25519"
known_hosts = "$S/known_hosts"

[sink]
type = "sftp"
path = "$S/outbox"
manifest = "clevertap"
clevertap_client_email = "bench@example.com"

[sink.sftp]
host = "127.0.0.1"
port = $PORT
user = "$user"
key_file = "$S/client_ed25519"
known_hosts = "$S/known_hosts"
EOF
    } >"$S/bench-sftp.toml"
}

# ---------------------------------------------------------------- measuring

# runs.tsv: rows, tool, run, wall s, peak RSS KB
printf 'rows\ttool\trun\twall_s\tpeak_rss_kb\n' >"$B/runs.tsv"
# summary lines: rows, tool, median wall, median rss KB, min wall, max wall
SUMMARY="$B/logs/summary.tsv"
: >"$SUMMARY"

median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'; }

# Checks the single run report in DIR: status ok and ROWS rows written.
check_report() {
    python3 - "$1" "$2" <<'EOF'
import json, pathlib, sys
d, rows = pathlib.Path(sys.argv[1]), int(sys.argv[2])
reports = sorted(d.glob("*.json"))
if len(reports) != 1:
    sys.exit(f"expected 1 run report in {d}, found {len(reports)}")
files = json.loads(reports[0].read_text())["files"]
bad = [f for f in files if f["status"] != "ok" or f["rows_written"] != rows]
if len(files) != 1 or bad:
    sys.exit(f"run report {reports[0]}: expected 1 file, status ok, {rows} rows written; got "
             + ", ".join(f"{f['status']} {f['rows_written']}" for f in files))
EOF
}

# prepare/check hooks per tool: prep_<kind> ROWS, post_<kind> ROWS
prep_copy() { rm -f "$B/out/csv_copy.csv"; }
post_copy() { [ -s "$B/out/csv_copy.csv" ] || die "csv_copy wrote nothing"; }
prep_process() { rm -rf "$B/out/process" "$B/state/runs"; mkdir -p "$B/out/process"; }
post_process() {
    check_report "$B/state/runs" "$1" || die "piigate process did not do the full job"
    # The output is not needed any more: keep the disk free.
    rm -rf "$B/out/process"
}
prep_sftp() {
    local name
    name=$(basename "$(profile "$1")")
    rm -rf "$S/outbox" "$S/state/runs" "$S/state/ledger.jsonl"
    mkdir -p "$S/outbox"
    if [ -f "$S/archive/$name" ]; then
        mv "$S/archive/$name" "$S/inbox/$name"
    elif [ ! -f "$S/inbox/$name" ]; then
        cp "$(profile "$1")" "$S/inbox/$name"
    fi
    # Nothing else may be waiting in the inbox or left in the archive.
    find "$S/inbox" "$S/archive" -mindepth 1 ! -name "$name" -exec rm -rf {} +
}
post_sftp() {
    local name
    name=$(basename "$(profile "$1")")
    check_report "$S/state/runs" "$1" || die "piigate run (SFTP) did not do the full job"
    [ -f "$S/archive/$name" ] || die "piigate run (SFTP) did not archive $name"
    [ "$(find "$S/outbox" -name '*.csv' | wc -l)" = 1 ] && [ "$(find "$S/outbox" -name '*.manifest' | wc -l)" = 1 ] \
        || die "piigate run (SFTP): expected one CSV and one manifest in $S/outbox"
}
prep_pandas() { rm -f "$B/out/pandas.csv" "$B/state/pandas-keys.jsonl"; mkdir -p "$B/state"; }
post_pandas() { [ -s "$B/out/pandas.csv" ] || die "pandas baseline wrote nothing"; }

# measure ROWS TOOL KIND -- COMMAND...
measure() {
    local rows=$1 tool=$2 kind=$3
    shift 4
    local log="$B/logs/${kind}-${rows}.log" tf="$B/logs/time.out"
    local walls=() rsss=() i wall rss
    : >"$log"
    for i in $(seq "$RUNS"); do
        "prep_$kind" "$rows"
        echo "== run $i: $*" >>"$log"
        if ! /usr/bin/time -o "$tf" -f '%e %M' "$@" >>"$log" 2>&1; then
            tail -n 20 "$log" >&2
            die "$tool on $rows rows failed (run $i); log: $log"
        fi
        read -r wall rss < <(tail -n 1 "$tf")
        "post_$kind" "$rows"
        walls+=("$wall"); rsss+=("$rss")
        printf '%s\t%s\t%s\t%s\t%s\n' "$rows" "$tool" "$i" "$wall" "$rss" >>"$B/runs.tsv"
        say "  $tool, $rows rows, run $i/$RUNS: ${wall} s, $((rss / 1024)) MiB"
    done
    local mw mr mn mx
    mw=$(printf '%s\n' "${walls[@]}" | median)
    mr=$(printf '%s\n' "${rsss[@]}" | median)
    mn=$(printf '%s\n' "${walls[@]}" | sort -g | head -n 1)
    mx=$(printf '%s\n' "${walls[@]}" | sort -g | tail -n 1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$rows" "$tool" "$mw" "$mr" "$mn" "$mx" >>"$SUMMARY"
}

NPROC=$(nproc)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
[ -n "$CPU" ] || CPU=$(uname -m)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v a="${LOAD_BEFORE%% *}" -v n="$NPROC" 'BEGIN {exit !(a > n / 2)}'; then
    say "warning: load average is $LOAD_BEFORE on $NPROC CPUs: other work will inflate the timings"
fi

for r in "${ROWS[@]}"; do
    in=$(profile "$r")
    say "== $r rows ($(basename "$in"), $(( $(stat -c %s "$in") / 1000000 )) MB)"
    # The 2M flatness set and an SFTP-only size get only what they are for.
    in_list=0
    for x in "${LIST_ROWS[@]}"; do [ "$x" = "$r" ] && in_list=1; done

    measure "$r" "csv_copy" copy -- "$COPY" "$in" "$B/out/csv_copy.csv"
    if [ "$in_list" = 1 ] || [ "$r" = "$FLAT_ROWS" ]; then
        measure "$r" "piigate process -j 1" process -- \
            "$BIN" process --config "$CFG" -o "$B/out/process" --jobs 1 --progress never "$in"
        measure "$r" "piigate process (-j $NPROC)" process -- \
            "$BIN" process --config "$CFG" -o "$B/out/process" --progress never "$in"
    fi
    if [ "$r" = "$SFTP_ROWS" ]; then
        start_sshd
        write_sftp_config
        measure "$r" "piigate run, SFTP (-j $NPROC)" sftp -- \
            "$BIN" run --config "$S/bench-sftp.toml" --progress never
        stop_sshd
        # 1M rows of output on the "server": no longer needed.
        rm -rf "$S/outbox" "$S/inbox" "$S/archive"
    fi
    if [ "$PANDAS" = 1 ] && [ "$in_list" = 1 ] && [ "$r" -le "$PANDAS_MAX" ]; then
        measure "$r" "pandas baseline" pandas -- \
            python3 scripts/bench/pandas_baseline.py "$in" "$B/out/pandas.csv" \
            --keyring "$PIIGATE_KEYRING" --keystore "$B/state/pandas-keys.jsonl"
    fi
    rm -f "$B/out/csv_copy.csv"

    # Check that piigate and the baseline did the same, right job, once, on the
    # smallest size: tests/vectors/verify_output.py decrypts every token and
    # recomputes every pseudonym of both outputs.
    if [ "$VERIFY" = 1 ] && [ "$r" = "${ROWS[0]}" ]; then
        say "verifying the $r-row outputs with tests/vectors/verify_output.py"
        rm -rf "$B/out/verify" && mkdir -p "$B/out/verify"
        "$BIN" --quiet process --config "$CFG" -o "$B/out/verify" --progress never "$in"
        cat "$B/state/data-keys.jsonl" >"$B/out/verify/keystore.jsonl"
        outs=("$B"/out/verify/*.csv)
        if [ -s "$B/out/pandas.csv" ]; then
            outs+=("$B/out/pandas.csv")
            cat "$B/state/pandas-keys.jsonl" >>"$B/out/verify/keystore.jsonl"
        fi
        for out in "${outs[@]}"; do
            python3 tests/vectors/verify_output.py --config "$CFG" --input "$in" --output "$out" \
                --keyring "$PIIGATE_KEYRING" --keystore "$B/out/verify/keystore.jsonl" \
                >"$B/logs/verify.log" 2>&1 || { cat "$B/logs/verify.log" >&2; die "verification of $out failed"; }
            say "  $(basename "$out"): $(grep -m1 '^verified' "$B/logs/verify.log")"
        done
        rm -rf "$B/out/verify"
    fi
    rm -f "$B/out/pandas.csv"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

GIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock examples 2>/dev/null)" ]; then
    GIT+=" + uncommitted changes in src/, examples/ or Cargo files"
fi

python3 - "$SUMMARY" "$B" <<'EOF' >"$B/logs/table.md"
import os, sys
summary, bench = sys.argv[1], sys.argv[2]
rows = [l.rstrip("\n").split("\t") for l in open(summary) if l.strip()]
copy = {r[0]: float(r[2]) for r in rows if r[1] == "csv_copy"}
print("| rows | tool | median wall s | rows/s | input MB/s | peak RSS MB | × csv_copy | wall min–max s |")
print("|---:|---|---:|---:|---:|---:|---:|---:|")
for n, tool, wall, rss, lo, hi in rows:
    n_i, wall = int(n), float(wall)
    size = os.path.getsize(os.path.join(bench, f"profiles-{n}.csv"))
    w = max(wall, 0.005)  # GNU time has 10 ms resolution
    ratio = f"{w / max(copy[n], 0.005):.1f}" if n in copy else "–"
    print(f"| {n_i:,} | {tool} | {wall:.2f} | {n_i / w:,.0f} | {size / 1e6 / w:,.1f} | "
          f"{float(rss) / 1024:,.1f} | {ratio} | {float(lo):.2f}–{float(hi):.2f} |")
EOF

# Memory flatness: median peak RSS of piigate process at each size.
FLAT=$(python3 - "$SUMMARY" <<'EOF'
import sys
by_tool = {}
for line in open(sys.argv[1]):
    n, tool, _wall, rss, *_ = line.rstrip("\n").split("\t")
    if tool.startswith("piigate process"):
        by_tool.setdefault(tool, []).append((int(n), float(rss) / 1024))
for tool, pts in by_tool.items():
    pts.sort()
    sizes = ", ".join(f"{n:,} rows {mb:.1f} MB" for n, mb in pts)
    verdict = ""
    if len(pts) > 1:
        (n0, m0), (n1, m1) = pts[0], pts[-1]
        verdict = f" -> x{m1 / m0:.2f} RSS for x{n1 / n0:g} rows"
    print(f"- {tool}: {sizes}{verdict}")
EOF
)

{
    echo "# piigate benchmark"
    echo
    echo "- command: \`$CMDLINE\` (run in $INVOKED_FROM; repo $ROOT)"
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), total time $(( ($(date +%s) - START_TIME) / 60 )) min"
    echo "- machine: $NPROC CPUs (nproc), $CPU, $(awk '/MemTotal/ {printf "%.1f GB RAM", $2/1048576}' /proc/meminfo), $(uname -sr)"
    echo "- load average before / after: $LOAD_BEFORE / $LOAD_AFTER"
    if awk -v a="${LOAD_BEFORE%% *}" -v b="${LOAD_AFTER%% *}" -v n="$NPROC" 'BEGIN {exit !(a > n / 2 || b > n / 2)}'; then
        echo "- **warning: the machine was busy with other work (load average above half the CPUs): timings are inflated and noisy; rerun on an idle machine**"
    fi
    echo "- piigate: git $GIT; $(rustc --version 2>/dev/null || echo rustc unknown); python $(python3 -c 'import platform; print(platform.python_version())')$([ "$PANDAS" = 1 ] && python3 -c 'import pandas, cryptography; print(f", pandas {pandas.__version__}, cryptography {cryptography.__version__}")')"
    echo "- $RUNS runs each, medians; inputs from \`scripts/gen_profiles.py --seed 1\` (warm page cache); config \`scripts/bench/bench.toml\` (5 encrypted, 1 pseudonymized, 10 kept columns)"
    echo
    cat "$B/logs/table.md"
    echo
    echo "MB = 10^6 bytes of input; peak RSS is GNU time's %M of the measured process (KB / 1024), for the SFTP run piigate's only (sshd runs on the same machine and competes for the same cores); × csv_copy = median wall / csv_copy's median wall on the same file in this run."
    echo
    echo "Memory flatness (median peak RSS of piigate process by input size):"
    echo
    echo "$FLAT"
} >"$B/results.md"

echo
cat "$B/results.md"
echo
echo "(written to ${B#"$ROOT/"}/results.md; every run in ${B#"$ROOT/"}/runs.tsv, logs in ${B#"$ROOT/"}/logs/)"
