//! Type-aware masking: keeps just enough to recognise a value.
//!
//! - email: first character of the local part and the domain: `a***@example.test`;
//! - phone: the last four digits: `***0123`;
//! - date (`YYYY-MM-DD`, `YYYY/MM/DD`, `DD/MM/YYYY`, `MM/DD/YYYY`,
//!   `DD.MM.YYYY`, `DD-MM-YYYY`): the year, other digits starred: `1987-**-**`;
//! - anything else: the last four characters behind `****`; a value of four
//!   characters or fewer becomes `****`.
//!
//! Empty values stay empty.

use crate::settings::Normalize;

/// Masks `value`; `hint` is the column's normalization (a `phone` column is
/// masked as a phone whatever its shape).
pub fn mask(value: &str, hint: Normalize) -> String {
    if value.is_empty() {
        return String::new();
    }
    if hint != Normalize::Phone {
        if let Some(m) = mask_email(value) {
            return m;
        }
        if let Some(m) = mask_date(value) {
            return m;
        }
    }
    if hint == Normalize::Phone || looks_like_phone(value) {
        let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
        if digits.len() > 4 {
            let tail: String = digits[digits.len() - 4..].iter().collect();
            return format!("***{tail}");
        }
    }
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 4 {
        return "****".into();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("****{tail}")
}

fn mask_email(v: &str) -> Option<String> {
    let v = v.trim();
    let at = v.rfind('@')?;
    let (local, domain) = (&v[..at], &v[at + 1..]);
    if local.is_empty()
        || !domain.contains('.')
        || domain.contains(char::is_whitespace)
        || local.contains(char::is_whitespace)
    {
        return None;
    }
    let first = local.chars().next()?;
    Some(format!("{first}***@{domain}"))
}

fn mask_date(v: &str) -> Option<String> {
    let v = v.trim();
    let b = v.as_bytes();
    let is_d = |r: std::ops::Range<usize>| b.get(r.clone()).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let sep = |i: usize| b.get(i).is_some_and(|c| matches!(c, b'-' | b'/' | b'.'));
    let star = |s: &str, keep: std::ops::Range<usize>| -> String {
        s.char_indices().map(|(i, c)| if c.is_ascii_digit() && !keep.contains(&i) { '*' } else { c }).collect()
    };
    // Time part (e.g. "1987-04-12T10:00:00") is dropped entirely.
    let date_len = 10;
    if b.len() < date_len || (b.len() > date_len && !matches!(b[date_len], b'T' | b' ')) {
        return None;
    }
    let d = &v[..date_len];
    if is_d(0..4) && sep(4) && is_d(5..7) && sep(7) && is_d(8..10) {
        return Some(star(d, 0..4));
    }
    if is_d(0..2) && sep(2) && is_d(3..5) && sep(5) && is_d(6..10) {
        return Some(star(d, 6..10));
    }
    None
}

fn looks_like_phone(v: &str) -> bool {
    let digits = v.chars().filter(char::is_ascii_digit).count();
    digits >= 7 && v.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_by_type() {
        assert_eq!(mask("ana.test@example.test", Normalize::Email), "a***@example.test");
        assert_eq!(mask("+14155552671", Normalize::Phone), "***2671");
        assert_eq!(mask("(415) 555-2671", Normalize::None), "***2671");
        assert_eq!(mask("1987-04-12", Normalize::None), "1987-**-**");
        assert_eq!(mask("12/04/1987", Normalize::None), "**/**/1987");
        assert_eq!(mask("Søren Kierkegaard", Normalize::None), "****aard");
        assert_eq!(mask("Bob", Normalize::None), "****");
        assert_eq!(mask("", Normalize::None), "");
    }
}
