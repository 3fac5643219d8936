//! `moss accounts bulk-create`: for directory users without an online account, propose
//! `<user name>@<domain>`, show the plan (creates, seats needed against free, conflicts with
//! existing online accounts) and, once confirmed, publish one
//! `moss.online_account.assigned.v1` per create. Users beyond the free seats are created all
//! the same and await a licence in the worker until seats are added.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use moss_schemas::{AccountName, DisplayName};
use moss_schemas::{Upn, UsageLocation};
use serde_json::json;

use super::directory::DirectoryArgs;
use super::directory_users::{self, DirectoryUser, ExportFormat};
use super::ingest::{Ingest, IngestArgs, envelope};
use super::tenant_view::TenantView;
use super::{TenantReadArgs, confirm};
use crate::config::FileConfig;

#[derive(Debug, Args)]
pub(crate) struct BulkCreateArgs {
    /// An export of directory users: CSV with a header row, or a JSON array (columns
    /// subject/objectGUID/entryUUID, account_name/sAMAccountName/uid, and optionally
    /// display_name, upn, usage_location).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "from_directory",
        conflicts_with = "from_directory"
    )]
    input: Option<PathBuf>,
    /// Instead of an export: the users the watcher follows (read from the directory configured
    /// with MOSS_LDAP_*, with the watcher's mapping), less those an online account is linked to.
    #[arg(long)]
    from_directory: bool,
    /// The export's format (default: from the file name, else from its first character).
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<ExportFormat>,
    /// The domain new online ids go in; must be one the tenant accepted (default: the
    /// tenant's custom default domain).
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// A licence (SKU part number, e.g. ENTERPRISEPACK) for every new account; repeat for several.
    #[arg(long = "license", value_name = "SKU")]
    licenses: Vec<String>,
    /// Two-letter country of use for rows that do not name one (licences need it).
    #[arg(long, value_name = "CC")]
    usage_location: Option<String>,
    /// Show the plan and stop.
    #[arg(long)]
    dry_run: bool,
    /// Publish without asking.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    tenant: TenantReadArgs,
    #[command(flatten)]
    ingest: IngestArgs,
    #[command(flatten)]
    directory: DirectoryArgs,
}

/// One proposed create.
#[derive(Debug)]
struct Create {
    subject: String,
    upn: Upn,
    usage_location: UsageLocation,
    display_name: String,
}

/// Why a directory user is left out.
#[derive(Debug)]
struct Skip {
    place: String,
    account_name: String,
    reason: String,
}

