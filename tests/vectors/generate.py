#!/usr/bin/env python3
"""Writes piigate's known-answer test vectors next to this file:
dek_wrap.json, tokens.json, deterministic.json and pseudonyms.json (formats
in docs/FORMAT.md).

Deterministic: every key and nonce is a fixed hex constant below. Each case is
checked against the reference decoder in verify_output.py before it is written.
"""
import base64
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.dont_write_bytecode = True
import verify_output as ref  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE
h = bytes.fromhex

KEK_A_ID, KEK_A = "k68147e8c", h("68147e8c6b43421b2d58472720232e37adfe3e2b25921776ba319ff17b9f1173")
KEK_B_ID, KEK_B = "k9fd47222", h("9fd4722290654f80f2c0b2311c9bb5fe664e01eda5369b435fd152a4900455f4")
KEK_WRONG = h("03ca76fca0ad7da9147850d6dbb7d61776f9d4a6e93075abedabf9e8cab82e5d")
DEK_1_ID, DEK_1 = "132ec5322a1f0ede", h("4e1a2d65cd826ea62e3e7e4c282e5879a443b24ece884fef52eed6a1f7b1bc1c")
DEK_2_ID, DEK_2 = "bb5855674b9a43a4", h("842682c429a12c1ed68aa020e9e59a34d6d3f52fd923be6f9ac30e0fe7615f32")
DEK_WRONG = h("82289f943619f9230808db9a974537d18cd4a4d2645fe944f5456be8df1f4390")
DET_KEY = h("1f4d6a0c83b2e95577c0d9ab34e2f1086d5b9c47a2e813f06c9d2b75e40a18f3"
            "c2579e0b6d41a8f2937e05cb18d46fa0e3b7925c0d1864af7b25e09c3d6f8a14")
DET_KEY_WRONG = h("6e0b93d2a5c7184f20d9e63b7a1c5f84d2e07b96c3a1584fe9b62d07c5a3f1e8"
                  "0a4c2e6b8d1f3a5c7e9b0d2f4a6c8e1b3d5f7a9c0e2b4d6f8a1c3e5b7d9f0a2c")
PSEUDONYM_KEY = h("fd2f86e7d5c1bca86c5914fcfd4f335283f52455a19e5c628b7d4cc0aa80fb59")
PSEUDONYM_KEY_2 = h("4899e1cb4996b37685724d6afe1b6e28233f081960fbd454cbb789d8957ffd24")

LONG = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit; " * 6)[:300]
assert len(LONG) == 300


def b64(data):
    return base64.b64encode(data).decode("ascii")


def flip(data, index, mask=0x01):
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def dump(name, description, cases):
    text = json.dumps({"description": description, "cases": cases}, indent=2, ensure_ascii=True)
    (OUT_DIR / name).write_text(text + "\n", encoding="utf-8")
    print(f"wrote {name}: {len(cases)} cases")


# --- dek_wrap.json ----------------------------------------------------------

def wrap(kek, nonce, dek_id, dek):
    return AESGCM(kek).encrypt(nonce, dek, ref.dek_aad(dek_id))


