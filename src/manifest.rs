//! CleverTap's profile-import manifest (CleverTap docs, "Imports via SFTP").
//!
//! ```json
//! {"fileName": "profiles-20261129T030000Z-0123456789abcdef.csv",
//!  "type": "profile",
//!  "clientEmail": "ops@example.com",
//!  "columns": {"identity": {"ctName": "identity", "dataType": "STRING"}}}
//! ```
//!
//! CleverTap starts importing when the manifest lands, so it is published
//! only after its data file is complete.

use serde::Serialize;

use crate::settings::{Action, CtType};
use crate::transform::Plan;

#[derive(Serialize)]
struct Column<'a> {
    #[serde(rename = "ctName")]
    ct_name: &'a str,
    #[serde(rename = "dataType")]
    data_type: CtType,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "fileName")]
    file_name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "clientEmail")]
    client_email: &'a str,
    #[serde(rename = "keyId", skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    columns: serde_json::Map<String, serde_json::Value>,
}

/// The manifest JSON (pretty-printed, trailing newline) for `file_name`;
/// `key_id` is CleverTap's Key ID of the OpenPGP key an encrypted
/// (`.csv.asc`) data file is encrypted to ("File Upload Encryption").
pub fn clevertap_manifest(file_name: &str, client_email: &str, key_id: Option<&str>, plan: &Plan) -> Vec<u8> {
    let mut columns = serde_json::Map::new();
    for c in plan.columns.iter().filter(|c| c.action != Action::Drop) {
        let col = Column { ct_name: &c.ct_name, data_type: c.ct_type };
        columns.insert(c.name.clone(), serde_json::to_value(col).unwrap_or_default());
    }
    let m = Manifest { file_name, kind: "profile", client_email, key_id, columns };
    let mut out = serde_json::to_vec_pretty(&m).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The manifest's name for a data file (`.csv` or OpenPGP `.csv.asc`):
/// the data file's stem + `.manifest`.
pub fn manifest_name(data_file: &str) -> String {
    let stem = data_file.strip_suffix(".csv.asc").or_else(|| data_file.strip_suffix(".csv")).unwrap_or(data_file);
    format!("{stem}.manifest")
}
