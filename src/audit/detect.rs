//! Cell-level detectors: hand-written scanners over the bytes of one cell.
//! No regular expressions and no allocation of their own; a cheap first pass
//! counts digits, dots, colons, dashes, slashes, letters and `@` (one table
//! look-up per byte), and skips every detector the cell cannot satisfy. The
//! phone-number library (which does allocate, and costs 10-50 µs a call)
//! only sees digit runs that survive the structural filters and the region's
//! possible lengths.
//!
//! [`detect`] reports every [`PiiKind`] found anywhere in a cell, free text
//! included. [`detect_evidence`] also reports the *near misses* (a value
//! shaped like a card number that fails Luhn, an IBAN that fails mod-97, a
//! phone-shaped digit run the numbering plan rejects, a date too recent to be
//! a birth date) and which findings rest on weak evidence only, so that the
//! column scanner ([`super::scan`]) can tell real personal data from columns
//! of random references that pass a check by chance.
//!
//! Each detector is tuned for precision first:
//!
//! * email: `local@domain.tld`, at least two labels, an alphabetic TLD of
//!   2-24 letters (or `xn--` punycode), not an image or file extension
//!   (`icon@2x.png`);
//! * phone: a run of digits, spaces and `()-./+` with 7-15 digits that is
//!   not glued to a word (`AB-12345678`, `#48213957`, `id=…`), not a
//!   decimal, price or dotted version, not a date, time, IPv4, ZIP (5 or 9
//!   digits, `94107-1234`), SSN, year-led reference (`2026-004217`), compact
//!   date or epoch timestamp (10 or 13 digits starting with 1), not inside a
//!   card number or IBAN, and that `phonenumber` accepts. International form
//!   (`+…`): valid, or of a possible length for its country (fictional
//!   ranges such as `+1 555 …`). National form, read in the configured
//!   region: valid, written with the region's trunk prefix where it has one
//!   other than 1 (`020 …` in GB, `030 …` in DE), or, formatted, of a
//!   possible length when it has the NANP shape (`(415) 555-0100`) or 10-11
//!   digits with its trunk prefix (`07700 900123`). Without a region only
//!   international numbers and NANP shapes (read as US) count. Bare digit
//!   runs of 8, 10 or 11 digits are weak evidence;
//! * payment card: 13-19 digits, unseparated or in groups split by single
//!   spaces or dashes (4-4-4-4, 4-6-5, …), a known issuer prefix with its
//!   length (Visa 16/19, Mastercard, Amex, Discover, JCB, Diners, UnionPay,
//!   Maestro, Mir), Luhn-valid, not one repeated digit;
//! * national ID: US SSN `ddd-dd-dddd` with the SSA rules (area not 000,
//!   666 or 9xx, group not 00, serial not 0000); bare 9 digits never count;
//! * IBAN: country code, check digits and BBAN, compact or in groups of
//!   four, any case, the registry length for the country, mod-97 = 1;
//! * IP address: dotted quad (exactly four parts, octets 0-255 without
//!   leading zeros, not part of a longer dotted run, not after `v` or a
//!   "version" word) or IPv6 (hex groups, at most one `::`, eight groups
//!   unless compressed, at least one digit, an IPv4 tail allowed);
//! * date of birth: `YYYY-MM-DD`, `YYYY/MM/DD`, `DD/MM/YYYY`, `MM/DD/YYYY`,
//!   `DD.MM.YYYY`, `DD-MM-YYYY`, `12 April 1987`, `12th Apr 1987`,
//!   `12. April 1987`, `April 12, 1987`, `12-APR-1987`; a real calendar date
//!   with a year from 1900 to thirteen years ago; a date followed by a time
//!   (`2026-11-29T03:00:00Z`, `2026-11-29 03:00`) is a timestamp, never a
//!   birth date;
//! * geolocation: a pair of decimal numbers with at least four decimals each
//!   (`37.7749, -122.4194`, `51.5074° N, 0.1278° W`, `N 51.5074, W 0.1278`,
//!   `lat=48.8566&lng=2.3522`), one a latitude (±90) and the other a
//!   longitude (±180), not both below 1 in magnitude. [`detect_geo_single`]
//!   accepts one such number on its own, for columns whose name says
//!   latitude or longitude.

use std::fmt;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use phonenumber::country;
use phonenumber::metadata::DATABASE;

/// A kind of personal data the audit looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// An email address.
    Email,
    /// A telephone number, international or national form.
    Phone,
    /// A payment card number (PAN), Luhn-valid with a known issuer prefix.
    PaymentCard,
    /// A national identification number (US Social Security number).
    NationalId,
    /// An International Bank Account Number, mod-97 validated.
    Iban,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A calendar date old enough to be a date of birth.
    DateOfBirth,
    /// A precise latitude/longitude (four or more decimals).
    GeoLocation,
}

impl PiiKind {
    /// Every kind, in report order.
    pub const ALL: [PiiKind; 8] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::PaymentCard,
        PiiKind::NationalId,
        PiiKind::Iban,
        PiiKind::IpAddress,
        PiiKind::DateOfBirth,
        PiiKind::GeoLocation,
    ];

    /// The snake_case name used in reports and JSON (`payment_card`).
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::PaymentCard => "payment_card",
            PiiKind::NationalId => "national_id",
            PiiKind::Iban => "iban",
            PiiKind::IpAddress => "ip_address",
            PiiKind::DateOfBirth => "date_of_birth",
            PiiKind::GeoLocation => "geo_location",
        }
    }

    /// A short human description ("payment card number").
    pub fn describe(self) -> &'static str {
        match self {
            PiiKind::Email => "email address",
            PiiKind::Phone => "phone number",
            PiiKind::PaymentCard => "payment card number",
            PiiKind::NationalId => "national ID number (US SSN)",
            PiiKind::Iban => "IBAN",
            PiiKind::IpAddress => "IP address",
            PiiKind::DateOfBirth => "date of birth",
            PiiKind::GeoLocation => "precise geolocation",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`PiiKind`]s: one byte, `Copy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KindSet(u8);

impl KindSet {
    /// The empty set.
    pub const EMPTY: KindSet = KindSet(0);

    /// An empty set.
    pub const fn new() -> Self {
        KindSet(0)
    }

    /// Adds `kind`.
    pub fn insert(&mut self, kind: PiiKind) {
        self.0 |= kind.bit();
    }

    /// Removes `kind`.
    pub fn remove(&mut self, kind: PiiKind) {
        self.0 &= !kind.bit();
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: PiiKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many kinds the set holds.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Empties the set.
    pub fn clear(&mut self) {
        self.0 = 0;
    }

    /// The kinds in either set.
    pub const fn union(self, other: KindSet) -> KindSet {
        KindSet(self.0 | other.0)
    }

    /// The kinds in `self` but not in `other`.
    pub const fn difference(self, other: KindSet) -> KindSet {
        KindSet(self.0 & !other.0)
    }

    /// The kinds in the set, in [`PiiKind::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = PiiKind> {
        // Bit k is `PiiKind::ALL[k]`: walk the set bits, lowest first.
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let k = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(PiiKind::ALL[k])
        })
    }
}

impl FromIterator<PiiKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = PiiKind>>(iter: I) -> Self {
        let mut s = KindSet::new();
        for k in iter {
            s.insert(k);
        }
        s
    }
}

/// What [`detect_evidence`] saw in a cell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Kinds found in the cell.
    pub found: KindSet,
    /// Kinds whose shape appeared but failed validation: a card-shaped number
    /// with a known issuer prefix that fails Luhn, an IBAN-shaped string that
    /// fails mod-97, a phone-shaped digit run the numbering plan rejects, an
    /// SSN-shaped number the SSA rules reject, a real date that is too recent
    /// for a birth date or is part of a timestamp. A column where these
    /// outnumber the matches holds references, not personal data.
    pub near: KindSet,
    /// Kinds in `found` that rest only on weak evidence in this cell: phone
    /// numbers written as a bare run of digits in national form.
    pub weak: KindSet,
    /// Near misses on weak evidence only: bare digit runs of a phone's
    /// length that the numbering plan rejects. A column of random numeric
    /// IDs has many; a column of phone numbers has few.
    pub weak_near: KindSet,
}

impl Evidence {
    /// Clears every set.
    pub fn clear(&mut self) {
        *self = Evidence::default();
    }
}

/// Adds to `out` every kind of personal data found anywhere in `cell`
/// (free text included). `out` is not cleared first, so one set can collect
/// the kinds of several cells. `region` is how national phone numbers are
/// read (`[schema] default_region`); without it only international numbers
/// (`+…`) count as phones.
pub fn detect(cell: &str, region: Option<country::Id>, out: &mut KindSet) {
    let mut ev = Evidence::default();
    detect_evidence(cell, region, &mut ev);
    *out = out.union(ev.found);
}

