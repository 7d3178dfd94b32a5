//! PII audit: finds personal data hiding in columns nobody flagged.
//!
//! `piigate audit` (and the job's audit step) scans every column whose
//! action is `keep` for values that look like personal data: email
//! addresses, phone numbers, payment card numbers, US Social Security
//! numbers, IBANs, IP addresses, dates of birth and precise coordinates,
//! inside free text as well as whole cells.
//!
//! * [`detect`]: pure, allocation-free scanners over the bytes of one cell
//!   ([`detect::detect`], [`detect::detect_evidence`]); no regular
//!   expressions, a cheap pre-pass skips every detector a cell cannot
//!   satisfy (no `@`, too few digits, …), and the phone-number parser only
//!   runs on digit runs that survive the structural filters.
//! * [`scan`]: per-column accumulation ([`scan::ColumnScanner`], mergeable
//!   across parallel chunks) and the column-level decision that turns counts
//!   into [`scan::Finding`]s under [`scan::AuditThresholds`] (`[audit]`),
//!   plus [`scan::name_hint`] for headers that look like PII names.
//!
//! Findings carry kinds, counts and line numbers, never values.

pub mod detect;
pub mod scan;

#[cfg(test)]
mod labelled;
