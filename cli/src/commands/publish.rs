//! `moss publish`: hands one event to the producer's ingest, from a shell or a directory hook.
//! It exits 0 only once the producer answered that the event is stored durably (`202`).
//!
//! It fills `id`, `time` and `source`, and a `sequence` from the clock (microseconds since the
//! epoch) unless `--sequence` is given, so a hook needs only the subject and the data.
//! Passwords are read from standard input, never from the command line (which other users can
//! see in the process list); with the workers' public key at hand they are sealed right here, so
//! the clear text never leaves this process.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::commands::producer::DEFAULT_INGEST_ADDR;
use crate::config::{self, FileConfig, layered};

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    #[command(subcommand)]
    event: EventArgs,
    #[command(flatten)]
    target: TargetArgs,
}

/// Where the producer is, and what fills the envelope.
#[derive(Debug, Args)]
struct TargetArgs {
    /// The producer's ingest address.
    #[arg(long, global = true, env = "MOSS_INGEST_ADDR", value_name = "ADDR")]
    ingest_addr: Option<String>,
    /// File holding the ingest's bearer token.
    #[arg(
        long,
        global = true,
        env = "MOSS_INGEST_TOKEN_FILE",
        value_name = "FILE"
    )]
    ingest_token_file: Option<PathBuf>,
    /// The workers' public key; when set, passwords are sealed before they leave this process.
    #[arg(long, global = true, env = "MOSS_SEAL_PUBLIC_KEY", value_name = "KEY")]
    seal_public_key: Option<String>,
    /// A file holding the workers' public key.
    #[arg(
        long,
        global = true,
        env = "MOSS_SEAL_PUBLIC_KEY_FILE",
        value_name = "FILE"
    )]
    seal_public_key_file: Option<PathBuf>,
    /// The directory's change number for this object (USN, CSN); defaults to the clock in µs.
    #[arg(long, global = true, value_name = "N")]
    sequence: Option<u64>,
    /// The CloudEvents source naming who produced the event.
    #[arg(
        long,
        global = true,
        default_value = "moss-publish",
        value_name = "URI"
    )]
    source: String,
}

/// The subject every event is about.
#[derive(Debug, Args)]
struct SubjectArg {
    /// The directory's immutable id of the user or group (objectGUID / entryUUID).
    #[arg(long, value_name = "GUID")]
    subject: String,
}