pub(crate) async fn run(args: BulkCreateArgs, file: &FileConfig) -> Result<()> {
    if args.licenses.is_empty() {
        bail!(
            "--license: name at least one SKU (e.g. --license ENTERPRISEPACK; `moss licenses` lists them)"
        );
    }
    let default_location = args
        .usage_location
        .as_deref()
        .map(|code| {
            UsageLocation::parse(code.trim())
                .map_err(|error| anyhow::anyhow!("--usage-location {code}: {}", error.message))
        })
        .transpose()?;
    let mut left_out = Vec::new();
    let users = match &args.input {
        Some(path) => directory_users::read(path, args.format)?,
        None => read_directory(&args.directory, &mut left_out).await?,
    };
    let client = args.tenant.client(file)?;
    let tenant = TenantView::read(&client).await?;
    let domain = tenant.accepted_domain(args.domain.as_deref())?;
    let skus = tenant.skus_for(&args.licenses)?;
    let ingest = Ingest::resolve(&args.ingest, file)?;

    let mut creates = Vec::new();
    let mut already = Vec::new();
    let mut conflicts = Vec::new();
    let mut problems = Vec::new();
    let mut proposed: BTreeMap<String, String> = BTreeMap::new();
    for user in &users {
        let subject = user.subject.to_string();
        if let Some(existing) = tenant.user_by_anchor(&subject) {
            already.push(Skip {
                place: user.place.clone(),
                account_name: user.account_name.to_string(),
                reason: format!(
                    "already has the online account {}",
                    existing.user_principal_name.as_deref().unwrap_or("?")
                ),
            });
            continue;
        }
        let upn = match &user.upn {
            Some(upn) => upn.clone(),
            None => match Upn::parse(&format!("{}@{}", user.account_name, domain)) {
                Ok(upn) => upn,
                Err(error) => {
                    problems.push(format!(
                        "{}: account_name: {} cannot be an online id ({})",
                        user.place, user.account_name, error.message
                    ));
                    continue;
                }
            },
        };
        if !tenant
            .domains
            .iter()
            .any(|d| d.is_verified && d.id.eq_ignore_ascii_case(upn.domain().as_str()))
        {
            problems.push(format!(
                "{}: upn: the tenant has not accepted the domain of {upn}",
                user.place
            ));
            continue;
        }
        let Some(usage_location) = user
            .usage_location
            .clone()
            .or_else(|| default_location.clone())
        else {
            problems.push(format!(
                "{}: usage_location: is missing and no --usage-location is given",
                user.place
            ));
            continue;
        };
        let key = upn.as_str().to_ascii_lowercase();
        if let Some(first) = proposed.get(&key) {
            conflicts.push(Skip {
                place: user.place.clone(),
                account_name: user.account_name.to_string(),
                reason: format!("{upn} is proposed for {first} too"),
            });
            continue;
        }
        if let Some(existing) = tenant.user_by_upn(upn.as_str()) {
            let reason = match &existing.on_premises_immutable_id {
                None => format!(
                    "{upn} exists online and no directory user is linked to it (link it with `moss accounts assign --subject {subject} --existing {upn}`)"
                ),
                Some(_) => format!("{upn} exists online, linked to another directory user"),
            };
            conflicts.push(Skip {
                place: user.place.clone(),
                account_name: user.account_name.to_string(),
                reason,
            });
            continue;
        }
        proposed.insert(key, user.place.clone());
        creates.push(Create {
            subject,
            upn,
            usage_location,
            display_name: user
                .display_name
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
        });
    }
    if !problems.is_empty() {
        bail!(
            "{} rows cannot be planned; nothing was published:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }

    println!(
        "bulk-create plan for {} directory users",
        users.len() + left_out.len()
    );
    println!("  domain             {domain}");
    println!("  creates            {}", creates.len());
    println!("  already online     {}", already.len());
    println!("  conflicts          {}", conflicts.len());
    if args.input.is_none() {
        println!("  left out           {}", left_out.len());
    }
    let mut short_of_seats = 0_i64;
    for (part, sku) in &skus {
        let free = sku.available_units();
        let needed = i64::try_from(creates.len()).unwrap_or(i64::MAX);
        let line = format!(
            "  {:<18} {needed} seats needed, {free} free of {}",
            part.as_str(),
            sku.prepaid_units.enabled
        );
        if needed > free {
            short_of_seats = short_of_seats.max(needed - free);
            println!(
                "{line}: {} users will await a licence until seats are added",
                needed - free
            );
        } else {
            println!("{line}");
        }
    }
    const SHOWN: usize = 20;
    if !creates.is_empty() {
        println!("\nto create:");
        for create in creates.iter().take(SHOWN) {
            println!(
                "  {}  {}  {}  {}",
                create.upn, create.usage_location, create.subject, create.display_name
            );
        }
        if creates.len() > SHOWN {
            println!("  … and {} more", creates.len() - SHOWN);
        }
    }
    for (title, skips) in [
        ("conflicts (left out)", &conflicts),
        ("already online (left out)", &already),
        ("not usable from the directory (left out)", &left_out),
    ] {
        if !skips.is_empty() {
            println!("\n{title}:");
            for skip in skips {
                println!("  {}  {}: {}", skip.place, skip.account_name, skip.reason);
            }
        }
    }
    println!();
    if creates.is_empty() {
        println!("nothing to create");
        return Ok(());
    }
    if args.dry_run {
        println!("dry run: nothing was published");
        return Ok(());
    }
    let question = if short_of_seats > 0 {
        format!(
            "Create {} online accounts ({short_of_seats} will await a licence)?",
            creates.len()
        )
    } else {
        format!("Create {} online accounts?", creates.len())
    };
    if !confirm(args.yes, &question)? {
        println!("nothing was published");
        return Ok(());
    }
    let licenses: Vec<&str> = skus.iter().map(|(part, _)| part.as_str()).collect();
    let events: Vec<_> = creates
        .iter()
        .map(|create| {
            envelope(
                "moss.online_account.assigned.v1",
                &create.subject,
                json!({
                    "upn": create.upn.as_str(),
                    "usage_location": create.usage_location.as_str(),
                    "licenses": licenses,
                }),
            )
        })
        .collect();
    let accepted = ingest.publish(&events).await?;
    println!(
        "published {} events; the worker creates the accounts (`moss status` shows progress and users awaiting a licence)",
        accepted.len()
    );
    Ok(())
}

/// The users the watcher follows, read now from the configured directory with its mapping
/// (subject, user name, display name, disabled rule). Disabled users and entries the watcher
/// could not publish either are left out, each named in `left_out`.
async fn read_directory(
    args: &DirectoryArgs,
    left_out: &mut Vec<Skip>,
) -> Result<Vec<DirectoryUser>> {
    let Some(settings) = args.settings()? else {
        bail!(
            "--from-directory: no directory is configured; set MOSS_LDAP_URL, MOSS_LDAP_BASE, MOSS_LDAP_BIND_DN and MOSS_LDAP_PASSWORD_FILE as for the watcher (or use --input with an export)"
        );
    };
    let base = settings.base()?.to_owned();
    let mut directory = settings.connect().await?;
    let (found, unusable) = directory
        .users(&base, &settings.mapping, &settings.subject_attribute)
        .await?;
    directory.close().await;
    for entry in unusable {
        left_out.push(Skip {
            place: entry.dn,
            account_name: String::new(),
            reason: entry.reason,
        });
    }
    let mut users = Vec::new();
    for user in found {
        let mut skip = |reason: String| {
            left_out.push(Skip {
                place: user.dn.clone(),
                account_name: user.account_name.clone(),
                reason,
            });
        };
        if user.disabled {
            skip(format!(
                "disabled in the directory ({})",
                settings.mapping.disabled.attribute
            ));
            continue;
        }
        let account_name = match AccountName::parse(&user.account_name) {
            Ok(name) => name,
            Err(error) => {
                skip(format!(
                    "{}: {}",
                    settings.mapping.account_attribute, error.message
                ));
                continue;
            }
        };
        let display_name = user
            .display_name
            .as_deref()
            .and_then(|name| DisplayName::parse(name).ok());
        users.push(DirectoryUser {
            place: user.dn.clone(),
            subject: user.subject,
            account_name,
            display_name,
            upn: None,
            usage_location: None,
        });
    }
    if users.is_empty() && left_out.is_empty() {
        bail!(
            "--from-directory: the directory at {} holds no {} under {base}",
            settings.url,
            settings.mapping.user_class
        );
    }
    Ok(users)
}
