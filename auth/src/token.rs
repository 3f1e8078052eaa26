//! Session tokens (EdDSA-signed JWTs naming the user and the user's epoch)
//! and API tokens (random secrets stored as SHA-256 hashes).
//!
//! Signing keys live in the meta group, so every node verifies what any
//! node signed. Rotation adds a key that signs from then on; older keys keep
//! verifying until every token they signed has expired, then drop out.
//! Expiry is checked against the caller's clock, in milliseconds, with no
//! leeway: the nodes' clocks are assumed within the lease drift bound.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::model::ApiTokenRecord;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token this cluster makes.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// Signed by a key this cluster does not have (another cluster's, or
    /// one rotated out).
    #[error("the token was signed by an unknown key {0:?}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// Past its expiry.
    #[error("the session token expired at {at_ms} (Unix ms); log in again")]
    Expired {
        /// When it expired.
        at_ms: u64,
    },
    /// The crypto library failed.
    #[error("token crypto: {0}")]
    Crypto(String),
}

/// One signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// Key id, in every token's header.
    pub kid: String,
    /// The private key, PKCS#8 DER, base64url.
    pub pkcs8: String,
    /// The public key, base64url.
    pub public: String,
    /// When it started signing (Unix ms).
    pub created_ms: u64,
}

impl SigningKey {
    /// A fresh Ed25519 key.
    ///
    /// # Errors
    /// The system random source failed.
    pub fn generate(now_ms: u64) -> Result<Self, TokenError> {
        let rng = SystemRandom::new();
        let doc =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| TokenError::Crypto(e.to_string()))?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
            .map_err(|e| TokenError::Crypto(e.to_string()))?;
        let mut id = [0u8; 8];
        rng.fill(&mut id)
            .map_err(|e| TokenError::Crypto(e.to_string()))?;
        Ok(Self {
            kid: hex(&id),
            pkcs8: B64.encode(doc.as_ref()),
            public: B64.encode(pair.public_key().as_ref()),
            created_ms: now_ms,
        })
    }
}

/// The cluster's signing keys, oldest first; the last one signs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRing {
    /// Keys, oldest first.
    pub keys: Vec<SigningKey>,
}

/// What a session token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Issuer (always `cairn`).
    pub iss: String,
    /// User name.
    pub sub: String,
    /// The user's epoch at login.
    pub ep: u64,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds, the JWT claim).
    pub exp: u64,
    /// Expires at (Unix ms; what Cairn checks).
    pub exp_ms: u64,
}

const ISSUER: &str = "cairn";

impl KeyRing {
    /// A ring with one fresh key.
    ///
    /// # Errors
    /// As [`SigningKey::generate`].
    pub fn new(now_ms: u64) -> Result<Self, TokenError> {
        Ok(Self {
            keys: vec![SigningKey::generate(now_ms)?],
        })
    }

    /// Adds a fresh signing key and drops keys no unexpired token can be
    /// signed by (superseded more than `max_ttl_ms` ago). Returns the new
    /// key's id.
    ///
    /// # Errors
    /// As [`SigningKey::generate`].
    pub fn rotate(&mut self, now_ms: u64, max_ttl_ms: u64) -> Result<String, TokenError> {
        let key = SigningKey::generate(now_ms)?;
        let kid = key.kid.clone();
        self.keys.push(key);
        // Key i signed until key i+1 was created.
        let superseded: Vec<u64> = self.keys.iter().skip(1).map(|k| k.created_ms).collect();
        let mut keep = Vec::new();
        for (i, k) in self.keys.drain(..).enumerate() {
            let live = superseded
                .get(i)
                .is_none_or(|&until| now_ms < until.saturating_add(max_ttl_ms));
            if live {
                keep.push(k);
            }
        }
        self.keys = keep;
        Ok(kid)
    }

    /// A session token for `user` at `epoch`, valid for `ttl_ms` from
    /// `now_ms`, and its expiry (Unix ms).
    ///
    /// # Errors
    /// No key, or a key that does not load.
    pub fn issue(
        &self,
        user: &str,
        epoch: u64,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(String, u64), TokenError> {
        let key = self
            .keys
            .last()
            .ok_or_else(|| TokenError::Crypto("no signing key".into()))?;
        let der = B64
            .decode(&key.pkcs8)
            .map_err(|e| TokenError::Crypto(format!("signing key {}: {e}", key.kid)))?;
        let exp_ms = now_ms.saturating_add(ttl_ms);
        let claims = SessionClaims {
            iss: ISSUER.into(),
            sub: user.into(),
            ep: epoch,
            iat: now_ms / 1000,
            exp: exp_ms.div_ceil(1000),
            exp_ms,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&der))
            .map_err(|e| TokenError::Crypto(e.to_string()))?;
        Ok((token, exp_ms))
    }

