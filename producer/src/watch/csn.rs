//! The `sequence` of a directory change: OpenLDAP's `entryCSN` as microseconds since the epoch.
//!
//! Microseconds, not the CSN's full text, because `moss publish` (the password hook) stamps its
//! events with the clock in microseconds: a password change made after a directory change then
//! orders after it for the same user, whichever path it came by.

use chrono::NaiveDateTime;

/// Microseconds since the epoch of a CSN such as `20261129005747.520097Z#000000#000#000000`,
/// or `None` when it is not one.
pub(crate) fn csn_micros(csn: &str) -> Option<u64> {
    let stamp = csn.split('#').next()?;
    let parsed = NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M%S%.fZ").ok()?;
    u64::try_from(parsed.and_utc().timestamp_micros()).ok()
}

/// The newest CSN named in a syncprov cookie (`rid=000,csn=…;…`), as microseconds.
pub(crate) fn cookie_micros(cookie: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(cookie).ok()?;
    text.split(',')
        .filter_map(|part| part.strip_prefix("csn="))
        .flat_map(|csns| csns.split(';'))
        .filter_map(csn_micros)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csn_becomes_microseconds_since_the_epoch() {
        assert_eq!(
            csn_micros("20261129005747.520097Z#000000#000#000000"),
            Some(1_795_913_867_520_097)
        );
        assert_eq!(csn_micros("not a csn"), None);
    }

    #[test]
    fn a_cookie_gives_its_newest_csn() {
        let cookie =
            b"rid=000,csn=20261129005747.520097Z#000000#000#000000;20261129005748.000001Z#000000#001#000000";
        assert_eq!(cookie_micros(cookie), Some(1_795_913_868_000_001));
        assert_eq!(cookie_micros(b"rid=000"), None);
    }
}
