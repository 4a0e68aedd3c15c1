//! Field encryption for one recipient: a compact JWE (RFC 7516) with `alg` `ECDH-ES` (direct
//! key agreement on P-256, RFC 7518 4.6) and `enc` `A256GCM`. Any standard JOSE library opens
//! it with the recipient's private key; the gateway cannot (it never holds that key).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::{PublicKey, SecretKey};
use sha2::{Digest, Sha256};

use crate::domain::PartnerId;

/// A partner's public encryption key (P-256), from the partner registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RecipientKey {
    /// The partner it belongs to.
    pub partner: PartnerId,
    /// Key id, written to the JWE header as `kid`.
    pub kid: Option<String>,
    /// The public key.
    pub key: PublicKey,
}

impl std::fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipientKey")
            .field("partner", &self.partner)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A recipient key could not be read or the encryption failed.
#[derive(Debug, thiserror::Error)]
pub enum JweError {
    /// The JWK is not a P-256 public key.
    #[error("not a usable P-256 encryption key: {0}")]
    BadKey(String),
    /// Encryption failed (no randomness, or the cipher refused).
    #[error("encryption failed")]
    Encrypt,
}

impl RecipientKey {
    /// Reads a public JWK (`kty` `EC`, `crv` `P-256`); `kid` is kept when present. A JWK with
    /// a private part (`d`) is refused: the registry holds public keys only.
    pub fn from_jwk(partner: PartnerId, text: &str) -> Result<Self, JweError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| JweError::BadKey(e.to_string()))?;
        if v.get("d").is_some() {
            return Err(JweError::BadKey(
                "the JWK holds a private key; register the public part only".into(),
            ));
        }
        if v.get("use")
            .and_then(|u| u.as_str())
            .is_some_and(|u| u != "enc")
        {
            return Err(JweError::BadKey("the JWK's `use` is not `enc`".into()));
        }
        let kid = v.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        let public = serde_json::json!({
            "kty": v.get("kty"), "crv": v.get("crv"), "x": v.get("x"), "y": v.get("y"),
        });
        let key = PublicKey::from_jwk_str(&public.to_string())
            .map_err(|e| JweError::BadKey(e.to_string()))?;
        Ok(Self { partner, kid, key })
    }
}

/// Concat KDF (NIST SP 800-56A, RFC 7518 4.6.2) for one 256-bit key with empty `apu`/`apv`.
fn concat_kdf(z: &[u8], enc: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    h.update(len(enc.len()));
    h.update(enc.as_bytes());
    h.update(len(0)); // PartyUInfo
    h.update(len(0)); // PartyVInfo
    h.update(256u32.to_be_bytes()); // SuppPubInfo: key length in bits
    h.finalize().into()
}

fn ephemeral_secret() -> Result<SecretKey, JweError> {
    for _ in 0..8 {
        let bytes: [u8; 32] = rand::random();
        if let Ok(k) = SecretKey::from_slice(&bytes) {
            return Ok(k);
        }
    }
    Err(JweError::Encrypt)
}

/// Encrypts `plaintext` for `to` as a compact JWE (`ECDH-ES` + `A256GCM`).
pub fn encrypt(to: &RecipientKey, plaintext: &[u8]) -> Result<String, JweError> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};

    let eph = ephemeral_secret()?;
    let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), to.key.as_affine());
    let cek = concat_kdf(shared.raw_secret_bytes(), "A256GCM");
    let point = eph.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(JweError::Encrypt);
    };
    let mut header = serde_json::json!({
        "alg": "ECDH-ES",
        "enc": "A256GCM",
        "epk": { "kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y) },
    });
    if let (Some(kid), Some(h)) = (&to.kid, header.as_object_mut()) {
        h.insert("kid".into(), serde_json::Value::String(kid.clone()));
    }
    let protected = URL_SAFE_NO_PAD.encode(header.to_string());
    let iv: [u8; 12] = rand::random();
    let cipher = Aes256Gcm::new_from_slice(&cek).map_err(|_| JweError::Encrypt)?;
    let sealed = cipher
        .encrypt(
            &Nonce::from(iv),
            Payload {
                msg: plaintext,
                aad: protected.as_bytes(),
            },
        )
        .map_err(|_| JweError::Encrypt)?;
    let (ct, tag) = sealed.split_at(sealed.len().saturating_sub(16));
    Ok(format!(
        "{protected}..{}.{}.{}",
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(ct),
        URL_SAFE_NO_PAD.encode(tag)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_kdf_layout_follows_rfc7518_4_6_2() {
        // counter || Z || len(enc) || enc || len(apu)=0 || len(apv)=0 || keydatalen=256
        let z = [7u8; 32];
        let mut h = Sha256::new();
        h.update([0, 0, 0, 1]);
        h.update(z);
        h.update([0, 0, 0, 7]);
        h.update(b"A256GCM");
        h.update([0, 0, 0, 0, 0, 0, 0, 0]);
        h.update([0, 0, 1, 0]);
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(concat_kdf(&z, "A256GCM"), expected);
    }

    #[test]
    fn the_compact_form_has_five_parts_and_an_empty_key() {
        let sk = SecretKey::from_slice(&[3u8; 32]).unwrap();
        let to = RecipientKey {
            partner: "metro-pd".parse().unwrap(),
            kid: Some("k1".into()),
            key: sk.public_key(),
        };
        let jwe = encrypt(&to, b"\"hello\"").unwrap();
        let parts: Vec<&str> = jwe.split('.').collect();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[1], "");
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ECDH-ES");
        assert_eq!(header["enc"], "A256GCM");
        assert_eq!(header["kid"], "k1");
        assert_ne!(
            encrypt(&to, b"\"hello\"").unwrap(),
            jwe,
            "fresh key and IV each time"
        );
    }

    #[test]
    fn private_jwks_are_refused() {
        let sk = SecretKey::from_slice(&[3u8; 32]).unwrap();
        let private = sk.to_jwk_string();
        let err = RecipientKey::from_jwk("a".parse().unwrap(), &private).unwrap_err();
        assert!(err.to_string().contains("private"), "{err}");
        let public = sk.public_key().to_jwk_string();
        assert!(RecipientKey::from_jwk("a".parse().unwrap(), &public).is_ok());
    }
}