/// Like [`detect`], with the near misses and weak evidence the column
/// scanner needs. Adds to `ev`; does not clear it.
pub fn detect_evidence(cell: &str, region: Option<country::Id>, ev: &mut Evidence) {
    detect_evidence_with(cell, region, true, ev);
}

/// [`detect_evidence`], skipping phone numbers when `phones` is false (the
/// column scanner's shortcut for columns already shown to hold numeric
/// references: validating a phone candidate costs 10-50 µs in
/// `phonenumber`).
pub(crate) fn detect_evidence_with(cell: &str, region: Option<country::Id>, phones: bool, ev: &mut Evidence) {
    let s = cell.as_bytes();
    if s.len() < 6 {
        return;
    }
    let ByteCounts { digits, dots, colons, dashes, slashes, letters, at } = ByteCounts::of(s);
    let mut claims = Claims::default();
    if at > 0 {
        scan_email(s, ev);
    }
    if digits >= 8 && letters >= 2 && s.len() >= 15 {
        scan_iban(s, ev, &mut claims);
    }
    if digits >= 13 {
        scan_cards(s, ev, &mut claims);
    }
    if digits >= 9 && dashes >= 2 {
        scan_ssn(s, ev);
    }
    if digits >= 4 && dots >= 3 {
        scan_ipv4(s, ev);
    }
    if colons >= 2 {
        scan_ipv6(s, ev);
    }
    // A numeric date repeats its separator ("1987-04-12"); a date with a
    // month name needs a word of three letters.
    if digits >= 5 && (letters >= 3 || dashes >= 2 || dots >= 2 || slashes >= 2) {
        scan_dates(s, letters >= 3, ev);
    }
    if digits >= 10 && dots >= 2 {
        scan_geo_pairs(s, ev);
    }
    if phones && digits >= 7 {
        scan_phones(s, region, &claims, ev);
    }
}

/// How often each byte class the detectors care about occurs in a cell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ByteCounts {
    digits: u32,
    dots: u32,
    colons: u32,
    dashes: u32,
    slashes: u32,
    /// ASCII letters.
    letters: u32,
    at: u32,
}

// The first pass adds one table entry per byte: each class owns an 8-bit
// lane of a u64, flushed every 255 bytes so that no lane overflows.
const LANE_DIGIT: u32 = 0;
const LANE_DOT: u32 = 8;
const LANE_COLON: u32 = 16;
const LANE_DASH: u32 = 24;
const LANE_SLASH: u32 = 32;
const LANE_LETTER: u32 = 40;
const LANE_AT: u32 = 48;

const BYTE_LANES: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let lane = match c {
            b'0'..=b'9' => Some(LANE_DIGIT),
            b'.' => Some(LANE_DOT),
            b':' => Some(LANE_COLON),
            b'-' => Some(LANE_DASH),
            b'/' => Some(LANE_SLASH),
            b'a'..=b'z' | b'A'..=b'Z' => Some(LANE_LETTER),
            b'@' => Some(LANE_AT),
            _ => None,
        };
        if let Some(l) = lane {
            t[b] = 1 << l;
        }
        b += 1;
    }
    t
};

impl ByteCounts {
    fn of(s: &[u8]) -> Self {
        let mut c = ByteCounts::default();
        for chunk in s.chunks(255) {
            let mut acc = 0u64;
            for &b in chunk {
                acc += BYTE_LANES[usize::from(b)];
            }
            let lane = |l: u32| ((acc >> l) & 0xff) as u32;
            c.digits += lane(LANE_DIGIT);
            c.dots += lane(LANE_DOT);
            c.colons += lane(LANE_COLON);
            c.dashes += lane(LANE_DASH);
            c.slashes += lane(LANE_SLASH);
            c.letters += lane(LANE_LETTER);
            c.at += lane(LANE_AT);
        }
        c
    }
}

/// Byte ranges already taken by a card number or IBAN (valid or not), so the
/// phone scanner does not read their digit groups as phone numbers.
#[derive(Default)]
struct Claims {
    spans: [(usize, usize); 8],
    n: usize,
}

impl Claims {
    fn add(&mut self, a: usize, b: usize) {
        if self.n < self.spans.len() {
            self.spans[self.n] = (a, b);
            self.n += 1;
        }
    }

    fn overlaps(&self, a: usize, b: usize) -> bool {
        self.spans[..self.n].iter().any(|&(x, y)| a < y && x < b)
    }
}

/// Whether `cell` is, on its own, one coordinate: a decimal number with at
/// least four decimals within ±180 (optionally with `°` and a compass letter).
/// Meant for columns whose header says latitude or longitude; see
/// [`super::scan::name_hint`].
pub fn detect_geo_single(cell: &str) -> bool {
    let t = cell.trim().as_bytes();
    read_coord(t, 0).is_some_and(|c| c.end == t.len() && c.value.abs() <= 180.0)
}

// ---------------------------------------------------------------- helpers

/// A byte that makes a neighbouring number part of a word or identifier.
#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The byte at `i`, or 0 past the end.
#[inline]
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// The byte before `i`, or 0 at the start.
#[inline]
fn before(s: &[u8], i: usize) -> u8 {
    if i == 0 {
        0
    } else {
        s[i - 1]
    }
}

/// Reads up to 9 digits from `i`: (value, digit count, index after).
#[inline]
fn read_digits(s: &[u8], mut i: usize) -> (u32, usize, usize) {
    let start = i;
    let mut v = 0u32;
    while i < s.len() && s[i].is_ascii_digit() {
        if i - start < 9 {
            v = v * 10 + u32::from(s[i] - b'0');
        }
        i += 1;
    }
    (v, i - start, i)
}

fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_ascii_lowercase() == *y)
}

// ------------------------------------------------------------------ email

/// File extensions that follow `@2x`-style image names; never an email TLD here.
const FILE_EXTS: [&[u8]; 16] = [
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"bmp", b"ico", b"pdf", b"txt", b"csv", b"js", b"css", b"html",
    b"json", b"xml",
];

fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b"!#$%&'*+/=?^_`{|}~.-".contains(&b)
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80
}

fn scan_email(s: &[u8], ev: &mut Evidence) {
    for (i, &b) in s.iter().enumerate() {
        if b == b'@' && email_at(s, i) {
            ev.found.insert(PiiKind::Email);
            return;
        }
    }
}

fn email_at(s: &[u8], at_: usize) -> bool {
    // Local part, backwards from the '@'.
    let mut st = at_;
    while st > 0 && is_local_byte(s[st - 1]) {
        st -= 1;
    }
    while st < at_ && s[st] == b'.' {
        st += 1;
    }
    let local = &s[st..at_];
    if local.is_empty()
        || local.len() > 64
        || local.last() == Some(&b'.')
        || local.windows(2).any(|w| w == b"..")
        || !local.iter().any(|b| b.is_ascii_alphanumeric() || *b >= 0x80)
    {
        return false;
    }
    // Domain: labels separated by single dots.
    let mut i = at_ + 1;
    let mut labels = 0;
    let mut last;
    loop {
        let ls = i;
        while i < s.len() && is_label_byte(s[i]) {
            i += 1;
        }
        if i == ls || s[ls] == b'-' || s[i - 1] == b'-' || i - ls > 63 {
            return false;
        }
        labels += 1;
        last = (ls, i);
        if at(s, i) == b'.' && is_label_byte(at(s, i + 1)) {
            i += 1;
        } else {
            break;
        }
    }
    if labels < 2 {
        return false;
    }
    let tld = &s[last.0..last.1];
    let alpha_tld = (2..=24).contains(&tld.len()) && tld.iter().all(u8::is_ascii_alphabetic);
    let puny = tld.len() > 4 && eq_ignore_case(&tld[..4], b"xn--");
    (alpha_tld || puny) && !FILE_EXTS.iter().any(|e| eq_ignore_case(tld, e))
}

// ------------------------------------------------------------------- card