def dek_cases():
    cases = []

    def add(name, kek_id, kek, dek_id, dek, nonce, wrapped, error=None):
        case = {"name": name, "kek_id": kek_id, "kek": b64(kek), "dek_id": dek_id,
                "dek": None if error else b64(dek), "nonce": b64(nonce), "wrapped": b64(wrapped),
                "valid": error is None, "error": error}
        try:
            got, kind = ref.unwrap_dek(kek, dek_id, nonce, wrapped), None
        except ref.FormatError as e:
            got, kind = None, e.kind
        assert kind == error and (error or got == dek), name
        cases.append(case)

    n1, n2, n3 = h("c5799551b949ceba47ed022c"), h("db10a994693b3ad50365523c"), h("459564029ffb5c00ead4f983")
    w1 = wrap(KEK_A, n1, DEK_1_ID, DEK_1)
    add("valid-kek-a-dek-1", KEK_A_ID, KEK_A, DEK_1_ID, DEK_1, n1, w1)
    add("valid-kek-b-dek-2", KEK_B_ID, KEK_B, DEK_2_ID, DEK_2, n2, wrap(KEK_B, n2, DEK_2_ID, DEK_2))
    add("valid-dek-1-rewrapped-under-kek-b", KEK_B_ID, KEK_B, DEK_1_ID, DEK_1, n3, wrap(KEK_B, n3, DEK_1_ID, DEK_1))
    add("auth-wrong-kek", KEK_A_ID, KEK_WRONG, DEK_1_ID, DEK_1, n1, w1, "auth")
    add("auth-tag-bit-flipped", KEK_A_ID, KEK_A, DEK_1_ID, DEK_1, n1, flip(w1, 47), "auth")
    add("auth-ciphertext-bit-flipped", KEK_A_ID, KEK_A, DEK_1_ID, DEK_1, n1, flip(w1, 0, 0x80), "auth")
    add("auth-dek-id-mismatch", KEK_A_ID, KEK_A, DEK_2_ID, DEK_1, n1, w1, "auth")
    add("auth-nonce-mismatch", KEK_A_ID, KEK_A, DEK_1_ID, DEK_1, n2, w1, "auth")
    add("truncated-47-bytes", KEK_A_ID, KEK_A, DEK_1_ID, DEK_1, n1, w1[:47], "truncated")
    add("truncated-tag-only", KEK_A_ID, KEK_A, DEK_1_ID, DEK_1, n1, w1[32:], "truncated")
    n4, n5 = h("1e3fd4d4bb4ab5c135575ed4"), h("06a9dcbc1fef300899aa111d")
    add("malformed-33-byte-dek", KEK_A_ID, KEK_A, DEK_1_ID, DEK_1, n4,
        wrap(KEK_A, n4, DEK_1_ID, DEK_1 + b"\x00"), "malformed")
    n16 = h("56171b8f87143d8f7878c7e34ab549a9")
    add("malformed-16-byte-nonce", KEK_A_ID, KEK_A, DEK_1_ID, DEK_1, n16,
        wrap(KEK_A, n16, DEK_1_ID, DEK_1), "malformed")
    upper = DEK_1_ID.upper()
    add("malformed-uppercase-dek-id", KEK_A_ID, KEK_A, upper, DEK_1, n5, wrap(KEK_A, n5, upper, DEK_1), "malformed")
    return cases


# --- tokens.json ------------------------------------------------------------

def make_token(dek_id, dek, nonce, column, plaintext):
    sealed = AESGCM(dek).encrypt(nonce, plaintext.encode("utf-8"), column.encode("utf-8"))
    return f"pg1:{dek_id}:{ref.b64url_nopad(nonce + sealed)}"


