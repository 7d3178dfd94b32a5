//! Value normalization applied before a column's action.
//!
//! - `email`: trim, Unicode NFC (UAX #15), lowercase.
//! - `phone`: E.164 by libphonenumber's rules (`phonenumber` crate), national
//!   forms read in `[schema] default_region`; extensions are dropped; a value
//!   that is not a possible phone number is an error.
//! - `trim`: trim whitespace. `none`: unchanged.

use std::borrow::Cow;

use phonenumber::country;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use crate::settings::Normalize;

/// Why a value could not be normalized (never contains the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormalizeError {
    /// Not a possible phone number (letters, misplaced `+`, wrong length).
    NotAPhone,
}

/// Normalizes `value` as `how` says.
///
/// # Errors
/// [`NormalizeError::NotAPhone`] for `phone` when the value is not a possible
/// phone number. Empty (after trimming) values normalize to empty.
pub fn normalize<'a>(
    how: Normalize,
    value: &'a str,
    region: Option<country::Id>,
) -> Result<Cow<'a, str>, NormalizeError> {
    match how {
        Normalize::None => Ok(Cow::Borrowed(value)),
        Normalize::Trim => Ok(Cow::Borrowed(value.trim())),
        Normalize::Email => Ok(email(value)),
        Normalize::Phone => phone(value, region),
    }
}

fn email(value: &str) -> Cow<'_, str> {
    let v = value.trim();
    if v.is_ascii() {
        if v.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(v.to_ascii_lowercase())
        } else {
            Cow::Borrowed(v)
        }
    } else {
        let nfc: Cow<'_, str> =
            if is_nfc_quick(v.chars()) == IsNormalized::Yes { Cow::Borrowed(v) } else { Cow::Owned(v.nfc().collect()) };
        Cow::Owned(nfc.to_lowercase())
    }
}

/// Splits off a trailing extension (`x123`, `ext 45`, `ext. 45`,
/// `extension 7`, `#12`), returning the main part.
fn strip_extension(v: &str) -> &str {
    if !v.bytes().any(|b| b.is_ascii_alphabetic() || b == b'#') {
        return v;
    }
    let lower = v.to_ascii_lowercase();
    for marker in ["extension", "ext.", "ext", "x", "#"] {
        if let Some(pos) = lower.rfind(marker) {
            let tail = lower[pos + marker.len()..].trim();
            if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) && pos > 0 {
                return v[..pos].trim_end_matches([' ', ',', ';']);
            }
        }
    }
    v
}

fn phone(value: &str, region: Option<country::Id>) -> Result<Cow<'static, str>, NormalizeError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(Cow::Borrowed(""));
    }
    let main = strip_extension(v);
    // "+44 (0)20 ..." writes the national trunk prefix in brackets inside an
    // international number; it is not part of the number.
    let owned;
    let main = if main.starts_with('+') && main.contains("(0)") {
        owned = main.replacen("(0)", "", 1);
        owned.as_str()
    } else {
        main
    };
    // Only digits and the usual punctuation; '+' only in front. This refuses
    // spreadsheet damage such as 4.47701E+11 and vanity letters.
    let mut digits = 0usize;
    for (i, c) in main.char_indices() {
        match c {
            '0'..='9' => digits += 1,
            '+' if i == 0 => {}
            ' ' | '-' | '.' | '(' | ')' | '/' | '\u{a0}' => {}
            _ => return Err(NormalizeError::NotAPhone),
        }
    }
    if !(3..=17).contains(&digits) {
        return Err(NormalizeError::NotAPhone);
    }
    if let Some(e164) = fast_e164(main, region) {
        return e164.map(Cow::Owned);
    }
    // An international number is read on its own: given a region, the parser
    // would strip that region's national prefix after the country code
    // (+49 151... read in US would lose its "1").
    let region = if main.starts_with('+') { None } else { region };
    let number = phonenumber::parse(region, main).map_err(|_| NormalizeError::NotAPhone)?;
    let national = number.national();
    let len = national.value().to_string().len() + national.zeros() as usize;
    let facts = code_facts().get(number.code().value() as usize).and_then(Option::as_ref);
    if !facts.is_some_and(|f| f.possible(len)) {
        return Err(NormalizeError::NotAPhone);
    }
    Ok(Cow::Owned(number.format().mode(phonenumber::Mode::E164).to_string()))
}

