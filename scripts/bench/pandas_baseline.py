#!/usr/bin/env python3
"""The benchmark's Python baseline: the job of scripts/bench/bench.toml done
the way a user would write it with pandas and `cryptography`.

    python3 scripts/bench/pandas_baseline.py IN.csv OUT.csv
        [--keyring KEYRING.toml] [--keystore KEYSTORE.jsonl] [--prefix u_]

* read_csv(dtype=str, keep_default_na=False): every cell a string, empty
  cells stay empty;
* identity = prefix + lowercase base32 (no padding) of the first 16 bytes of
  HMAC-SHA256(pseudonym key, normalized email), email normalized as
  strip -> NFC -> lower();
* email (normalized), phone, first_name, last_name and street encrypted with
  AES-256-GCM under one random data key, a fresh os.urandom(12) nonce per
  value, the column name as associated data, written as
  pg1:<dek_id>:<base64url nopad(nonce || ciphertext || tag)>; empty stays empty;
* every other column kept; to_csv(index=False).

Without --keyring the pseudonym key is random too. With --keyring, the
keyring's pseudonym key is used (so the identities equal piigate's), and with
--keystore as well the data key is wrapped under the keyring's active KEK and
appended there as docs/FORMAT.md describes, so that
tests/vectors/verify_output.py can check the output like a piigate output.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import sys
import tomllib
import unicodedata

import pandas as pd
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENCRYPTED = ["email", "phone", "first_name", "last_name", "street"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--keyring", help="piigate keyring (TOML): use its pseudonym key")
    ap.add_argument("--keystore", help="with --keyring: append the wrapped data key here")
    ap.add_argument("--prefix", default="u_", help="pseudonym prefix (default u_)")
    a = ap.parse_args()

    if a.keyring:
        with open(a.keyring, "rb") as fh:
            ring = tomllib.load(fh)
        pseudonym_key = base64.b64decode(ring["pseudonym_key"])
    else:
        pseudonym_key = os.urandom(32)

    dek = AESGCM.generate_key(bit_length=256)
    dek_id = os.urandom(8).hex()
    aead = AESGCM(dek)

    if a.keyring and a.keystore:
        kek_id = ring["active_kek"]
        kek = base64.b64decode(ring["kek"][kek_id])
        nonce = os.urandom(12)
        wrapped = AESGCM(kek).encrypt(nonce, dek, f"piigate:dek:v1:{dek_id}".encode())
        record = {
            "dek_id": dek_id,
            "kek_id": kek_id,
            "nonce": base64.b64encode(nonce).decode(),
            "wrapped": base64.b64encode(wrapped).decode(),
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        with open(a.keystore, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def normalize_email(v):
        return unicodedata.normalize("NFC", v.strip()).lower()

    def pseudonym(v):
        if v == "":
            return ""
        digest = hmac.new(pseudonym_key, v.encode("utf-8"), hashlib.sha256).digest()
        return a.prefix + base64.b32encode(digest[:16]).decode("ascii").rstrip("=").lower()

    def encrypter(column):
        aad = column.encode("utf-8")
        prefix = f"pg1:{dek_id}:"

        def encrypt(v):
            if v == "":
                return ""
            nonce = os.urandom(12)
            sealed = aead.encrypt(nonce, v.encode("utf-8"), aad)
            return prefix + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

        return encrypt

    df = pd.read_csv(a.input, dtype=str, keep_default_na=False)
    df["email"] = df["email"].map(normalize_email)
    df.insert(0, "identity", df["email"].map(pseudonym))
    for column in ENCRYPTED:
        df[column] = df[column].map(encrypter(column))
    df.to_csv(a.output, index=False)
    print(f"pandas_baseline: {len(df)} rows -> {a.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
