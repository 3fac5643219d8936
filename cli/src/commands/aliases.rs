//! `moss aliases add | remove USER ADDRESS`: more email addresses for a user's Exchange Online
//! mailbox. USER is the directory subject or the online id. The address's domain must be one
//! the tenant accepts, and the address must not belong to another recipient: both are checked
//! against the tenant before anything is published. The worker then waits for the mailbox if
//! Exchange is still provisioning it.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use moss_online::{OnlineClient, RecipientId, SmtpAddress};
use serde_json::json;

use crate::commands::online_admin::{
    PublishTarget, confirm, envelope, online_client, publish, require_user, tenant_error,
};
use crate::commands::worker::TenantArgs;
use crate::config::FileConfig;

#[derive(Debug, Subcommand)]
pub(crate) enum AliasesCommand {
    /// Add an email address to a user's mailbox.
    Add(AliasArgs),
    /// Remove an email address (not the primary one) from a user's mailbox.
    Remove(AliasArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AliasArgs {
    /// The user: directory subject (GUID) or online id (name@domain).
    #[arg(value_name = "USER")]
    user: String,
    /// The address, e.g. ana.s@contoso.com.
    #[arg(value_name = "ADDRESS")]
    address: String,
    #[command(flatten)]
    tenant: TenantArgs,
    #[command(flatten)]
    target: PublishTarget,
}

pub(crate) async fn run(command: AliasesCommand, file: &FileConfig) -> Result<()> {
    let (adding, args) = match command {
        AliasesCommand::Add(args) => (true, args),
        AliasesCommand::Remove(args) => (false, args),
    };
    let address = SmtpAddress::parse(args.address.trim()).map_err(|_| {
        anyhow::anyhow!(
            "ADDRESS {:?} is not an email address of the form name@domain",
            args.address
        )
    })?;
    let online = online_client(&args.tenant, file).await?;
    accepted_domain(&online, &address).await?;
    let user = require_user(&online, &args.user).await?;
    let identity = RecipientId::parse(&user.upn)
        .map_err(|error| anyhow::anyhow!("the online id {} is not usable: {error}", user.upn))?;
    let mailbox = online.get_mailbox(&identity).await.map_err(tenant_error)?;
    let has = mailbox
        .as_ref()
        .is_some_and(|mailbox| mailbox.has_address(&address));

    let event_type = if adding {
        if has {
            println!("{} already has {address}; nothing to publish", user.upn);
            return Ok(());
        }
        held_by_another(&online, &address, &user.id).await?;
        "moss.user.alias_added.v1"
    } else {
        let Some(mailbox) = &mailbox else {
            println!(
                "{} has no mailbox, so no address {address}; nothing to publish",
                user.upn
            );
            return Ok(());
        };
        if !has {
            println!("{} does not have {address}; nothing to publish", user.upn);
            return Ok(());
        }
        let primary = mailbox
            .primary_smtp_address
            .as_deref()
            .is_some_and(|primary| primary.eq_ignore_ascii_case(address.as_str()));
        if primary {
            bail!(
                "ADDRESS {address} is the primary address of {}'s mailbox; moss adds and removes only the other addresses",
                user.upn
            );
        }
        "moss.user.alias_removed.v1"
    };

    println!(
        "plan: {} {address} {} the mailbox of {}",
        if adding { "add" } else { "remove" },
        if adding { "to" } else { "from" },
        user.upn
    );
    println!("  user subject  {}", user.subject);
    if mailbox.is_none() {
        println!(
            "  mailbox       not there yet: the worker waits while Exchange provisions it (a user without a licence gets none)"
        );
    }
    println!("1 event: {event_type}");
    confirm(&args.target, 1)?;
    let event = envelope(
        event_type,
        &user.subject,
        json!({ "address": address.as_str() }),
    );
    publish(&args.target, file, &[event]).await
}

/// Refuses an address whose domain the tenant does not accept (verified domains carry
/// addresses; the domain comparison ignores case).
async fn accepted_domain(online: &OnlineClient, address: &SmtpAddress) -> Result<()> {
    let domain = address
        .as_str()
        .rsplit_once('@')
        .map(|(_, domain)| domain)
        .unwrap_or_default();
    let domains = online.list_domains().await.map_err(tenant_error)?;
    let accepted: Vec<&str> = domains
        .iter()
        .filter(|candidate| candidate.is_verified)
        .map(|candidate| candidate.id.as_str())
        .collect();
    if accepted
        .iter()
        .any(|candidate| candidate.eq_ignore_ascii_case(domain))
    {
        return Ok(());
    }
    bail!(
        "ADDRESS {address}: the domain {domain} is not an accepted domain of the tenant (accepted: {})",
        accepted.join(", ")
    )
}

/// Refuses an address another mailbox or a group already answers to.
async fn held_by_another(
    online: &OnlineClient,
    address: &SmtpAddress,
    user_id: &str,
) -> Result<()> {
    let identity = RecipientId::parse(address.as_str())
        .map_err(|error| anyhow::anyhow!("ADDRESS {address}: {error}"))?;
    if let Some(other) = online.get_mailbox(&identity).await.map_err(tenant_error)?
        && other.has_address(address)
        && other
            .external_directory_object_id
            .as_deref()
            .is_none_or(|id| !id.eq_ignore_ascii_case(user_id))
    {
        bail!(
            "ADDRESS {address} already belongs to the mailbox of {}",
            other
                .user_principal_name
                .as_deref()
                .or(other.alias.as_deref())
                .unwrap_or("another user")
        );
    }
    if let Some(group) = online
        .get_distribution_group(&identity)
        .await
        .map_err(tenant_error)?
    {
        bail!(
            "ADDRESS {address} already belongs to the distribution group {}",
            group.name
        );
    }
    Ok(())
}
