//! Column-level decisions: a [`ColumnScanner`] per `keep` column counts what
//! [`detect_evidence`](super::detect::detect_evidence) sees in each value,
//! chunks scanned in parallel are [merged](ColumnScanner::merge), and
//! [`ColumnScanner::findings`] turns the counts into [`Finding`]s under the
//! configured [`AuditThresholds`].
//! Findings carry counts and line numbers, never values.
//!
//! How a kind becomes a finding. Distinctive patterns count from the first
//! value, because one leaked address or card number is a leak; the kinds
//! that ordinary numbers imitate need volume (`min_matches` values and
//! `min_ratio` of the column). Where a kind has a validity check, the share
//! of the *shaped* values that pass it separates personal data (nearly all
//! pass) from random references (chance level):
//!
//! * email, US SSN: from the first value;
//! * payment card, IBAN: from the first value, provided more than half of
//!   the card-shaped (IBAN-shaped) values in the column pass Luhn (mod-97).
//!   Random 16-digit references are about one in ten Luhn-valid;
//! * phone: formatted or international numbers (`(415) 555-0100`,
//!   `+44 20 7946 0018`) from the first value, provided at least 75% of the
//!   phone-formatted values are valid (random `ddd-ddd-dddd` references are
//!   about 64%); bare digit runs (`4155550100`) need volume and 80% validity
//!   among all phone-shaped values (random 10-digit IDs are about a third
//!   valid in the US plan);
//! * date of birth: volume, and at least 80% of the dates in the column
//!   thirteen or more years old and not timestamps (order and signup dates
//!   are recent);
//! * IP address: volume;
//! * geolocation: coordinate pairs from the first value; single coordinates
//!   in a column named like latitude/longitude ([`name_hint`]) need volume.

use phonenumber::country;
use serde::Deserialize;
use std::fmt;

use super::detect::{detect_evidence_with, detect_geo_single, Evidence, PiiKind};

/// Phone-shaped values a scanner validates before it may conclude that the
/// column holds numeric references and stop validating phones.
const PHONE_LEARNING: u64 = 256;

/// Thresholds under `[audit]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditThresholds {
    /// Fraction of the non-empty values of a column that must match for a
    /// finding of a kind that ordinary numbers can imitate (bare-digit
    /// phone numbers, IP addresses, dates of birth, single coordinates).
    /// Default 0.05.
    pub min_ratio: f64,
    /// Matching values needed for a finding of those kinds; also the number
    /// of distinctive matches that makes any finding high-confidence.
    /// Default 3.
    pub min_matches: u64,
    /// How many line numbers a finding lists. Default 5.
    pub max_lines: usize,
}

impl Default for AuditThresholds {
    fn default() -> Self {
        AuditThresholds { min_ratio: 0.05, min_matches: 3, max_lines: 5 }
    }
}

impl AuditThresholds {
    /// Checks the values are usable: `min_ratio` within 0..=1, `min_matches`
    /// at least 1. The message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_ratio) {
            return Err(format!("[audit] min_ratio must be between 0 and 1, not {}", self.min_ratio));
        }
        if self.min_matches == 0 {
            return Err("[audit] min_matches must be at least 1".to_string());
        }
        Ok(())
    }
}

/// How sure a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Only weak evidence (bare digit runs read as national phone numbers,
    /// single coordinates in a column named latitude/longitude), in under
    /// half the values.
    Low,
    /// Distinctive evidence (an email, SSN, formatted phone or coordinate
    /// pair) in fewer than `min_matches` values, or dates of birth or IP
    /// addresses over the thresholds in under half the values.
    Medium,
    /// Checksum-validated (card, IBAN), or in half the values or more, or
    /// distinctive evidence in at least `min_matches` values.
    High,
}

