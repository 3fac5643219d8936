//! `moss accounts assign` and `unassign`: one directory user and an online account, new or
//! existing. Unassigning frees the licences and blocks sign-in but keeps the link, so that a
//! later `assign` gives the same account back.

use anyhow::{Result, bail};
use clap::{ArgGroup, Args};
use moss_schemas::{Subject, Upn, UsageLocation};
use serde_json::json;

use super::ingest::{Ingest, IngestArgs, envelope};
use super::tenant_view::TenantView;
use super::{TenantReadArgs, confirm};
use crate::config::FileConfig;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("account").required(true).args(["new", "existing"])))]
pub(crate) struct AssignArgs {
    /// The directory user (objectGUID / entryUUID).
    #[arg(long, value_name = "GUID")]
    subject: String,
    /// Create this online account (its domain must be one the tenant accepted).
    #[arg(long, value_name = "UPN")]
    new: Option<String>,
    /// Link this existing online account (one no other directory user is linked to).
    #[arg(long, value_name = "UPN")]
    existing: Option<String>,
    /// A licence (SKU part number); repeat for several. Without any, the account holds none.
    #[arg(long = "license", value_name = "SKU")]
    licenses: Vec<String>,
    /// Two-letter country of use (default for an existing account: the one it has).
    #[arg(long, value_name = "CC")]
    usage_location: Option<String>,
    #[command(flatten)]
    tenant: TenantReadArgs,
    #[command(flatten)]
    ingest: IngestArgs,
}

#[derive(Debug, Args)]
pub(crate) struct UnassignArgs {
    /// The directory user (objectGUID / entryUUID).
    #[arg(long, value_name = "GUID")]
    subject: String,
    /// Do not ask.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    tenant: TenantReadArgs,
    #[command(flatten)]
    ingest: IngestArgs,
}

fn subject_of(text: &str) -> Result<Subject> {
    Subject::parse(text.trim())
        .map_err(|error| anyhow::anyhow!("--subject {text}: {}", error.message))
}

pub(crate) async fn run_assign(args: AssignArgs, file: &FileConfig) -> Result<()> {
    let subject = subject_of(&args.subject)?;
    let (flag, text) = match (&args.new, &args.existing) {
        (Some(upn), _) => ("--new", upn),
        (None, Some(upn)) => ("--existing", upn),
        (None, None) => bail!("say which account: --new UPN or --existing UPN"),
    };
    let upn = Upn::parse(text.trim())
        .map_err(|error| anyhow::anyhow!("{flag} {text}: {}", error.message))?;
    let client = args.tenant.client(file)?;
    let tenant = TenantView::read(&client).await?;
    let skus = tenant.skus_for(&args.licenses)?;
    let online = tenant.user_by_upn(upn.as_str());
    let subject_text = subject.to_string();
    let mut usage_location = args.usage_location.clone();
    match (args.new.is_some(), online) {
        (true, Some(_)) => bail!(
            "--new {upn}: an online account with this id exists already; link it with --existing {upn}"
        ),
        (true, None) => {
            tenant.accepted_domain(Some(upn.domain().as_str())).map_err(|_| {
                anyhow::anyhow!(
                    "--new {upn}: the tenant has not accepted the domain {}; its domains are: {}",
                    upn.domain(),
                    tenant
                        .domains
                        .iter()
                        .filter(|d| d.is_verified)
                        .map(|d| d.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        }
        (false, None) => bail!(
            "--existing {upn}: the tenant has no online account with this id; create one with --new {upn}"
        ),
        (false, Some(user)) => {
            if let Some(anchor) = &user.on_premises_immutable_id
                && !anchor.eq_ignore_ascii_case(&subject_text)
            {
                bail!(
                    "--existing {upn}: this online account is linked to another directory user ({anchor})"
                );
            }
            if usage_location.is_none() {
                usage_location.clone_from(&user.usage_location);
            }
        }
    }
    if let Some(linked) = tenant.user_by_anchor(&subject_text)
        && linked
            .user_principal_name
            .as_deref()
            .is_some_and(|name| !name.eq_ignore_ascii_case(upn.as_str()))
    {
        bail!(
            "--subject {subject}: this directory user already has the online account {}; unassign it first",
            linked.user_principal_name.as_deref().unwrap_or("?")
        );
    }
    let Some(usage_location) = usage_location else {
        bail!(
            "--usage-location: name the two-letter country where {upn} is used (licences need it)"
        );
    };
    let usage_location = UsageLocation::parse(usage_location.trim())
        .map_err(|error| anyhow::anyhow!("--usage-location {usage_location}: {}", error.message))?;
    let ingest = Ingest::resolve(&args.ingest, file)?;
    for (part, sku) in &skus {
        if sku.available_units() < 1 {
            println!(
                "{part}: no seat is free; {upn} will await a licence until one frees or seats are added"
            );
        }
    }
    let licenses: Vec<&str> = skus.iter().map(|(part, _)| part.as_str()).collect();
    let event = envelope(
        "moss.online_account.assigned.v1",
        &subject_text,
        json!({
            "upn": upn.as_str(),
            "usage_location": usage_location.as_str(),
            "licenses": licenses,
        }),
    );
    let accepted = ingest.publish(&[event]).await?;
    println!(
        "assigning {} online account {upn} to {subject} ({}): event {}",
        if args.new.is_some() {
            "the new"
        } else {
            "the existing"
        },
        if licenses.is_empty() {
            "no licences".to_owned()
        } else {
            licenses.join(", ")
        },
        accepted.first().map_or("?", String::as_str)
    );
    Ok(())
}

pub(crate) async fn run_unassign(args: UnassignArgs, file: &FileConfig) -> Result<()> {
    let subject = subject_of(&args.subject)?;
    let client = args.tenant.client(file)?;
    let tenant = TenantView::read(&client).await?;
    let Some(user) = tenant.user_by_anchor(&subject.to_string()) else {
        bail!("--subject {subject}: no online account is linked to this directory user");
    };
    let upn = user.user_principal_name.as_deref().unwrap_or("?");
    let held: Vec<String> = user
        .assigned_licenses
        .iter()
        .map(|licence| {
            tenant
                .part_number_of(licence.sku_id)
                .unwrap_or_else(|| licence.sku_id.to_string())
        })
        .collect();
    println!(
        "unassign {upn} from {subject}: licences freed ({}), sign-in blocked, the link kept",
        if held.is_empty() {
            "none held".to_owned()
        } else {
            held.join(", ")
        }
    );
    let ingest = Ingest::resolve(&args.ingest, file)?;
    if !confirm(args.yes, &format!("Unassign {upn}?"))? {
        println!("nothing was published");
        return Ok(());
    }
    let event = envelope(
        "moss.online_account.unassigned.v1",
        &subject.to_string(),
        json!({}),
    );
    let accepted = ingest.publish(&[event]).await?;
    println!(
        "published the unassignment: event {}",
        accepted.first().map_or("?", String::as_str)
    );
    Ok(())
}