/// An online account to create or link.
#[derive(Debug, Args)]
struct OnlineAccountArgs {
    /// The online id (user principal name), e.g. ana@contoso.com.
    #[arg(long, value_name = "UPN")]
    upn: String,
    /// Two-letter country of use, required by Microsoft before a licence is assigned.
    #[arg(long, value_name = "CC")]
    usage_location: String,
    /// A licence (SKU part number, e.g. ENTERPRISEPACK); repeat for several.
    #[arg(long = "license", value_name = "SKU")]
    licenses: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum EventArgs {
    /// A directory user was added (optionally with an online account).
    UserAdded {
        #[command(flatten)]
        subject: SubjectArg,
        /// The directory account name (sAMAccountName / uid).
        #[arg(long, value_name = "NAME")]
        account_name: String,
        /// The display name.
        #[arg(long, value_name = "NAME")]
        display_name: String,
        /// Given name.
        #[arg(long, value_name = "NAME")]
        given_name: Option<String>,
        /// Surname.
        #[arg(long, value_name = "NAME")]
        surname: Option<String>,
        /// The online id to create; without it no online account is made.
        #[arg(long, value_name = "UPN", requires = "usage_location")]
        upn: Option<String>,
        /// Two-letter country of use (with --upn).
        #[arg(long, value_name = "CC")]
        usage_location: Option<String>,
        /// Licences for the online account (with --upn); repeat for several.
        #[arg(long = "license", value_name = "SKU")]
        licenses: Vec<String>,
        /// Read the initial password from standard input (one line).
        #[arg(long, requires = "upn")]
        password_stdin: bool,
    },
    /// A user's password changed: read from standard input, sealed, set online.
    PasswordChanged {
        #[command(flatten)]
        subject: SubjectArg,
        /// Read the new password from standard input (one line). Required: passwords are never arguments.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// A user was deactivated: block sign-in, keep the data.
    Deactivated {
        #[command(flatten)]
        subject: SubjectArg,
        /// Why, for the audit trail.
        #[arg(long, default_value = "deactivated in the directory")]
        reason: String,
    },
    /// A user was reactivated: allow sign-in.
    Reactivated {
        #[command(flatten)]
        subject: SubjectArg,
    },
    /// A user was removed: delete the online account (soft delete).
    Removed {
        #[command(flatten)]
        subject: SubjectArg,
    },
    /// An online account was assigned to a user (new or existing).
    AccountAssigned {
        #[command(flatten)]
        subject: SubjectArg,
        #[command(flatten)]
        account: OnlineAccountArgs,
    },
    /// The online account was unassigned: licences removed, sign-in blocked, mapping kept.
    AccountUnassigned {
        #[command(flatten)]
        subject: SubjectArg,
    },
    /// An email address was added to a user's mailbox.
    AliasAdded {
        #[command(flatten)]
        subject: SubjectArg,
        /// The address, e.g. ana.s@contoso.com.
        #[arg(long, value_name = "ADDRESS")]
        address: String,
    },
    /// An email address was removed from a user's mailbox.
    AliasRemoved {
        #[command(flatten)]
        subject: SubjectArg,
        /// The address.
        #[arg(long, value_name = "ADDRESS")]
        address: String,
    },
    /// A distribution group was created.
    GroupAdded {
        #[command(flatten)]
        subject: SubjectArg,
        /// The group's name.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The mail alias (the part before @).
        #[arg(long, value_name = "ALIAS")]
        alias: String,
        /// A description.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Whether people outside the organisation may mail the group (always sent explicitly).
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
        allow_external_senders: bool,
        /// A member (subject of a user or group); repeat for several.
        #[arg(long = "member", value_name = "GUID")]
        members: Vec<String>,
    },
    /// A distribution group's members changed.
    GroupMembersChanged {
        #[command(flatten)]
        subject: SubjectArg,
        /// A member to add (subject); repeat for several.
        #[arg(long = "add", value_name = "GUID")]
        add: Vec<String>,
        /// A member to remove (subject); repeat for several.
        #[arg(long = "remove", value_name = "GUID")]
        remove: Vec<String>,
    },
    /// A distribution group was removed.
    GroupRemoved {
        #[command(flatten)]
        subject: SubjectArg,
    },
    /// A whole CloudEvent from a file, or `-` for standard input.
    Event {
        /// The file holding one structured-mode CloudEvent.
        #[arg(value_name = "FILE|-")]
        file: String,
    },
}

pub(crate) async fn run(args: PublishArgs, file: &FileConfig) -> Result<()> {
    let target = &args.target;
    let ingest_addr = layered(target.ingest_addr.clone(), file.ingest_addr.clone(), || {
        DEFAULT_INGEST_ADDR.to_owned()
    });
    let ingest_addr = config::socket_addr(&ingest_addr, "MOSS_INGEST_ADDR")?;
    let sealing_key = config::sealing_key(
        target.seal_public_key.clone(),
        target.seal_public_key_file.clone(),
        file,
    )?;
    let token = match target
        .ingest_token_file
        .clone()
        .or_else(|| file.ingest_token_file.clone())
    {
        Some(path) => Some(config::read_secret_file(&path, "MOSS_INGEST_TOKEN_FILE")?),
        None => std::env::var("MOSS_INGEST_TOKEN")
            .ok()
            .filter(|token| !token.is_empty())
            .map(SecretString::from),
    };

    let body: Zeroizing<Vec<u8>> = match args.event {
        EventArgs::Event { file: path } => Zeroizing::new(read_event_file(&path)?),
        event => {
            let (event_type, subject, data) = event_data(event, sealing_key.as_ref(), ingest_addr)?;
            let sequence = target.sequence.unwrap_or_else(clock_sequence);
            let envelope = json!({
                "specversion": "1.0",
                "id": uuid::Uuid::now_v7().to_string(),
                "source": target.source,
                "type": event_type,
                "subject": subject,
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "sequence": sequence.to_string(),
                "datacontenttype": "application/json",
                "data": data,
            });
            Zeroizing::new(serde_json::to_vec(&envelope).context("could not encode the event")?)
        }
    };

    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("could not start an HTTP client")?;
    let mut request = client
        .post(format!("http://{ingest_addr}/v1/events"))
        .header("content-type", moss_producer::SINGLE_CONTENT_TYPE)
        .body(body.to_vec());
    if let Some(token) = &token {
        request = request.bearer_auth(token.expose_secret());
    }
    let response = request.send().await.with_context(|| {
        format!("could not reach the producer at {ingest_addr}; is `moss producer` or `moss up` running there?")
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.as_u16() == 202 {
        let ids = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|value| value.get("accepted").cloned())
            .and_then(|accepted| accepted.as_array().cloned())
            .unwrap_or_default();
        for id in ids {
            println!("{}", id.as_str().unwrap_or_default());
        }
        return Ok(());
    }
    bail!("{}", describe_refusal(status.as_u16(), &text))
}

/// One sentence (plus one line per violation) for a refused event.
fn describe_refusal(status: u16, body: &str) -> String {
    let problem: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let detail = problem
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or(body)
        .to_owned();
    let mut text = format!("the producer refused the event ({status}): {detail}");
    if let Some(errors) = problem.get("errors").and_then(Value::as_array) {
        for error in errors {
            let pointer = error.get("pointer").and_then(Value::as_str).unwrap_or("");
            let rule = error.get("rule").and_then(Value::as_str).unwrap_or("");
            let detail = error.get("detail").and_then(Value::as_str).unwrap_or("");
            text.push_str(&format!("\n  {pointer}: {detail} [{rule}]"));
        }
    }
    text
}

fn read_event_file(path: &str) -> Result<Vec<u8>> {
    if path == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("could not read the event from standard input")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("could not read the event file {path}"))
}

/// Microseconds since the epoch: increasing for a hook that publishes changes as they happen.
fn clock_sequence() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0)
}

