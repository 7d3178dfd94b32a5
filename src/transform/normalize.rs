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
    // An international number is read on its own: given a region, the parser
    // would strip that region's national prefix after the country code
    // (+49 151... read in US would lose its "1").
    let region = if main.starts_with('+') { None } else { region };
    let number = phonenumber::parse(region, main).map_err(|_| NormalizeError::NotAPhone)?;
    let meta = number.metadata(&phonenumber::metadata::DATABASE).ok_or(NormalizeError::NotAPhone)?;
    let national = number.national();
    let len = national.value().to_string().len() + national.zeros() as usize;
    let possible = meta.descriptors().general().possible_length();
    if !possible.is_empty() && !possible.contains(&(len as u16)) {
        return Err(NormalizeError::NotAPhone);
    }
    Ok(Cow::Owned(number.format().mode(phonenumber::Mode::E164).to_string()))
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

    #[test]
    fn impossible_phones_are_refused() {
        for bad in ["4.47701E+11", "12", "call me", "+1 415 555 2671 2671 2671", "415+5552671"] {
            assert_eq!(ph(bad, "US"), Err(NormalizeError::NotAPhone), "{bad}");
        }
        assert_eq!(ph("  ", "US").unwrap(), "");
    }
}
