//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw request body keyed with the
//! app secret, sent as `sha256=<64 lowercase hex>` (reference §2).
//!
//! Verification is over the bytes received, never a re-serialization. When that
//! fails and the body holds non-ASCII bytes, it is tried once more over the body
//! with every non-ASCII character written as lowercase `\uXXXX` (UTF-16 units):
//! Meta signs that escaped form, so a body that reached us unescaped (a relay
//! that decoded it) still verifies. Both comparisons are constant-time
//! (`hmac`'s `verify_slice`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::Secret;

/// The header Meta signs webhooks with.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

const PREFIX: &str = "sha256=";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &Secret) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(secret.expose().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// The header value for `body`: `sha256=<hex>`.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a signature was refused; never says more than that (no expected value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not `sha256=<hex>`")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

/// Checks `header` (the `X-Hub-Signature-256` value, if any) against `body`.
pub fn verify(secret: &Secret, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let header = std::str::from_utf8(header).map_err(|_| SignatureError::Malformed)?.trim();
    let hex_digest = header
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .and_then(|_| header.get(PREFIX.len()..))
        .ok_or(SignatureError::Malformed)?;
    let tag = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if tag.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut raw = mac(secret);
    raw.update(body);
    if raw.verify_slice(&tag).is_ok() {
        return Ok(());
    }
    if let Some(escaped) = escape_non_ascii(body) {
        let mut esc = mac(secret);
        esc.update(escaped.as_bytes());
        if esc.verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// `body` with every non-ASCII character rewritten as lowercase `\uXXXX`
/// (UTF-16 code units, so astral characters become surrogate pairs); `None`
/// when the body is pure ASCII (nothing to rewrite) or not UTF-8.
///
/// Valid on JSON text: non-ASCII can only occur inside strings, where the
/// escape means the same character.
pub fn escape_non_ascii(body: &[u8]) -> Option<String> {
    if body.is_ascii() {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    Some(ascii_json(text))
}

/// Rewrites non-ASCII characters of a JSON text as `\uXXXX` escapes, the way
/// Meta puts webhook bodies on the wire (pure ASCII).
pub fn ascii_json(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference §2 test vectors (app secret `test_app_secret`).
    const SECRET: &str = "test_app_secret";
    const VECTOR_A: &str = r#"{"object":"whatsapp_business_account","entry":[]}"#;
    const VECTOR_A_SIG: &str =
        "sha256=dec6a680679a968e7e0319355b23599cbfc54502c0784668e9618baa0c633756";
    const VECTOR_B: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Jos\u00e9"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.TEST1","timestamp":"1749416383","type":"text","text":{"body":"Ol\u00e1 \ud83d\udc4d"}}]},"field":"messages"}]}]}"#;
    const VECTOR_B_SIG: &str =
        "sha256=41c1b7428e52030ba1a23bea8d54657332bd7b6bef3fcdbee68538675f8de0c3";
    const VECTOR_B_RESERIALIZED_SIG: &str =
        "sha256=4c6661a69deeff552945ffe4c930a65932f9009a7d92b83886d30f8a62120571";

    fn secret() -> Secret {
        Secret::new(SECRET)
    }

    fn vector_c() -> String {
        VECTOR_B.replace(r"Jos\u00e9", "José").replace(r"Ol\u00e1 \ud83d\udc4d", "Olá 👍")
    }

    #[test]
    fn b8_2_reference_vectors_sign_as_published() {
        // The reference says 50 bytes; the line is 49, and its published digest is over those 49.
        assert_eq!(VECTOR_A.len(), 49);
        assert_eq!(VECTOR_B.len(), 435);
        assert_eq!(sign(&secret(), VECTOR_A.as_bytes()), VECTOR_A_SIG);
        assert_eq!(sign(&secret(), VECTOR_B.as_bytes()), VECTOR_B_SIG);
        assert_eq!(sign(&secret(), vector_c().as_bytes()), VECTOR_B_RESERIALIZED_SIG);
    }

    #[test]
    fn b8_2_raw_bytes_verify_and_reserialized_signature_is_refused() {
        let s = secret();
        assert_eq!(verify(&s, Some(VECTOR_A_SIG.as_bytes()), VECTOR_A.as_bytes()), Ok(()));
        assert_eq!(verify(&s, Some(VECTOR_B_SIG.as_bytes()), VECTOR_B.as_bytes()), Ok(()));
        assert_eq!(
            verify(&s, Some(VECTOR_B_RESERIALIZED_SIG.as_bytes()), VECTOR_B.as_bytes()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn b8_2_unescaped_body_signed_over_its_escaped_form_is_accepted() {
        // Vector C: the fallback of §2.
        let c = vector_c();
        assert_eq!(c.len(), 419);
        assert_eq!(escape_non_ascii(c.as_bytes()).as_deref(), Some(VECTOR_B));
        assert_eq!(verify(&secret(), Some(VECTOR_B_SIG.as_bytes()), c.as_bytes()), Ok(()));
    }

    #[test]
    fn b8_2_missing_malformed_and_wrong_secret_are_refused() {
        let s = secret();
        let body = VECTOR_A.as_bytes();
        assert_eq!(verify(&s, None, body), Err(SignatureError::Missing));
        assert_eq!(verify(&s, Some(b"sha1=abc"), body), Err(SignatureError::Malformed));
        assert_eq!(verify(&s, Some(b"sha256=zz"), body), Err(SignatureError::Malformed));
        assert_eq!(verify(&s, Some(b"sha256=abcd"), body), Err(SignatureError::Malformed));
        assert_eq!(verify(&s, Some(b"\xff\xfe"), body), Err(SignatureError::Malformed));
        let other = sign(&Secret::new("other"), body);
        assert_eq!(verify(&s, Some(other.as_bytes()), body), Err(SignatureError::Mismatch));
        // Upper-case hex is the same digest.
        let upper = VECTOR_A_SIG.to_uppercase().replace("SHA256=", "sha256=");
        assert_eq!(verify(&s, Some(upper.as_bytes()), body), Ok(()));
    }
}
