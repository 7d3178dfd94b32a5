//! Known-answer vectors produced by an independent Python implementation
//! (`tests/vectors/generate.py`, using the `cryptography` package), checked
//! against piigate's own primitives.

use std::path::Path;

use piigate::crypto::aead::{self, DataKey};
use piigate::crypto::keys::{Dek, DekId, DeterministicKey, Kek, PseudonymKey};
use piigate::crypto::prf::Pseudonymizer;
use piigate::crypto::siv::DeterministicCipher;
use piigate::crypto::CryptoError;
use piigate::settings::Normalize;
use piigate::transform::normalize::normalize;
use serde_json::Value;

fn load(name: &str) -> Vec<Value> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn b64(s: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s.as_str().unwrap()).unwrap()
}

fn kind(e: &CryptoError) -> &'static str {
    match e {
        CryptoError::UnknownVersion => "unknown-version",
        CryptoError::Malformed(_) | CryptoError::InvalidKey(_) => "malformed",
        CryptoError::Truncated => "truncated",
        CryptoError::Auth => "auth",
    }
}

#[test]
fn dek_wrap_vectors() {
    let cases = load("dek_wrap.json");
    assert!(cases.len() >= 5);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let kek = Kek::from_base64(c["kek"].as_str().unwrap()).unwrap();
        let nonce = b64(&c["nonce"]);
        let wrapped = b64(&c["wrapped"]);
        let result = c["dek_id"]
            .as_str()
            .unwrap()
            .parse::<DekId>()
            .and_then(|id| aead::unwrap_dek(&kek, &id, &nonce, &wrapped).map(|d| (id, d)));
        if c["valid"].as_bool().unwrap() {
            let (id, dek) = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let want = Dek::from_base64(c["dek"].as_str().unwrap()).unwrap();
            assert!(dek == want, "{name}: unwrapped key differs");
            // And wrapping with the same nonce reproduces the bytes exactly.
            let n: [u8; 12] = nonce.as_slice().try_into().unwrap();
            assert_eq!(aead::wrap_dek(&kek, &id, &want, &n), wrapped, "{name}");
        } else {
            let err = result.err().unwrap_or_else(|| panic!("{name}: must fail"));
            assert_eq!(kind(&err), c["error"].as_str().unwrap(), "{name}: {err}");
        }
    }
}

#[test]
fn token_vectors() {
    let cases = load("tokens.json");
    assert!(cases.len() >= 10);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let id: DekId = c["dek_id"].as_str().unwrap().parse().unwrap();
        let key = DataKey::new(id, &Dek::from_base64(c["dek"].as_str().unwrap()).unwrap());
        let column = c["column"].as_str().unwrap().as_bytes();
        let token = c["token"].as_str().unwrap().as_bytes();
        let result = aead::parse_token(token).and_then(|(tid, payload)| {
            if tid != id {
                // A token naming another key is looked up under that id; with only
                // this key at hand it cannot authenticate.
                return Err(CryptoError::Auth);
            }
            key.decrypt_payload(column, &payload)
        });
        if c["valid"].as_bool().unwrap() {
            let plain = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(plain, c["plaintext"].as_str().unwrap().as_bytes(), "{name}");
            let nonce: [u8; 12] = b64(&c["nonce"]).try_into().unwrap();
            let (mut scratch, mut out) = (Vec::new(), Vec::new());
            key.encrypt_token_with_nonce(column, &plain, &nonce, &mut scratch, &mut out);
            assert_eq!(out, token, "{name}: encryption must reproduce the token");
        } else {
            let err = result.err().unwrap_or_else(|| panic!("{name}: must fail"));
            assert_eq!(kind(&err), c["error"].as_str().unwrap(), "{name}: {err}");
        }
    }
}

#[test]
fn deterministic_vectors() {
    let cases = load("deterministic.json");
    assert!(cases.len() >= 10);
    let mut by_input = std::collections::HashMap::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let cipher = DeterministicCipher::new(&DeterministicKey::from_base64(c["key"].as_str().unwrap()).unwrap());
        let column = c["column"].as_str().unwrap();
        let token = c["token"].as_str().unwrap();
        let result = cipher.decrypt_token(column.as_bytes(), token.as_bytes());
        if c["valid"].as_bool().unwrap() {
            let plaintext = c["plaintext"].as_str().unwrap();
            assert_eq!(result.unwrap_or_else(|e| panic!("{name}: {e}")), plaintext.as_bytes(), "{name}");
            let mut out = Vec::new();
            cipher.encrypt_token_into(column.as_bytes(), plaintext.as_bytes(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), token, "{name}: encryption must reproduce the token");
            let earlier = by_input.entry((column.to_owned(), plaintext.to_owned())).or_insert_with(|| token.to_owned());
            assert_eq!(earlier, token, "{name}: equal values must give equal tokens");
        } else {
            let err = result.err().unwrap_or_else(|| panic!("{name}: must fail"));
            assert_eq!(kind(&err), c["error"].as_str().unwrap(), "{name}: {err}");
        }
    }
}

#[test]
fn pseudonym_vectors() {
    let cases = load("pseudonyms.json");
    assert!(cases.len() >= 5);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let how = match c["normalize"].as_str().unwrap() {
            "email" => Normalize::Email,
            "phone" => Normalize::Phone,
            "trim" => Normalize::Trim,
            _ => Normalize::None,
        };
        let region = c["region"].as_str().map(|r| r.parse().unwrap());
        let normalized = normalize(how, c["input"].as_str().unwrap(), region).unwrap();
        assert_eq!(normalized, c["normalized"].as_str().unwrap(), "{name}: normalization");
        let key = PseudonymKey::from_base64(c["key"].as_str().unwrap()).unwrap();
        let p = Pseudonymizer::new(&key).pseudonym(c["prefix"].as_str().unwrap(), normalized.as_bytes());
        assert_eq!(p, c["pseudonym"].as_str().unwrap(), "{name}");
    }
}

/// The Python generator re-derives every vector and checks them against
/// its own decoder; running it in check mode guards the files against edits.
#[test]
fn python_generator_reproduces_committed_vectors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("python3")
        .arg(dir.join("generate.py"))
        .arg("--out-dir")
        .arg(out.path())
        .output()
        .expect("python3 with the `cryptography` package is required (scripts/test.sh installs it)");
    assert!(status.status.success(), "generate.py failed:\n{}", String::from_utf8_lossy(&status.stderr));
    for f in ["dek_wrap.json", "tokens.json", "deterministic.json", "pseudonyms.json"] {
        let a = std::fs::read(dir.join(f)).unwrap();
        let b = std::fs::read(out.path().join(f)).unwrap();
        assert!(a == b, "{f} differs from what generate.py produces");
    }
}
