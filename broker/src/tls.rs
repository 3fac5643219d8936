//! TLS to RabbitMQ (`amqps://`): which certificate authorities moss trusts besides the system's.
//!
//! lapin speaks TLS with rustls and verifies the server against the operating system's trust
//! store. A broker whose certificate comes from a private CA is trusted by naming that CA's PEM
//! file (`MOSS_AMQP_CA_FILE`); the setting is per process, since every connection a moss
//! process opens (relay, worker, operator commands) goes to the same RabbitMQ.

use std::path::Path;
use std::sync::RwLock;

use crate::error::BrokerError;

static TRUSTED_CA_PEM: RwLock<Option<String>> = RwLock::new(None);

/// Trusts the CA certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks), besides the
/// system's, for every `amqps://` connection this process opens from now on.
///
/// # Errors
///
/// [`BrokerError::InvalidArgument`] when `pem` holds no certificate.
pub fn trust_amqp_ca_pem(pem: &str) -> Result<(), BrokerError> {
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(BrokerError::InvalidArgument {
            field: "MOSS_AMQP_CA_FILE",
            reason: "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        });
    }
    *TRUSTED_CA_PEM
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pem.to_owned());
    Ok(())
}

/// [`trust_amqp_ca_pem`] with the contents of a PEM file.
///
/// # Errors
///
/// [`BrokerError::InvalidArgument`] when the file cannot be read or holds no certificate.
pub fn trust_amqp_ca_file(path: &Path) -> Result<(), BrokerError> {
    let pem = std::fs::read_to_string(path).map_err(|error| BrokerError::InvalidArgument {
        field: "MOSS_AMQP_CA_FILE",
        reason: format!("{} cannot be read: {error}", path.display()),
    })?;
    trust_amqp_ca_pem(&pem)
}

/// Opens a lapin connection, trusting the configured CA for `amqps://`.
pub(crate) async fn connect(
    url: &str,
    properties: lapin::ConnectionProperties,
) -> lapin::Result<lapin::Connection> {
    let cert_chain = TRUSTED_CA_PEM
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let config = lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain,
    };
    lapin::Connection::connect_with_config(
        url,
        properties,
        config,
        lapin::runtime::default_runtime()?,
    )
    .await
}
