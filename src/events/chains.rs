//! What a chain step's hook gets: the run's kudu object with `callback_url` (a new
//! single-use token from the OS's CSPRNG) and `chain`; and the same body as every view
//! shows it, the token redacted. `store` keeps only the token's SHA-256.

/// A new callback token: 32 bytes from the OS's CSPRNG, URL-safe base64. The token is
/// the credential that approves a step: never a fast, predictable generator.
pub fn new_token() -> Result<String, String> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the OS random source failed: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A delivery's body for display (API, CLI): a chain step's `callback_url` carries its
/// single-use token — the credential that approves the step — so only its receiver
/// ever sees it; every view shows `…/api/callbacks/***`.
pub fn redact_callback(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return std::borrow::Cow::Borrowed(body);
    };
    let Some(url) = v.get("callback_url").and_then(|u| u.as_str()) else {
        return std::borrow::Cow::Borrowed(body);
    };
    let redacted = match url.rsplit_once("/api/callbacks/") {
        Some((base, _)) => format!("{base}/api/callbacks/***"),
        None => "***".to_string(),
    };
    v["callback_url"] = redacted.into();
    std::borrow::Cow::Owned(serde_json::to_vec(&v).unwrap_or_default())
}

/// The body a step's hook gets: the run's payload with `callback_url` and `chain`.
pub fn step_body(
    payload: &[u8],
    callback_base: &str,
    token: &str,
    chain: &str,
    step: usize,
    of: usize,
) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(payload).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "callback_url".into(),
            format!(
                "{}/api/callbacks/{token}",
                callback_base.trim_end_matches('/')
            )
            .into(),
        );
        o.insert(
            "chain".into(),
            serde_json::json!({"name": chain, "step": step + 1, "of": of}),
        );
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The next step's body and its token, or `None` when no token can be made.
pub fn next_step(
    payload: &[u8],
    callback_base: &str,
    chain: &str,
    step: usize,
    of: usize,
) -> Option<(Vec<u8>, String)> {
    match new_token() {
        Ok(token) => Some((
            step_body(payload, callback_base, &token, chain, step, of),
            token,
        )),
        Err(e) => {
            tracing::error!(chain = %chain, error = %e, "cannot make a callback token");
            None
        }
    }
}
