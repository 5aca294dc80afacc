//! Signatures (SPEC §5): Standard Webhooks (`webhook-signature: v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">`) and GitHub's `X-Hub-Signature-256: sha256=<hex>`. Pure.
//!
//! A secret may hold several keys, one per line, newest first (rotation): Standard
//! Webhooks signs with each (space-separated `v1,` signatures); GitHub with the first.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC key of one Standard Webhooks secret: the base64-decoded part after `whsec_`,
/// or the raw bytes of a secret without that prefix.
pub fn standard_key(s: &str) -> Vec<u8> {
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

/// The `webhook-signature` header value: one `v1,` signature per key, space-separated.
pub fn standard(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let signatures: Vec<String> = secret
        .keys()
        .map(|key| {
            let mac = hmac(
                &standard_key(key),
                &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
            );
            format!("v1,{}", STANDARD.encode(mac))
        })
        .collect();
    signatures.join(" ")
}

/// The `X-Hub-Signature-256` header value (the newest key's text is the key).
pub fn github(secret: &Secret, body: &[u8]) -> String {
    let mac = hmac(secret.first().as_bytes(), &[body]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Checks a `webhook-signature` header (space-separated list of `v1,<sig>`): true when
/// any signature in it verifies with any of the secret's keys.
pub fn verify_standard(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let expected = standard(secret, id, timestamp, body);
    header.split(' ').any(|s| {
        expected
            .split(' ')
            .any(|e| constant_eq(s.as_bytes(), e.as_bytes()))
    })
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
        assert_eq!(standard_key("plain-secret"), b"plain-secret".to_vec());
    }

    #[test]
    fn several_keys_sign_once_each_newest_first_and_github_uses_the_newest() {
        let v = vectors();
        let c = &v["standard_webhooks"][0];
        let old = c["secret"].as_str().unwrap_or_default();
        let id = c["id"].as_str().unwrap_or_default();
        let ts = c["timestamp"].as_i64().unwrap_or_default();
        let body = c["payload"].as_str().unwrap_or_default().as_bytes();
        let want_old = c["signature"].as_str().unwrap_or_default();
        let new = "whsec_bmV3LXNlY3JldC1rZXktZm9yLXJvdGF0aW9uIQ==";
        let both = Secret::new(format!("{new}\n\n  {old}  \n"));
        let header = standard(&both, id, ts, body);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2, "{header}");
        assert_eq!(parts[0], standard(&Secret::new(new), id, ts, body));
        assert_eq!(parts[1], want_old);
        // A receiver that knows only the old key still verifies.
        assert!(verify_standard(&Secret::new(old), id, ts, body, &header));
        assert_eq!(
            github(&both, body),
            github(&Secret::new(new), body),
            "GitHub signs with the first line"
        );
    }
}