fn scan_cards(s: &[u8], ev: &mut Evidence, claims: &mut Claims) {
    let n = s.len();
    let mut i = 0;
    while i < n {
        if !s[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        // Digit groups joined by one consistent single separator.
        let mut buf = [0u8; 19];
        let mut nd = 0usize;
        let mut ends = [0usize; 8]; // digit count at the end of each group
        let mut pos = [0usize; 8]; // byte index after each group
        let mut ng = 0usize;
        let mut sep = 0u8;
        let mut j = start;
        loop {
            while j < n && s[j].is_ascii_digit() {
                if nd < buf.len() {
                    buf[nd] = s[j] - b'0';
                }
                nd += 1;
                j += 1;
            }
            if ng < ends.len() {
                ends[ng] = nd;
                pos[ng] = j;
            }
            ng += 1;
            let c = at(s, j);
            if (c == b' ' || c == b'-') && (sep == 0 || sep == c) && at(s, j + 1).is_ascii_digit() && nd <= 19 {
                sep = c;
                j += 1;
            } else {
                break;
            }
        }
        i = j;
        if claims.overlaps(start, j) {
            continue;
        }
        let p = before(s, start);
        let glued_before = is_word(p)
            || p == b'.'
            || (p == b',' && before(s, start - 1).is_ascii_digit())
            || ((p == b'-' || p == b'/') && is_word(before(s, start - 1)));
        if glued_before || nd < 13 {
            continue;
        }
        // Try the whole run, then shorter prefixes ending on a group
        // boundary (a card number followed by more digits in free text).
        let ng = ng.min(ends.len());
        for g in (0..ng).rev() {
            let len = ends[g];
            if len < 13 {
                break;
            }
            if len > 19 {
                continue;
            }
            let e = at(s, pos[g]);
            let after_ok = if g + 1 == ng {
                !(is_word(e) || (matches!(e, b'.' | b',' | b'/') && at(s, pos[g] + 1).is_ascii_digit()))
            } else {
                true
            };
            if !after_ok {
                break;
            }
            let mut sizes = [0usize; 8];
            let mut prev = 0;
            for (k, size) in sizes.iter_mut().enumerate().take(g + 1) {
                *size = ends[k] - prev;
                prev = ends[k];
            }
            let d = &buf[..len];
            if !card_groups_ok(&sizes[..=g]) || !card_prefix_ok(d) || d.iter().all(|&x| x == d[0]) {
                continue;
            }
            claims.add(start, pos[g]);
            if luhn(d) {
                ev.found.insert(PiiKind::PaymentCard);
            } else {
                ev.near.insert(PiiKind::PaymentCard);
            }
            break;
        }
    }
}

fn card_groups_ok(g: &[usize]) -> bool {
    match g {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&x| x == 4) && (1..=4).contains(last),
        [] => false,
    }
}

fn card_prefix_ok(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| d[..k].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let (p1, p2, p3, p4) = (p(1), p(2), p(3), p(4));
    let long = (16..=19).contains(&n);
    (p1 == 4 && matches!(n, 16 | 19))
        || (((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16)
        || ((p2 == 34 || p2 == 37) && n == 15)
        || ((p4 == 6011 || (644..=649).contains(&p3) || p2 == 65) && long)
        || (p2 == 62 && long)
        || ((3528..=3589).contains(&p4) && long)
        || (((300..=305).contains(&p3) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&n))
        || (matches!(p4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763) && (13..=19).contains(&n))
        || ((2200..=2204).contains(&p4) && long)
}

/// The Luhn (mod 10) check over digit values.
pub(crate) fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

// -------------------------------------------------------------------- SSN

fn scan_ssn(s: &[u8], ev: &mut Evidence) {
    let n = s.len();
    // Every `ddd-dd-dddd` has its first dash three bytes in, so only dashes
    // are candidates, taken in order. No shape can start inside another
    // (its only digits after a non-digit are followed by too few digits).
    for p in memchr::memchr_iter(b'-', s) {
        if p + 8 > n {
            break;
        }
        if p < 3 {
            continue;
        }
        let i = p - 3;
        if !s[i].is_ascii_digit() || before(s, i).is_ascii_digit() {
            continue;
        }
        let w = &s[i..i + 11];
        let shape = w.iter().enumerate().all(|(k, &b)| if k == 3 || k == 6 { b == b'-' } else { b.is_ascii_digit() });
        if !shape {
            continue;
        }
        let p = before(s, i);
        let glued_before = is_word(p) || (matches!(p, b'-' | b'.' | b'/') && is_word(before(s, i - 1)));
        let e = at(s, i + 11);
        let glued_after = is_word(e) || (matches!(e, b'-' | b'.' | b'/') && at(s, i + 12).is_ascii_digit());
        if !glued_before && !glued_after {
            let num = |a: usize, b: usize| w[a..b].iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x - b'0'));
            let (area, group, serial) = (num(0, 3), num(4, 6), num(7, 11));
            if area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 {
                ev.found.insert(PiiKind::NationalId);
                return;
            }
            ev.near.insert(PiiKind::NationalId);
        }
    }
}

// ------------------------------------------------------------------- IBAN

/// IBAN length by country (SWIFT IBAN registry).
fn iban_len(cc: [u8; 2]) -> Option<usize> {
    Some(match &cc {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FO" | b"GL" | b"NL" | b"SD" | b"FK" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"XK" | b"MN" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"OM" | b"SO" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"LY" | b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"BI" | b"DJ" | b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HN" | b"HU" | b"LB" | b"NI" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" | b"YE" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        b"RU" => 33,
        _ => return None,
    })
}

fn scan_iban(s: &[u8], ev: &mut Evidence, claims: &mut Claims) {
    let n = s.len();
    let mut i = 0;
    while i + 15 <= n {
        // The check digits first: rarer than letters in text. Without a
        // digit at i + 3 no IBAN starts at i or at i + 1.
        if !s[i + 3].is_ascii_digit() {
            i += 2;
            continue;
        }
        let (a, b) = (s[i], s[i + 1]);
        if s[i + 2].is_ascii_digit()
            && a.is_ascii_alphabetic()
            && b.is_ascii_alphabetic()
            && a.is_ascii_uppercase() == b.is_ascii_uppercase()
            && !is_word(before(s, i))
        {
            if let Some(len) = iban_len([a.to_ascii_uppercase(), b.to_ascii_uppercase()]) {
                if let Some((valid, end)) = iban_at(s, i, len) {
                    claims.add(i, end);
                    if valid {
                        ev.found.insert(PiiKind::Iban);
                    } else {
                        ev.near.insert(PiiKind::Iban);
                    }
                    i = end;
                    continue;
                }
            }
        }
        i += 1;
    }
}

/// `Some((valid, end))` when an IBAN-shaped string of `len` characters
/// starts at `i`, compact or in space-separated groups of four.
fn iban_at(s: &[u8], i: usize, len: usize) -> Option<(bool, usize)> {
    let mut buf = [0u8; 34];
    let (mut k, mut j, mut group, mut digits) = (0usize, i, 0usize, 0usize);
    while k < len {
        let c = at(s, j);
        if c.is_ascii_alphanumeric() {
            buf[k] = c.to_ascii_uppercase();
            digits += usize::from(c.is_ascii_digit());
            k += 1;
            group += 1;
            j += 1;
        } else if c == b' ' && group == 4 && k < len && at(s, j + 1).is_ascii_alphanumeric() {
            group = 0;
            j += 1;
        } else {
            return None;
        }
    }
    if is_word(at(s, j)) || digits < 8 {
        return None;
    }
    Some((mod97(&buf[..len]) == 1, j))
}

fn mod97(c: &[u8]) -> u32 {
    let mut r = 0u32;
    for &ch in c[4..].iter().chain(&c[..4]) {
        r = if ch.is_ascii_digit() {
            (r * 10 + u32::from(ch - b'0')) % 97
        } else {
            (r * 100 + u32::from(ch - b'A' + 10)) % 97
        };
    }
    r
}

// --------------------------------------------------------------------- IP

/// Words that make a following dotted quad a version number.
const VERSION_WORDS: [&[u8]; 8] = [b"v", b"ver", b"version", b"build", b"release", b"firmware", b"fw", b"rev"];

fn preceded_by_version_word(s: &[u8], start: usize) -> bool {
    let mut e = start;
    while e > 0 && matches!(s[e - 1], b' ' | b':' | b'=') && start - e < 3 {
        e -= 1;
    }
    let mut b = e;
    while b > 0 && s[b - 1].is_ascii_alphabetic() {
        b -= 1;
    }
    b < e && VERSION_WORDS.iter().any(|w| eq_ignore_case(&s[b..e], w))
}

fn scan_ipv4(s: &[u8], ev: &mut Evidence) {
    let n = s.len();
    let mut i = 0;
    while i < n {
        if !s[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i;
        while j < n && (s[j].is_ascii_digit() || s[j] == b'.') {
            j += 1;
        }
        i = j;
        let p = before(s, start);
        if is_word(p) || p == b'.' || is_word(at(s, j)) || preceded_by_version_word(s, start) {
            continue;
        }
        let end = if s[j - 1] == b'.' { j - 1 } else { j };
        if ipv4_ok(&s[start..end]) {
            ev.found.insert(PiiKind::IpAddress);
            return;
        }
    }
}

fn ipv4_ok(t: &[u8]) -> bool {
    let mut parts = 0;
    for part in t.split(|&b| b == b'.') {
        parts += 1;
        if parts > 4 || part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return false;
        }
        if part.iter().fold(0u32, |a, &x| a * 10 + u32::from(x - b'0')) > 255 {
            return false;
        }
    }
    parts == 4
}

