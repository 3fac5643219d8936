//! Validated names for the things moss addresses in the tenant.
//!
//! Each type checks its value once, at construction, so that a request never leaves with a
//! malformed UPN or SKU and a bad value is reported naming the field.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A caller-supplied value that is not acceptable, naming the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct FieldError {
    /// The field, in the wire's spelling (`userPrincipalName`, `usageLocation`, …).
    pub field: &'static str,
    /// What is wrong with it, as a lowercase phrase.
    pub problem: String,
}

impl FieldError {
    pub(crate) fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

/// Characters left alone in a path segment: RFC 3986 unreserved. `@` is encoded, as the SDK
/// does (`/users/a.b%40contoso.example`).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment.
pub(crate) fn encode_path_segment(segment: &str) -> String {
    utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

/// A user principal name, `alias@domain`, with the characters Entra ID accepts (§3.1).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserPrincipalName(String);

impl UserPrincipalName {
    /// Checks the form `alias@domain`, the allowed alias characters and the lengths.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        const FIELD: &str = "userPrincipalName";
        let (alias, domain) = value
            .split_once('@')
            .ok_or_else(|| FieldError::new(FIELD, "must have the form alias@domain"))?;
        if alias.is_empty() || alias.len() > 64 {
            return Err(FieldError::new(
                FIELD,
                "must have an alias of 1 to 64 characters",
            ));
        }
        let alias_ok = alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "'.-_!#^~".contains(c));
        if !alias_ok || alias.starts_with('.') || alias.ends_with('.') {
            return Err(FieldError::new(
                FIELD,
                "may use only A-Z a-z 0-9 ' . - _ ! # ^ ~ before the @, not starting or ending with a dot",
            ));
        }
        let domain_ok = domain.len() <= 255
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !domain_ok {
            return Err(FieldError::new(
                FIELD,
                "must end in a domain name such as contoso.com",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The UPN as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`, usable as a default `mailNickname`.
    pub fn alias(&self) -> &str {
        self.0
            .split_once('@')
            .map_or(self.0.as_str(), |(alias, _)| alias)
    }

    /// Whether two UPNs name the same account: Entra compares them case-insensitively.
    pub fn same_account_as(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl TryFrom<String> for UserPrincipalName {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<UserPrincipalName> for String {
    fn from(value: UserPrincipalName) -> Self {
        value.0
    }
}

impl fmt::Display for UserPrincipalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserPrincipalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserPrincipalName({})", self.0)
    }
}

/// The object id Entra ID gives a user (a GUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl UserId {
    /// Parses the GUID form Graph returns.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        Uuid::parse_str(value)
            .map(Self)
            .map_err(|_| FieldError::new("id", "must be a GUID"))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How a call names a user: Graph accepts the object id or the UPN in `/users/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserKey {
    /// The Entra object id.
    Id(UserId),
    /// The user principal name.
    Upn(UserPrincipalName),
}

impl UserKey {
    /// The key as a percent-encoded path segment.
    pub(crate) fn path_segment(&self) -> String {
        match self {
            Self::Id(id) => id.to_string(),
            Self::Upn(upn) => encode_path_segment(upn.as_str()),
        }
    }
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Upn(upn) => upn.fmt(f),
        }
    }
}

impl From<UserId> for UserKey {
    fn from(value: UserId) -> Self {
        Self::Id(value)
    }
}

impl From<UserPrincipalName> for UserKey {
    fn from(value: UserPrincipalName) -> Self {
        Self::Upn(value)
    }
}

/// The sync's identity key on an online user, written to `onPremisesImmutableId`.
///
/// Its value is the directory's immutable id of the user (the event `subject`: objectGUID or
/// entryUUID). `onPremisesImmutableId` is the property Entra itself reserves for exactly this
/// link (Entra Connect's sourceAnchor), it is unique in a tenant, filterable with `eq`, and not
/// owned by HR processes the way `employeeId` often is; Univention's connector uses it the same
/// way (peers.md). A create that meets a UPN conflict adopts the existing user only when this
/// value matches (wire reference §8, §11.4).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Anchor(String);

impl Anchor {
    /// Accepts 1 to 60 printable ASCII characters without spaces (Entra's sourceAnchor limit).
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        const FIELD: &str = "onPremisesImmutableId";
        if value.is_empty() || value.len() > 60 {
            return Err(FieldError::new(FIELD, "must be 1 to 60 characters"));
        }
        if !value.chars().all(|c| c.is_ascii_graphic()) {
            return Err(FieldError::new(
                FIELD,
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The anchor as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Anchor {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Anchor> for String {
    fn from(value: Anchor) -> Self {
        value.0
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Anchor({})", self.0)
    }
}

/// A licence SKU id (the `skuId` GUID of `subscribedSkus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SkuId(pub Uuid);

impl SkuId {
    /// Parses the GUID form.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        Uuid::parse_str(value)
            .map(Self)
            .map_err(|_| FieldError::new("skuId", "must be a GUID"))
    }
}

impl fmt::Display for SkuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An ISO 3166 alpha-2 usage location, required before a licence can be assigned (§3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UsageLocation(String);

impl UsageLocation {
    /// Accepts two ASCII letters and stores them upper-case.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        if value.len() == 2 && value.chars().all(|c| c.is_ascii_alphabetic()) {
            Ok(Self(value.to_ascii_uppercase()))
        } else {
            Err(FieldError::new(
                "usageLocation",
                "must be a two-letter ISO 3166 country code such as NL",
            ))
        }
    }

    /// The code, upper-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UsageLocation {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<UsageLocation> for String {
    fn from(value: UsageLocation) -> Self {
        value.0
    }
}

/// A `mailNickname`: no spaces, at most 64 characters (§3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MailNickname(String);

impl MailNickname {
    /// Accepts 1 to 64 printable ASCII characters outside `@ ( ) \ [ ] " ; : < > ,`.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_graphic() && !"@()\\[]\";:<>,".contains(c));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(FieldError::new(
                "mailNickname",
                "must be 1 to 64 printable ASCII characters without spaces or @ ( ) \\ [ ] \" ; : < > ,",
            ))
        }
    }

    /// The nickname as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MailNickname {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<MailNickname> for String {
    fn from(value: MailNickname) -> Self {
        value.0
    }
}

/// A display name: not empty, at most 256 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    /// Accepts 1 to 256 characters without control characters.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let trimmed = value.trim();
        if trimmed.is_empty()
            || trimmed.chars().count() > 256
            || trimmed.chars().any(char::is_control)
        {
            Err(FieldError::new(
                "displayName",
                "must be 1 to 256 characters without control characters",
            ))
        } else {
            Ok(Self(trimmed.to_owned()))
        }
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DisplayName {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<DisplayName> for String {
    fn from(value: DisplayName) -> Self {
        value.0
    }
}

/// An SMTP address (`local@domain`), used for Exchange aliases and group addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SmtpAddress(String);

impl SmtpAddress {
    /// Accepts `local@domain` with a dotted domain and no spaces or prefix.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        const FIELD: &str = "emailAddress";
        let (local, domain) = value
            .split_once('@')
            .ok_or_else(|| FieldError::new(FIELD, "must have the form name@domain"))?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains(':')
            && value.chars().all(|c| c.is_ascii_graphic())
            && !domain.contains('@')
            && domain.contains('.')
            && domain.split('.').all(|label| !label.is_empty());
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(FieldError::new(
                FIELD,
                "must have the form name@domain without spaces or a prefix",
            ))
        }
    }

    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The secondary proxy-address form Exchange expects for an alias (`smtp:` lower-case).
    pub fn as_secondary_proxy(&self) -> String {
        format!("smtp:{}", self.0)
    }
}

impl TryFrom<String> for SmtpAddress {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SmtpAddress> for String {
    fn from(value: SmtpAddress) -> Self {
        value.0
    }
}

impl fmt::Display for SmtpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How Exchange identifies a recipient or group: UPN, SMTP address, alias, GUID or
/// `ExternalDirectoryObjectId` (§9.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RecipientId(String);

impl RecipientId {
    /// Accepts 1 to 256 characters without control characters.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
            Err(FieldError::new(
                "Identity",
                "must be 1 to 256 characters without control characters",
            ))
        } else {
            Ok(Self(value.to_owned()))
        }
    }