/// Reads one line from standard input as a password, and seals it when the key is known.
fn password_from_stdin(
    sealing_key: Option<&moss_schemas::SealingKey>,
    ingest: std::net::SocketAddr,
) -> Result<Value> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .context("could not read the password from standard input")?;
    let clear = line.trim_end_matches(['\r', '\n']);
    if clear.is_empty() {
        bail!("standard input held no password");
    }
    let secret = SecretString::from(clear.to_owned());
    match sealing_key {
        Some(key) => {
            let sealed = moss_schemas::SealedSecret::seal(&secret, key)
                .context("could not seal the password")?;
            Ok(Value::String(sealed.to_wire_string()))
        }
        None if ingest.ip().is_loopback() => Ok(json!({ "clear": secret.expose_secret() })),
        None => bail!(
            "the producer at {ingest} is not on this machine, so the password must be sealed here; set MOSS_SEAL_PUBLIC_KEY (or MOSS_SEAL_PUBLIC_KEY_FILE)"
        ),
    }
}

fn event_data(
    event: EventArgs,
    sealing_key: Option<&moss_schemas::SealingKey>,
    ingest: std::net::SocketAddr,
) -> Result<(&'static str, String, Value)> {
    Ok(match event {
        EventArgs::UserAdded {
            subject,
            account_name,
            display_name,
            given_name,
            surname,
            upn,
            usage_location,
            licenses,
            password_stdin,
        } => {
            let mut data = json!({ "account_name": account_name, "display_name": display_name });
            if let Some(given_name) = given_name {
                data["given_name"] = json!(given_name);
            }
            if let Some(surname) = surname {
                data["surname"] = json!(surname);
            }
            if let Some(upn) = upn {
                data["online_account"] =
                    json!({ "upn": upn, "usage_location": usage_location, "licenses": licenses });
            }
            if password_stdin {
                data["initial_password"] = password_from_stdin(sealing_key, ingest)?;
            }
            ("moss.user.added.v1", subject.subject, data)
        }
        EventArgs::PasswordChanged { subject, .. } => (
            "moss.user.password_changed.v1",
            subject.subject,
            json!({ "password": password_from_stdin(sealing_key, ingest)? }),
        ),
        EventArgs::Deactivated { subject, reason } => (
            "moss.user.deactivated.v1",
            subject.subject,
            json!({ "reason": reason }),
        ),
        EventArgs::Reactivated { subject } => {
            ("moss.user.reactivated.v1", subject.subject, json!({}))
        }
        EventArgs::Removed { subject } => ("moss.user.removed.v1", subject.subject, json!({})),
        EventArgs::AccountAssigned { subject, account } => (
            "moss.online_account.assigned.v1",
            subject.subject,
            json!({ "upn": account.upn, "usage_location": account.usage_location, "licenses": account.licenses }),
        ),
        EventArgs::AccountUnassigned { subject } => (
            "moss.online_account.unassigned.v1",
            subject.subject,
            json!({}),
        ),
        EventArgs::AliasAdded { subject, address } => (
            "moss.user.alias_added.v1",
            subject.subject,
            json!({ "address": address }),
        ),
        EventArgs::AliasRemoved { subject, address } => (
            "moss.user.alias_removed.v1",
            subject.subject,
            json!({ "address": address }),
        ),
        EventArgs::GroupAdded {
            subject,
            name,
            alias,
            description,
            allow_external_senders,
            members,
        } => {
            let mut data = json!({
                "name": name,
                "alias": alias,
                "allow_external_senders": allow_external_senders,
                "members": members,
            });
            if let Some(description) = description {
                data["description"] = json!(description);
            }
            ("moss.group.added.v1", subject.subject, data)
        }
        EventArgs::GroupMembersChanged {
            subject,
            add,
            remove,
        } => (
            "moss.group.members_changed.v1",
            subject.subject,
            json!({ "add": add, "remove": remove }),
        ),
        EventArgs::GroupRemoved { subject } => {
            ("moss.group.removed.v1", subject.subject, json!({}))
        }
        EventArgs::Event { .. } => {
            bail!("a whole event is read from its file, not built from flags")
        }
    })
}
