//! Sealed passwords: age-encrypted to the workers' public key at the producer, opened only by a
//! worker, into zeroizing memory, just before the call that needs the clear text.
//!
//! On the wire a sealed secret is the JSON string `moss-sealed:v1:` + standard base64 of the
//! binary age file. Nothing in this crate turns a clear password into anything but a
//! [`SealedSecret`], so an [`Envelope`](crate::Envelope) cannot carry one in clear.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::keys::{OpeningKey, SealingKey};
use crate::reader::{Field, Reader};
use crate::violation::ValueError;

/// Prefix of a sealed secret on the wire; the version names the construction (age v1 X25519).
pub const SEALED_PREFIX: &str = "moss-sealed:v1:";

/// Longest clear password sealed, in characters (Entra ID's limit).
pub const MAX_CLEAR_LENGTH: usize = 256;

/// Longest sealed secret accepted on the wire, in characters. A 256-character password in
/// four-byte UTF-8 seals to well under this.
pub const MAX_SEALED_LENGTH: usize = 4096;

/// The header line every binary age file begins with.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// A password sealed to the workers' public key. Debug and Display show `[sealed]` only.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    ciphertext: Vec<u8>,
}

/// Why a password could not be sealed. Never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The clear password is empty.
    #[error("the password is empty")]
    Empty,
    /// The clear password is longer than Entra ID accepts.
    #[error("the password is longer than {MAX_CLEAR_LENGTH} characters")]
    TooLong,
    /// age could not encrypt (it found no usable recipient).
    #[error("the password could not be sealed to the workers' key")]
    Encryption(#[source] age::EncryptError),
    /// Writing into the in-memory ciphertext failed.
    #[error("the sealed password could not be written")]
    Write(#[source] std::io::Error),
}

/// Why a sealed secret could not be opened. Never carries secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The secret was sealed to another key than this worker's.
    #[error("the password was sealed to another key than this worker's opening key")]
    WrongKey,
    /// The ciphertext is damaged or was tampered with.
    #[error("the sealed password is damaged and cannot be opened")]
    Damaged,
    /// The opened bytes are not UTF-8, so they cannot be a password.
    #[error("the opened password is not UTF-8 text")]
    NotUtf8,
}

impl SealedSecret {
    /// Seals a clear password (1..=256 characters) to `key`.
    pub fn seal(clear: &SecretString, key: &SealingKey) -> Result<SealedSecret, SealError> {
        let text = clear.expose_secret();
        if text.is_empty() {
            return Err(SealError::Empty);
        }
        if text.chars().count() > MAX_CLEAR_LENGTH {
            return Err(SealError::TooLong);
        }
        let recipient: &dyn age::Recipient = &key.0;
        let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient))
            .map_err(SealError::Encryption)?;
        let mut ciphertext = Vec::with_capacity(text.len() + 256);
        let mut writer = encryptor
            .wrap_output(&mut ciphertext)
            .map_err(SealError::Write)?;
        std::io::Write::write_all(&mut writer, text.as_bytes()).map_err(SealError::Write)?;
        writer.finish().map_err(SealError::Write)?;
        Ok(SealedSecret { ciphertext })
    }

    /// Opens the secret with the workers' private key. The clear text lives in zeroizing
    /// memory: the buffer it is decrypted into is sized up front, so it is never reallocated
    /// and left behind, and it is wiped when dropped.
    pub fn open(&self, key: &OpeningKey) -> Result<SecretString, OpenError> {
        let decryptor =
            age::Decryptor::new(self.ciphertext.as_slice()).map_err(|_| OpenError::Damaged)?;
        let identity: &dyn age::Identity = &key.0;
        let mut reader =
            decryptor
                .decrypt(std::iter::once(identity))
                .map_err(|error| match error {
                    age::DecryptError::NoMatchingKeys => OpenError::WrongKey,
                    _ => OpenError::Damaged,
                })?;
        // The plaintext is shorter than the ciphertext, so this capacity is never outgrown.
        let mut clear = Zeroizing::new(Vec::with_capacity(self.ciphertext.len() + 64));
        reader
            .read_to_end(&mut clear)
            .map_err(|_| OpenError::Damaged)?;
        let text = std::str::from_utf8(&clear).map_err(|_| OpenError::NotUtf8)?;
        // `From<&str>` copies into an allocation of exactly the right size, which SecretString
        // wipes on drop; `clear` is wiped by Zeroizing.
        Ok(SecretString::from(text))
    }

    /// Parses the wire form `moss-sealed:v1:<base64 age file>`. Checks that it is an age file
    /// sealed to X25519 recipients (not a passphrase), which also stops a clear password
    /// dressed up with the prefix.
    pub fn parse(text: &str) -> Result<SealedSecret, ValueError> {
        if text.len() > MAX_SEALED_LENGTH {
            return Err(ValueError::new(
                "password.too_long",
                format!("a sealed password is at most {MAX_SEALED_LENGTH} characters"),
            ));
        }
        let Some(encoded) = text.strip_prefix(SEALED_PREFIX) else {
            return Err(not_sealed());
        };
        let ciphertext = STANDARD.decode(encoded).map_err(|_| {
            ValueError::new(
                "password.malformed",
                "the text after moss-sealed:v1: must be standard base64",
            )
        })?;
        let malformed = || {
            ValueError::new(
                "password.malformed",
                "the sealed password is not an age file sealed to a public key",
            )
        };
        if !ciphertext.starts_with(AGE_MAGIC) {
            return Err(malformed());
        }
        match age::Decryptor::new(ciphertext.as_slice()) {
            Ok(decryptor) if !decryptor.is_scrypt() => Ok(SealedSecret { ciphertext }),
            _ => Err(malformed()),
        }
    }

    /// The wire form, `moss-sealed:v1:<base64>`. Deliberately not `Display`, which shows
    /// `[sealed]` so that a log line never carries even the ciphertext.
    pub fn to_wire_string(&self) -> String {
        format!("{SEALED_PREFIX}{}", STANDARD.encode(&self.ciphertext))
    }

    /// The binary age file.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