    /// The identity as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RecipientId {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RecipientId> for String {
    fn from(value: RecipientId) -> Self {
        value.0
    }
}

impl From<&UserPrincipalName> for RecipientId {
    fn from(value: &UserPrincipalName) -> Self {
        Self(value.as_str().to_owned())
    }
}

impl From<&SmtpAddress> for RecipientId {
    fn from(value: &SmtpAddress) -> Self {
        Self(value.as_str().to_owned())
    }
}

impl fmt::Display for RecipientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_upn_with_an_allowed_alias_and_a_domain_is_accepted() {
        let upn = UserPrincipalName::parse("o'brien.k-1_x!#^~@contoso.example").unwrap();
        assert_eq!(upn.alias(), "o'brien.k-1_x!#^~");
    }

    #[test]
    fn a_upn_with_accents_or_no_domain_names_the_field() {
        let accent = UserPrincipalName::parse("josé@contoso.example").unwrap_err();
        assert_eq!(accent.field, "userPrincipalName");
        assert!(UserPrincipalName::parse("adele").is_err());
        assert!(UserPrincipalName::parse("adele@localhost").is_err());
        assert!(UserPrincipalName::parse("$adele@contoso.example").is_err());
    }

    #[test]
    fn a_upn_in_a_path_has_its_at_sign_percent_encoded() {
        let key = UserKey::Upn(UserPrincipalName::parse("a.b'c@contoso.example").unwrap());
        assert_eq!(key.path_segment(), "a.b%27c%40contoso.example");
    }

    #[test]
    fn upns_compare_case_insensitively() {
        let upn = UserPrincipalName::parse("AdeleV@Contoso.example").unwrap();
        assert!(upn.same_account_as("adelev@contoso.EXAMPLE"));
    }

    #[test]
    fn a_usage_location_is_stored_upper_case() {
        assert_eq!(UsageLocation::parse("nl").unwrap().as_str(), "NL");
        assert!(UsageLocation::parse("NLD").is_err());
    }

    #[test]
    fn an_anchor_longer_than_sixty_characters_is_refused() {
        assert!(Anchor::parse(&"a".repeat(60)).is_ok());
        assert_eq!(
            Anchor::parse(&"a".repeat(61)).unwrap_err().field,
            "onPremisesImmutableId"
        );
        assert!(Anchor::parse("has space").is_err());
    }

    #[test]
    fn an_alias_address_becomes_a_secondary_smtp_proxy() {
        let address = SmtpAddress::parse("a.vance@contoso.example").unwrap();
        assert_eq!(address.as_secondary_proxy(), "smtp:a.vance@contoso.example");
        assert!(SmtpAddress::parse("smtp:a@contoso.example").is_err());
    }
}