fn scan_ipv6(s: &[u8], ev: &mut Evidence) {
    let n = s.len();
    let mut i = 0;
    while i < n {
        if !(s[i].is_ascii_hexdigit() || s[i] == b':') {
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i;
        while j < n && (s[j].is_ascii_hexdigit() || s[j] == b':' || s[j] == b'.') {
            j += 1;
        }
        i = j;
        if is_word(before(s, start)) || is_word(at(s, j)) {
            continue;
        }
        let mut end = j;
        while end > start && s[end - 1] == b'.' {
            end -= 1;
        }
        if ipv6_ok(&s[start..end]) {
            ev.found.insert(PiiKind::IpAddress);
            return;
        }
    }
}

fn ipv6_ok(t: &[u8]) -> bool {
    let colons = t.iter().filter(|&&b| b == b':').count();
    if !(2..=8).contains(&colons) || !t.iter().any(u8::is_ascii_digit) {
        return false;
    }
    let dbl = t.windows(2).position(|w| w == b"::");
    let (head, tail): (&[u8], &[u8]) = match dbl {
        Some(p) => (&t[..p], &t[p + 2..]),
        None => (t, &[]),
    };
    if tail.windows(2).any(|w| w == b"::") || tail.first() == Some(&b':') {
        return false;
    }
    let mut groups = 0;
    for (side, part) in [head, tail].into_iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        let pieces = part.split(|&b| b == b':');
        let count = part.iter().filter(|&&b| b == b':').count() + 1;
        for (k, g) in pieces.enumerate() {
            let last_of_all = k + 1 == count && (side == 1 || dbl.is_none());
            if g.contains(&b'.') {
                if !last_of_all || !ipv4_ok(g) {
                    return false;
                }
                groups += 2;
            } else if (1..=4).contains(&g.len()) && g.iter().all(u8::is_ascii_hexdigit) {
                groups += 1;
            } else {
                return false;
            }
        }
    }
    match dbl {
        Some(_) => (2..=7).contains(&groups),
        None => groups == 8,
    }
}

// ------------------------------------------------------------------ dates

/// The latest birth year counted: people at least 13 years old.
fn dob_cutoff_year() -> u32 {
    static CUTOFF: OnceLock<u32> = OnceLock::new();
    *CUTOFF.get_or_init(|| current_year().max(2025) - 13)
}

fn current_year() -> u32 {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2)) as u32
}