    /// The claims of a token this ring signed, unexpired at `now_ms`.
    ///
    /// # Errors
    /// Malformed, unknown key, bad signature or expired.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<SessionClaims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Malformed(format!(
                "algorithm {:?}, not EdDSA",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Malformed("no key id".into()))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
        let public = B64
            .decode(&key.public)
            .map_err(|e| TokenError::Crypto(format!("verifying key {kid}: {e}")))?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.validate_exp = false;
        v.leeway = 0;
        v.set_issuer(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data =
            jsonwebtoken::decode::<SessionClaims>(token, &DecodingKey::from_ed_der(&public), &v)
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                    _ => TokenError::Malformed(e.to_string()),
                })?;
        if now_ms >= data.claims.exp_ms {
            return Err(TokenError::Expired {
                at_ms: data.claims.exp_ms,
            });
        }
        Ok(data.claims)
    }

    /// Key ids, newest (the signing key) first.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().rev().map(|k| k.kid.clone()).collect()
    }
}

/// What every API token starts with.
pub const API_TOKEN_PREFIX: &str = "cairn_";

/// A new API token: the text to hand out once, and the record to store.
///
/// # Errors
/// The system random source failed.
pub fn new_api_token(
    now_ms: u64,
    description: &str,
) -> Result<(String, ApiTokenRecord), TokenError> {
    let rng = SystemRandom::new();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill(&mut id)
        .map_err(|e| TokenError::Crypto(e.to_string()))?;
    rng.fill(&mut secret)
        .map_err(|e| TokenError::Crypto(e.to_string()))?;
    let id = hex(&id);
    let secret = B64.encode(secret);
    let record = ApiTokenRecord {
        id: id.clone(),
        sha256: sha256_hex(&secret),
        created_ms: now_ms,
        description: description.into(),
    };
    Ok((format!("{API_TOKEN_PREFIX}{id}_{secret}"), record))
}

/// The id and secret of an API token, if `token` has the shape of one.
pub fn parse_api_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(API_TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && !secret.is_empty()).then_some((id, secret))
}

/// Whether `secret` is the one `record` stores the hash of (constant time).
pub fn api_secret_matches(record: &ApiTokenRecord, secret: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(
        sha256_hex(secret).as_bytes(),
        record.sha256.as_bytes(),
    )
    .is_ok()
}

fn sha256_hex(s: &str) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes()).as_ref())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tokens_verify_until_expiry_and_across_one_rotation() {
        let mut ring = KeyRing::new(1_000).unwrap();
        let (t, exp) = ring.issue("alice", 3, 10_000, 60_000).unwrap();
        assert_eq!(exp, 70_000);
        let c = ring.verify(&t, 69_999).unwrap();
        assert_eq!((c.sub.as_str(), c.ep), ("alice", 3));
        assert_eq!(
            ring.verify(&t, 70_000),
            Err(TokenError::Expired { at_ms: 70_000 })
        );
        // After a rotation the old key still verifies its tokens...
        ring.rotate(20_000, 60_000).unwrap();
        assert_eq!(ring.keys.len(), 2);
        ring.verify(&t, 30_000).unwrap();
        let (t2, _) = ring.issue("bob", 0, 30_000, 60_000).unwrap();
        ring.verify(&t2, 31_000).unwrap();
        // ...until every token it signed has expired.
        ring.rotate(81_000, 60_000).unwrap();
        assert_eq!(ring.keys.len(), 2);
        assert!(matches!(
            ring.verify(&t, 30_000),
            Err(TokenError::UnknownKey(_))
        ));
        // Another ring's token, and a tampered one, are refused.
        let other = KeyRing::new(0).unwrap();
        let (foreign, _) = other.issue("alice", 3, 10_000, 60_000).unwrap();
        assert!(matches!(
            ring.verify(&foreign, 11_000),
            Err(TokenError::UnknownKey(_))
        ));
        let mut parts: Vec<String> = t2.split('.').map(String::from).collect();
        parts[1] =
            B64.encode(br#"{"iss":"cairn","sub":"root","ep":0,"iat":30,"exp":90,"exp_ms":90000}"#);
        assert_eq!(
            ring.verify(&parts.join("."), 31_000),
            Err(TokenError::BadSignature)
        );
        assert!(matches!(
            ring.verify("nonsense", 0),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn api_tokens_match_only_their_secret() {
        let (text, rec) = new_api_token(5, "ci").unwrap();
        let (id, secret) = parse_api_token(&text).unwrap();
        assert_eq!(id, rec.id);
        assert!(api_secret_matches(&rec, secret));
        assert!(!api_secret_matches(&rec, "x"));
        assert!(!text.contains(&rec.sha256));
        assert_eq!(parse_api_token("cairn_short_x"), None);
    }
}
