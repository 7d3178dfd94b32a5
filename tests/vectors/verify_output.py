#!/usr/bin/env python3
"""Independent verifier of a piigate output CSV (see docs/FORMAT.md).

    python3 tests/vectors/verify_output.py --config CFG.toml --input IN.csv \
        --output OUT.csv [--rejected-lines 5,9] [--keyring PATH] [--keystore PATH] [--vault PATH]

Unwraps the data keys from the keyring and keystore, then checks every output
row against its input row, column by column, following the schema in the
config. Mismatches are reported by input line and column name, never by value.
Exit 0: all rows verified; 1: at least one mismatch; 2: usage, config or key error.

The module also serves as the reference decoder for tests/vectors/generate.py.
"""
import argparse
import base64
import binascii
import csv
import hashlib
import hmac
import json
import os
import re
import sqlite3
import sys
import tomllib
import unicodedata
from pathlib import Path

import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

DEK_ID = re.compile(r"[0-9a-f]{16}")
B64URL = re.compile(r"[A-Za-z0-9_-]*")
NONCE_LEN, TAG_LEN, KEY_LEN, SIV_KEY_LEN = 12, 16, 32, 64


class FormatError(Exception):
    """A decoding failure; `kind` is the error kind used in the test vectors."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


# --- reference primitives -------------------------------------------------

def b64std(text):
    """Strict standard base64 (RFC 4648 section 4, padded)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError("malformed") from None