fn valid_date(y: u32, m: u32, d: u32) -> bool {
    if !(1..=12).contains(&m) || d == 0 || !(1900..=2199).contains(&y) {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    d <= dim
}

/// Whether a time of day starts at `i` (after `T` or a space): `hh:mm`.
fn time_at(s: &[u8], i: usize) -> bool {
    let (_, l, j) = read_digits(s, i);
    (1..=2).contains(&l) && at(s, j) == b':' && at(s, j + 1).is_ascii_digit()
}

fn classify_date(y: u32, timestamp: bool, ev: &mut Evidence) {
    if !timestamp && (1900..=dob_cutoff_year()).contains(&y) {
        ev.found.insert(PiiKind::DateOfBirth);
    } else {
        ev.near.insert(PiiKind::DateOfBirth);
    }
}

/// After a date ending at `e`: (is it a timestamp, is it glued to more).
fn date_tail(s: &[u8], e: usize) -> (bool, bool) {
    let c = at(s, e);
    if (c == b'T' || c == b't') && time_at(s, e + 1) {
        return (true, false);
    }
    if c == b' ' && time_at(s, e + 1) {
        return (true, false);
    }
    let glued = is_word(c) || (matches!(c, b'-' | b'/' | b'.' | b':') && at(s, e + 1).is_ascii_digit());
    (false, glued)
}

const MONTHS: [&[u8]; 12] = [
    b"january",
    b"february",
    b"march",
    b"april",
    b"may",
    b"june",
    b"july",
    b"august",
    b"september",
    b"october",
    b"november",
    b"december",
];

fn month_of(word: &[u8]) -> Option<u32> {
    // Every month name (and "sept") starts with one of these letters.
    if !(3..=9).contains(&word.len())
        || !matches!(word[0].to_ascii_lowercase(), b'a' | b'd' | b'f' | b'j' | b'm' | b'n' | b'o' | b's')
    {
        return None;
    }
    for (k, m) in MONTHS.iter().enumerate() {
        if eq_ignore_case(word, m) || (word.len() == 3 && eq_ignore_case(word, &m[..3])) {
            return Some(k as u32 + 1);
        }
    }
    if eq_ignore_case(word, b"sept") {
        return Some(9);
    }
    None
}

fn scan_dates(s: &[u8], words: bool, ev: &mut Evidence) {
    let n = s.len();
    let mut i = 0;
    while i < n {
        let b = s[i];
        if b.is_ascii_digit() {
            let (a, la, j) = read_digits(s, i);
            let start = i;
            i = j;
            let sep = at(s, j);
            if !matches!(sep, b'-' | b'/' | b'.') {
                continue;
            }
            let (bv, lb, k) = read_digits(s, j + 1);
            if !(1..=2).contains(&lb) || at(s, k) != sep {
                continue;
            }
            let (c, lc, e) = read_digits(s, k + 1);
            let p = before(s, start);
            if is_word(p) || (matches!(p, b'-' | b'/' | b'.' | b':') && before(s, start - 1).is_ascii_digit()) {
                continue;
            }
            let (timestamp, glued) = date_tail(s, e);
            if glued {
                continue;
            }
            if la == 4 && (1..=2).contains(&lc) {
                if valid_date(a, bv, c) {
                    classify_date(a, timestamp, ev);
                }
            } else if (1..=2).contains(&la) && lc == 4 && (valid_date(c, bv, a) || valid_date(c, a, bv)) {
                classify_date(c, timestamp, ev);
            }
        } else if words && b.is_ascii_alphabetic() {
            let start = i;
            while i < n && s[i].is_ascii_alphabetic() {
                i += 1;
            }
            if is_word(before(s, start)) || is_word(at(s, i)) {
                continue;
            }
            if let Some(m) = month_of(&s[start..i]) {
                month_name_date(s, start, i, m, ev);
            }
        } else {
            i += 1;
        }
    }
}

/// Skips an ordinal suffix (st, nd, rd, th) at `i`.
fn skip_ordinal(s: &[u8], i: usize) -> usize {
    let two = [at(s, i).to_ascii_lowercase(), at(s, i + 1).to_ascii_lowercase()];
    if matches!(&two, b"st" | b"nd" | b"rd" | b"th") && !is_word(at(s, i + 2)) {
        i + 2
    } else {
        i
    }
}

/// Skips date separators (spaces, one dash or slash, a comma) from `i`;
/// returns the new index if at least one was skipped.
fn skip_date_sep(s: &[u8], mut i: usize) -> Option<usize> {
    let start = i;
    if at(s, i) == b'.' {
        i += 1;
    }
    if at(s, i) == b',' {
        i += 1;
    }
    if matches!(at(s, i), b'-' | b'/') {
        i += 1;
    } else {
        while at(s, i) == b' ' && i - start < 4 {
            i += 1;
        }
    }
    (i > start).then_some(i)
}

/// A date around a month name at `s[ws..we]`: "12 April 1987", "April 12,
/// 1987", "12-Apr-1987".
fn month_name_date(s: &[u8], ws: usize, we: usize, m: u32, ev: &mut Evidence) {
    let read_year = |i: usize| -> Option<(u32, usize)> {
        let (y, ly, e) = read_digits(s, i);
        (ly == 4).then_some((y, e))
    };
    // Month Day, Year.
    if let Some(k) = skip_date_sep(s, we) {
        let (d, ld, e) = read_digits(s, k);
        if (1..=2).contains(&ld) {
            let e = skip_ordinal(s, e);
            if let Some(k2) = skip_date_sep(s, e) {
                if let Some((y, ye)) = read_year(k2) {
                    let (timestamp, glued) = date_tail(s, ye);
                    if !glued && valid_date(y, m, d) {
                        classify_date(y, timestamp, ev);
                        return;
                    }
                }
            }
        }
    }
    // Day Month Year.
    let mut k = ws;
    if k > 0 && matches!(s[k - 1], b'-' | b'/') {
        k -= 1;
    } else {
        while k > 0 && s[k - 1] == b' ' && ws - k < 3 {
            k -= 1;
        }
    }
    if k == ws {
        return;
    }
    // Optional ordinal suffix ("12th") or dot ("12. April") before the separator.
    let mut dend = k;
    if dend >= 2 && s[dend - 1] == b'.' && s[dend - 2].is_ascii_digit() {
        dend -= 1;
    }
    if dend >= 2 && s[dend - 1].is_ascii_alphabetic() && s[dend - 2].is_ascii_alphabetic() {
        if skip_ordinal(s, dend - 2) == dend {
            dend -= 2;
        } else {
            return;
        }
    }
    let mut dstart = dend;
    while dstart > 0 && s[dstart - 1].is_ascii_digit() && dend - dstart < 3 {
        dstart -= 1;
    }
    let ld = dend - dstart;
    if !(1..=2).contains(&ld) || is_word(before(s, dstart)) {
        return;
    }
    let d = s[dstart..dend].iter().fold(0u32, |a, &x| a * 10 + u32::from(x - b'0'));
    if let Some(k2) = skip_date_sep(s, we) {
        if let Some((y, ye)) = read_year(k2) {
            let (timestamp, glued) = date_tail(s, ye);
            if !glued && valid_date(y, m, d) {
                classify_date(y, timestamp, ev);
            }
        }
    }
}

// -------------------------------------------------------------------- geo

struct Coord {
    value: f64,
    end: usize,
    /// Upper-case compass letter after the number, or 0.
    compass: u8,
}

/// A decimal number with at least four decimals at `i`, with an optional
/// sign, degree sign and compass letter, standing alone (not glued to a word
/// or a longer dotted number).
fn read_coord(s: &[u8], i: usize) -> Option<Coord> {
    let mut j = i;
    let neg = at(s, j) == b'-';
    if matches!(at(s, j), b'-' | b'+') {
        j += 1;
    }
    let (iv, il, k) = read_digits(s, j);
    if !(1..=3).contains(&il) || at(s, k) != b'.' {
        return None;
    }
    let frac_start = k + 1;
    let (_, fl, mut j) = read_digits(s, frac_start);
    if !(4..=15).contains(&fl) {
        return None;
    }
    let mut frac = 0f64;
    let mut scale = 1f64;
    for &c in &s[frac_start..frac_start + fl.min(9)] {
        scale /= 10.0;
        frac += f64::from(c - b'0') * scale;
    }
    let mut value = f64::from(iv) + frac;
    if neg {
        value = -value;
    }
    if at(s, j) == 0xC2 && at(s, j + 1) == 0xB0 {
        j += 2; // '°'
    }
    let mut compass = 0;
    let k = if at(s, j) == b' ' { j + 1 } else { j };
    let c = at(s, k).to_ascii_uppercase();
    if matches!(c, b'N' | b'S' | b'E' | b'W') && !is_word(at(s, k + 1)) {
        compass = c;
        j = k + 1;
        if c == b'S' || c == b'W' {
            value = -value.abs();
        }
    }
    let e = at(s, j);
    if is_word(e) || (e == b'.' && at(s, j + 1).is_ascii_digit()) {
        return None;
    }
    Some(Coord { value, end: j, compass })
}

const LON_WORDS: [&[u8]; 4] = [b"lon", b"lng", b"long", b"longitude"];

fn scan_geo_pairs(s: &[u8], ev: &mut Evidence) {
    let n = s.len();
    let mut i = 0;
    while i < n {
        let b = s[i];
        let starts = b.is_ascii_digit()
            || (matches!(b, b'-' | b'+') && at(s, i + 1).is_ascii_digit())
            || compass_prefix(s, i).is_some();
        let p = before(s, i);
        if !starts || is_word(p) || p == b'.' || (p.is_ascii_digit()) {
            i += 1;
            continue;
        }
        let Some(first) = read_coord_prefixed(s, i) else {
            i += 1;
            while i < n && (s[i].is_ascii_digit() || s[i] == b'.') {
                i += 1;
            }
            continue;
        };
        // Separator: spaces, one of , ; /, spaces, an optional "lon:" word.
        let mut j = first.end;
        let sep_start = j;
        while at(s, j) == b' ' {
            j += 1;
        }
        if matches!(at(s, j), b',' | b';' | b'/' | b'&') {
            j += 1;
            while at(s, j) == b' ' {
                j += 1;
            }
        }
        let ws = j;
        while compass_prefix(s, j).is_none() && at(s, j).is_ascii_alphabetic() {
            j += 1;
        }
        if j > ws {
            if !LON_WORDS.iter().any(|w| eq_ignore_case(&s[ws..j], w)) {
                i = first.end.max(i + 1);
                continue;
            }
            if matches!(at(s, j), b':' | b'=') {
                j += 1;
            }
            while at(s, j) == b' ' {
                j += 1;
            }
        }
        if j == sep_start {
            i = first.end.max(i + 1);
            continue;
        }
        if let Some(second) = read_coord_prefixed(s, j) {
            if geo_pair_ok(&first, &second) {
                ev.found.insert(PiiKind::GeoLocation);
                return;
            }
        }
        i = first.end.max(i + 1);
    }
}

/// A compass letter written before a coordinate ("N 37.7749", "W122.4194"):
/// the letter and where the number starts.
fn compass_prefix(s: &[u8], i: usize) -> Option<(u8, usize)> {
    let c = at(s, i).to_ascii_uppercase();
    if !matches!(c, b'N' | b'S' | b'E' | b'W') || is_word(before(s, i)) {
        return None;
    }
    let k = if at(s, i + 1) == b' ' { i + 2 } else { i + 1 };
    at(s, k).is_ascii_digit().then_some((c, k))
}

/// [`read_coord`], also accepting a compass letter in front.
fn read_coord_prefixed(s: &[u8], i: usize) -> Option<Coord> {
    let Some((c, k)) = compass_prefix(s, i) else {
        return read_coord(s, i);
    };
    let mut coord = read_coord(s, k)?;
    if coord.compass != 0 {
        return None;
    }
    coord.compass = c;
    if c == b'S' || c == b'W' {
        coord.value = -coord.value.abs();
    }
    Some(coord)
}

fn geo_pair_ok(a: &Coord, b: &Coord) -> bool {
    let is_lat = |c: &Coord| c.value.abs() <= 90.0 && !matches!(c.compass, b'E' | b'W');
    let is_lon = |c: &Coord| c.value.abs() <= 180.0 && !matches!(c.compass, b'N' | b'S');
    let either = (is_lat(a) && is_lon(b)) || (is_lon(a) && is_lat(b));
    either && (a.value.abs() >= 1.0 || b.value.abs() >= 1.0)
}

// ------------------------------------------------------------------ phone

#[inline]
fn is_phone_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b' ' | b'(' | b')' | b'-' | b'.' | b'+' | b'/')
}

/// What one phone-shaped run turned out to be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PhoneVerdict {
    /// Not phone-shaped at all.
    None,
    /// Formatted like a phone, rejected by the numbering plan.
    Near,
    /// A bare digit run the numbering plan rejects.
    WeakNear,
    /// A phone written as bare digits in national form.
    Weak,
    /// A formatted or international phone number.
    Strong,
}

fn scan_phones(s: &[u8], region: Option<country::Id>, claims: &Claims, ev: &mut Evidence) {
    let n = s.len();
    let (mut strong, mut weak, mut near, mut weak_near) = (false, false, false, false);
    let mut i = 0;
    while i < n {
        if !is_phone_byte(s[i]) {
            i += 1;
            continue;
        }
        let rs = i;
        let mut run_digits = 0usize;
        while i < n && is_phone_byte(s[i]) {
            run_digits += usize::from(s[i].is_ascii_digit());
            i += 1;
        }
        let re = i;
        // Every verdict needs at least 7 digits in one number: a run with
        // fewer (the spaces between words of free text, "agent 267") holds none.
        if run_digits < 7 {
            continue;
        }
        // Two or more spaces, or " / ", separate numbers inside one run.
        let mut a = rs;
        let mut k = rs;
        while k <= re {
            let split = if k == re {
                1
            } else if s[k] == b' ' && at(s, k + 1) == b' ' {
                2
            } else if s[k] == b' ' && at(s, k + 1) == b'/' && at(s, k + 2) == b' ' {
                3
            } else {
                0
            };
            if split == 0 {
                k += 1;
                continue;
            }
            let end = k.min(re);
            if end > a {
                let verdict = if claims.overlaps(a, end) { PhoneVerdict::None } else { phone_run(s, a, end, region) };
                match verdict {
                    PhoneVerdict::Strong => strong = true,
                    PhoneVerdict::Weak => weak = true,
                    PhoneVerdict::Near => near = true,
                    PhoneVerdict::WeakNear => weak_near = true,
                    PhoneVerdict::None => {}
                }
                if strong {
                    break;
                }
            }
            k += split;
            a = k;
        }
        if strong {
            break;
        }
    }
    if strong || weak {
        ev.found.insert(PiiKind::Phone);
        if !strong {
            ev.weak.insert(PiiKind::Phone);
        }
    }
    if near {
        ev.near.insert(PiiKind::Phone);
    }
    if weak_near {
        ev.weak_near.insert(PiiKind::Phone);
    }
}

