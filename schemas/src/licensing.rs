//! What a licence assignment needs: SKU part numbers and a usage location.

use schemars::json_schema;

use crate::text::{check_length, ignore_ascii_case, text_newtype};
use crate::violation::ValueError;

/// A licence by its SKU part number (`skuPartNumber` in `/subscribedSkus`, e.g.
/// `ENTERPRISEPACK`, `SPE_E3`, `Microsoft_365_E5_(no_Teams)`): 1..=128 characters of letters,
/// digits and `_ . ( ) + -`, beginning with a letter or digit.
///
/// Part numbers rather than `skuId` GUIDs: they are what administrators write in a directory
/// and read in logs, and the worker resolves them through the tenant's (cached)
/// `/subscribedSkus`, which fails loudly for a SKU the tenant does not own. Compared
/// case-insensitively.
#[derive(Debug, Clone)]
pub struct SkuPartNumber(String);

impl SkuPartNumber {
    /// Longest part number accepted.
    pub const MAX_LENGTH: usize = 128;

    fn check(text: &str) -> Result<(), ValueError> {
        check_length(text, "sku.length", 1, Self::MAX_LENGTH)?;
        let allowed = |byte: u8| byte.is_ascii_alphanumeric() || b"_.()+-".contains(&byte);
        let first_is_alphanumeric = text
            .bytes()
            .next()
            .is_some_and(|byte| byte.is_ascii_alphanumeric());
        if !first_is_alphanumeric || !text.bytes().all(allowed) {
            return Err(ValueError::new(
                "sku.format",
                "a SKU part number is letters, digits and _ . ( ) + - beginning with a letter or digit, as in ENTERPRISEPACK",
            ));
        }
        Ok(())
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

ignore_ascii_case!(SkuPartNumber);

text_newtype!(
    SkuPartNumber,
    "SkuPartNumber",
    json_schema!({
        "description": "A licence's SKU part number as in /subscribedSkus (e.g. ENTERPRISEPACK): letters, digits and _ . ( ) + -, beginning with a letter or digit.",
        "type": "string",
        "minLength": 1,
        "maxLength": 128,
        "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.()+-]*$",
    })
);

/// Where the user mainly uses the services (Entra `usageLocation`): an ISO 3166-1 alpha-2 code
/// in upper case such as `NL`. Whether the code is assigned is the tenant's to judge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsageLocation(String);

impl UsageLocation {
    fn check(text: &str) -> Result<(), ValueError> {
        if text.len() != 2 || !text.bytes().all(|byte| byte.is_ascii_uppercase()) {
            return Err(ValueError::new(
                "usage_location.format",
                "a usage location is an ISO 3166-1 alpha-2 code of two upper-case letters, as in NL",
            ));
        }
        Ok(())
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

text_newtype!(
    UsageLocation,
    "UsageLocation",
    json_schema!({
        "description": "An ISO 3166-1 alpha-2 country code in upper case, as in NL.",
        "type": "string",
        "pattern": "^[A-Z]{2}$",
    })
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_part_numbers_compare_without_case() {
        assert_eq!(
            SkuPartNumber::parse("spe_e3").unwrap(),
            SkuPartNumber::parse("SPE_E3").unwrap()
        );
    }

    #[test]
    fn a_lower_case_usage_location_is_refused() {
        assert_eq!(
            UsageLocation::parse("nl").unwrap_err().rule,
            "usage_location.format"
        );
    }
}
