//! Signatures (SPEC §5): Standard Webhooks (`webhook-signature: v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">`) and GitHub's `X-Hub-Signature-256: sha256=<hex>`. Pure.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC key of a Standard Webhooks secret: the base64-decoded part after `whsec_`,
/// or the raw bytes of a secret without that prefix.
pub fn standard_key(secret: &Secret) -> Vec<u8> {
    let s = secret.expose();
    match s.strip_prefix("whsec_") {
        Some(b64) => STANDARD
            .decode(b64)
            .unwrap_or_else(|_| s.as_bytes().to_vec()),
        None => s.as_bytes().to_vec(),
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The `webhook-signature` header value.
pub fn standard(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac(
        &standard_key(secret),
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(mac))
}

/// The `X-Hub-Signature-256` header value (the secret's text is the key).
pub fn github(secret: &Secret, body: &[u8]) -> String {
    let mac = hmac(secret.expose().as_bytes(), &[body]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Checks a `webhook-signature` header (space-separated list of `v1,<sig>`).
pub fn verify_standard(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let expected = standard(secret, id, timestamp, body);
    header
        .split(' ')
        .any(|s| constant_eq(s.as_bytes(), expected.as_bytes()))
}

/// Checks an `X-Hub-Signature-256` header.
pub fn verify_github(secret: &Secret, body: &[u8], header: &str) -> bool {
    constant_eq(header.trim().as_bytes(), github(secret, body).as_bytes())
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/signatures.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    }

    #[test]
    fn standard_webhooks_vectors() {
        let v = vectors();
        let cases = v["standard_webhooks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(cases.len(), 2);
        for c in cases {
            let secret = Secret::new(c["secret"].as_str().unwrap_or_default());
            let id = c["id"].as_str().unwrap_or_default();
            let ts = c["timestamp"].as_i64().unwrap_or_default();
            let body = c["payload"].as_str().unwrap_or_default().as_bytes();
            let want = c["signature"].as_str().unwrap_or_default();
            assert_eq!(standard(&secret, id, ts, body), want);
            assert!(verify_standard(
                &secret,
                id,
                ts,
                body,
                &format!("v1,bogus {want}")
            ));
            assert!(!verify_standard(&secret, id, ts + 1, body, want));
        }
    }

    #[test]
    fn github_vectors() {
        let v = vectors();
        let cases = v["github"].as_array().cloned().unwrap_or_default();
        assert_eq!(cases.len(), 1);
        for c in cases {
            let secret = Secret::new(c["secret"].as_str().unwrap_or_default());
            let body = c["payload"].as_str().unwrap_or_default().as_bytes();
            let want = c["signature"].as_str().unwrap_or_default();
            assert_eq!(github(&secret, body), want);
            assert!(verify_github(&secret, body, want));
            assert!(!verify_github(&secret, b"Hello, World?", want));
        }
    }

    #[test]
    fn raw_secret_is_used_as_bytes() {
        let raw = Secret::new("plain-secret");
        assert_eq!(standard_key(&raw), b"plain-secret".to_vec());
    }
}
