//! The key pair passwords are sealed with: the producer holds the public sealing key, only
//! workers hold the private opening key. This module does no file I/O; the CLI writes keys.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

/// Why a key could not be read. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not an age X25519 recipient.
    #[error("the sealing key is not an age X25519 public key (expected age1…)")]
    NotASealingKey,
    /// The text is not an age X25519 identity.
    #[error("the opening key is not an age X25519 private key (expected AGE-SECRET-KEY-1…)")]
    NotAnOpeningKey,
}

/// The workers' public key (an age X25519 recipient, `age1…`), which the producer seals
/// passwords to.
#[derive(Clone)]
pub struct SealingKey(pub(crate) age::x25519::Recipient);

impl SealingKey {
    /// Parses an `age1…` recipient; surrounding white space is ignored.
    pub fn parse(text: &str) -> Result<SealingKey, KeyError> {
        age::x25519::Recipient::from_str(text.trim())
            .map(SealingKey)
            .map_err(|_| KeyError::NotASealingKey)
    }
}

impl FromStr for SealingKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<SealingKey, KeyError> {
        SealingKey::parse(text)
    }
}

impl fmt::Display for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKey({})", self.0)
    }
}

impl PartialEq for SealingKey {
    fn eq(&self, other: &SealingKey) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for SealingKey {}

/// The workers' private key (an age X25519 identity). age keeps the scalar in memory that is
/// zeroed when the key is dropped; Debug never shows it.
pub struct OpeningKey(pub(crate) age::x25519::Identity);

impl OpeningKey {
    /// Parses an `AGE-SECRET-KEY-1…` identity. The text may be the content of a key file as
    /// `age-keygen` writes it: blank lines and `#` comment lines are skipped, and the first
    /// other line is the key.
    pub fn parse(text: &SecretString) -> Result<OpeningKey, KeyError> {
        let key_line = text
            .expose_secret()
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .ok_or(KeyError::NotAnOpeningKey)?;
        age::x25519::Identity::from_str(key_line)
            .map(OpeningKey)
            .map_err(|_| KeyError::NotAnOpeningKey)
    }

    /// The matching public key, to check at start that a worker can open what the producer
    /// seals.
    pub fn sealing_key(&self) -> SealingKey {
        SealingKey(self.0.to_public())
    }
}

impl fmt::Debug for OpeningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpeningKey([redacted], public {})", self.0.to_public())
    }
}

/// A fresh key pair in text form, ready for the CLI to write out.
pub struct KeyPair {
    /// The sealing key, `age1…`: give it to producers.
    pub public: String,
    /// The opening key, `AGE-SECRET-KEY-1…`: give it only to workers.
    pub private: SecretString,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .field("private", &"[redacted]")
            .finish()
    }
}

/// Generates a key pair from the operating system's random source.
pub fn generate_key_pair() -> KeyPair {
    let identity = age::x25519::Identity::generate();
    KeyPair {
        public: identity.to_public().to_string(),
        private: identity.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_parses_back_and_matches() {
        let pair = generate_key_pair();
        let opening = OpeningKey::parse(&pair.private).unwrap();
        assert_eq!(
            opening.sealing_key(),
            SealingKey::parse(&pair.public).unwrap()
        );
    }

    #[test]
    fn an_opening_key_file_with_comments_parses() {
        let pair = generate_key_pair();
        let file = format!(
            "# created: 2025-01-01\n# public key: {}\n{}\n",
            pair.public,
            pair.private.expose_secret()
        );
        assert!(OpeningKey::parse(&SecretString::from(file)).is_ok());
    }

    #[test]
    fn debug_output_of_keys_never_shows_the_private_key() {
        let pair = generate_key_pair();
        let opening = OpeningKey::parse(&pair.private).unwrap();
        let secret = pair.private.expose_secret();
        assert!(!format!("{opening:?}").contains(&secret[20..]));
        assert!(!format!("{pair:?}").contains(&secret[20..]));
    }

    #[test]
    fn a_public_key_is_not_an_opening_key() {
        let pair = generate_key_pair();
        let error = OpeningKey::parse(&SecretString::from(pair.public)).unwrap_err();
        assert_eq!(error, KeyError::NotAnOpeningKey);
    }
}