impl Confidence {
    /// `low`, `medium` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Personal data found in a column. Counts and line numbers, never values.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct Finding {
    /// The column's input header.
    pub column: String,
    /// What was found.
    pub kind: PiiKind,
    /// Values in which it was found.
    pub matched: u64,
    /// Non-empty values scanned.
    pub scanned: u64,
    /// Line numbers of the first matching values (ascending, at most
    /// `max_lines`).
    pub lines: Vec<u64>,
    /// How sure the finding is.
    pub confidence: Confidence,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "column {:?}: {} in {} of {} values ({} confidence)",
            self.column,
            self.kind.describe(),
            self.matched,
            self.scanned,
            self.confidence
        )?;
        if !self.lines.is_empty() {
            f.write_str(", line")?;
            if self.lines.len() > 1 {
                f.write_str("s")?;
            }
            for (k, l) in self.lines.iter().enumerate() {
                write!(f, "{}{l}", if k == 0 { " " } else { ", " })?;
            }
            if self.matched > self.lines.len() as u64 {
                f.write_str(", …")?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
struct KindStats {
    /// Values where the kind was found.
    matched: u64,
    /// Values where it was found on strong evidence (formatted phones,
    /// coordinate pairs).
    strong: u64,
    /// Values where its shape appeared but failed validation (and it was not
    /// found).
    near: u64,
    /// Values where only a weak shape (a bare digit run) appeared and failed
    /// validation (and it was not found).
    weak_near: u64,
    /// First line numbers, ascending.
    lines: Vec<u64>,
}

/// Counts, for one column, what the detectors see in each value. Feed it
/// values with [`observe`](Self::observe) (chunks may be scanned by separate
/// scanners and [merged](Self::merge)), then ask for [`findings`](Self::findings).
///
/// Validating a phone candidate costs 10-50 µs in `phonenumber` (and takes
/// its global regex-cache lock), so a scanner that has seen
/// 256 phone-shaped values of which fewer than half are valid (a column of
/// numeric references, where no phone finding is possible) stops looking
/// for phone numbers in the rest of its values. Everything else stays exact.
#[derive(Clone, Debug)]
pub struct ColumnScanner {
    region: Option<country::Id>,
    geo_hint: bool,
    max_lines: usize,
    scanned: u64,
    phones: bool,
    kinds: [KindStats; 8],
}

impl ColumnScanner {
    /// A scanner for the column with input header `header` (a latitude or
    /// longitude header lets single coordinates count), reading national
    /// phone numbers in `region`, keeping the first `max_lines` line numbers
    /// per kind (pass [`AuditThresholds::max_lines`]).
    pub fn new(header: &str, region: Option<country::Id>, max_lines: usize) -> Self {
        let geo_hint = matches!(name_hint(header), Some("latitude" | "longitude" | "location"));
        ColumnScanner { region, geo_hint, max_lines, scanned: 0, phones: true, kinds: Default::default() }
    }

    /// Scans one value found on `line` (1-based, as in the file). Empty and
    /// blank values are not counted.
    pub fn observe(&mut self, line: u64, cell: &str) {
        let trimmed = cell.trim();
        if trimmed.is_empty() {
            return;
        }
        self.scanned += 1;
        let mut ev = Evidence::default();
        detect_evidence_with(trimmed, self.region, self.phones, &mut ev);
        let mut single_geo = false;
        if self.geo_hint && !ev.found.contains(PiiKind::GeoLocation) && detect_geo_single(trimmed) {
            ev.found.insert(PiiKind::GeoLocation);
            single_geo = true;
        }
        for kind in ev.found.iter() {
            let st = &mut self.kinds[kind as usize];
            st.matched += 1;
            let weak = ev.weak.contains(kind) || (kind == PiiKind::GeoLocation && single_geo);
            if !weak {
                st.strong += 1;
            }
            if st.lines.len() < self.max_lines {
                st.lines.push(line);
            }
        }
        for kind in ev.near.difference(ev.found).iter() {
            self.kinds[kind as usize].near += 1;
        }
        for kind in ev.weak_near.difference(ev.found.union(ev.near)).iter() {
            self.kinds[kind as usize].weak_near += 1;
        }
        if self.phones {
            let st = &self.kinds[PiiKind::Phone as usize];
            let shaped = st.matched + st.near + st.weak_near;
            let strong_hopeless = st.strong == 0 || 2 * st.strong < st.strong + st.near;
            if shaped >= PHONE_LEARNING && 2 * st.matched < shaped && strong_hopeless {
                self.phones = false;
            }
        }
    }

    /// Adds the counts of `other`, a scanner of another chunk of the same
    /// column.
    pub fn merge(&mut self, other: ColumnScanner) {
        self.scanned += other.scanned;
        for (mine, theirs) in self.kinds.iter_mut().zip(other.kinds) {
            mine.matched += theirs.matched;
            mine.strong += theirs.strong;
            mine.near += theirs.near;
            mine.weak_near += theirs.weak_near;
            if !theirs.lines.is_empty() {
                mine.lines.extend(theirs.lines);
                mine.lines.sort_unstable();
                mine.lines.dedup();
                mine.lines.truncate(self.max_lines);
            }
        }
    }

    /// Non-empty values scanned so far.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Values in which `kind` was found so far.
    pub fn matched(&self, kind: PiiKind) -> u64 {
        self.kinds[kind as usize].matched
    }

    /// The findings for this column, in [`PiiKind`] order.
    pub fn findings(&self, column: &str, th: &AuditThresholds) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.scanned == 0 {
            return out;
        }
        for kind in PiiKind::ALL {
            let st = &self.kinds[kind as usize];
            let m = st.matched;
            if m == 0 {
                continue;
            }
            let ratio = m as f64 / self.scanned as f64;
            // Share of the shaped values that passed validation: near 1 for
            // real data, near chance for random references.
            let validity = m as f64 / (m + st.near) as f64;
            let strong_validity = st.strong as f64 / (st.strong + st.near) as f64;
            let weak_validity = m as f64 / (m + st.near + st.weak_near) as f64;
            let volume = m >= th.min_matches && ratio >= th.min_ratio;
            let report = match kind {
                PiiKind::Email | PiiKind::NationalId => true,
                PiiKind::PaymentCard | PiiKind::Iban => validity > 0.5,
                PiiKind::Phone => (st.strong > 0 && strong_validity >= 0.75) || (volume && weak_validity >= 0.8),
                PiiKind::DateOfBirth => volume && validity >= 0.8,
                PiiKind::IpAddress => volume,
                PiiKind::GeoLocation => st.strong > 0 || volume,
            };
            if !report {
                continue;
            }
            // Values with distinctive evidence: a pattern ordinary numbers
            // rarely match by chance (dates and IPv4 quads are not).
            let distinctive = match kind {
                PiiKind::Phone | PiiKind::GeoLocation => st.strong,
                PiiKind::DateOfBirth | PiiKind::IpAddress => 0,
                _ => m,
            };
            let weak_only = matches!(kind, PiiKind::Phone | PiiKind::GeoLocation) && st.strong == 0;
            let confidence = if ratio >= 0.5
                || matches!(kind, PiiKind::PaymentCard | PiiKind::Iban)
                || distinctive >= th.min_matches
            {
                Confidence::High
            } else if !weak_only {
                Confidence::Medium
            } else {
                Confidence::Low
            };
            let mut lines = st.lines.clone();
            lines.truncate(th.max_lines);
            out.push(Finding {
                column: column.to_string(),
                kind,
                matched: m,
                scanned: self.scanned,
                lines,
                confidence,
            });
        }
        out
    }
}

/// Header tokens that make a PII-looking name describe metadata about the
/// data rather than the data (`email_opt_in`, `phone_verified`, `card_type`).
const META_TOKENS: &[&str] = &[
    "opt",
    "optin",
    "optout",
    "opted",
    "consent",
    "verified",
    "verification",
    "subscribed",
    "subscription",
    "unsubscribed",
    "status",
    "count",
    "cnt",
    "type",
    "flag",
    "enabled",
    "valid",
    "validated",
    "bounced",
    "bounce",
    "sent",
    "opened",
    "clicked",
    "format",
    "pref",
    "prefs",
    "preference",
    "preferences",
    "permission",
    "allowed",
    "domain",
    "provider",
    "campaign",
    "template",
    "last4",
    "version",
    "app",
    "os",
    "platform",
    "length",
    "brand",
    "network",
    "balance",
    "tier",
    "expiry",
    "updated",
    "created",
    "changed",
    "timestamp",
    "ts",
    "reachable",
    "hashed",
    "sha256",
    "md5",
];

/// Leading tokens that make the column a flag or a count (`is_email_verified`).
const META_FIRST: &[&str] = &["is", "has", "num", "no", "total", "can", "allow", "did", "should", "n"];

/// Qualifiers that make `*_name` something other than a person's name.
const NON_PERSON: &[&str] = &[
    "product",
    "company",
    "file",
    "business",
    "brand",
    "campaign",
    "event",
    "app",
    "device",
    "host",
    "domain",
    "list",
    "segment",
    "plan",
    "tier",
    "category",
    "store",
    "shop",
    "merchant",
    "org",
    "organization",
    "organisation",
    "item",
    "sku",
    "column",
    "field",
    "table",
    "page",
    "city",
    "country",
    "state",
    "region",
    "bank",
    "team",
    "group",
    "role",
    "job",
    "project",
    "model",
    "package",
    "variant",
    "color",
    "colour",
    "size",
    "template",
    "type",
    "key",
    "tag",
    "label",
    "source",
    "channel",
    "browser",
    "os",
    "platform",
    "carrier",
    "currency",
    "language",
    "locale",
    "timezone",
    "course",
    "venue",
    "location",
    "site",
    "server",
    "database",
    "schema",
    "feature",
    "offer",
    "coupon",
    "promo",
    "service",
    "vendor",
    "supplier",
    "partner",
    "account",
    "property",
    "attribute",
    "metric",
    "experiment",
    "audience",
    "cohort",
    "image",
    "asset",
    "game",
    "level",
    "pet",
    "file",
    "class",
    "module",
    "queue",
    "topic",
    "branch",
    "department",
    "program",
    "school",
    "university",
    "publisher",
    "author",
    "artist",
];

/// The kind of personal data a column header suggests, as a short label
/// (`"email"`, `"phone"`, `"ssn"`, `"national_id"`, `"date_of_birth"`,
/// `"address"`, `"name"`, `"username"`, `"passport"`, `"card"`, `"iban"`,
/// `"bank_account"`, `"ip_address"`, `"device_id"`, `"latitude"`,
/// `"longitude"`, `"location"`), or `None`. Case-insensitive; words split on
/// `_`, `-`, `.`, spaces, digits and camelCase; whole words only, so `zip`
/// is not `ip` and `product_name` is not a person's name. Headers about the
/// data rather than the data (`email_opt_in`, `is_phone_verified`,
/// `card_type`) do not count.
pub fn name_hint(header: &str) -> Option<&'static str> {
    let tokens = tokenize(header);
    if tokens.is_empty() {
        return None;
    }
    let t: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let has = |w: &str| t.contains(&w);
    let any = |ws: &[&str]| t.iter().any(|x| ws.contains(x));
    let pair = |a: &str, b: &str| t.windows(2).any(|w| w[0] == a && w[1] == b);
    if t.iter().any(|x| META_TOKENS.contains(x)) || META_FIRST.contains(&t[0]) && t.len() > 1 {
        return None;
    }
    if any(&["email", "emails", "mail", "emailaddress", "emailid"]) || pair("e", "mail") {
        return Some("email");
    }
    if any(&["ip", "ipv4", "ipv6", "ipaddress", "ipaddr"]) || pair("remote", "addr") {
        return Some("ip_address");
    }
    if any(&[
        "phone",
        "phones",
        "telephone",
        "tel",
        "mobile",
        "cell",
        "cellphone",
        "msisdn",
        "whatsapp",
        "fax",
        "phonenumber",
        "mobilephone",
        "telefon",
        "telefono",
    ]) {
        return Some("phone");
    }
    if has("ssn") || has("ssns") || pair("social", "security") {
        return Some("ssn");
    }
    if any(&[
        "nino",
        "nationalid",
        "taxid",
        "tin",
        "nif",
        "nie",
        "dni",
        "cpf",
        "aadhaar",
        "aadhar",
        "pesel",
        "bsn",
        "personnummer",
        "curp",
        "nric",
    ]) || pair("national", "id")
        || pair("tax", "id")
        || pair("national", "insurance")
        || (any(&["driver", "drivers", "driving"]) && any(&["license", "licence"]))
    {
        return Some("national_id");
    }
    if any(&["dob", "birth", "birthday", "birthdate", "bday", "born", "dateofbirth", "birthdays"]) {
        return Some("date_of_birth");
    }
    if any(&["card", "cardnumber", "cc", "ccnum", "ccnumber", "creditcard", "pan", "cvv", "cvc", "cvv2"]) {
        return Some("card");
    }
    if has("iban") {
        return Some("iban");
    }
    if pair("bank", "account") || has("routing") || pair("account", "number") && has("bank") {
        return Some("bank_account");
    }
    if has("passport") {
        return Some("passport");
    }
    if any(&["mac", "imei", "idfa", "gaid", "udid"]) {
        return Some("device_id");
    }
    if any(&["username", "login", "screenname", "handle"]) || pair("user", "name") || pair("screen", "name") {
        return Some("username");
    }
    if any(&["address", "addr", "street", "streetaddress", "postaladdress", "mailing"]) || pair("house", "number") {
        return Some("address");
    }
    let person = any(&[
        "firstname",
        "lastname",
        "fullname",
        "surname",
        "givenname",
        "familyname",
        "middlename",
        "maidenname",
        "displayname",
        "nickname",
        "forename",
        "fname",
        "lname",
        "cardholder",
    ]);
    if person || (has("name") && !any(NON_PERSON) && !has("filename") && !has("hostname")) {
        return Some("name");
    }
    if any(&["lat", "latitude"]) {
        return Some("latitude");
    }
    if any(&["lon", "lng", "longitude"]) || (has("long") && (t.len() == 1 || has("geo"))) {
        return Some("longitude");
    }
    if any(&["geo", "geolocation", "gps", "coordinates", "coords", "latlng", "latlon", "latlong", "geopoint"]) {
        return Some("location");
    }
    None
}

