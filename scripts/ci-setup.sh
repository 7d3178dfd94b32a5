#!/usr/bin/env bash
# Prepares a Debian machine for piigate's test suite. Idempotent.
#
# As root: installs OpenSSH's server and client if sshd is missing, creates
# sshd's privilege separation directory /run/sshd, creates the throwaway user
# piigate-sftp with a fresh random password (for the password-login SFTP
# tests) and writes target/ci-sftp-env.sh, to be sourced by the test script:
#   export PIIGATE_TEST_SFTP_PASSWORD_USER=piigate-sftp
#   export PIIGATE_TEST_SFTP_PASSWORD=...
# installs GnuPG (the OpenPGP upload tests decrypt outputs with gpg) and the
# Python packages the known-answer vector scripts use (cryptography,
# phonenumbers) if python3 cannot import them.
#
# Not as root: only checks, prints what is missing, and exits 0.
set -euo pipefail

cd "$(dirname "$0")/.."

SFTP_USER=piigate-sftp
ENV_FILE=target/ci-sftp-env.sh
SSHD=/usr/sbin/sshd

say() { printf 'ci-setup: %s\n' "$*"; }

have_ssh_tools() {
    [ -x "$SSHD" ] && command -v ssh-keygen >/dev/null 2>&1 \
        && command -v sftp >/dev/null 2>&1 && command -v ssh-keyscan >/dev/null 2>&1
}

have_python_deps() {
    command -v python3 >/dev/null 2>&1 \
        && python3 -c 'import cryptography, phonenumbers' >/dev/null 2>&1
}

if [ "$(id -u)" -ne 0 ]; then
    missing=0
    if ! have_ssh_tools; then
        say "MISSING: OpenSSH server/client ($SSHD, ssh-keygen, sftp, ssh-keyscan); as root: apt-get update && apt-get install -y openssh-server openssh-client"
        missing=1
    fi
    if [ ! -d /run/sshd ]; then
        say "missing: /run/sshd (only needed when sshd runs as root; as root: mkdir -p -m 0755 /run/sshd)"
    fi
    if ! id "$SFTP_USER" >/dev/null 2>&1; then
        say "missing: user $SFTP_USER (password-login SFTP tests; as root: scripts/ci-setup.sh)"
    fi
    if ! command -v gpg >/dev/null 2>&1; then
        say "MISSING: gpg (OpenPGP upload tests); as root: apt-get install -y gnupg"
        missing=1
    fi
    if ! have_python_deps; then
        say "MISSING: python3 modules cryptography, phonenumbers; python3 -m pip install cryptography phonenumbers"
        missing=1
    fi
    [ "$missing" -eq 0 ] && say "not root; nothing essential missing" \
        || say "not root; install the above and rerun"
    exit 0
fi

# --- build dependencies of libssh2-sys (OpenSSL headers) ------------------------
if ! pkg-config --exists openssl 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
    say "installing libssl-dev pkg-config"
    apt-get install -y -qq --no-install-recommends libssl-dev pkg-config >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl-dev pkg-config >/dev/null; }
fi

# --- OpenSSH ----------------------------------------------------------------
if ! have_ssh_tools; then
    export DEBIAN_FRONTEND=noninteractive
    # apt-get update only when the package lists have never been fetched or
    # the install fails with the old lists.
    if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
        say "apt-get update"
        apt-get update -qq
    fi
    say "installing openssh-server openssh-client"
    if ! apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
    fi
fi
have_ssh_tools || { say "OpenSSH still missing after install"; exit 1; }
mkdir -p -m 0755 /run/sshd

# --- GnuPG (decrypts the OpenPGP upload tests' outputs) -----------------------
if ! command -v gpg >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
    say "installing gnupg"
    apt-get install -y -qq --no-install-recommends gnupg >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends gnupg >/dev/null; }
fi
command -v gpg >/dev/null 2>&1 || { say "gpg still missing after install"; exit 1; }

# --- password-login user ----------------------------------------------------
if ! id "$SFTP_USER" >/dev/null 2>&1; then
    say "creating user $SFTP_USER"
    useradd -m -s /bin/sh "$SFTP_USER"
fi
# A fresh password on every run: the env file and /etc/shadow always agree.
pw="$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)"
[ "${#pw}" -ge 16 ] || { say "could not make a password"; exit 1; }
printf '%s:%s\n' "$SFTP_USER" "$pw" | chpasswd
# Account and password never expire (a "must change password" state would
# refuse the login).
chage -M -1 -E -1 "$SFTP_USER" 2>/dev/null || true
mkdir -p target
umask 077
printf 'export PIIGATE_TEST_SFTP_PASSWORD_USER=%s\nexport PIIGATE_TEST_SFTP_PASSWORD=%s\n' \
    "$SFTP_USER" "$pw" > "$ENV_FILE.tmp"
mv "$ENV_FILE.tmp" "$ENV_FILE"
umask 022
say "wrote $ENV_FILE (source it before cargo test)"
if [ -e /etc/nologin ] || [ -e /run/nologin ]; then
    say "WARNING: /etc/nologin or /run/nologin exists; sshd refuses non-root logins while it does"
fi

# --- Python packages for the known-answer vector scripts --------------------
if ! have_python_deps; then
    command -v python3 >/dev/null 2>&1 || { say "python3 missing"; exit 1; }
    say "installing python packages cryptography phonenumbers"
    python3 -m pip install --quiet cryptography phonenumbers
    have_python_deps || { say "python3 still cannot import cryptography, phonenumbers"; exit 1; }
fi

say "ok"