/// One token of a simple `national_prefix_for_parsing` alternative.
#[derive(Debug, Clone)]
enum Tok {
    /// A set of digits (a literal digit, `[..]` or `\d`), repeated min..=max times.
    Set([bool; 10], usize, usize),
}

/// A simple alternative: tokens, and whether it is anchored at the end.
#[derive(Debug, Clone)]
struct Alt {
    toks: Vec<Tok>,
    to_end: bool,
}

impl Alt {
    /// Parses alternatives made only of digits, `[..]` classes, `\d{k}` /
    /// `\d{a,b}` and plain groups; `None` for anything richer.
    fn parse(text: &str) -> Option<Alt> {
        let b: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        let (mut i, mut toks, mut to_end) = (0, Vec::new(), false);
        while i < b.len() {
            match b[i] {
                b'0'..=b'9' => {
                    let mut set = [false; 10];
                    set[(b[i] - b'0') as usize] = true;
                    toks.push(Tok::Set(set, 1, 1));
                    i += 1;
                }
                b'[' => {
                    let end = i + b[i..].iter().position(|&c| c == b']')?;
                    let mut set = [false; 10];
                    let mut j = i + 1;
                    while j < end {
                        if j + 2 < end && b[j + 1] == b'-' {
                            for d in b[j]..=b[j + 2] {
                                *set.get_mut(d.checked_sub(b'0')? as usize)? = true;
                            }
                            j += 3;
                        } else {
                            *set.get_mut(b[j].checked_sub(b'0')? as usize)? = true;
                            j += 1;
                        }
                    }
                    toks.push(Tok::Set(set, 1, 1));
                    i = end + 1;
                }
                b'\\' if b.get(i + 1) == Some(&b'd') => {
                    i += 2;
                    let (mut lo, mut hi) = (1, 1);
                    if b.get(i) == Some(&b'{') {
                        let end = i + b[i..].iter().position(|&c| c == b'}')?;
                        let inner = std::str::from_utf8(&b[i + 1..end]).ok()?;
                        let (a, z) = inner.split_once(',').unwrap_or((inner, inner));
                        lo = a.parse().ok()?;
                        hi = z.parse().ok()?;
                        i = end + 1;
                    }
                    toks.push(Tok::Set([true; 10], lo, hi));
                }
                b'(' | b')' => i += 1,
                b'$' if i + 1 == b.len() => {
                    to_end = true;
                    i += 1;
                }
                _ => return None,
            }
        }
        Some(Alt { toks, to_end })
    }

    /// Whether the alternative can match at the start of `nsn` (and, when
    /// anchored, consume all of it).
    fn may_match(&self, nsn: &[u8]) -> bool {
        fn go(toks: &[Tok], s: &[u8], to_end: bool) -> bool {
            let Some((Tok::Set(set, lo, hi), rest)) = toks.split_first() else {
                return !to_end || s.is_empty();
            };
            for n in *lo..=*hi {
                if n > s.len() {
                    break;
                }
                if s[..n].iter().all(|&c| set[(c - b'0') as usize]) && go(rest, &s[n..], to_end) {
                    return true;
                }
            }
            false
        }
        go(&self.toks, nsn, self.to_end)
    }
}

/// What the fast path needs to know about one country calling code.
struct CodeFacts {
    /// National prefixes of the code's regions (e.g. "0", "1").
    prefixes: Vec<String>,
    /// The simple `national_prefix_for_parsing` alternatives of its regions.
    alts: Vec<Alt>,
    /// A region has a rule the fast path cannot read.
    complex: bool,
    /// National significant number lengths possible for any number type of
    /// any region of the code (libphonenumber's "possible number" test).
    lengths: Vec<u16>,
}

impl CodeFacts {
    fn possible(&self, nsn_len: usize) -> bool {
        self.lengths.is_empty() || self.lengths.contains(&(nsn_len as u16))
    }
}

