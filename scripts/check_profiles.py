#!/usr/bin/env python3
"""Check a CSV written by gen_profiles.py (or any profile CSV of that shape).

    python3 scripts/check_profiles.py [--delimiter ','] [--expect-bad PATH.bad.json] FILE...

Parses with Python's csv module and reports, per file: rows, size and
average bytes per row, line ends / BOM, rows spanning 2 physical lines,
empty cells per column, and the bad rows it finds (ragged, missing email,
phone that is not a valid number for the `country` column), by 1-based
physical starting line -- never by value.  Phones are checked with the
`phonenumbers` package (pip install phonenumbers), national forms read as
US, the demo config's default_region.  With --expect-bad (or a
FILE.bad.json beside the file, or ../expected/FILE.bad.json as in samples/)
the bad rows found must be exactly the ones listed; without one, any bad row
is a failure.  Exit status 1 on any unexpected problem.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import sys
import unicodedata

try:
    import phonenumbers
except ImportError:  # pragma: no cover
    sys.exit("check_profiles: needs the phonenumbers package (pip install phonenumbers)")

HEADER = (
    "customer_id,email,phone,first_name,last_name,date_of_birth,street,city,"
    "postcode,country,signup_date,loyalty_tier,lifetime_value,"
    "marketing_opt_in,notes"
).split(",")


def phone_problem(value: str, country: str) -> str | None:
    try:
        n = phonenumbers.parse(value, "US")
    except phonenumbers.NumberParseException:
        return "unparseable"
    if not phonenumbers.is_valid_number(n):
        return "invalid"
    region = phonenumbers.region_code_for_number(n)
    if country and region != country:
        return f"region {region} != country {country}"
    if not value.lstrip().startswith("+") and region != "US":
        return "national form of a non-US number"
    return None


def check(path: str, delim: str, expect: dict | None) -> bool:
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(4096)
    bom = head.startswith(b"\xef\xbb\xbf")
    crlf = b"\r\n" in head
    ok = True
    found = {"ragged": [], "missing_email": [], "bad_phone": []}
    problems = collections.Counter()
    empties = collections.Counter()
    stats = collections.Counter()
    emails = collections.Counter()
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rd = csv.reader(fh, delimiter=delim, strict=True)
        header = next(rd)
        if header != HEADER:
            print(f"  header mismatch: {header}")
            ok = False
        prev = rd.line_num
        rows = 0
        for rec in rd:
            start = prev + 1
            prev = rd.line_num
            rows += 1
            if rd.line_num > start:
                stats["multi-line rows"] += 1
            if len(rec) != len(HEADER):
                found["ragged"].append(start)
                continue
            for name, cell in zip(HEADER, rec):
                if cell == "":
                    empties[name] += 1
            email, phone, country = rec[1], rec[2], rec[9]
            if email.strip() == "":
                found["missing_email"].append(start)
                continue
            if email != email.strip():
                stats["emails with stray spaces"] += 1
            if email != email.lower():
                stats["emails with upper case"] += 1
            if not email.isascii():
                stats["non-ASCII emails"] += 1
                if unicodedata.normalize("NFC", email) != email:
                    stats["NFD emails"] += 1
            if "+" in email.split("@")[0]:
                stats["plus-addressed emails"] += 1
            dom = email.strip().lower().rsplit("@", 1)[-1]
            if not (dom.endswith(".test") or dom.endswith(".example")):
                problems["email domain not .test/.example"] += 1
            emails[unicodedata.normalize("NFC", email.strip()).lower()] += 1
            if phone:
                why = phone_problem(phone, country)
                if why:
                    found["bad_phone"].append(start)
                    problems[f"phone {why}"] += 1
                    continue
                stats["valid phones"] += 1
                if not phone.startswith("+"):
                    stats["national-form (US) phones"] += 1
                if "x" in phone:
                    stats["phones with extension"] += 1
    stats["same identity typed twice (extra rows)"] = sum(c - 1 for c in emails.values() if c > 1)
    print(f"{path}: {rows} rows, {size} bytes, {size / max(rows, 1):.1f} bytes/row "
          f"(incl. header), {'CRLF' if crlf else 'LF'}{', BOM' if bom else ''}")
    for k, v in sorted(stats.items()):
        print(f"  {k}: {v}")
    if empties:
        print("  empty cells: " + ", ".join(f"{k} {v} ({100 * v / rows:.1f}%)"
                                            for k, v in empties.items()))
    for k, v in sorted(problems.items()):
        print(f"  problem: {k}: {v}")
    for k, v in found.items():
        shown = ", ".join(map(str, v[:20])) + (" ..." if len(v) > 20 else "")
        print(f"  {k}: {len(v)} at line(s) {shown or '-'}")
    if expect is not None:
        if {k: sorted(v) for k, v in expect.items()} != found:
            print("  MISMATCH with the expected bad rows")
            ok = False
        else:
            print("  bad rows match the expected list")
    elif any(found.values()):
        ok = False
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--delimiter", default=",")
    ap.add_argument("--expect-bad", help="JSON of expected bad rows (default FILE.bad.json if present)")
    a = ap.parse_args()
    delim = {"\\t": "\t", "tab": "\t"}.get(a.delimiter, a.delimiter)
    ok = True
    for f in a.files:
        exp_path = a.expect_bad
        if not exp_path:  # FILE.bad.json, or ../expected/FILE.bad.json (samples/ layout)
            for cand in (f + ".bad.json",
                         os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(f))),
                                      "expected", os.path.basename(f) + ".bad.json")):
                if os.path.exists(cand):
                    exp_path = cand
                    break
        expect = json.load(open(exp_path)) if exp_path else None
        ok &= check(f, delim, expect)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