/// The violation for a plain string where a sealed password belongs.
pub(crate) fn not_sealed() -> ValueError {
    ValueError::new(
        "password.not_sealed",
        "a password must be sealed (moss-sealed:v1:…); send a clear password only as {\"clear\": \"…\"} to the producer's ingest, which seals it",
    )
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret([sealed])")
    }
}

impl fmt::Display for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[sealed]")
    }
}

impl Serialize for SealedSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_wire_string())
    }
}

impl<'de> Deserialize<'de> for SealedSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SealedSecret, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        SealedSecret::parse(&text).map_err(|error| {
            serde::de::Error::custom(format_args!("{} ({})", error.message, error.rule))
        })
    }
}

impl JsonSchema for SealedSecret {
    fn schema_name() -> Cow<'static, str> {
        "SealedSecret".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A password sealed to the workers' age X25519 public key: moss-sealed:v1: followed by the standard base64 of the binary age file. Never a clear password.",
            "type": "string",
            "maxLength": MAX_SEALED_LENGTH,
            "pattern": "^moss-sealed:v1:[A-Za-z0-9+/]+={0,2}$",
        })
    }
}

impl Field for SealedSecret {
    fn read(reader: &mut Reader, value: &serde_json::Value, pointer: &str) -> Option<SealedSecret> {
        match value {
            serde_json::Value::String(text) => SealedSecret::parse(text)
                .map_err(|error| reader.report_value_error(pointer, error))
                .ok(),
            serde_json::Value::Object(object) if object.contains_key("clear") => {
                reader.report(
                    pointer,
                    "password.clear",
                    "a clear password is accepted only by the producer's ingest, which seals it at once; it never travels in an event",
                );
                None
            }
            _ => {
                reader.report(
                    pointer,
                    "expected.string",
                    "must be a sealed password string (moss-sealed:v1:…)",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_key_pair;

    fn keys() -> (SealingKey, OpeningKey) {
        let pair = generate_key_pair();
        (
            SealingKey::parse(&pair.public).unwrap(),
            OpeningKey::parse(&pair.private).unwrap(),
        )
    }

    #[test]
    fn a_sealed_password_opens_with_the_matching_key() {
        let (sealing, opening) = keys();
        let sealed = SealedSecret::seal(&SecretString::from("Corr3ct-horse!"), &sealing).unwrap();
        assert_eq!(
            sealed.open(&opening).unwrap().expose_secret(),
            "Corr3ct-horse!"
        );
    }

    #[test]
    fn a_sealed_password_does_not_open_with_another_key() {
        let (sealing, _) = keys();
        let (_, other_opening) = keys();
        let sealed = SealedSecret::seal(&SecretString::from("Corr3ct-horse!"), &sealing).unwrap();
        assert!(matches!(
            sealed.open(&other_opening),
            Err(OpenError::WrongKey)
        ));
    }

    #[test]
    fn the_wire_form_parses_back_to_the_same_secret() {
        let (sealing, _) = keys();
        let sealed = SealedSecret::seal(&SecretString::from("p"), &sealing).unwrap();
        assert_eq!(
            SealedSecret::parse(&sealed.to_wire_string()).unwrap(),
            sealed
        );
    }

    #[test]
    fn debug_and_display_never_show_the_secret_or_ciphertext() {
        let (sealing, _) = keys();
        let sealed = SealedSecret::seal(&SecretString::from("Corr3ct-horse!"), &sealing).unwrap();
        assert_eq!(format!("{sealed}"), "[sealed]");
        assert_eq!(format!("{sealed:?}"), "SealedSecret([sealed])");
    }

    #[test]
    fn a_clear_password_with_the_prefix_is_not_a_sealed_secret() {
        let disguised = format!("{SEALED_PREFIX}{}", STANDARD.encode("hunter2"));
        assert_eq!(
            SealedSecret::parse(&disguised).unwrap_err().rule,
            "password.malformed"
        );
    }

    #[test]
    fn a_plain_string_is_not_sealed() {
        assert_eq!(
            SealedSecret::parse("hunter2").unwrap_err().rule,
            "password.not_sealed"
        );
    }

    #[test]
    fn an_empty_or_overlong_password_is_not_sealed() {
        let (sealing, _) = keys();
        assert!(matches!(
            SealedSecret::seal(&SecretString::from(""), &sealing),
            Err(SealError::Empty)
        ));
        let long = "x".repeat(MAX_CLEAR_LENGTH + 1);
        assert!(matches!(
            SealedSecret::seal(&SecretString::from(long), &sealing),
            Err(SealError::TooLong)
        ));
    }

    #[test]
    fn a_longest_password_in_four_byte_characters_fits_the_wire_limit() {
        let (sealing, _) = keys();
        let long = "😀".repeat(MAX_CLEAR_LENGTH);
        let sealed = SealedSecret::seal(&SecretString::from(long), &sealing).unwrap();
        assert!(SealedSecret::parse(&sealed.to_wire_string()).is_ok());
    }
}
