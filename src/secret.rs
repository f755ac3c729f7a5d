//! Secrets (S3 secret keys, zip passwords, tokens) live in [`Secret`], which never prints its
//! value, and are sealed with the server key ([`SecretBox`]) before they reach the job store.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string that must never be shown: `Debug` and `Display` print `***`.
/// It serializes to its value only for sealing (see [`SecretBox`]); never put it in a
/// response type.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value itself, for the one place that needs it (signing a request, encrypting a zip).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

/// Takes text only, and refuses anything else without showing it (serde's own message would
/// quote the value). A number is refused rather than taken: TOML would already have turned
/// `0x1F`, `1_000` or `1.50` into another text than the one written.
struct SecretVisitor;

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("text in quotes (the value is not shown)")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(E::custom(NOT_TEXT))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(E::custom(NOT_TEXT))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(E::custom(NOT_TEXT))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(E::custom(NOT_TEXT))
    }
}

const NOT_TEXT: &str = "a secret must be text: put it in quotes (the value is not shown)";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("server key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
    #[error("server key file {0} is not 32 bytes of base64")]
    KeyFormat(String),
    #[error("sealed secrets could not be opened (was the server key changed?)")]
    Open,
    #[error("secrets could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// AEAD (XChaCha20-Poly1305) with the server key: what the job store keeps is
/// `nonce || ciphertext`, never the plain value.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    fingerprint: String,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

impl SecretBox {
    pub fn from_key(key: &[u8; 32]) -> Self {
        use sha2::{Digest, Sha256};
        let digest =
            Sha256::new().chain_update(b"forwarder server key fingerprint v1").chain_update(key).finalize();
        Self { cipher: XChaCha20Poly1305::new(key.into()), fingerprint: hex::encode(&digest[..16]) }
    }

    /// Names the key without revealing it, so that processes sharing a job store can check
    /// that they seal with the same key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Loads the server key from `path`, creating it (mode 0600) on first start.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let err = |source| SecretError::KeyFile { path: path.display().to_string(), source };
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(err)?;
            let bytes =
                B64.decode(text.trim()).map_err(|_| SecretError::KeyFormat(path.display().to_string()))?;
            let key: [u8; 32] =
                bytes.try_into().map_err(|_| SecretError::KeyFormat(path.display().to_string()))?;
            return Ok(Self::from_key(&key));
        }
        let key: [u8; 32] = rand::random();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        write_private(path, B64.encode(key).as_bytes()).map_err(err)?;
        Ok(Self::from_key(&key))
    }

    pub fn seal<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, SecretError> {
        let plain = serde_json::to_vec(value)?;
        let nonce_bytes: [u8; 24] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let mut out = nonce_bytes.to_vec();
        out.extend(self.cipher.encrypt(&nonce, plain.as_slice()).map_err(|_| SecretError::Open)?);
        Ok(out)
    }

    pub fn open<T: for<'de> Deserialize<'de>>(&self, sealed: &[u8]) -> Result<T, SecretError> {
        if sealed.len() < 24 {
            return Err(SecretError::Open);
        }
        let (nonce, body) = sealed.split_at(24);
        let nonce = XNonce::try_from(nonce).map_err(|_| SecretError::Open)?;
        let plain = self.cipher.decrypt(&nonce, body).map_err(|_| SecretError::Open)?;
        Ok(serde_json::from_slice(&plain)?)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        f.write_all(bytes)
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_that_is_not_text_is_refused_without_being_shown() {
        use figment::providers::{Format as _, Toml};
        #[derive(Debug, serde::Deserialize)]
        struct T {
            p: Secret,
        }
        for toml in ["p = 987654321", "p = 0x1F", "p = 1.50", "p = true", "p = [1, 2]"] {
            let e = figment::Figment::new().merge(Toml::string(toml)).extract::<T>().unwrap_err().to_string();
            assert!(e.contains("the value is not shown"), "{toml}: {e}");
            for shown in ["987654321", "31", "1.5", "true", "1, 2"] {
                assert!(!e.contains(shown), "{toml}: {e}");
            }
        }
        let t: T = figment::Figment::new().merge(Toml::string("p = \"0012\"")).extract().unwrap();
        assert_eq!(t.p.expose(), "0012");
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn seal_round_trips_and_hides_value() {
        let b = SecretBox::from_key(&[7; 32]);
        let sealed = b.seal(&Secret::new("hunter2")).unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        let back: Secret = b.open(&sealed).unwrap();
        assert_eq!(back.expose(), "hunter2");
        let other = SecretBox::from_key(&[8; 32]);
        assert!(other.open::<Secret>(&sealed).is_err());
    }
}