/// Facts per calling code, indexed by the code (1-999).
fn code_facts() -> &'static [Option<CodeFacts>] {
    static FACTS: std::sync::OnceLock<Vec<Option<CodeFacts>>> = std::sync::OnceLock::new();
    FACTS.get_or_init(|| {
        let mut map: Vec<Option<CodeFacts>> = (0..1000).map(|_| None).collect();
        for code in 1u16..1000 {
            let Some(regions) = phonenumber::metadata::DATABASE.by_code(&code) else { continue };
            let mut prefixes: Vec<String> =
                regions.iter().filter_map(|m| m.national_prefix().map(str::to_owned)).collect();
            prefixes.sort();
            prefixes.dedup();
            let mut alts = Vec::new();
            let mut complex = false;
            for m in &regions {
                if let Some(re) = m.national_prefix_for_parsing() {
                    for part in re.as_str().split('|') {
                        match Alt::parse(part) {
                            Some(a) => alts.push(a),
                            None => complex = true,
                        }
                    }
                }
            }
            let mut lengths = Vec::new();
            for m in &regions {
                let d = m.descriptors();
                let kinds = [
                    d.fixed_line(),
                    d.mobile(),
                    d.toll_free(),
                    d.premium_rate(),
                    d.shared_cost(),
                    d.personal_number(),
                    d.voip(),
                    d.pager(),
                    d.uan(),
                    d.voicemail(),
                ];
                lengths.extend(d.general().possible_length());
                for desc in kinds.into_iter().flatten() {
                    lengths.extend(desc.possible_length());
                }
            }
            lengths.sort_unstable();
            lengths.dedup();
            map[code as usize] = Some(CodeFacts { prefixes, alts, complex, lengths });
        }
        map
    })
}