/// Lower-case words of a header: split on non-alphanumerics, letter/digit
/// changes and camelCase (`IPAddress` → `ip`, `address`).
fn tokenize(header: &str) -> Vec<String> {
    let chars: Vec<char> = header.trim().chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (k, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some(&p) = k.checked_sub(1).and_then(|i| chars.get(i)) {
            let next_lower = chars.get(k + 1).is_some_and(|n| n.is_lowercase());
            let boundary = (p.is_alphabetic() != c.is_alphabetic() && p.is_alphanumeric())
                || (p.is_lowercase() && c.is_uppercase())
                || (p.is_uppercase() && c.is_uppercase() && next_lower);
            if boundary && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(header: &str, values: &[String]) -> Vec<Finding> {
        let mut sc = ColumnScanner::new(header, Some(country::Id::US), 5);
        for (k, v) in values.iter().enumerate() {
            sc.observe(k as u64 + 2, v);
        }
        sc.findings(header, &AuditThresholds::default())
    }

    fn kinds(f: &[Finding]) -> Vec<PiiKind> {
        f.iter().map(|x| x.kind).collect()
    }

    use crate::audit::labelled::Rng;

    #[test]
    fn thresholds_deserialize_with_defaults() {
        let t: AuditThresholds = serde_json::from_str("{}").unwrap();
        assert_eq!(t, AuditThresholds::default());
        let t: AuditThresholds = serde_json::from_str(r#"{"min_ratio":0.2,"max_lines":2}"#).unwrap();
        assert_eq!((t.min_ratio, t.min_matches, t.max_lines), (0.2, 3, 2));
        assert!(serde_json::from_str::<AuditThresholds>(r#"{"min_ration":0.2}"#).is_err());
        assert!(AuditThresholds { min_ratio: 1.5, ..Default::default() }.validate().is_err());
        assert!(AuditThresholds { min_matches: 0, ..Default::default() }.validate().is_err());
        assert!(AuditThresholds::default().validate().is_ok());
    }

    #[test]
    fn emails_hidden_in_free_text_are_found_with_lines_not_values() {
        let mut v: Vec<String> = (0..200).map(|k| format!("Customer asked about order {k}")).collect();
        v[10] = "please mail ana@example.com about it".into();
        v[150] = "new address: bo.b@mail.example.org".into();
        let f = scan("notes", &v);
        assert_eq!(kinds(&f), vec![PiiKind::Email]);
        assert_eq!((f[0].matched, f[0].scanned, f[0].lines.clone()), (2, 200, vec![12, 152]));
        assert_eq!(f[0].confidence, Confidence::Medium);
        let json = serde_json::to_string(&f[0]).unwrap();
        assert!(!json.contains("example"), "{json}");
        assert!(json.contains("\"kind\":\"email\"") && json.contains("\"confidence\":\"medium\""));
        assert!(!f[0].to_string().contains("example"));
    }

    #[test]
    fn card_columns_versus_random_references() {
        // 16-digit references failing Luhn: clean.
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        let mut refs = Vec::new();
        while refs.len() < 2000 {
            let v = format!("4{}", r.digits(15));
            let d: Vec<u8> = v.bytes().map(|b| b - b'0').collect();
            if !super::super::detect::luhn(&d) {
                refs.push(v);
            }
        }
        assert!(scan("reference", &refs).is_empty());
        // Random 16-digit references, ~10% Luhn-valid by chance: clean too.
        let random: Vec<String> = (0..2000).map(|_| format!("4{}", r.digits(15))).collect();
        let mut sc = ColumnScanner::new("reference", None, 5);
        for (k, v) in random.iter().enumerate() {
            sc.observe(k as u64 + 2, v);
        }
        assert!(sc.matched(PiiKind::PaymentCard) > 100);
        assert!(sc.findings("reference", &AuditThresholds::default()).is_empty());
        // A real card hidden in comments: one is enough.
        let mut notes: Vec<String> = (0..500).map(|k| format!("ticket {k} closed")).collect();
        notes[42] = "paid with 4111 1111 1111 1111, thanks".into();
        let f = scan("comments", &notes);
        assert_eq!(kinds(&f), vec![PiiKind::PaymentCard]);
        assert_eq!((f[0].matched, f[0].confidence, f[0].lines.clone()), (1, Confidence::High, vec![44]));
    }

    #[test]
    fn phone_columns_versus_random_ids() {
        let mut r = Rng(7);
        let ids: Vec<String> = (0..2000).map(|_| format!("{}{}", 2 + r.next() % 8, r.digits(9))).collect();
        assert!(scan("account_ref", &ids).is_empty(), "{:?}", scan("account_ref", &ids));
        // The scanner stops validating phones in such a column, and still
        // finds other kinds in it.
        let mut sc = ColumnScanner::new("account_ref", Some(country::Id::US), 5);
        for (k, v) in ids.iter().enumerate() {
            sc.observe(k as u64 + 2, v);
        }
        assert!(!sc.phones);
        for l in 0..3 {
            sc.observe(5000 + l, "moved to ana@example.com");
        }
        let f = sc.findings("account_ref", &AuditThresholds::default());
        assert_eq!((kinds(&f), f[0].lines.clone()), (vec![PiiKind::Email], vec![5000, 5001, 5002]));
        let phones: Vec<String> = (0..300).map(|k| format!("415{:07}", 5_550_000 + k * 37)).collect();
        let f = scan("contact", &phones);
        assert_eq!(kinds(&f), vec![PiiKind::Phone]);
        assert_eq!(f[0].confidence, Confidence::High);
        let mut text: Vec<String> = (0..400).map(|k| format!("spoke to client re order {k}")).collect();
        for k in [3, 90, 200, 333] {
            text[k] = format!("call me at +44 20 7946 0{k:03} tomorrow");
        }
        let f = scan("notes", &text);
        assert_eq!(kinds(&f), vec![PiiKind::Phone]);
        assert_eq!(f[0].matched, 4);
        assert_eq!(f[0].confidence, Confidence::High);
        // One formatted phone in free text is enough, at medium confidence.
        let mut one: Vec<String> = (0..50).map(|k| format!("spoke to client re order {k}")).collect();
        one[7] = "customer asked us to call (415) 555-0132 after 6pm".into();
        let f = scan("notes", &one);
        assert_eq!(
            (kinds(&f), f[0].confidence, f[0].lines.clone()),
            (vec![PiiKind::Phone], Confidence::Medium, vec![9])
        );
        // Formatted references that mostly fail the plan are not phones.
        let mut r = Rng(11);
        let refs: Vec<String> = (0..1000).map(|_| format!("{}-{}-{}", r.digits(3), r.digits(3), r.digits(4))).collect();
        let mut sc = ColumnScanner::new("ref", Some(country::Id::US), 5);
        for (k, v) in refs.iter().enumerate() {
            sc.observe(k as u64 + 2, v);
        }
        assert!(sc.matched(PiiKind::Phone) > 100);
        assert!(sc.findings("ref", &AuditThresholds::default()).is_empty());
    }

    #[test]
    fn dates_of_birth_versus_event_dates() {
        let mut r = Rng(99);
        let dob: Vec<String> = (0..500)
            .map(|_| format!("{}-{:02}-{:02}", 1940 + r.next() % 65, 1 + r.next() % 12, 1 + r.next() % 28))
            .collect();
        assert_eq!(kinds(&scan("x", &dob)), vec![PiiKind::DateOfBirth]);
        let orders: Vec<String> = (0..500)
            .map(|_| format!("{}-{:02}-{:02}", 2016 + r.next() % 10, 1 + r.next() % 12, 1 + r.next() % 28))
            .collect();
        assert!(scan("order_date", &orders).is_empty());
        let signup: Vec<String> = (0..500)
            .map(|_| format!("{}-{:02}-{:02}", 2005 + r.next() % 21, 1 + r.next() % 12, 1 + r.next() % 28))
            .collect();
        assert!(scan("signup_date", &signup).is_empty());
        let ts: Vec<String> = (0..500).map(|k| format!("2001-01-{:02}T03:00:00Z", 1 + k % 28)).collect();
        assert!(scan("created_at", &ts).is_empty());
    }

    #[test]
    fn coordinates() {
        let pairs: Vec<String> =
            (0..50).map(|k| format!("{:.5}, {:.5}", 37.0 + k as f64 / 97.0, -122.0 - k as f64 / 89.0)).collect();
        let f = scan("meeting_point", &pairs);
        assert_eq!(kinds(&f), vec![PiiKind::GeoLocation]);
        let lat: Vec<String> = (0..50).map(|k| format!("{:.6}", 37.0 + k as f64 / 97.0)).collect();
        assert!(scan("score", &lat).is_empty());
        let f = scan("latitude", &lat);
        assert_eq!(kinds(&f), vec![PiiKind::GeoLocation]);
        assert_eq!(f[0].confidence, Confidence::High);
    }

    #[test]
    fn clean_columns_stay_clean() {
        let mut r = Rng(3);
        let cols: Vec<(&str, Vec<String>)> = vec![
            (
                "zip",
                (0..1000)
                    .map(|k| if k % 2 == 0 { r.digits(5) } else { format!("{}-{}", r.digits(5), r.digits(4)) })
                    .collect(),
            ),
            ("price", (0..1000).map(|_| format!("{}.{}", r.digits(4), r.digits(2))).collect()),
            ("created_at", (0..1000).map(|k| format!("2026-11-{:02}T03:{:02}:00Z", 1 + k % 28, k % 60)).collect()),
            ("epoch", (0..1000).map(|_| format!("17{}", r.digits(8))).collect()),
            ("sku", (0..1000).map(|_| format!("ABC-{}", r.digits(10))).collect()),
            ("app_version", (0..1000).map(|k| format!("{}.{}.{}.{}.{}", k % 3, k % 7, k % 5, k % 11, k % 2)).collect()),
            ("invoice", (0..1000).map(|_| format!("INV-2026-{}", r.digits(6))).collect()),
            ("tier", (0..1000).map(|k| ["Gold", "Silver", "Bronze"][k % 3].to_string()).collect()),
        ];
        for (h, v) in &cols {
            assert!(scan(h, v).is_empty(), "{h}: {:?}", scan(h, v));
            assert_eq!(name_hint(h), None, "{h}");
        }
    }

    #[test]
    fn merge_adds_counts_and_keeps_first_lines() {
        let mut a = ColumnScanner::new("notes", None, 3);
        let mut b = ColumnScanner::new("notes", None, 3);
        for l in [50u64, 60, 70, 80] {
            b.observe(l, "x@example.com");
        }
        for l in [5u64, 55] {
            a.observe(l, "y@example.com");
        }
        a.observe(6, "");
        a.observe(7, "nothing");
        a.merge(b);
        assert_eq!(a.scanned(), 7);
        let f = a.findings("notes", &AuditThresholds { max_lines: 2, ..Default::default() });
        assert_eq!((f[0].matched, f[0].lines.clone()), (6, vec![5, 50]));
        assert_eq!(f[0].confidence, Confidence::High);
    }

    #[test]
    fn name_hints() {
        for (h, want) in [
            ("email", "email"),
            ("E_Mail", "email"),
            ("contactEmail", "email"),
            ("Email Address", "email"),
            ("phone", "phone"),
            ("mobile_number", "phone"),
            ("MSISDN", "phone"),
            ("ssn", "ssn"),
            ("dob", "date_of_birth"),
            ("date_of_birth", "date_of_birth"),
            ("BirthDate", "date_of_birth"),
            ("address", "address"),
            ("street", "address"),
            ("address_line_1", "address"),
            ("first_name", "name"),
            ("lastName", "name"),
            ("full_name", "name"),
            ("name", "name"),
            ("customer_name", "name"),
            ("username", "username"),
            ("user_name", "username"),
            ("passport_no", "passport"),
            ("card_number", "card"),
            ("iban", "iban"),
            ("ip", "ip_address"),
            ("ip_address", "ip_address"),
            ("clientIP", "ip_address"),
            ("IPAddress", "ip_address"),
            ("lat", "latitude"),
            ("latitude", "latitude"),
            ("lon", "longitude"),
            ("lng", "longitude"),
            ("longitude", "longitude"),
            ("national_id", "national_id"),
        ] {
            assert_eq!(name_hint(h), Some(want), "{h}");
        }
        for h in [
            "zip",
            "price",
            "sku",
            "order_id",
            "created_at",
            "city",
            "country",
            "tier",
            "product_name",
            "company_name",
            "file_name",
            "filename",
            "email_opt_in",
            "is_phone_verified",
            "card_type",
            "ship_date",
            "tip",
            "vip",
            "description",
            "long_description",
            "notes",
            "",
        ] {
            assert_eq!(name_hint(h), None, "{h}");
        }
    }
}