fn glued_before(s: &[u8], a: usize) -> bool {
    let p = before(s, a);
    is_word(p)
        || matches!(p, b'#' | b'$' | b'@' | b'&' | b'%' | b'*' | b'=' | b'\\' | b'|')
        || (matches!(p, b',' | b':') && before(s, a - 1).is_ascii_digit())
}

fn glued_after(s: &[u8], b: usize) -> bool {
    let e = at(s, b);
    is_word(e)
        || matches!(e, b'@' | b'%' | b'#' | b'$' | b'*' | b'=')
        || (matches!(e, b',' | b':') && at(s, b + 1).is_ascii_digit())
}

/// Judges the phone-shaped run `s[a..b]`.
fn phone_run(s: &[u8], a: usize, b: usize, region: Option<country::Id>) -> PhoneVerdict {
    use PhoneVerdict as V;
    let mut x = a;
    while x < b && !(s[x].is_ascii_digit() || s[x] == b'+' || s[x] == b'(') {
        x += 1;
    }
    let mut y = b;
    while y > x && !s[y - 1].is_ascii_digit() {
        y -= 1;
    }
    // Glued to a word through separators only ("AB-12345678", "#48213957",
    // "4155552671x"); a space in between ("tel. 415 555 0100") unglues.
    if (!s[a..x].contains(&b' ') && glued_before(s, a)) || (!s[y..b].contains(&b' ') && glued_after(s, b)) {
        return V::None;
    }
    if x + 1 < y && s[x] == b'(' && s[x + 1] == b'+' {
        x += 1; // "(+44 20 7946 0018)"
    }
    if x >= y {
        return V::None;
    }
    let t = &s[x..y];

    // Structure: digit groups and the separator after each.
    let mut buf = [0u8; 17];
    let mut bl = 0usize;
    let mut groups = [0u8; 12];
    let mut seps = [0u8; 12];
    let mut ng = 0usize;
    let mut cur = 0u8;
    let mut digits = 0usize;
    let mut plus = false;
    let mut paren = false;
    let mut first_digit = 0u8;
    let mut k = 0;
    while k < t.len() {
        let c = t[k];
        match c {
            b'0'..=b'9' => {
                if digits == 0 {
                    first_digit = c;
                }
                digits += 1;
                if bl < buf.len() {
                    buf[bl] = c;
                    bl += 1;
                }
                cur = cur.saturating_add(1);
            }
            b'+' => {
                if k != 0 {
                    return V::None;
                }
                plus = true;
                buf[0] = b'+';
                bl = 1;
            }
            _ => {
                // "+44 (0)20 …": a trunk prefix in brackets, not dialled.
                if c == b'(' && plus && t.get(k + 1) == Some(&b'0') && t.get(k + 2) == Some(&b')') {
                    paren = true;
                    k += 3;
                    if cur > 0 {
                        if ng < groups.len() {
                            groups[ng] = cur;
                            seps[ng] = b' ';
                        }
                        ng += 1;
                        cur = 0;
                    }
                    continue;
                }
                if c == b'(' || c == b')' {
                    paren = true;
                }
                if cur > 0 {
                    if ng < groups.len() {
                        groups[ng] = cur;
                        seps[ng] = c;
                    }
                    ng += 1;
                    cur = 0;
                }
            }
        }
        k += 1;
    }
    if cur > 0 {
        if ng < groups.len() {
            groups[ng] = cur;
            seps[ng] = 0;
        }
        ng += 1;
    }
    if !(7..=15).contains(&digits) || ng > groups.len() {
        return V::None;
    }
    let g = &groups[..ng];
    let sp = &seps[..ng];

    // A dot that is not part of a chain of dots is a decimal point.
    for (k, &c) in sp.iter().enumerate() {
        if c == b'.' {
            let prev_dot = k > 0 && sp[k - 1] == b'.';
            let next_dot = sp.get(k + 1) == Some(&b'.');
            if !prev_dot && !next_dot {
                return V::None;
            }
        }
    }
    // Dots separate groups of two or more digits ("415.555.2671",
    // "06.12.34.56.78"); "5.12.7.30.8" and "10.0.19041.1" are versions.
    if sp.contains(&b'.') && g.iter().skip(1).any(|&l| l < 2) {
        return V::None;
    }
    // Dotted quad (an IP address).
    if ng == 4 && sp[..3].iter().all(|&c| c == b'.') && g.iter().all(|&l| l <= 3) {
        return V::None;
    }
    if ng >= 3 && sp[0] == sp[1] && matches!(sp[0], b'-' | b'/' | b'.') {
        // Dates: 2026-11-29, 29/11/2026, 29.11.2026.
        if (g[0] == 4 && g[1] <= 2 && g[2] <= 2) || (g[0] <= 2 && g[1] <= 2 && g[2] == 4) {
            return V::None;
        }
    }
    if ng >= 2 && g[0] == 4 && matches!(sp[0], b'-' | b'/') {
        // Year-led references: 2026-004217.
        let year = t[..4].iter().fold(0u32, |acc, &c| acc * 10 + u32::from(c.wrapping_sub(b'0')));
        if (1900..=2099).contains(&year) && !plus {
            return V::None;
        }
    }
    if !plus && g == [3, 2, 4] && sp[0] == b'-' && sp[1] == b'-' {
        return V::None; // SSN shape
    }
    if !plus && g == [5, 4] && sp[0] == b'-' {
        return V::None; // ZIP+4
    }
    let bare = ng == 1 && !plus && !paren;
    let digits_only = &buf[usize::from(plus)..bl];
    if bare {
        let l = digits;
        if l < 8
            || l == 9
            || l > 11
            || (l == 10 && first_digit == b'1')
            || (l == 8 && looks_like_compact_date(digits_only))
        {
            return V::None;
        }
    }
    let nanp_shape = g == [3, 3, 4] || g == [1, 3, 3, 4];
    // National forms are read in the region. Without one, only the NANP
    // shapes ("(415) 555-0100", "1-415-555-0100") are distinctive enough to
    // read, as US numbers.
    let region = match region {
        None if !plus && !bare && nanp_shape => Some(country::Id::US),
        r => r,
    };
    let meta = if plus { None } else { region.and_then(|r| DATABASE.by_id(r.as_ref())) };
    if !plus && meta.is_none() {
        return V::None;
    }
    // Where national numbers are written with a trunk prefix other than 1
    // (0 in most of Europe, 8 in Russia), a national form without it is not
    // a phone number: "123 456 789" is a reference even where the plan
    // would accept it.
    let national_prefix = meta.and_then(|m| m.national_prefix()).unwrap_or("");
    let trunk = !national_prefix.is_empty() && digits_only.starts_with(national_prefix.as_bytes());
    let near = if bare { V::WeakNear } else { V::Near };
    if !plus && !national_prefix.is_empty() && national_prefix != "1" && !trunk {
        return near;
    }
    // A national significant number of a length the plan never uses is
    // rejected without the parser (dialled international prefixes, "00…" and
    // "011…", are left to it).
    if let Some(m) = meta {
        let idd = digits_only.starts_with(b"00") || digits_only.starts_with(b"011");
        let nsn = digits - if trunk { national_prefix.len() } else { 0 };
        if !idd && !possible_national_length(m, nsn) {
            return near;
        }
    }
    // NANP: area code and exchange both start with 2-9.
    let ten = if digits_only.len() == 11 { &digits_only[1..] } else { digits_only };
    let nanp = meta.is_some_and(|m| m.country_code() == 1)
        && nanp_shape
        && ten.len() == 10
        && ten[0] >= b'2'
        && ten[3] >= b'2';
    // Fictional and newly allocated ranges ("+1 555 …", "07700 900…") fail
    // the plan's patterns; a formatted international number, a NANP shape or
    // a ten- or eleven-digit national number with its trunk prefix is judged
    // on length alone.
    let lenient = plus || (!bare && (nanp || (trunk && (10..=11).contains(&digits))));
    let Ok(text) = std::str::from_utf8(&buf[..bl]) else {
        return V::None;
    };
    if phone_ok(text, if plus { None } else { region }, lenient) {
        if bare {
            V::Weak
        } else {
            V::Strong
        }
    } else {
        near
    }
}

/// Whether some number type of the region has national numbers of `len` digits.
fn possible_national_length(meta: &phonenumber::metadata::Metadata, len: usize) -> bool {
    let d = meta.descriptors();
    let len = len as u16;
    [
        Some(d.general()),
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.voip(),
        d.personal_number(),
        d.uan(),
        d.pager(),
        d.voicemail(),
    ]
    .into_iter()
    .flatten()
    .any(|x| x.possible_length().contains(&len))
}