/// E.164 without the general parser for the common, unambiguous shapes:
/// `+` and a country code whose regions have a plain national prefix, or a
/// North American number read in a +1 region. Returns `None` whenever the
/// parser's finer rules could matter; the caller then uses the parser. The
/// parser (libphonenumber's rules in the `phonenumber` crate) takes a lock
/// and about 10 µs per value; this takes well under 1 µs.
fn fast_e164(main: &str, region: Option<country::Id>) -> Option<Result<String, NormalizeError>> {
    let mut digits = [0u8; 17];
    let mut n = 0;
    for b in main.bytes() {
        if b.is_ascii_digit() {
            *digits.get_mut(n)? = b;
            n += 1;
        }
    }
    let digits = std::str::from_utf8(&digits[..n]).ok()?;
    if main.starts_with('+') {
        // Country codes are prefix-free: at most one of 1-3 leading digits is one.
        let (code, facts, nsn) = (1..=3).filter(|&l| l < n).find_map(|l| {
            let code: u16 = digits[..l].parse().ok()?;
            code_facts().get(code as usize)?.as_ref().map(|f| (code, f, &digits[l..]))
        })?;
        if facts.complex
            || nsn.len() < 4
            || facts.prefixes.iter().any(|p| nsn.starts_with(p.as_str()))
            || facts.alts.iter().any(|a| a.may_match(nsn.as_bytes()))
        {
            return None;
        }
        if !facts.possible(nsn.len()) {
            return Some(Err(NormalizeError::NotAPhone));
        }
        return Some(Ok(format!("+{code}{nsn}")));
    }
    // National form: only North American numbers, read in a +1 region.
    let meta = phonenumber::metadata::DATABASE.by_id(region?.as_ref())?;
    if meta.country_code() != 1 {
        return None;
    }
    let nsn = match n {
        10 => digits,
        11 if digits.starts_with('1') => &digits[1..],
        _ => return None,
    };
    if nsn.starts_with(['0', '1']) {
        return None;
    }
    let facts = code_facts().get(1).and_then(Option::as_ref)?;
    if !facts.possible(nsn.len()) {
        return Some(Err(NormalizeError::NotAPhone));
    }
    Some(Ok(format!("+1{nsn}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn ph(v: &str, r: &str) -> Result<String, NormalizeError> {
        phone(v, Some(country::Id::from_str(r).unwrap())).map(|c| c.into_owned())
    }

    #[test]
    fn emails_fold_case_space_and_nfc() {
        assert_eq!(email("Ana.Test@Example.TEST "), "ana.test@example.test");
        assert_eq!(email("zo\u{65}\u{308}@example.test"), email("zo\u{eb}@example.test"));
        assert_eq!(email("ZOË@EXAMPLE.TEST"), "zoë@example.test");
    }

    #[test]
    fn phones_to_e164() {
        assert_eq!(ph("+44 (0)20 7946 0000", "GB").unwrap(), "+442079460000");
        assert_eq!(ph("020 7946 0000", "GB").unwrap(), "+442079460000");
        assert_eq!(ph("(415) 555-2671", "US").unwrap(), "+14155552671");
        assert_eq!(ph("+1 415 555 2671 x123", "US").unwrap(), "+14155552671");
        assert_eq!(ph("415.555.2671 ext. 45", "US").unwrap(), "+14155552671");
        assert_eq!(ph("+49 30 12345678", "US").unwrap(), "+493012345678");
        assert_eq!(ph("+44 (0)20 7946 0000", "US").unwrap(), "+442079460000");
        assert_eq!(ph("+49 151 23456789", "US").unwrap(), "+4915123456789");
        assert_eq!(ph("+44 113 496 0000", "US").unwrap(), "+441134960000");
        assert_eq!(ph("+33 1 53 96 68 04", "US").unwrap(), "+33153966804");
    }

    /// The fast path must give exactly what the parser gives, on every
    /// phone of the bundled samples and on hand-picked shapes.
    #[test]
    fn fast_path_agrees_with_the_parser() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/inbox");
        let mut values: Vec<String> = vec![
            "+1 415 555 2671".into(),
            "(415) 555-2671".into(),
            "1-415-555-2671".into(),
            "+44 20 7946 0000".into(),
            "+39 06 6982 0000".into(),
            "+33 1 53 96 68 04".into(),
            "+49 30 12345678".into(),
            "+91 98765 43210".into(),
            "+81 3-1234-5678".into(),
            "+7 495 123-45-67".into(),
            "+353 1 234 5678".into(),
            "+44 113 496 0000".into(),
            "+44 1481 123456".into(),
            "+61 2 9876 5432".into(),
            "+61 4 1234 5678".into(),
            "+61 1832 1234".into(),
            "+52 55 1234 5678".into(),
            "+54 9 11 1234 5678".into(),
        ];
        for e in std::fs::read_dir(dir).unwrap() {
            let mut r = csv::Reader::from_path(e.unwrap().path()).unwrap();
            let idx = r.headers().unwrap().iter().position(|h| h == "phone").unwrap();
            for rec in r.records().flatten() {
                if let Some(v) = rec.get(idx) {
                    values.push(v.to_owned());
                }
            }
        }
        let us = Some(country::Id::US);
        let mut fast = 0;
        for v in &values {
            let main = strip_extension(v.trim());
            let main = if main.starts_with('+') { main.replacen("(0)", "", 1) } else { main.to_owned() };
            if let Some(f) = fast_e164(&main, us) {
                fast += 1;
                let region = if main.starts_with('+') { None } else { us };
                let slow =
                    phonenumber::parse(region, &main).unwrap().format().mode(phonenumber::Mode::E164).to_string();
                assert_eq!(f.unwrap(), slow, "{v}");
            }
        }
        assert!(fast * 10 > values.len() * 7, "fast path taken for {fast} of {}", values.len());
    }

    #[test]
    fn impossible_phones_are_refused() {
        for bad in [
            "4.47701E+11",
            "12",
            "call me",
            "+1 415 555 2671 2671 2671",
            "415+5552671",
            "+1 415 555 26",
            "+44 1234",
            "+44 20 7946 00001234",
            "415 555 26",
            "+81 3 1234",
        ] {
            assert_eq!(ph(bad, "US"), Err(NormalizeError::NotAPhone), "{bad}");
        }
        assert_eq!(ph("  ", "US").unwrap(), "");
    }
}
