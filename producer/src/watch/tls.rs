//! TLS to the directory: `ldaps://`, or StartTLS on `ldap://`, checked against the system's
//! roots or, with a CA file, against that CA alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnSettings, LdapError};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use super::ldap::WatchError;

/// How the watcher protects its connection to the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LdapTls {
    /// Upgrade an `ldap://` connection with StartTLS (RFC 4513) before binding.
    pub starttls: bool,
    /// PEM file of the CA (or CAs) that signed the directory's certificate; when set, only these
    /// are trusted, otherwise the system's roots are.
    pub ca_file: Option<PathBuf>,
}

/// The URL's scheme, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Ldap,
    Ldaps,
    Ldapi,
}

/// Checks the URL and the TLS settings together and builds ldap3's connection settings.
pub(crate) fn connection_settings(
    url: &str,
    tls: &LdapTls,
) -> Result<LdapConnSettings, WatchError> {
    let scheme = if url.starts_with("ldaps://") {
        Scheme::Ldaps
    } else if url.starts_with("ldap://") {
        Scheme::Ldap
    } else if url.starts_with("ldapi://") {
        Scheme::Ldapi
    } else {
        return Err(WatchError::Setting {
            field: "url",
            reason: format!(
                "{url:?} must start with ldap://, ldaps:// (TLS) or ldapi:// (a local socket)"
            ),
        });
    };
    if tls.starttls && scheme != Scheme::Ldap {
        return Err(WatchError::Setting {
            field: "starttls",
            reason: "StartTLS upgrades an ldap:// connection; with ldaps:// the connection is already TLS and ldapi:// is a local socket".to_owned(),
        });
    }
    if tls.ca_file.is_some() && scheme != Scheme::Ldaps && !tls.starttls {
        return Err(WatchError::Setting {
            field: "ca_file",
            reason: "a CA file is only used with ldaps:// or StartTLS; this connection would not use TLS at all".to_owned(),
        });
    }
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(Duration::from_secs(10))
        .set_starttls(tls.starttls);
    if let Some(path) = &tls.ca_file {
        settings = settings.set_config(Arc::new(client_config(path)?));
    }
    Ok(settings)
}

/// A TLS client configuration trusting only the certificates in the PEM file at `path`.
fn client_config(path: &Path) -> Result<rustls::ClientConfig, WatchError> {
    let unusable = |reason: String| WatchError::Setting {
        field: "ca_file",
        reason: format!("{}: {reason}", path.display()),
    };
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| unusable(format!("cannot read it ({error})")))?;
    for certificate in certificates {
        let certificate =
            certificate.map_err(|error| unusable(format!("not a PEM certificate ({error})")))?;
        roots
            .add(certificate)
            .map_err(|error| unusable(format!("a certificate in it is unusable ({error})")))?;
    }
    if roots.is_empty() {
        return Err(unusable("it holds no PEM certificate".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| unusable(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// When connecting failed because the directory's certificate was not trusted, why; waiting and
/// retrying cannot cure that, so the watcher stops and says so.
pub(crate) fn certificate_rejected(error: &LdapError) -> Option<String> {
    let rustls_error = match error {
        LdapError::Io { source } => source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }?;
    match rustls_error {
        rustls::Error::InvalidCertificate(reason) => Some(format!("{reason:?}")),
        rustls::Error::NoCertificatesPresented => {
            Some("the server presented no certificate".to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of settings that must be refused (LdapConnSettings is not Debug).
    fn refused(url: &str, tls: &LdapTls) -> WatchError {
        match connection_settings(url, tls) {
            Ok(_) => panic!("{url} with {tls:?} was accepted"),
            Err(error) => error,
        }
    }

    #[test]
    fn tls_settings_that_contradict_the_url_are_refused_naming_the_setting() {
        let starttls = LdapTls {
            starttls: true,
            ca_file: None,
        };
        let error = refused("ldaps://dc1:636/", &starttls);
        assert!(error.to_string().contains("starttls"), "{error}");
        let ca_only = LdapTls {
            starttls: false,
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
        };
        let error = refused("ldap://dc1/", &ca_only);
        assert!(error.to_string().contains("ca_file"), "{error}");
        let error = refused("http://dc1/", &LdapTls::default());
        assert!(error.to_string().contains("ldaps://"), "{error}");
    }

    #[test]
    fn an_unreadable_or_empty_ca_file_is_named() {
        let missing = LdapTls {
            starttls: false,
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
        };
        let error = refused("ldaps://dc1/", &missing);
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = refused(
            "ldaps://dc1/",
            &LdapTls {
                starttls: false,
                ca_file: Some(empty),
            },
        );
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
    }
}
