//! Authentication (B8.1): HS256 JWTs signed with the configured secret.
//!
//! Claims: `sub` (agent id), `name`, `role` (`agent` | `supervisor`), `exp`.
//! `jsonwebtoken` does the parsing and validation; its crypto backends pull
//! in RSA and elliptic curves we never use, so this module installs a small
//! HMAC-only provider over the workspace's `hmac`/`sha2` instead (HS256 is the
//! only algorithm the gateway accepts).

use std::sync::OnceLock;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result as JwtResult, new_error};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Who may do what (B8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Agent,
    Supervisor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
        }
    }
}

/// The claims of a gateway token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    pub role: Role,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// When the token expires, Unix seconds (a WebSocket is closed then).
    pub expires_at: i64,
}

impl Caller {
    pub fn is_supervisor(&self) -> bool {
        self.role == Role::Supervisor
    }
}

/// Why a token was refused (always a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token is malformed: {0}")]
    Malformed(String),
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired => "token_expired",
            TokenError::BadSignature => "token_invalid_signature",
            TokenError::Malformed(_) => "token_malformed",
        }
    }
}

/// Longest id or name a token may carry; ids become NATS subject tokens and
/// stream names downstream, so they stay short.
const MAX_CLAIM_CHARS: usize = 200;

/// Issues a token for `sub` (what `switchboard token` prints). `now_secs` is
/// the current Unix time in seconds (time is an input).
pub fn issue_token(
    secret: &str,
    sub: &str,
    name: &str,
    role: Role,
    ttl: Duration,
    now_secs: i64,
) -> String {
    install_provider();
    let claims = Claims {
        sub: sub.to_owned(),
        name: name.to_owned(),
        role,
        exp: now_secs.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
    };
    // Encoding HS256 claims with an HMAC key cannot fail (any key length is valid).
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

/// Checks a token's signature, algorithm and expiry against `now_secs`.
pub fn verify_token(secret: &str, token: &str, now_secs: i64) -> Result<Caller, TokenError> {
    install_provider();
    let mut validation = Validation::new(Algorithm::HS256);
    // Expiry is checked below against the injected clock, not the system time.
    validation.validate_exp = false;
    validation.required_spec_claims = ["exp", "sub"].iter().map(|s| (*s).to_owned()).collect();
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<Claims>(
        token.as_bytes(),
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        other => TokenError::Malformed(format!("{other:?}")),
    })?;
    let claims = data.claims;
    if claims.exp <= now_secs {
        return Err(TokenError::Expired);
    }
    if claims.sub.is_empty()
        || claims.sub.chars().count() > MAX_CLAIM_CHARS
        || claims.name.chars().count() > MAX_CLAIM_CHARS
        || !claims.sub.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(TokenError::Malformed("`sub` must be a short id of [A-Za-z0-9_-]".into()));
    }
    Ok(Caller { id: claims.sub, name: claims.name, role: claims.role, expires_at: claims.exp })
}

// ---- the HMAC-only crypto provider ------------------------------------------

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs [`PROVIDER`] once per process. If another component installed one
/// first (one with HMAC support, as both of jsonwebtoken's own have), that one is used.
fn install_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let _ = PROVIDER.install_default();
    });
}

type HmacSha256 = Hmac<Sha256>;

struct Hs256(HmacSha256);

impl Hs256 {
    fn new(key: &[u8]) -> JwtResult<Hs256> {
        HmacSha256::new_from_slice(key)
            .map(Hs256)
            .map_err(|_| new_error(ErrorKind::InvalidKeyFormat))
    }
}

impl signature::Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl signature::Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        // Constant-time comparison.
        mac.verify_slice(signature).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> JwtResult<Box<dyn JwtSigner>> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.as_bytes())?)),
        _ => Err(new_error(ErrorKind::InvalidAlgorithm)),
    }
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> JwtResult<Box<dyn JwtVerifier>> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.try_get_as_bytes()?)?)),
        _ => Err(new_error(ErrorKind::InvalidAlgorithm)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000;

    #[test]
    fn b8_1_issued_tokens_verify_and_carry_the_claims() {
        let token = issue_token(
            "s3cret",
            "alice",
            "Alice Smith",
            Role::Agent,
            Duration::from_secs(60),
            NOW,
        );
        let caller = verify_token("s3cret", &token, NOW).unwrap();
        assert_eq!(
            caller,
            Caller {
                id: "alice".into(),
                name: "Alice Smith".into(),
                role: Role::Agent,
                expires_at: NOW + 60
            }
        );
    }

    #[test]
    fn b8_1_expired_wrongly_signed_or_malformed_tokens_are_refused() {
        let token =
            issue_token("s3cret", "alice", "A", Role::Supervisor, Duration::from_secs(60), NOW);
        assert_eq!(verify_token("s3cret", &token, NOW + 60), Err(TokenError::Expired));
        assert_eq!(verify_token("other", &token, NOW), Err(TokenError::BadSignature));
        assert!(matches!(
            verify_token("s3cret", "not.a.token", NOW),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(verify_token("s3cret", "", NOW), Err(TokenError::Malformed(_))));
        let bad_sub = issue_token("s3cret", "a.b>", "A", Role::Agent, Duration::from_secs(60), NOW);
        assert!(matches!(verify_token("s3cret", &bad_sub, NOW), Err(TokenError::Malformed(_))));
    }
}