def b64url_nopad(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_nopad_decode(text):
    """Strict, canonical base64url without padding (RFC 4648 sections 5 and 3.2)."""
    if not B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise FormatError("malformed")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url_nopad(data) != text:  # non-zero trailing bits
        raise FormatError("malformed")
    return data


def dek_aad(dek_id):
    return b"piigate:dek:v1:" + dek_id.encode("ascii")


def unwrap_dek(kek, dek_id, nonce, wrapped):
    if not DEK_ID.fullmatch(dek_id) or len(nonce) != NONCE_LEN:
        raise FormatError("malformed")
    if len(wrapped) < KEY_LEN + TAG_LEN:
        raise FormatError("truncated")
    if len(wrapped) > KEY_LEN + TAG_LEN:
        raise FormatError("malformed")
    try:
        return AESGCM(kek).decrypt(nonce, wrapped, dek_aad(dek_id))
    except InvalidTag:
        raise FormatError("auth") from None


def parse_token(token):
    """Returns (dek_id, nonce, ciphertext||tag)."""
    version, _, rest = token.partition(":")
    if version != "pg1":
        raise FormatError("unknown-version" if re.fullmatch(r"pg[0-9]+", version) else "malformed")
    parts = rest.split(":")
    if len(parts) != 2 or not DEK_ID.fullmatch(parts[0]):
        raise FormatError("malformed")
    payload = b64url_nopad_decode(parts[1])
    if len(payload) < NONCE_LEN + TAG_LEN:
        raise FormatError("truncated")
    return parts[0], payload[:NONCE_LEN], payload[NONCE_LEN:]


def decrypt_token(token, column, deks):
    """Returns (dek_id, nonce, plaintext). `deks` maps dek_id to the 32-byte DEK."""
    dek_id, nonce, sealed = parse_token(token)
    if dek_id not in deks:
        raise FormatError("unknown-key")
    try:
        plaintext = AESGCM(deks[dek_id]).decrypt(nonce, sealed, column.encode("utf-8"))
    except InvalidTag:
        raise FormatError("auth") from None
    try:
        return dek_id, nonce, plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("malformed") from None


DET_PREFIX, SIV_LEN = "pd1:", 16


def det_token(key, column, plaintext):
    """Deterministic token: 'pd1:' || base64url-nopad(AES-SIV(key, ad=[column], plaintext)),
    where AES-SIV (RFC 5297) output is the 16-byte SIV followed by the ciphertext."""
    return DET_PREFIX + b64url_nopad(AESSIV(key).encrypt(plaintext.encode("utf-8"), [column.encode("utf-8")]))


def decrypt_det_token(token, column, key):
    version, sep, rest = token.partition(":")
    if version != "pd1" or not sep:
        raise FormatError("unknown-version" if re.fullmatch(r"pd[0-9]+", version) and sep else "malformed")
    payload = b64url_nopad_decode(rest)
    if len(payload) < SIV_LEN:
        raise FormatError("truncated")
    try:
        plaintext = AESSIV(key).decrypt(payload, [column.encode("utf-8")])
    except InvalidTag:
        raise FormatError("auth") from None
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("malformed") from None


def normalize(value, how, region=None):
    if how == "none":
        return value
    if how == "trim":
        return value.strip()
    if how == "email":
        return unicodedata.normalize("NFC", value.strip()).lower()
    if how == "phone":
        if not value.strip():
            return ""
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            raise FormatError("phone") from None
        if not phonenumbers.is_possible_number(number):
            raise FormatError("phone")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise ValueError(f"unknown normalize {how!r}")


def pseudonym(key, prefix, normalized):
    digest = hmac.new(key, normalized.encode("utf-8"), hashlib.sha256).digest()
    return prefix + base64.b32encode(digest[:16]).decode("ascii").rstrip("=").lower()


# --- keyring, keystore, CSV -------------------------------------------------

class ConfigError(Exception):
    pass


def keyn(text, n, what):
    try:
        key = b64std(text)
    except (FormatError, TypeError):
        key = b""
    if len(key) != n:
        raise ConfigError(f"{what}: not standard base64 of {n} bytes")
    return key


def key32(text, what):
    return keyn(text, KEY_LEN, what)


def load_keyring(path, external=None, previous=()):
    """Returns ({kek_id: kek}, pseudonym_key, deterministic_key or None).
    `external` is (kek_id, kek) from [keys] kek_command, `previous` more such pairs from
    [keys.previous_kek_commands]; the file holds none of them."""
    with open(path, "rb") as f:
        ring = tomllib.load(f)
    if ring.get("format") != "piigate-keyring-v1":
        raise ConfigError("keyring: format is not piigate-keyring-v1")
    keks = {kid: key32(v, f"keyring kek {kid}") for kid, v in ring.get("kek", {}).items()}
    keks.update(dict(previous))
    if external:
        keks[external[0]] = external[1]
    elif ring.get("active_kek") not in keks:
        raise ConfigError("keyring: active_kek names no [kek] entry")
    det = ring.get("deterministic_key")
    det = det and keyn(det, SIV_KEY_LEN, "keyring deterministic_key")
    return keks, key32(ring.get("pseudonym_key"), "keyring pseudonym_key"), det


def run_kek_command(command, cwd):
    """The KEK printed by [keys] kek_command (sh -c, in the config's folder)."""
    import subprocess
    done = subprocess.run(["sh", "-c", command], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    if done.returncode != 0:
        raise ConfigError(f"kek_command failed with exit status {done.returncode}")
    return key32(done.stdout.decode("ascii", "replace").strip(), "kek_command output")


def load_deks(path, keks):
    """Returns ({dek_id: dek}, {dek_id: why it could not be unwrapped})."""
    deks, bad = {}, {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                dek_id = rec["dek_id"]
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"keystore line {n}: not a data-key record") from None
            try:
                if rec.get("kek_id") not in keks:
                    raise FormatError("unknown-kek")
                dek = unwrap_dek(keks[rec["kek_id"]], dek_id, b64std(rec["nonce"]), b64std(rec["wrapped"]))
            except (FormatError, KeyError, TypeError) as e:
                bad.setdefault(dek_id, f"keystore line {n}: {getattr(e, 'kind', 'malformed')}")
                continue
            if deks.setdefault(dek_id, dek) != dek:
                raise ConfigError(f"keystore line {n}: dek_id {dek_id} unwraps to two different keys")
    return deks, bad


def load_vault(path, keks, pkey, deks, bad):
    """Adds the per-person keys of the key vault (SQLite, dek_scope = "identity")
    to `deks`, checking that each stored identity decrypts under its person's key
    and recomputes to its pseudonym. Returns {dek_id: pseudonym}."""
    import sqlite3
    persons = {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        # Vault version 3 keeps new persons' keys in person_keys_staged until
        # they are merged into person_keys; version 2 has person_keys alone.
        tables = ["person_keys"] + [
            t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE name = 'person_keys_staged'")
        ]
        keys = " UNION ALL ".join(f"SELECT dek_id, kek_id, nonce, wrapped, person, slot, tag FROM {t}" for t in tables)
        rows = db.execute(
            "SELECT i.pseudonym, k.dek_id, k.kek_id, k.nonce, k.wrapped, i.identity, k.slot, k.tag"
            f" FROM ({keys}) k JOIN person_identities i ON i.id = k.person"
        ).fetchall()
    finally:
        db.close()
    slots = set()
    for pseudo, dek_id, kek_id, nonce, wrapped, sealed, slot, tag in rows:
        if slot in slots:
            raise ConfigError(f"vault: slot of person key {dek_id} is taken twice")
        slots.add(slot)
        h = hashlib.sha256(pseudo.encode("utf-8")).digest()
        base = int.from_bytes(h[:8], "big") >> 4
        if not (base <= slot < base + 16) or tag != int.from_bytes(h[8:16], "big", signed=True):
            raise ConfigError(f"vault: person key {dek_id} is not in its pseudonym's slot window")
        try:
            if kek_id not in keks:
                raise FormatError("unknown-kek")
            dek = unwrap_dek(keks[kek_id], dek_id, bytes(nonce), bytes(wrapped))
        except (FormatError, KeyError, TypeError) as e:
            bad.setdefault(dek_id, f"vault person key: {getattr(e, 'kind', 'malformed')}")
            continue
        sealed = bytes(sealed)
        try:
            identity = AESGCM(dek).decrypt(sealed[:12], sealed[12:], b"piigate:identity:v1:" + pseudo.encode())
        except InvalidTag:
            raise ConfigError(f"vault: the identity of person key {dek_id} does not decrypt") from None
        prefix = pseudo[: len(pseudo) - 26]
        if pseudonym(pkey, prefix, identity.decode("utf-8")) != pseudo:
            raise ConfigError(f"vault: the identity of person key {dek_id} does not give its pseudonym")
        deks[dek_id] = dek
        persons[dek_id] = pseudo
    return persons


def read_csv(path, delimiter):
    """Yields (start_line, fields) per record; start_line is the 1-based physical
    line on which the record begins (csv.reader.line_num is where it ends)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        consumed = 0

        def lines():
            nonlocal consumed
            for line in f:
                consumed += 1
                yield line

        reader = csv.reader(lines(), delimiter=delimiter)
        while True:
            start = consumed + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            if fields:  # blank lines are not records
                yield start, fields


# --- verification ---------------------------------------------------------

def verify(cfg, keks, pkey, deks, bad_deks, input_path, output_path, rejected, report, dkey=None, persons=None):
    schema = cfg.get("schema", {})
    prefix = schema.get("pseudonym_prefix", "")
    region = schema.get("default_region")
    columns = schema.get("columns", [])
    delimiter = cfg.get("csv", {}).get("delimiter", ",")

    inp = read_csv(input_path, delimiter)
    out = read_csv(output_path, ",")
    _, in_header = next(inp, (1, []))
    _, out_header = next(out, (1, []))
    in_index = {name: i for i, name in enumerate(in_header)}

    named = {c.get("from", c["name"]) for c in columns}
    kept = [c for c in columns if c.get("action", "keep") != "drop"]
    expected = [c["name"] for c in kept]
    if schema.get("unknown_columns", "reject") == "keep":
        extra = [h for h in in_header if h not in named]
        expected += extra
        kept += [{"name": h, "action": "keep"} for h in extra]
    if out_header != expected:
        report(1, "-", f"output header {out_header} != expected {expected}")
        return None

    in_rows = []
    starts = set()
    for line, fields in inp:
        starts.add(line)
        if line not in rejected:
            in_rows.append((line, fields))
    for line in sorted(rejected - starts):
        report(line, "-", "rejected line is not the start of an input record")
    out_rows = [fields for _, fields in out]
    if len(out_rows) != len(in_rows):
        report("-", "-", f"output has {len(out_rows)} rows, expected {len(in_rows)}")

    stats = {"rows": 0, "tokens": 0, "pseudonyms": 0, "dek_ids": set()}
    nonces = set()
    det_seen = {}
    for (line, fields), row in zip(in_rows, out_rows):
        stats["rows"] += 1
        if len(fields) != len(in_header):
            report(line, "-", "input row has the wrong number of fields (should have been rejected)")
        if len(row) != len(out_header):
            report(line, "-", "output row has the wrong number of fields")
            continue
        person = None
        if persons:
            for col in kept:
                if col.get("action") == "pseudonymize" and col.get("ct_name", col["name"]) == "identity":
                    src = in_index.get(col.get("from", col["name"]))
                    try:
                        v = normalize(fields[src], col.get("normalize", "none"), region)
                        person = pseudonym(pkey, prefix, v) if v else None
                    except (FormatError, IndexError, TypeError):
                        person = None
        for j, col in enumerate(kept):
            name, action = col["name"], col.get("action", "keep")
            src = in_index.get(col.get("from", name))
            raw = fields[src] if src is not None and src < len(fields) else ""
            got = row[j]
            try:
                value = normalize(raw, col.get("normalize", "none"), region)
            except FormatError:
                report(line, name, "input does not normalize (row should have been rejected)")
                continue
            if col.get("required") and value == "":
                report(line, name, "required value is empty (row should have been rejected)")
            if action == "keep":
                if got != value:
                    report(line, name, "kept value differs from the normalized input")
            elif action == "encrypt":
                if value == "" or got == "":
                    if got != value:
                        report(line, name, "empty/non-empty mismatch")
                    continue
                try:
                    dek_id, nonce, plaintext = decrypt_token(got, name, deks)
                except FormatError as e:
                    why = bad_deks.get(got.split(":")[1]) if e.kind == "unknown-key" else None
                    report(line, name, f"token does not decrypt: {e.kind}" + (f" ({why})" if why else ""))
                    continue
                stats["tokens"] += 1
                stats["dek_ids"].add(dek_id)
                if persons and persons.get(dek_id) != person:
                    report(line, name, "token is not under the data key of this row's person")
                if (dek_id, nonce) in nonces:
                    report(line, name, "nonce reused under the same data key")
                nonces.add((dek_id, nonce))
                if plaintext != value:
                    report(line, name, "token decrypts to a different value")
            elif action == "encrypt-deterministic":
                if value == "" or got == "":
                    if got != value:
                        report(line, name, "empty/non-empty mismatch")
                    continue
                if dkey is None:
                    report(line, name, "the keyring has no deterministic_key")
                    continue
                try:
                    plaintext = decrypt_det_token(got, name, dkey)
                except FormatError as e:
                    report(line, name, f"deterministic token does not decrypt: {e.kind}")
                    continue
                stats["tokens"] += 1
                if plaintext != value:
                    report(line, name, "deterministic token decrypts to a different value")
                if det_seen.setdefault((name, value), got) != got:
                    report(line, name, "equal values gave different deterministic tokens")
            elif action == "pseudonymize":
                want = pseudonym(pkey, prefix, value) if value else ""
                stats["pseudonyms"] += bool(value)
                if got != want:
                    report(line, name, "pseudonym differs from the recomputed one")
            elif action == "mask":
                if len(value) > 4 and got in (value, raw):
                    report(line, name, "masked value equals the input")
            else:
                report(line, name, f"unknown action {action!r}")
    return stats


def main(argv=None):
    ap = argparse.ArgumentParser(description="Verify a piigate output against its input.")
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--input", required=True, type=Path)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--rejected-lines", default="",
                    help="comma-separated 1-based physical line numbers where rejected input records start")
    ap.add_argument("--keyring", type=Path, help="overrides PIIGATE_KEYRING and [keys] keyring")
    ap.add_argument("--keystore", type=Path, help="overrides [keys] keystore")
    ap.add_argument("--vault", type=Path, help="overrides [keys] vault (per-person keys)")
    args = ap.parse_args(argv)
    csv.field_size_limit(2**31 - 1)

    try:
        rejected = {int(x) for x in args.rejected_lines.split(",") if x.strip()}
    except ValueError:
        ap.error("--rejected-lines takes comma-separated integers")

    try:
        with open(args.config, "rb") as f:
            cfg = tomllib.load(f)
        base = args.config.resolve().parent
        keys = cfg.get("keys", {})
        keyring = args.keyring or os.environ.get("PIIGATE_KEYRING") or (keys.get("keyring") and base / keys["keyring"])
        keystore = args.keystore or (keys.get("keystore") and base / keys["keystore"])
        if not keyring or not keystore:
            raise ConfigError("no keyring or keystore path")
        external = None
        if keys.get("kek_command"):
            external = (keys["kek_id"], run_kek_command(keys["kek_command"], base))
        previous = [(kid, run_kek_command(cmd, base)) for kid, cmd in keys.get("previous_kek_commands", {}).items()]
        keks, pkey, dkey = load_keyring(keyring, external, previous)
        deks, bad = load_deks(keystore, keks) if Path(keystore).exists() else ({}, {})
        persons = None
        if keys.get("dek_scope") == "identity":
            state = base / cfg.get("state", {}).get("dir", "state")
            vault = args.vault or (keys.get("vault") and base / keys["vault"]) or state / "vault.sqlite"
            persons = load_vault(vault, keks, pkey, deks, bad)
    except (OSError, ConfigError, tomllib.TOMLDecodeError, sqlite3.Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    problems = []

    def report(line, column, what):
        problems.append(f"input line {line}, column {column}: {what}")

    stats = verify(cfg, keks, pkey, deks, bad, args.input, args.output, rejected, report, dkey, persons)
    for p in problems[:100]:
        print(p)
    if len(problems) > 100:
        print(f"... and {len(problems) - 100} more")
    if stats:
        print(f"verified {stats['rows']} rows, {stats['tokens']} tokens, {stats['pseudonyms']} pseudonyms")
        print("dek_ids: " + (", ".join(sorted(stats["dek_ids"])) or "(none)"))
    if problems:
        print(f"FAILED: {len(problems)} mismatches")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
