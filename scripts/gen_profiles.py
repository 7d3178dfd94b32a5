#!/usr/bin/env python3
"""Generate realistic, messy, entirely fictional customer-profile CSV files.

Seeded and deterministic: the same arguments give byte-identical output
(Python 3.11+, standard library only).  Fast enough for 1,000,000 rows in a
few seconds: rows are built with plain string operations and written in big
batches.

    python3 scripts/gen_profiles.py --rows N --seed S [--bad-rows K] [--crlf]
        [--bom] [--delimiter ','] [--countries US,GB,...] -o PATH   (-o - = stdout)

--delimiter takes ',', ';', '|' or '\t' (tab): characters that never occur
in the unquoted cells.  --countries restricts the country mix (default: US,
GB, DE, FR, IN, ES, CA, PL, AU, JP, DK, weighted towards US/GB/DE).

Header (always this order):
    customer_id,email,phone,first_name,last_name,date_of_birth,street,city,
    postcode,country,signup_date,loyalty_tier,lifetime_value,
    marketing_opt_in,notes

What the data looks like (and why):
  * customer_id  C + 7 digits, unique and ascending within a file.
  * email        unique per customer (the customer number is part of it) but
                 typed in many ways: mixed case, a leading/trailing space,
                 plus-addressing, non-ASCII local parts (zoë, josé, søren,
                 łukasz...) in NFC and, for some rows, NFD.  About 0.5% of
                 rows re-use an earlier row's email typed differently (the
                 same person twice in a CRM: same identity after
                 trim + NFC + lowercase).  Domains are RFC 2606 reserved
                 names under .test and .example only.
  * phone        valid for libphonenumber (checked against the Python
                 `phonenumbers` package and the Rust `phonenumber` crate),
                 in the country of the `country` column.  National forms
                 ("(415) 234-5678") are used for US numbers only, since the
                 demo config reads national numbers as US; every other
                 country is written with +CC ("+44 (0)20 7946 0123").  GB and
                 AU numbers come from the regulators' drama/fiction ranges;
                 US numbers use real area codes with random exchanges (not
                 555); others are random but well-formed.  ~2% carry an
                 extension (x123 / ext. 45), ~3% are empty.
  * names        per-country pools incl. UTF-8 (José, Zoë, Łukasz, Søren,
                 田中), O'Brien and "Smith, Jr." (needs quoting); a few have
                 stray spaces or are in upper case.
  * date_of_birth  1987-04-12 or 12/04/1987 (day/month/year).
  * street       commas (quoted), sometimes an embedded "quote" or an
                 embedded newline inside the quoted field (Excel style: a
                 bare LF even in --crlf files).
  * about 2% empty cells in the optional columns (clustered in the same
    rows, like real half-filled records).
  * RFC 4180 quoting, only where needed.

--bad-rows K replaces K rows (K <= N; N counts them) with deliberately bad
ones, cycling through: ragged (too few or too many fields), missing email
(the required column is empty), and an impossible phone ("4.47701E+11",
"12", ...).  The good rows are the same with or without --bad-rows.  Counts
and 1-based physical starting line numbers (the header is line 1; a row with
an embedded newline spans 2 lines) go to stderr -- never values -- and, when
-o is a file, to PATH.bad.json:
    {"ragged":[...],"missing_email":[...],"bad_phone":[...]}
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import sys
import time
import unicodedata

HEADER = (
    "customer_id,email,phone,first_name,last_name,date_of_birth,street,city,"
    "postcode,country,signup_date,loyalty_tier,lifetime_value,"
    "marketing_opt_in,notes"
).split(",")
NCOLS = len(HEADER)

# --------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------

# Country weights (per mille) for the default mix.
COUNTRY_WEIGHTS = {
    "US": 400, "GB": 140, "DE": 100, "FR": 80, "IN": 70, "ES": 50,
    "CA": 40, "PL": 40, "AU": 30, "JP": 30, "DK": 20,
}

# Names per country: first names, last names.  The few entries with a
# comma or quote exercise CSV quoting.
NAMES = {
    "US": (
        "James Mary Michael Jennifer Robert Linda David Emily Daniel Olivia "
        "Aaliyah DeShawn Mateo Sofía Chloé Ethan Madison Tyler Brianna Kevin "
        "Ashley Jamal Grace Noah Emma Liam Ava Lucas Harper Benjamin",
        ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller",
         "Davis", "Rodriguez", "Martinez", "O'Brien", "O'Connor", "Nguyen",
         "Kim", "Smith, Jr.", "Davis, Sr.", "Washington", "Anderson",
         "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson",
         "Walker", "Young", "King", "Wright", "Lopez", "Hill"],
    ),
    "CA": (
        "Liam Olivia Noah Emma William Charlotte Benjamin Amélia Étienne "
        "Gabrielle Félix Zoë Mathis Léa Jacob Chloe Logan Maëlle",
        ["Tremblay", "Gagnon", "Roy", "Côté", "Bouchard", "Gauthier",
         "Morin", "Lavoie", "Fortin", "Smith", "MacDonald", "O'Neill",
         "Wilson", "Campbell", "Lee", "Bélanger"],
    ),
    "AU": (
        "Jack Charlotte Oliver Isla William Olivia Noah Mia Thomas Amelia "
        "Lachlan Matilda Cooper Zoë Harrison Ruby",
        ["Smith", "Jones", "Williams", "Brown", "Wilson", "Taylor", "Nguyen",
         "Kelly", "O'Sullivan", "Ryan", "Mitchell", "Campbell", "Walsh",
         "Papadopoulos", "Chen"],
    ),
    "GB": (
        "Oliver Amelia Harry Isla George Zoë Siobhán Niamh Rhys Eilidh "
        "Charlotte Alfie Poppy Muhammad Freya Callum Ffion Seán Imogen Archie",
        ["Taylor", "Evans", "Thomas", "O'Brien", "Murphy", "Jones", "Walker",
         "Patel", "Ahmed", "McDonald", "Wright", "Roberts", "Hughes",
         "Ó Súilleabháin", "Hall", "Green", "Khan", "Davies", "Fraser",
         "Smith, Jr."],
    ),
    "DE": (
        "Jürgen Lukas Leonie Mia Björn Jörg Käthe Maximilian Hannah Felix "
        "Sophie Jonas Lena Günter Anja Uwe Emilia Malte",
        ["Müller", "Schmidt", "Schneider", "Fischer", "Weiß", "Meyer",
         "Wagner", "Becker", "Schulz", "Hoffmann", "Schäfer", "Koch",
         "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
         "Groß", "Krüger"],
    ),
    "FR": (
        "François Amélie Chloé Léa Hélène Jérôme Renée Louis Camille Hugo "
        "Manon Théo Inès Noël Gaëlle Raphaël",
        ["Dubois", "Lefèvre", "Martin", "Bernard", "Moreau", "Girard",
         "Laurent", "Fournier", "Rousseau", "Da Silva", "Lemaître",
         "Mercier", "Faure", "Chevalier", "Boyer", "Gauthier"],
    ),
    "IN": (
        "Aarav Priya Rohan Ananya Vikram Lakshmi Arjun Diya Ishaan Kavya "
        "Rahul Sneha Aditya Pooja Sai Meera",
        ["Sharma", "Patel", "Iyer", "Reddy", "Gupta", "Singh", "Kumar",
         "Nair", "Menon", "Das", "Chatterjee", "Rao", "Joshi", "Mehta",
         "Banerjee", "Pillai"],
    ),
    "ES": (
        "José María Sofía Lucía Alejandro Íñigo Pablo Martina Hugo Daniela "
        "Álvaro Carmen Javier Elena Nuria Jesús",
        ["García", "Núñez", "Fernández", "López", "Martínez", "Peña",
         "Sánchez", "Pérez", "Gómez", "Ruiz", "Díaz", "Moreno", "Muñoz",
         "Álvarez", "Romero", "Ibáñez"],
    ),
    "PL": (
        "Łukasz Małgorzata Paweł Zofia Wojciech Agnieszka Jakub Katarzyna "
        "Michał Anna Piotr Ewa Tomasz Joanna Krzysztof Magdalena",
        ["Kowalski", "Nowak", "Wiśniewski", "Wójcik", "Lewandowska",
         "Dąbrowski", "Kamińska", "Zieliński", "Szymański", "Woźniak",
         "Kozłowski", "Jankowska", "Mazur", "Krawczyk", "Piotrowski",
         "Grabowska"],
    ),
    "DK": (
        "Søren Mette Jens Astrid Rasmus Freja Mads Ida Frederik Sofie "
        "Bjørn Signe Anders Maja",
        ["Jensen", "Nielsen", "Sørensen", "Hansen", "Østergaard", "Mølgaard",
         "Pedersen", "Andersen", "Christensen", "Larsen", "Rasmussen",
         "Jørgensen", "Madsen", "Kristensen"],
    ),
    "JP": (
        "太郎 花子 翔太 美咲 陽菜 大翔 Hiroshi Yuki Sakura Haruto Kenji Aiko",
        ["田中", "鈴木", "佐藤", "高橋", "渡辺", "伊藤", "Tanaka", "Suzuki",
         "Sato", "Takahashi", "Watanabe", "Yamamoto", "Nakamura", "小林"],
    ),
}
NAMES = {cc: (first.split(), last) for cc, (first, last) in NAMES.items()}
# A handful of extra spellings that show up in any country.
NAMES["US"][0].append('Katherine "Kate"')

ROMAJI = {
    "太郎": "taro", "花子": "hanako", "翔太": "shota", "美咲": "misaki",
    "陽菜": "hina", "大翔": "hiroto", "田中": "tanaka", "鈴木": "suzuki",
    "佐藤": "sato", "高橋": "takahashi", "渡辺": "watanabe", "伊藤": "ito",
    "小林": "kobayashi",
}
TRANSLIT = str.maketrans({
    "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "Æ": "AE",
    "đ": "d", "Đ": "D",
})

# Cities: (name, weight, phone areas, postcode spec).  Phone "areas" are
# what follows the country code; each country's phone function knows how
# many subscriber digits to add.  Postcode specs are described in
# _postcode().
CITIES = {
    "US": [
        ("San Francisco", 6, ["415", "628"], ("zip", ["941"])),
        ("New York", 14, ["212", "646", "917", "718", "347"],
         ("zip", ["100", "101", "102", "112"])),
        ("Chicago", 8, ["312", "773", "872"], ("zip", ["606"])),
        ("Boston", 5, ["617", "857"], ("zip", ["021"])),
        ("Seattle", 5, ["206"], ("zip", ["981"])),
        ("Denver", 4, ["303", "720"], ("zip", ["802"])),
        ("Austin", 4, ["512", "737"], ("zip", ["787"])),
        ("Miami", 4, ["305", "786"], ("zip", ["331"])),
        ("Atlanta", 5, ["404", "470", "678"], ("zip", ["303"])),
        ("Los Angeles", 10, ["213", "310", "323"], ("zip", ["900"])),
        ("Washington, D.C.", 4, ["202"], ("zip", ["200"])),
        ("Las Vegas", 3, ["702"], ("zip", ["891"])),
        ("Nashville", 3, ["615"], ("zip", ["372"])),
        ("Portland", 3, ["503", "971"], ("zip", ["972"])),
        ("Minneapolis", 3, ["612"], ("zip", ["554"])),
        ("Dallas", 5, ["214", "469", "972"], ("zip", ["752"])),
        ("Newark", 2, ["973", "862"], ("zip", ["071"])),
        ("Philadelphia", 5, ["215", "267"], ("zip", ["191"])),
        ("Honolulu", 1, ["808"], ("zip", ["968"])),
        ("St. Louis", 2, ["314"], ("zip", ["631"])),
    ],
    "CA": [
        ("Toronto", 8, ["416", "647", "437"], ("ca", "M")),
        ("Vancouver", 5, ["604", "778"], ("ca", "V")),
        ("Montréal", 5, ["514", "438"], ("ca", "H")),
        ("Calgary", 3, ["403", "587"], ("ca", "T")),
        ("Ottawa", 3, ["613", "343"], ("ca", "K")),
    ],
    "GB": [  # Ofcom drama ranges: <area> <block> + 3 digits
        ("London", 20, ["20 7946 0"], ("gb", ["E1", "EC1A", "N1", "NW1", "SE1",
                                             "SW1A", "SW11", "W1A", "WC2N", "E14"])),
        ("Leeds", 3, ["113 496 0"], ("gb", ["LS1", "LS2", "LS6", "LS11"])),
        ("Sheffield", 3, ["114 496 0"], ("gb", ["S1", "S2", "S10", "S11"])),
        ("Bristol", 3, ["117 496 0"], ("gb", ["BS1", "BS2", "BS8", "BS16"])),
        ("Reading", 2, ["118 496 0"], ("gb", ["RG1", "RG2", "RG4", "RG6"])),
        ("Birmingham", 5, ["121 496 0"], ("gb", ["B1", "B5", "B15", "B29"])),
        ("Edinburgh", 3, ["131 496 0"], ("gb", ["EH1", "EH3", "EH6", "EH10"])),
        ("Glasgow", 3, ["141 496 0"], ("gb", ["G1", "G3", "G12", "G41"])),
        ("Liverpool", 3, ["151 496 0"], ("gb", ["L1", "L3", "L8", "L17"])),
        ("Manchester", 5, ["161 496 0"], ("gb", ["M1", "M4", "M14", "M20"])),
        ("Newcastle upon Tyne", 2, ["191 498 0"], ("gb", ["NE1", "NE2", "NE6"])),
        ("Belfast", 2, ["28 9649 6"], ("gb", ["BT1", "BT7", "BT9"])),
        ("Cardiff", 2, ["29 2018 0"], ("gb", ["CF10", "CF11", "CF24"])),
    ],
    "DE": [  # area code, subscriber digits
        ("Berlin", 10, [("30", 8)], ("num", ["10", "12", "13"], 3)),
        ("Hamburg", 5, [("40", 8)], ("num", ["20", "22"], 3)),
        ("München", 5, [("89", 8)], ("num", ["80", "81"], 3)),
        ("Köln", 3, [("221", 7)], ("num", ["50", "51"], 3)),
        ("Frankfurt am Main", 3, [("69", 8)], ("num", ["60"], 3)),
        ("Leipzig", 2, [("341", 7)], ("num", ["04"], 3)),
        ("Düsseldorf", 2, [("211", 7)], ("num", ["40"], 3)),
    ],
    "FR": [  # area = first digits of the 9-digit national number
        ("Paris", 10, ["1 4", "1 5"], ("num", ["750"], 2, 1, 20)),
        ("Lyon", 3, ["4 72", "4 78"], ("num", ["6900"], 1, 1, 9)),
        ("Marseille", 3, ["4 91"], ("num", ["130"], 2, 1, 16)),
        ("Toulouse", 2, ["5 61"], ("list", ["31000", "31100", "31200", "31300", "31400", "31500"])),
        ("Lille", 2, ["3 20"], ("list", ["59000", "59160", "59800"])),
        ("Nantes", 2, ["2 40"], ("list", ["44000", "44100", "44200", "44300"])),
        ("Bordeaux", 2, ["5 56"], ("list", ["33000", "33100", "33200", "33300", "33800"])),
        ("Strasbourg", 2, ["3 88"], ("list", ["67000", "67100", "67200"])),
    ],
    "IN": [
        ("New Delhi", 5, [("11", 8, "234567")], ("num", ["1100"], 2, 1, 96)),
        ("Mumbai", 5, [("22", 8, "234567")], ("num", ["4000"], 2, 1, 99)),
        ("Bengaluru", 4, [("80", 8, "234567")], ("num", ["5600"], 2, 1, 99)),
        ("Chennai", 3, [("44", 8, "234567")], ("num", ["6000"], 2, 1, 99)),
        ("Kolkata", 2, [("33", 8, "234567")], ("num", ["7000"], 2, 1, 99)),
        ("Hyderabad", 2, [("40", 8, "234567")], ("num", ["5000"], 2, 1, 99)),
    ],
    "ES": [
        ("Madrid", 8, [("91", 7)], ("num", ["280"], 2, 1, 55)),
        ("Barcelona", 6, [("93", 7)], ("num", ["080"], 2, 1, 42)),
        ("Sevilla", 2, [("954", 6)], ("num", ["410"], 2, 1, 20)),
        ("Valencia", 2, [("96", 7)], ("num", ["460"], 2, 1, 26)),
        ("Bilbao", 1, [("94", 7)], ("num", ["480"], 2, 1, 15)),
        ("Málaga", 1, [("95", 7)], ("num", ["290"], 2, 1, 18)),
    ],
    "PL": [
        ("Warszawa", 6, [("22", 7)], ("pl", ["00", "01", "02", "03", "04"])),
        ("Kraków", 3, [("12", 7)], ("pl", ["30", "31"])),
        ("Gdańsk", 2, [("58", 7)], ("pl", ["80"])),
        ("Wrocław", 2, [("71", 7)], ("pl", ["50", "51", "52", "53", "54"])),
        ("Poznań", 2, [("61", 7)], ("pl", ["60", "61"])),
        ("Łódź", 2, [("42", 7)], ("pl", ["90", "91", "92", "93", "94"])),
    ],
    "DK": [
        ("København", 6, ["32", "33", "35", "38"], ("num", ["1", "2"], 3)),
        ("Frederiksberg", 2, ["33", "38"], ("list", ["1800", "1850", "1900", "2000"])),
        ("Aarhus", 3, ["86", "87"], ("list", ["8000", "8200", "8210", "8220"])),
        ("Odense", 2, ["63", "65", "66"], ("list", ["5000", "5200", "5230"])),
        ("Aalborg", 1, ["96", "98", "99"], ("list", ["9000", "9200", "9220"])),
    ],
    "JP": [  # area, subscriber digits; postcode NNN-NNNN
        ("Tokyo", 5, [("3", 8)], ("jp", "1")),
        ("東京", 3, [("3", 8)], ("jp", "1")),
        ("Osaka", 3, [("6", 8)], ("jp", "5")),
        ("Yokohama", 2, [("45", 7)], ("jp", "2")),
        ("Nagoya", 2, [("52", 7)], ("jp", "4")),
        ("Sapporo", 1, [("11", 7, "235678")], ("jp", "0")),
        ("Fukuoka", 1, [("92", 7)], ("jp", "8")),
        ("京都", 1, [("75", 7)], ("jp", "6")),
    ],
    "AU": [  # ACMA fiction ranges: (02|03|07|08) 5550 xxxx / 7010 xxxx
        ("Sydney", 6, ["2 5550", "2 7010"], ("num", ["2"], 3)),
        ("Melbourne", 5, ["3 5550", "3 7010"], ("num", ["30", "31"], 2)),
        ("Brisbane", 3, ["7 5550", "7 7010"], ("num", ["40", "41"], 2)),
        ("Perth", 2, ["8 5550", "8 7010"], ("num", ["60", "61"], 2)),
        ("Adelaide", 1, ["8 5550", "8 7010"], ("num", ["50", "51"], 2)),
        ("Darwin", 1, ["8 5550", "8 7010"], ("num", ["08"], 2)),
    ],
}

# Mobile prefixes (after the country code) and subscriber digit counts.
MOBILE = {
    "DE": [("151", 8), ("152", 8), ("160", 7), ("170", 7), ("171", 7), ("176", 8)],
    "FR": [("60", 7), ("61", 7), ("62", 7), ("64", 7), ("65", 7), ("66", 7),
           ("67", 7), ("68", 7), ("75", 7), ("76", 7), ("78", 7)],
    "IN": [("98", 8), ("99", 8), ("97", 8), ("94", 8), ("90", 8), ("88", 8),
           ("70", 8), ("63", 8)],
    "ES": [("6", 8), ("71", 7)],
    "PL": [("50", 7), ("51", 7), ("53", 7), ("60", 7), ("66", 7), ("69", 7),
           ("72", 7), ("78", 7), ("79", 7), ("88", 7)],
    "DK": ["20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30",
           "31", "40", "41", "42", "50", "51", "52", "53", "60", "61", "71",
           "81", "91", "93"],
    "JP": [("90", 8), ("80", 8), ("70", 8)],
    # ACMA fiction mobile numbers (0491 570 xxx block).
    "AU": [("491 570 006", 0), ("491 570 156", 0), ("491 570 157", 0),
           ("491 570 158", 0), ("491 570 159", 0), ("491 570 110", 0),
           ("491 570 313", 0), ("491 570 737", 0)],
}
MOBILE_SHARE = {"DE": 0.45, "FR": 0.5, "IN": 0.7, "ES": 0.6, "PL": 0.6,
                "DK": 0.6, "JP": 0.5, "AU": 0.3}

STREETS = {
    "US": ["Main St", "Oak Ave", "Maple Street", "Market St", "Broadway",
           "Elm Street", "Park Ave", "Sunset Blvd", "Lakeview Dr",
           "Washington Ave", "Cedar Ln", "Pine St", "Mission St",
           "Peachtree Rd NE", "Jefferson Blvd", "Hillcrest Rd"],
    "GB": ["High Street", "Baker Street", "Station Road", "Church Lane",
           "Victoria Road", "Mill Lane", "King's Road", "Queen Street",
           "Park Road", "Albert Terrace", "Green Lane", "St John's Wood Road"],
    "DE": ["Hauptstraße", "Müllerstraße", "Karl-Marx-Allee", "Bahnhofstraße",
           "Schillerstraße", "Gartenweg", "Lindenallee", "Königsallee",
           "Friedrichstraße", "Am Markt"],
    "FR": ["rue de l'Église", "avenue Jean-Jaurès", "boulevard Voltaire",
           "rue de la Paix", "rue Victor-Hugo", "place de la République",
           "chemin des Vignes", "rue du Faubourg Saint-Antoine"],
    "IN": ["MG Road", "Linking Road", "Park Street", "Anna Salai",
           "Brigade Road", "Nehru Place", "Banjara Hills Road No. 12"],
    "ES": ["Calle Mayor", "Gran Vía", "Calle de Alcalá", "Passeig de Gràcia",
           "Avenida de la Constitución", "Calle Sierpes"],
    "PL": ["ul. Marszałkowska", "ul. Floriańska", "ul. Długa",
           "ul. Piotrkowska", "al. Jerozolimskie", "ul. Świętojańska"],
    "DK": ["Nørregade", "Vesterbrogade", "Østergade", "Strøget",
           "Åboulevarden", "Søndergade"],
    "JP": ["Shibuya", "Jingumae", "Namba", "Sakae", "Tenjin", "神南", "中央"],
    "AU": ["George St", "Collins St", "Queen St", "Hay St", "Rundle Mall",
           "Smith St"],
    "CA": ["Queen St W", "Yonge St", "Rue Sainte-Catherine", "Granville St",
           "Rideau St", "17 Ave SW"],
}

HOUSE_NAMES = ["Rose Cottage", "The Old Mill", "Ivy House", "The Gables",
               "Orchard View", "Acme Ltd", "Sunnyside"]

NOTE_PHRASES = [
    "Prefers email, not phone",
    'Asked about "gold" tier upgrade, said maybe next year',
    "Moved from old CRM (import batch 7)",
    "Complained about late delivery; refund issued",
    "VIP — handle with care",
    "Do not call before 10am, works nights",
    "Possible duplicate of an older record, check before merging",
    'Returned item, said it was "too small"',
    "Newsletter bounced twice, address re-confirmed at checkout",
    "Café owner, places bulk orders every quarter",
    "Prefers Spanish / prefiere español",
    "Gift card issue resolved by support, ticket closed",
    "Interested in the loyalty programme, sent brochure",
    "Called about billing; wants paper invoices",
    "Address changed last year, old one kept in archive",
    "Referred by a friend, welcome voucher applied",
    "Opted out of SMS, still OK with post",
    "Store pickup only, no home delivery",
    "Wheelchair access needed at pickup point",
    "Chat transcript attached to ticket, no further action",
    "Asked us to spell the name exactly as on the card",
    "Birthday voucher sent, unused",
]

EMAIL_DOMAINS = ["example.test", "mail.example", "inbox.test", "post.example",
                 "webmail.test", "example-mail.test", "corp.example",
                 "shop.example", "mx.test", "uni.example"]
PLUS_TAGS = ["news", "shop", "promo", "crm", "2025", "orders", "loyalty"]

# Delimiters that never occur in unquoted cells (emails, phones, dates,
# numbers), so only names, streets, cities and notes ever need quoting.
DELIMITERS = (",", ";", "|", "\t")

BAD_PHONES = ["4.47701E+11", "1.41555E+10", "12", "+44 12"]

GB_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
CA_LETTERS = "ABCEGHJKLMNPRSTVWXYZ"

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _lut(weights, size=1000):
    """Index lookup table: table[int(random()*len(table))] is weighted."""
    total = sum(weights)
    table = []
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        while len(table) < round(acc / total * size):
            table.append(i)
    return table


def _ascii_fold(s: str) -> str:
    if s in ROMAJI:
        return ROMAJI[s]
    s = s.translate(TRANSLIT)
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c))


def _email_part(s: str) -> str:
    """Letters/digits only, lower case (may stay non-ASCII)."""
    s = s.split(",")[0].split(' "')[0]  # "Smith, Jr." -> smith; Katherine "Kate" -> katherine
    return "".join(c for c in s.lower() if c.isalnum())


def _make_quoter(delim: str):
    special = (delim, '"', "\n", "\r")

    def q(s: str) -> str:
        if '"' in s:
            return '"' + s.replace('"', '""') + '"'
        for c in special:
            if c in s:
                return '"' + s + '"'
        return s
    return q


class Tables:
    """Everything precomputed for one delimiter."""

    def __init__(self, delim: str, countries: list[str]):
        q = self.q = _make_quoter(delim)
        self.countries = countries
        self.country_lut = _lut([COUNTRY_WEIGHTS[c] for c in countries])
        self.per = []
        for cc in countries:
            firsts, lasts = NAMES[cc]
            self.per.append({
                "cc": cc,
                "first": [self._name(n) for n in firsts],
                "last": [self._name(n) for n in lasts],
                "cities": [(q(c[0]), c[2], c[3]) for c in CITIES[cc]],
                "city_lut": _lut([c[1] for c in CITIES[cc]]),
                "streets": STREETS[cc],
            })
        allf, alll = [], []
        for p in self.per:
            allf += p["first"]
            alll += p["last"]
        self.any_first, self.any_last = allf, alll

        # Dates: (iso, d/m/y) for births; iso for signups.
        d0 = _dt.date(1940, 1, 1).toordinal()
        d1 = _dt.date(2007, 12, 31).toordinal()
        self.dob = []
        for o in range(d0, d1 + 1):
            d = _dt.date.fromordinal(o)
            self.dob.append((d.isoformat(), f"{d.day:02d}/{d.month:02d}/{d.year}"))
        s0 = _dt.date(2015, 1, 1).toordinal()
        s1 = _dt.date(2026, 11, 27).toordinal()
        self.signup = [_dt.date.fromordinal(o).isoformat() for o in range(s0, s1 + 1)]
        self.notes = NOTE_PHRASES

    def _name(self, n: str):
        """(csv cell, ascii email part, unicode email part or None, nfd part or None)"""
        ascii_part = _email_part(_ascii_fold(n)) or "user"
        uni = _email_part(unicodedata.normalize("NFC", n))
        if uni == ascii_part or "ß" in uni or not uni.isascii() and n in ROMAJI:
            uni = None  # nothing non-ASCII to show (or unsafe to case-fold)
        nfd = unicodedata.normalize("NFD", uni) if uni else None
        if nfd == uni:
            nfd = None
        # cell variants: as typed, with stray spaces, upper case
        cell = self.q(n)
        return (cell, ascii_part, uni, nfd, self.q(" " + n), self.q(n + " "),
                self.q(n.upper()))


# --------------------------------------------------------------------------
# Field generators
# --------------------------------------------------------------------------


def _digits(rnd, k: int) -> str:
    if k <= 0:
        return ""
    return str(int(rnd() * 10 ** k)).zfill(k)


def _group(s: str, sizes) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(s[i:i + n])
        i += n
    if i < len(s):
        out.append(s[i:])
    return " ".join(p for p in out if p)


def phone_for(cc: str, areas, rnd) -> str:
    """A valid phone number for country cc (areas: the city's)."""
    r = rnd()
    if cc in ("US", "CA"):
        npa = areas[int(rnd() * len(areas))]
        while True:
            nxx = 200 + int(rnd() * 800)
            if nxx % 100 != 11 and nxx != 555:
                break
        nxx = str(nxx)
        line = _digits(rnd, 4)
        if cc == "CA":  # +1 only: national forms would read as US
            if r < 0.5:
                return f"+1{npa}{nxx}{line}"
            if r < 0.8:
                return f"+1 {npa}-{nxx}-{line}"
            return f"+1 ({npa}) {nxx}-{line}"
        if r < 0.30:
            return f"+1{npa}{nxx}{line}"
        if r < 0.60:
            return f"({npa}) {nxx}-{line}"
        if r < 0.75:
            return f"{npa}-{nxx}-{line}"
        if r < 0.80:
            return f"{npa}.{nxx}.{line}"
        if r < 0.90:
            return f"+1 {npa}-{nxx}-{line}"
        if r < 0.95:
            return f"1 ({npa}) {nxx}-{line}"
        return f"{npa}{nxx}{line}"
    if cc == "GB":
        a = areas[int(rnd() * len(areas))]
        tail = _digits(rnd, 3)
        area, rest = a.split(" ", 1)
        num = f"{rest}{tail}"  # e.g. "7946 0" + "123"
        if r < 0.45:
            return f"+44 {area} {num}"
        if r < 0.75:
            return f"+44 (0){area} {num}"
        return "+44" + (area + num).replace(" ", "")
    if cc == "AU":
        if rnd() < MOBILE_SHARE["AU"]:
            m = MOBILE["AU"][int(rnd() * len(MOBILE["AU"]))][0]
            if r < 0.5:
                return f"+61 {m}"
            return "+61" + m.replace(" ", "")
        a = areas[int(rnd() * len(areas))]
        num = f"{a} {_digits(rnd, 4)}"
        if r < 0.5:
            return f"+61 {num}"
        if r < 0.7:
            return f"+61 (0){num}"
        return "+61" + num.replace(" ", "")
    if cc == "DK":
        if rnd() < MOBILE_SHARE["DK"]:
            p = MOBILE["DK"][int(rnd() * len(MOBILE["DK"]))]
        else:
            p = areas[int(rnd() * len(areas))]
        n8 = p + str(1 + int(rnd() * 9)) + _digits(rnd, 5)
        if r < 0.5:
            return "+45 " + _group(n8, (2, 2, 2, 2))
        if r < 0.8:
            return "+45" + n8
        return "+45 " + _group(n8, (4, 4))
    if cc == "FR":
        if rnd() < MOBILE_SHARE["FR"]:
            p, k = MOBILE["FR"][int(rnd() * len(MOBILE["FR"]))]
        else:
            p = areas[int(rnd() * len(areas))]
            k = 9 - len(p.replace(" ", ""))
        n9 = p.replace(" ", "") + _digits(rnd, k)
        pretty = n9[0] + " " + _group(n9[1:], (2, 2, 2, 2))
        if r < 0.5:
            return "+33 " + pretty
        if r < 0.7:
            return "+33 (0)" + pretty
        return "+33" + n9
    if cc in MOBILE_SHARE and rnd() < MOBILE_SHARE[cc]:
        a = MOBILE[cc][int(rnd() * len(MOBILE[cc]))]
        mobile = True
    else:
        a = areas[int(rnd() * len(areas))]
        mobile = False
    p, k = a[0], a[1]
    first = a[2] if len(a) > 2 else "23456789"  # valid first subscriber digits
    sub = first[int(rnd() * len(first))] + _digits(rnd, k - 1)
    if cc == "DE":
        if r < 0.4:
            return f"+49 {p} {sub}"
        if r < 0.6:
            return f"+49 (0){p} {sub}"
        if r < 0.85:
            return f"+49{p}{sub}"
        return f"+49-{p}-{sub[:4]} {sub[4:]}"
    if cc == "IN":
        n10 = p + sub
        if r < 0.45:
            return ("+91 " + n10[:5] + " " + n10[5:]) if mobile else \
                   ("+91 " + p + " " + sub[:4] + " " + sub[4:])
        if r < 0.65:
            return "+91-" + n10
        return "+91" + n10
    if cc == "ES":
        n9 = p + sub
        if r < 0.5:
            return "+34 " + _group(n9, (3, 3, 3))
        if r < 0.7:
            return "+34 " + n9[:3] + " " + _group(n9[3:], (2, 2, 2))
        return "+34" + n9
    if cc == "PL":
        n9 = p + sub
        if r < 0.5:
            return "+48 " + (_group(n9, (3, 3, 3)) if mobile else
                             n9[:2] + " " + _group(n9[2:], (3, 2, 2)))
        return "+48" + n9
    if cc == "JP":
        n = p + sub
        if r < 0.45:
            return f"+81 {p}-{sub[:4]}-{sub[4:]}"
        if r < 0.6:
            return f"+81-{p}-{sub[:4]}-{sub[4:]}"
        if r < 0.7:
            return f"+81 (0){p}-{sub[:4]}-{sub[4:]}"
        return "+81" + n
    raise ValueError(cc)


def postcode_for(spec, rnd) -> str:
    kind = spec[0]
    if kind == "zip":
        z = spec[1][int(rnd() * len(spec[1]))] + _digits(rnd, 2)
        if rnd() < 0.05:
            z += "-" + _digits(rnd, 4)
        return z
    if kind == "gb":
        out = spec[1][int(rnd() * len(spec[1]))]
        return (f"{out} {int(rnd() * 10)}{GB_LETTERS[int(rnd() * 20)]}"
                f"{GB_LETTERS[int(rnd() * 20)]}")
    if kind == "ca":
        L = CA_LETTERS
        return (f"{spec[1]}{1 + int(rnd() * 9)}{L[int(rnd() * 20)]} "
                f"{int(rnd() * 10)}{L[int(rnd() * 20)]}{int(rnd() * 10)}")
    if kind == "num":
        pre = spec[1][int(rnd() * len(spec[1]))]
        if len(spec) == 3:
            return pre + _digits(rnd, spec[2])
        _, _, width, lo, hi = spec
        return pre + str(lo + int(rnd() * (hi - lo + 1))).zfill(width)
    if kind == "list":
        return spec[1][int(rnd() * len(spec[1]))]
    if kind == "pl":
        return spec[1][int(rnd() * len(spec[1]))] + "-" + _digits(rnd, 3)
    if kind == "jp":
        return spec[1] + _digits(rnd, 2) + "-" + _digits(rnd, 4)
    raise ValueError(kind)


def street_for(cc: str, streets, rnd) -> str:
    s = streets[int(rnd() * len(streets))]
    n = 1 + int(rnd() * rnd() * 300)
    r = rnd()
    if cc in ("US", "CA"):
        base = f"{n} {s}"
        if r < 0.25:
            return f"{base}, Apt {1 + int(rnd() * 30)}{'ABCDEF'[int(rnd() * 6)]}"
        if r < 0.32:
            return f"{base}, Suite {100 + int(rnd() * 900)}"
        return base
    if cc in ("GB", "AU"):
        base = f"{n} {s}"
        if r < 0.30:
            return f"{'Flat' if cc == 'GB' else 'Unit'} {1 + int(rnd() * 40)}, {base}"
        if r < 0.36:
            return f"{HOUSE_NAMES[int(rnd() * len(HOUSE_NAMES))]}, {s}"
        return base
    if cc == "DE":
        base = f"{s} {n}{'' if rnd() < 0.85 else 'abc'[int(rnd() * 3)]}"
        if r < 0.3:
            return f"{base}, {1 + int(rnd() * 5)}. OG"
        return base
    if cc == "FR":
        if r < 0.1:
            return f"{n} bis, {s}"
        if r < 0.3:
            return f"{n}, {s}, Bât. {'ABC'[int(rnd() * 3)]}"
        return f"{n} {s}"
    if cc == "IN":
        return f"Flat {1 + int(rnd() * 900)}, {s}, Sector {1 + int(rnd() * 60)}"
    if cc == "ES":
        return f"{s}, {n}, {1 + int(rnd() * 8)}º {'ABCD'[int(rnd() * 4)]}"
    if cc == "PL":
        return f"{s} {n}/{1 + int(rnd() * 60)}"
    if cc == "DK":
        if r < 0.5:
            return f"{s} {n}, {1 + int(rnd() * 5)}. {'tv' if rnd() < 0.5 else 'th'}"
        return f"{s} {n}"
    if cc == "JP":
        return f"{s} {1 + int(rnd() * 5)}-{1 + int(rnd() * 20)}-{1 + int(rnd() * 30)}"
    return f"{n} {s}"


# --------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------


def generate(rows: int, seed: int, bad: int, delim: str, countries: list[str],
             write, eol: str, batch: int = 20000):
    """Write header + rows through write(str).  Returns bad-row line numbers."""
    T = Tables(delim, countries)
    q = T.q
    rng = random.Random(seed)
    rnd = rng.random

    # Bad-row plan from its own stream: good rows don't depend on it.
    brng = random.Random(f"piigate-bad-rows:{seed}")
    kinds_cycle = ("ragged", "missing_email", "bad_phone")
    bad_at = {}
    if bad:
        picks = sorted(brng.sample(range(rows), bad))
        order = list(range(bad))
        brng.shuffle(order)
        for j, idx in enumerate(picks):
            bad_at[idx] = kinds_cycle[order[j] % 3]
    bad_lines = {k: [] for k in kinds_cycle}

    write(delim.join(HEADER) + eol)

    per = T.per
    clut, nclut = T.country_lut, len(T.country_lut)
    any_first, any_last = T.any_first, T.any_last
    naf, nal = len(any_first), len(any_last)
    dob, ndob = T.dob, len(T.dob)
    signup, nsig = T.signup, len(T.signup)
    notes, nnotes = T.notes, len(T.notes)
    domains, ndom = EMAIL_DOMAINS, len(EMAIL_DOMAINS)
    recent = []  # recent canonical emails, for same-person duplicates
    num = 1000 + int(rnd() * 90000) * 10
    line = 2
    buf = []
    for i in range(rows):
        num += 1 + int(rnd() * 3)
        cid = f"C{num:07d}"
        P = per[clut[int(rnd() * nclut)]]
        cc = P["cc"]
        cname, areas, pcspec = P["cities"][P["city_lut"][int(rnd() * len(P['city_lut']))]]

        if rnd() < 0.85:
            fn = P["first"][int(rnd() * len(P["first"]))]
            ln = P["last"][int(rnd() * len(P["last"]))]
        else:
            fn = any_first[int(rnd() * naf)]
            ln = any_last[int(rnd() * nal)]

        # ---- email
        r = rnd()
        if r < 0.005 and recent:
            email = recent[int(rnd() * len(recent))]
            v = rnd()
            if v < 0.3:
                email = email.upper()
            elif v < 0.6:
                email = email.title()
            elif v < 0.8:
                email = " " + email + " "
            else:
                email = unicodedata.normalize("NFD", email).title()
        else:
            use_uni = fn[2] is not None and rnd() < 0.35
            f = fn[2] if use_uni else fn[1]
            if use_uni and fn[3] is not None and rnd() < 0.4:
                f = fn[3]  # NFD spelling of the same name
            l_ = ln[1]
            s = int(rnd() * 7)
            if s == 0:
                local = f"{f}.{l_}{num}"
            elif s == 1:
                local = f"{f[0]}{l_}{num}"
            elif s == 2:
                local = f"{f}_{l_}{num}"
            elif s == 3:
                local = f"{f}{num}"
            elif s == 4:
                local = f"{l_}.{f}{num}"
            elif s == 5:
                local = f"{f}.{l_}.{num}"
            else:
                local = f"{f}{l_[:1]}{num}"
            if rnd() < 0.07:
                local += "+" + PLUS_TAGS[int(rnd() * len(PLUS_TAGS))]
            dom = domains[int(rnd() * ndom)]
            email = local + "@" + dom
            if len(recent) < 512:
                recent.append(email)
            elif rnd() < 0.05:
                recent[int(rnd() * 512)] = email
            v = rnd()
            if v < 0.12:
                if v < 0.05:
                    email = local.title() + "@" + dom
                elif v < 0.08:
                    email = email.upper()
                elif v < 0.10:
                    email = local + "@" + dom.title()
                else:
                    email = local.capitalize() + "@" + dom.upper()
            v = rnd()
            if v < 0.04:
                email = " " + email if v < 0.02 else email + " "

        # ---- phone
        r = rnd()
        if r < 0.03:
            phone = ""
        else:
            phone = phone_for(cc, areas, rnd)
            if r > 0.98:
                x = rnd()
                if x < 0.4:
                    phone += f" x{100 + int(rnd() * 900)}"
                elif x < 0.8:
                    phone += f" ext. {10 + int(rnd() * 90)}"
                else:
                    phone += f" ext {1 + int(rnd() * 9)}"

        # ---- names as typed
        v = rnd()
        if v < 0.985:
            fcell, lcell = fn[0], ln[0]
        elif v < 0.99:
            fcell, lcell = fn[4], ln[0]
        elif v < 0.995:
            fcell, lcell = fn[0], ln[5]
        else:
            fcell, lcell = fn[0], ln[6]

        d = dob[int(rnd() * ndob)]
        dcell = d[0] if rnd() < 0.75 else d[1]

        # ---- street
        st = street_for(cc, P["streets"], rnd)
        nl = False
        v = rnd()
        if v < 0.012:
            if v < 0.007:  # Excel-style embedded line break
                parts = st.split(", ", 1)
                st = parts[0] + "\n" + parts[1] if len(parts) == 2 else \
                    f"Apt {1 + int(rnd() * 30)}\n{st}"
                nl = True
            else:
                st = f'"{HOUSE_NAMES[int(rnd() * len(HOUSE_NAMES))]}", {st}'
        st = q(st)

        pc = postcode_for(pcspec, rnd)
        si = int(rnd() * nsig)
        sg = signup[si]

        v = rnd()
        tier = "bronze" if v < 0.6 else ("silver" if v < 0.88 else "gold")
        v = rnd()
        ltv = "0.00" if v < 0.01 else f"{int(v * v * 4000)}.{int(rnd() * 100):02d}"
        opt = "true" if rnd() < 0.38 else "false"

        # notes: CRM log entries "[date agent N] text", 1-4 of them, often none
        v = rnd()
        if v < 0.42:
            note = ""
        else:
            k = 1 if v < 0.65 else (2 if v < 0.83 else (3 if v < 0.95 else 4))
            ents = []
            for _ in range(k):
                ents.append(f"[{signup[si + int(rnd() * (nsig - si))]} agent {100 + int(rnd() * 900)}] "
                            + notes[int(rnd() * nnotes)])
            note = q(" | ".join(ents))

        cells = [cid, email, phone, fcell, lcell, dcell, st, cname, pc, cc,
                 sg, tier, ltv, opt, note]

        # ~2% empty cells in optional columns, clustered in ~20% of rows
        if rnd() < 0.2:
            for k in (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13):
                if rnd() < 0.1:
                    if k == 6:
                        nl = False
                    cells[k] = ""

        if bad_at and i in bad_at:
            kind = bad_at[i]
            if kind == "ragged":
                if brng.random() < 0.5:  # truncated row
                    cells = cells[:NCOLS - 1 - int(brng.random() * 3)]
                else:  # an unquoted comma / trailing delimiter
                    cells.append("" if brng.random() < 0.5 else "see notes")
            elif kind == "missing_email":
                cells[1] = ""
            else:
                cells[2] = BAD_PHONES[int(brng.random() * len(BAD_PHONES))]
            bad_lines[kind].append(line)
            row = delim.join(cells)
            buf.append(row)
            line += 1 + row.count("\n")
        else:
            buf.append(delim.join(cells))
            line += 2 if nl else 1

        if len(buf) >= batch:
            buf.append("")
            write(eol.join(buf))
            buf = []
    if buf:
        buf.append("")
        write(eol.join(buf))
    return bad_lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Generate fictional, messy customer-profile CSV (deterministic).")
    ap.add_argument("--rows", type=int, required=True, help="data rows (bad rows included)")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--bad-rows", type=int, default=0, metavar="K",
                    help="replace K rows with deliberately bad ones")
    ap.add_argument("--crlf", action="store_true", help="CRLF line ends")
    ap.add_argument("--bom", action="store_true", help="start with a UTF-8 BOM")
    ap.add_argument("--delimiter", default=",",
                    help="',' (default), ';', '|', or '\\t' / 'tab' for TSV")
    ap.add_argument("--countries", default=None,
                    help="comma-separated ISO codes to draw from (default: all: "
                         + ",".join(COUNTRY_WEIGHTS) + ")")
    ap.add_argument("-o", "--output", required=True, help="output path, '-' for stdout")
    a = ap.parse_args(argv)

    delim = {"\\t": "\t", "tab": "\t"}.get(a.delimiter, a.delimiter)
    if delim not in DELIMITERS:
        ap.error("--delimiter must be one of: , ; | or \\t (tab)")
    if a.rows < 0 or a.bad_rows < 0 or a.bad_rows > a.rows:
        ap.error("need 0 <= --bad-rows <= --rows")
    countries = list(COUNTRY_WEIGHTS)
    if a.countries:
        countries = [c.strip().upper() for c in a.countries.split(",") if c.strip()]
        unknown = [c for c in countries if c not in COUNTRY_WEIGHTS]
        if unknown or not countries:
            ap.error(f"unknown country code(s): {','.join(unknown)}; known: "
                     + ",".join(COUNTRY_WEIGHTS))
    eol = "\r\n" if a.crlf else "\n"

    t0 = time.perf_counter()
    to_stdout = a.output == "-"
    if to_stdout:
        out = sys.stdout.buffer
        write = lambda s: out.write(s.encode("utf-8"))  # noqa: E731
    else:
        tmp = a.output + ".tmp"
        fh = open(tmp, "w", encoding="utf-8", newline="")
        write = fh.write
    try:
        if a.bom:
            write("\ufeff")
        bad_lines = generate(a.rows, a.seed, a.bad_rows, delim, countries, write, eol)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    if to_stdout:
        sys.stdout.buffer.flush()
    else:
        fh.close()
        os.replace(tmp, a.output)
    dt = time.perf_counter() - t0

    print(f"gen_profiles: {a.rows} rows (seed {a.seed}) -> {a.output} in {dt:.1f}s",
          file=sys.stderr)
    if a.bad_rows:
        for kind, lines in bad_lines.items():
            print(f"gen_profiles: bad rows: {kind}: {len(lines)} at line(s) "
                  f"{', '.join(map(str, lines)) or '-'}", file=sys.stderr)
        if not to_stdout:
            with open(a.output + ".bad.json", "w", encoding="utf-8") as fh:
                json.dump(bad_lines, fh)
                fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