fn looks_like_compact_date(d: &[u8]) -> bool {
    let v = |a: usize, b: usize| d[a..b].iter().fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'));
    valid_date(v(0, 4), v(4, 6), v(6, 8))
}

/// Whether `phonenumber` reads `text` as a valid number; `lenient` also
/// accepts a number of a possible length for its country (fictional and
/// newly allocated ranges, which a formatted value shows are phones).
fn phone_ok(text: &str, region: Option<country::Id>, lenient: bool) -> bool {
    let Ok(number) = phonenumber::parse(region, text) else {
        return false;
    };
    if phonenumber::is_valid(&number) {
        return true;
    }
    if !lenient {
        return false;
    }
    // An invalid number has no region of its own: judge its length against
    // the main country of its calling code, fixed-line or mobile.
    let Some(metas) = DATABASE.by_code(&number.code().value()) else {
        return false;
    };
    let Some(meta) = metas.iter().find(|m| m.is_main_country_for_code()).or(metas.first()) else {
        return false;
    };
    let national = number.national();
    let mut len = u16::from(national.zeros());
    let mut v = national.value();
    while v > 0 {
        len += 1;
        v /= 10;
    }
    let d = meta.descriptors();
    [Some(d.general()), d.fixed_line(), d.mobile()]
        .into_iter()
        .flatten()
        .any(|desc| desc.possible_length().contains(&len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn kinds(cell: &str, region: &str) -> KindSet {
        let mut k = KindSet::new();
        detect(cell, Some(country::Id::from_str(region).unwrap()), &mut k);
        k
    }

    fn has(cell: &str, kind: PiiKind) -> bool {
        kinds(cell, "US").contains(kind)
    }

    fn clean(cell: &str) -> bool {
        kinds(cell, "US").is_empty() && kinds(cell, "GB").is_empty() && kinds(cell, "DE").is_empty()
    }

    #[test]
    fn kindset_is_a_bitset() {
        let mut s = KindSet::new();
        assert!(s.is_empty());
        s.insert(PiiKind::Iban);
        s.insert(PiiKind::Email);
        s.insert(PiiKind::Iban);
        assert_eq!(s.len(), 2);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![PiiKind::Email, PiiKind::Iban]);
        s.remove(PiiKind::Email);
        assert!(!s.contains(PiiKind::Email) && s.contains(PiiKind::Iban));
        assert_eq!(PiiKind::ALL.into_iter().collect::<KindSet>().len(), 8);
        assert_eq!(serde_json::to_string(&PiiKind::PaymentCard).unwrap(), "\"payment_card\"");
        for k in PiiKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
    }

    #[test]
    fn emails() {
        for e in [
            "ana@example.com",
            "Ana.Test+news@Example.CO.UK",
            "mail ana@example.com pls",
            "<ana_b@mail.example.org>",
            "Contact: x.y@sub.example.io.",
            "zoë@exämple.de",
            "mailto:ops@example.test",
        ] {
            assert!(has(e, PiiKind::Email), "{e}");
        }
        for e in ["@ana", "ana@", "ana@localhost", "a@b.c0m", "icon@2x.png", "price @ 2.50", "foo@bar", "a@-b.com"] {
            assert!(!has(e, PiiKind::Email), "{e}");
        }
    }

    #[test]
    fn phones() {
        for (p, r) in [
            ("+44 20 7946 0018", "US"),
            ("call me at +44 20 7946 0018 tomorrow", "US"),
            ("(415) 555-2671", "US"),
            ("415-555-2671", "US"),
            ("415.555.2671", "US"),
            ("+1 415 555 2671", "US"),
            ("+14155552671", "DE"),
            ("1-415-555-2671", "US"),
            ("Tel:4155552671", "US"),
            ("020 7946 0018", "GB"),
            ("+44 (0)20 7946 0018", "GB"),
            ("07700 900123", "GB"),
            ("+1 (555) 123-4567", "US"),
            ("+33 1 23 45 67 89", "US"),
            ("030 12345678", "DE"),
            ("ring 020 7946 0018 after 5pm", "GB"),
        ] {
            assert!(kinds(p, r).contains(PiiKind::Phone), "{p} in {r}");
        }
        // National forms need the region.
        let mut k = KindSet::new();
        detect("020 7946 0018", None, &mut k);
        assert!(!k.contains(PiiKind::Phone));
        // Bare digits are weak evidence.
        let mut ev = Evidence::default();
        detect_evidence("4155552671", Some(country::Id::US), &mut ev);
        assert!(ev.found.contains(PiiKind::Phone) && ev.weak.contains(PiiKind::Phone));
        ev.clear();
        detect_evidence("(415) 555-2671", Some(country::Id::US), &mut ev);
        assert!(ev.found.contains(PiiKind::Phone) && !ev.weak.contains(PiiKind::Phone));
    }

    #[test]
    fn phone_lookalikes_are_not_phones() {
        for v in [
            "AB-12345678",
            "SKU ABC-1234567890",
            "ABC-1234567890",
            "1234.56",
            "12345.67",
            "$1,234,567.89",
            "1764385200",
            "1764385200123",
            "94107",
            "94107-1234",
            "941071234",
            "2026-11-29",
            "2026-11-29T03:00:00Z",
            "2026-11-29 03:00:00",
            "29/11/2026",
            "Invoice #48213957",
            "INV-2026-004217",
            "2026-004217",
            "order 4111111111111112",
            "1.2.3.4.5",
            "10.0.19041.1",
            "37.7749, -122.4194",
            "192.168.100.200",
            "20261129",
            "qty 1234567",
        ] {
            assert!(!kinds(v, "US").contains(PiiKind::Phone), "{v} (US)");
            assert!(!kinds(v, "GB").contains(PiiKind::Phone), "{v} (GB)");
        }
        // German bare national numbers need their trunk 0.
        assert!(!kinds("48213957", "DE").contains(PiiKind::Phone));
    }

    #[test]
    fn cards() {
        for c in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "2223003122003222",
            "378282246310005",
            "3782 822463 10005",
            "6011111111111117",
            "3530111333300000",
            "card 4012 8888 8888 1881 exp 12/27",
        ] {
            assert!(has(c, PiiKind::PaymentCard), "{c}");
        }
        let mut ev = Evidence::default();
        detect_evidence("4111111111111112", None, &mut ev);
        assert!(!ev.found.contains(PiiKind::PaymentCard) && ev.near.contains(PiiKind::PaymentCard));
        for c in [
            "4111111111111112",
            "1234567812345670", // Luhn-valid, no issuer starts with 1
            "4444444444444444",
            "ORD-4111111111111111",
            "4111111111111111.00",
            "41111111111111110",
            "4111 1111 11111 1111",
            "4111  1111 1111 1111 x",
        ] {
            assert!(!has(c, PiiKind::PaymentCard), "{c}");
        }
    }

    #[test]
    fn ssns() {
        for v in ["123-45-6789", "SSN: 078-05-1120", "ssn 665-12-0001."] {
            assert!(has(v, PiiKind::NationalId), "{v}");
        }
        for v in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123456789",
            "1-123-45-6789",
            "AB123-45-6789",
        ] {
            assert!(!has(v, PiiKind::NationalId), "{v}");
        }
    }

    #[test]
    fn ibans() {
        for v in [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB29 NWBK 6016 1331 9268 19",
            "iban: FR14 2004 1010 0505 0001 3M02 606, thanks",
            "NL91ABNA0417164300",
            "BE68 5390 0754 7034 please",
            "gb29nwbk60161331926819",
        ] {
            assert!(has(v, PiiKind::Iban), "{v}");
        }
        for v in
            ["DE89370400440532013001", "DE8937040044053201300", "XX89370400440532013000", "DE89 37040 044 0532 0130 00"]
        {
            assert!(!has(v, PiiKind::Iban), "{v}");
        }
    }

    #[test]
    fn ip_addresses() {
        for v in [
            "192.168.1.20",
            "login from 203.0.113.7 at noon",
            "10.0.0.1:8080",
            "2001:db8::8a2e:370:7334",
            "fe80::1",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "::ffff:192.0.2.1",
            "host 8.8.8.8.",
        ] {
            assert!(has(v, PiiKind::IpAddress), "{v}");
        }
        for v in [
            "1.2.3.4.5",
            "v1.2.3.4",
            "version 1.2.3.4",
            "256.1.1.1",
            "1.2.3",
            "10.0.19041.1",
            "03:00:00",
            "std::vector",
            "00:1A:2B:3C:4D:5E",
            "2026-11-29T03:00:00Z",
            "01.02.03.04",
        ] {
            assert!(!has(v, PiiKind::IpAddress), "{v}");
        }
    }

    #[test]
    fn dates_of_birth() {
        for v in [
            "1987-04-12",
            "12/04/1987",
            "04/28/1987",
            "28.04.1987",
            "12 April 1987",
            "12th Apr 1987",
            "April 12, 1987",
            "Sept 3 1961",
            "12-APR-1987",
            "born 12/04/1987 in Leeds",
            "1999-02-28",
        ] {
            assert!(has(v, PiiKind::DateOfBirth), "{v}");
        }
        for v in [
            "2026-11-29T03:00:00Z",
            "1987-04-12T10:00:00",
            "1987-04-12 10:00",
            "2024-03-15",
            "1987-02-30",
            "13/13/1987",
            "1887-04-12",
            "1764385200",
            "12 May",
            "Maybe 12 1987",
            "1.2.1987.4",
        ] {
            assert!(!has(v, PiiKind::DateOfBirth), "{v}");
        }
        let mut ev = Evidence::default();
        detect_evidence("2024-03-15", None, &mut ev);
        assert!(ev.near.contains(PiiKind::DateOfBirth));
    }

    #[test]
    fn geolocations() {
        for v in [
            "37.7749, -122.4194",
            "(51.5074,-0.1278)",
            "51.5074° N, 0.1278° W",
            "lat 48.8566 lon 2.3522",
            "met at 40.7128 -74.0060 yesterday",
            "-33.8688;151.2093",
        ] {
            assert!(has(v, PiiKind::GeoLocation), "{v}");
        }
        for v in ["37.77, -122.41", "0.1234, 0.5678", "95.12345, 200.12345", "1234.5678, 1.2345", "1.2345.6789 2.3456"]
        {
            assert!(!has(v, PiiKind::GeoLocation), "{v}");
        }
        assert!(detect_geo_single(" 37.774929 "));
        assert!(detect_geo_single("-122.4194"));
        assert!(!detect_geo_single("37.77"));
        assert!(!detect_geo_single("1234.5678"));
        assert!(!detect_geo_single("37.7749 m"));
    }

    #[test]
    fn precision_negatives_are_clean() {
        for v in [
            "4929123456789012", // 16-digit order number failing Luhn
            "ORD-8812345678901234",
            "94107",
            "94107-1234",
            "1234.56",
            "$1,234.56",
            "EUR 99.90",
            "2026-11-29T03:00:00Z",
            "2026-11-29T03:00:00+01:00",
            "1764385200",
            "ABC-1234567890",
            "SKU-00012345",
            "1.2.3.4.5",
            "INV-2026-004217",
            "Invoice #48213957",
            "Gold",
            "San Francisco",
            "Customer asked about delivery times, order 12 items",
            "",
        ] {
            assert!(clean(v), "{v}: {:?}", kinds(v, "US"));
        }
    }

    #[test]
    fn free_text_finds_several_kinds() {
        let k = kinds("mail ana@example.com or call +44 20 7946 0018; card 4111 1111 1111 1111", "US");
        assert!(k.contains(PiiKind::Email) && k.contains(PiiKind::Phone) && k.contains(PiiKind::PaymentCard));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet: Vec<char> =
            "0123456789012345 .,-/:+()@#$&=_TtNSEWxX°é€\u{a0}abcDEFGBdemayApril".chars().collect();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut cell = String::new();
        for _ in 0..20_000 {
            cell.clear();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for _ in 0..(x % 48) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                cell.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let mut ev = Evidence::default();
            detect_evidence(&cell, Some(country::Id::GB), &mut ev);
            detect_evidence(&cell, None, &mut ev);
            let _ = detect_geo_single(&cell);
        }
        // Edges: separators at the very start and end.
        for c in ["-", ".", ",", ":", "@", "+", "(", "1-", "-1", "@a.bc", "a@", "::", "1.", ".1", "N ", " W"] {
            let mut ev = Evidence::default();
            detect_evidence(c, Some(country::Id::US), &mut ev);
            let padded = format!("{c}4111 1111 1111 1111{c}");
            detect_evidence(&padded, Some(country::Id::US), &mut ev);
        }
    }

    #[test]
    fn kindset_bits_follow_all() {
        for (k, kind) in PiiKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, k);
            let one: KindSet = [kind].into_iter().collect();
            assert_eq!(one.iter().collect::<Vec<_>>(), vec![kind]);
        }
        let all: KindSet = PiiKind::ALL.into_iter().collect();
        assert_eq!(all.iter().collect::<Vec<_>>(), PiiKind::ALL.to_vec());
        assert_eq!(KindSet::EMPTY.iter().count(), 0);
    }

    #[test]
    fn byte_counts_match_a_plain_count() {
        let naive = |s: &[u8]| ByteCounts {
            digits: s.iter().filter(|b| b.is_ascii_digit()).count() as u32,
            dots: s.iter().filter(|&&b| b == b'.').count() as u32,
            colons: s.iter().filter(|&&b| b == b':').count() as u32,
            dashes: s.iter().filter(|&&b| b == b'-').count() as u32,
            slashes: s.iter().filter(|&&b| b == b'/').count() as u32,
            letters: s.iter().filter(|b| b.is_ascii_alphabetic()).count() as u32,
            at: s.iter().filter(|&&b| b == b'@').count() as u32,
        };
        let mut x = 0x2545_f491_4f6c_dd1du64;
        // Lengths around the 255-byte flush, one class repeated and mixed.
        for len in [0usize, 1, 6, 254, 255, 256, 509, 510, 511, 1000] {
            for b in 0..=255u8 {
                let s = vec![b; len];
                assert_eq!(ByteCounts::of(&s), naive(&s), "byte {b} x {len}");
            }
            let mixed: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(ByteCounts::of(&mixed), naive(&mixed), "mixed x {len}");
        }
    }

    #[test]
    fn dates_at_the_prefilter_thresholds() {
        // Five digits and three letters; six digits and two separators.
        for v in ["1 May 1990", "May 1 1990", "1-1-1990", "1/1/1990", "1.1.1990", "1990-1-1", "1990/1/1"] {
            assert!(has(v, PiiKind::DateOfBirth), "{v}");
        }
        // One separator or two letters: no date at all, not even a near miss.
        for v in ["1-11990", "19901/1", "ab 1.1990", "C1234567", "1234.56"] {
            let mut ev = Evidence::default();
            detect_evidence(v, Some(country::Id::US), &mut ev);
            assert!(!ev.found.contains(PiiKind::DateOfBirth) && !ev.near.contains(PiiKind::DateOfBirth), "{v}");
        }
        for m in [
            "Jan",
            "January",
            "Feb",
            "February",
            "Mar",
            "March",
            "Apr",
            "April",
            "May",
            "Jun",
            "June",
            "Jul",
            "July",
            "Aug",
            "August",
            "Sep",
            "Sept",
            "September",
            "Oct",
            "October",
            "Nov",
            "November",
            "Dec",
            "December",
        ] {
            for v in [format!("3 {m} 1961"), format!("{} 3, 1961", m.to_uppercase())] {
                assert!(has(&v, PiiKind::DateOfBirth), "{v}");
            }
        }
    }

    #[test]
    fn ssns_anywhere_among_dashes() {
        // First dash at byte 3, the SSN ending the cell, after other dashes
        // and after a near miss.
        for v in [
            "078-05-1120",
            "a - 078-05-1120",
            "ref 2024-03-12 - 078-05-1120",
            "--- 078-05-1120 ---",
            "000-12-3456 or 078-05-1120",
            "12-34-56 078-05-1120",
        ] {
            assert!(has(v, PiiKind::NationalId), "{v}");
        }
        let mut ev = Evidence::default();
        detect_evidence("000-12-3456 or 078-05-1120", None, &mut ev);
        assert!(ev.near.contains(PiiKind::NationalId));
        for v in ["78-05-1120", "078-05-112", "0078-05-1120", "078-05-11200", "x-078-05-1120"] {
            let mut ev = Evidence::default();
            detect_evidence(v, None, &mut ev);
            assert!(ev.found.is_empty() || !ev.found.contains(PiiKind::NationalId), "{v}");
        }
    }

    #[test]
    fn ibans_at_every_offset() {
        // The scan steps two bytes past a position without a check digit:
        // an IBAN must be found whatever its offset.
        for pad in 0..6 {
            let lead = "x ".repeat(pad / 2) + if pad % 2 == 1 { "- " } else { "" };
            for iban in ["NO9386011117947", "NO93 8601 1117 947", "DE89370400440532013000"] {
                let v = format!("{lead}{iban}");
                assert!(has(&v, PiiKind::Iban), "{v}");
                let v = format!("{}{iban}", " ".repeat(pad));
                assert!(has(&v, PiiKind::Iban), "{v}");
            }
        }
    }

    #[test]
    fn current_year_is_sane() {
        let y = current_year();
        assert!((2024..2200).contains(&y), "{y}");
        assert_eq!(dob_cutoff_year(), y.max(2025) - 13);
    }
}