def token_cases():
    cases = []

    def add(name, token, column, plaintext=None, nonce=None, error=None, dek_id=DEK_1_ID, dek=DEK_1):
        try:
            _, _, got = ref.decrypt_token(token, column, {dek_id: dek})
            kind = None
        except ref.FormatError as e:
            got, kind = None, e.kind
        assert kind == error and got == plaintext, name
        cases.append({"name": name, "dek_id": dek_id, "dek": b64(dek), "column": column,
                      "plaintext": plaintext, "nonce": nonce and b64(nonce), "token": token,
                      "valid": error is None, "error": error})

    valid = [
        ("ascii", "name", "Ana Test", "fb3c0fabce5c684d83358317"),
        ("email", "email", "ana.test@example.test", "49d8199ba535f2a362831299"),
        ("email-same-plaintext-other-nonce", "email", "ana.test@example.test", "ecff2931116f90c8e47273cc"),
        ("non-ascii", "full_name", "Zo\u00eb \u00c5ngstr\u00f6m", "b12d04b3e77c4cd8207c3724"),
        ("csv-special-characters", "notes", 'said "hi", then\nleft; 1,2', "8866b2d599e8e4c445d7a982"),
        ("long-300-chars", "notes", LONG, "4687569d3bcaad57e025efd6"),
        ("single-char", "initial", "x", "641cfcdc3707984d7314f8ea"),
        ("non-ascii-column-name", "pr\u00e9nom", "\U0001f642 Zo\u00eb", "589c240aaca55d4629749889"),
    ]
    tokens, made = {}, []
    for name, column, plaintext, nonce in valid:
        tokens[name] = make_token(DEK_1_ID, DEK_1, h(nonce), column, plaintext)
        made.append((column, tokens[name]))
        add("valid-" + name, tokens[name], column, plaintext, h(nonce))
    n = h("15104dec786fa06f28cde1d1")
    add("valid-second-dek", make_token(DEK_2_ID, DEK_2, n, "email", "ana.test@example.test"),
        "email", "ana.test@example.test", n, dek_id=DEK_2_ID, dek=DEK_2)

    t = tokens["ascii"]
    _, dek_id, payload = t.split(":")
    raw = ref.b64url_nopad_decode(payload)
    # tokens whose payload needs padding, and whose payload uses the '-' or '_' letters
    odd_col, odd = next((c, tok) for c, tok in made if len(tok.split(":")[2]) % 4)
    url_col, url = next((c, tok) for c, tok in made if "-" in tok[21:] or "_" in tok[21:])
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(odd[-1]) | 1]  # sets an unused low bit

    bad = [
        ("unknown-version-pg2", "pg2:" + t[4:], "name", "unknown-version"),
        ("unknown-version-pg0", "pg0:" + t[4:], "name", "unknown-version"),
        ("malformed-no-version", t[4:], "name", "malformed"),
        ("malformed-uppercase-version", "PG1:" + t[4:], "name", "malformed"),
        ("malformed-missing-dek-id", f"pg1:{payload}", "name", "malformed"),
        ("malformed-empty-dek-id", f"pg1::{payload}", "name", "malformed"),
        ("malformed-extra-field", f"{t}:x", "name", "malformed"),
        ("malformed-uppercase-dek-id", f"pg1:{dek_id.upper()}:{payload}", "name", "malformed"),
        ("malformed-dek-id-15-chars", f"pg1:{dek_id[:15]}:{payload}", "name", "malformed"),
        ("malformed-dek-id-17-chars", f"pg1:{dek_id}0:{payload}", "name", "malformed"),
        ("malformed-dek-id-not-hex", f"pg1:{dek_id[:15]}g:{payload}", "name", "malformed"),
        ("malformed-padding-present", odd + "=" * (-len(odd.split(":")[2]) % 4), odd_col, "malformed"),
        ("malformed-standard-base64-alphabet", url[:21] + url[21:].replace("-", "+").replace("_", "/"),
         url_col, "malformed"),
        ("malformed-payload-length-mod-4-is-1", t[:len(t) - (len(payload) - 1) % 4], "name", "malformed"),
        ("malformed-non-canonical-trailing-bits", odd[:-1] + last, odd_col, "malformed"),
        ("malformed-trailing-space", t + " ", "name", "malformed"),
        ("truncated-27-bytes", f"pg1:{dek_id}:{ref.b64url_nopad(raw[:27])}", "name", "truncated"),
        ("truncated-nonce-only", f"pg1:{dek_id}:{ref.b64url_nopad(raw[:12])}", "name", "truncated"),
        ("auth-tag-bit-flipped", f"pg1:{dek_id}:{ref.b64url_nopad(flip(raw, -1))}", "name", "auth"),
        ("auth-ciphertext-bit-flipped", f"pg1:{dek_id}:{ref.b64url_nopad(flip(raw, 12))}", "name", "auth"),
        ("auth-nonce-bit-flipped", f"pg1:{dek_id}:{ref.b64url_nopad(flip(raw, 0))}", "name", "auth"),
        ("auth-wrong-column", t, "email", "auth"),
        ("auth-column-case-differs", t, "Name", "auth"),
        ("auth-column-name-nfd", tokens["non-ascii-column-name"], "pre\u0301nom", "auth"),
    ]
    for name, token, column, error in bad:
        add(name, token, column, error=error)
    add("auth-wrong-key", t, "name", error="auth", dek=DEK_WRONG)
    add("auth-dek-id-swapped", f"pg1:{DEK_2_ID}:{payload}", "name", error="auth", dek_id=DEK_2_ID, dek=DEK_2)
    return cases


# --- deterministic.json -----------------------------------------------------

def det_cases():
    cases = []

    def add(name, token, column, plaintext=None, error=None, key=DET_KEY):
        try:
            got, kind = ref.decrypt_det_token(token, column, key), None
        except ref.FormatError as e:
            got, kind = None, e.kind
        assert kind == error and got == plaintext, name
        cases.append({"name": name, "key": b64(key), "column": column, "plaintext": plaintext,
                      "token": token, "valid": error is None, "error": error})

    valid = [
        ("ascii", "name", "Ana Test"),
        ("email", "email_match", "ana.test@example.test"),
        ("email-again-same-token", "email_match", "ana.test@example.test"),
        ("email-other-column", "email", "ana.test@example.test"),
        ("non-ascii", "full_name", "Zo\u00eb \u00c5ngstr\u00f6m"),
        ("csv-special-characters", "notes", 'said "hi", then\nleft; 1,2'),
        ("long-300-chars", "notes", LONG),
        ("single-char", "initial", "x"),
        ("non-ascii-column-name", "pr\u00e9nom", "\U0001f642 Zo\u00eb"),
    ]
    tokens = {}
    for name, column, plaintext in valid:
        tokens[name] = ref.det_token(DET_KEY, column, plaintext)
        add("valid-" + name, tokens[name], column, plaintext)
    assert tokens["email"] == tokens["email-again-same-token"], "deterministic: equal values, equal tokens"
    assert tokens["email"] != tokens["email-other-column"], "the column name is associated data"

    t = tokens["ascii"]
    payload = t[4:]
    raw = ref.b64url_nopad_decode(payload)
    made = [(c, tokens[n]) for n, c, _ in valid]
    odd_col, odd = next((c, tok) for c, tok in made if len(tok[4:]) % 4)
    url_col, url = next((c, tok) for c, tok in made if "-" in tok[4:] or "_" in tok[4:])
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(odd[-1]) | 1]
    bad = [
        ("unknown-version-pd2", "pd2:" + payload, "name", "unknown-version"),
        ("unknown-version-pd0", "pd0:" + payload, "name", "unknown-version"),
        ("malformed-randomized-prefix", "pg1:" + payload, "name", "malformed"),
        ("malformed-no-version", payload, "name", "malformed"),
        ("malformed-uppercase-version", "PD1:" + payload, "name", "malformed"),
        ("malformed-extra-field", f"{t}:x", "name", "malformed"),
        ("malformed-padding-present", odd + "=" * (-len(odd[4:]) % 4), odd_col, "malformed"),
        ("malformed-standard-base64-alphabet", "pd1:" + url[4:].replace("-", "+").replace("_", "/"), url_col,
         "malformed"),
        ("malformed-payload-length-mod-4-is-1", t[:len(t) - (len(payload) - 1) % 4], "name", "malformed"),
        ("malformed-non-canonical-trailing-bits", odd[:-1] + last, odd_col, "malformed"),
        ("malformed-trailing-space", t + " ", "name", "malformed"),
        ("truncated-15-bytes", "pd1:" + ref.b64url_nopad(raw[:15]), "name", "truncated"),
        ("auth-siv-bit-flipped", "pd1:" + ref.b64url_nopad(flip(raw, 0)), "name", "auth"),
        ("auth-ciphertext-bit-flipped", "pd1:" + ref.b64url_nopad(flip(raw, -1)), "name", "auth"),
        ("auth-siv-only", "pd1:" + ref.b64url_nopad(raw[:16]), "name", "auth"),
        ("auth-wrong-column", t, "email", "auth"),
        ("auth-column-case-differs", t, "Name", "auth"),
    ]
    for name, token, column, error in bad:
        add(name, token, column, error=error)
    add("auth-wrong-key", t, "name", error="auth", key=DET_KEY_WRONG)
    return cases


# --- pseudonyms.json --------------------------------------------------------

def pseudonym_cases():
    cases = []

    def add(name, input, normalize, normalized, region=None, prefix="u_", key=PSEUDONYM_KEY):
        assert ref.normalize(input, normalize, region) == normalized, name
        cases.append({"name": name, "key": b64(key), "prefix": prefix, "normalize": normalize,
                      "region": region, "input": input, "normalized": normalized,
                      "pseudonym": ref.pseudonym(key, prefix, normalized)})

    email = "ana.test@example.test"
    add("email-mixed-case-trailing-space", "Ana.Test@Example.TEST ", "email", email)
    add("email-canonical", email, "email", email)
    add("email-surrounding-tab-newline", f"\t{email}\n", "email", email)
    add("email-nfc", "zo\u00eb@example.test", "email", "zo\u00eb@example.test")
    add("email-nfd", "zoe\u0308@example.test", "email", "zo\u00eb@example.test")
    add("email-uppercase-non-ascii", "ZO\u00cb@EXAMPLE.TEST", "email", "zo\u00eb@example.test")
    add("email-greek-final-sigma", "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u0391\u03a3@Example.TEST", "email",
        "\u03bf\u03b4\u03c5\u03c3\u03c3\u03b5\u03b1\u03c2@example.test")
    add("phone-gb-international-with-trunk-zero", "+44 (0)20 7946 0000", "phone", "+442079460000", "GB")
    add("phone-gb-national", "020 7946 0000", "phone", "+442079460000", "GB")
    add("phone-international-ignores-region", "+44 20 7946 0000", "phone", "+442079460000", "US")
    add("phone-us-national", "(201) 555-0123", "phone", "+12015550123", "US")
    add("phone-us-extension-dropped", "+1 201-555-0123 ext. 456", "phone", "+12015550123", "US")
    add("trim", "  Ana Test \t", "trim", "Ana Test")
    add("none-keeps-whitespace", "  Ana Test \t", "none", "  Ana Test \t")
    add("none-keeps-nfd", "zoe\u0308@example.test", "none", "zoe\u0308@example.test")
    add("empty-prefix", email, "email", email, prefix="")
    add("other-prefix", email, "email", email, prefix="cust-")
    add("other-key", email, "email", email, key=PSEUDONYM_KEY_2)

    by_name = {c["name"]: c["pseudonym"] for c in cases}
    same = [("email-mixed-case-trailing-space", "email-canonical"), ("email-nfc", "email-nfd"),
            ("email-nfc", "email-uppercase-non-ascii"), ("email-canonical", "email-surrounding-tab-newline"),
            ("phone-gb-international-with-trunk-zero", "phone-gb-national"),
            ("phone-gb-national", "phone-international-ignores-region"),
            ("phone-us-national", "phone-us-extension-dropped")]
    assert all(by_name[a] == by_name[b] for a, b in same)
    assert by_name["none-keeps-nfd"] != by_name["email-nfd"] and by_name["other-key"] != by_name["email-canonical"]
    assert all(len(c["pseudonym"]) == len(c["prefix"]) + 26 for c in cases)
    return cases


def main():
    dump("dek_wrap.json",
         "DEK wrapping: AES-256-GCM(key=kek, nonce, plaintext=dek, aad=ASCII 'piigate:dek:v1:' || dek_id); "
         "wrapped = ciphertext || tag, 48 bytes. Keys, nonce and wrapped are standard base64. "
         "valid=false cases must fail with the given error kind (auth, truncated, malformed); their dek is null.",
         dek_cases())
    dump("tokens.json",
         "Column tokens: 'pg1:' || dek_id || ':' || base64url-nopad(nonce || ciphertext || tag), "
         "AES-256-GCM under dek with aad = UTF-8 column name. dek and nonce are standard base64. "
         "Decrypt token with {dek_id: dek} and column; valid=false cases must fail with the given error kind "
         "(unknown-version, malformed, truncated, auth); their plaintext and nonce are null.",
         token_cases())
    dump("deterministic.json",
         "Deterministic tokens: 'pd1:' || base64url-nopad(AES-SIV(key, AD = [UTF-8 column name], plaintext)), "
         "AES-SIV of RFC 5297 with a 64-byte key (AES-256: S2V/CMAC key || CTR key); the payload is the 16-byte "
         "SIV followed by the ciphertext. key is standard base64. Equal (column, plaintext) pairs give equal "
         "tokens. valid=false cases must fail with the given error kind (unknown-version, malformed, truncated, "
         "auth); their plaintext is null.",
         det_cases())
    dump("pseudonyms.json",
         "Pseudonyms: prefix || lowercase base32-nopad(HMAC-SHA256(key, UTF-8 normalized)[:16]). "
         "normalize: email = trim, NFC, lowercase; phone = E.164 (libphonenumber, national numbers read in region), "
         "extension dropped; trim = trim; none = as given. key is standard base64.",
         pseudonym_cases())


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where to write the JSON files (default: beside this script)")
    OUT_DIR = parser.parse_args().out_dir
    main()
