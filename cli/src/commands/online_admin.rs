//! What `moss aliases` and `moss groups` share: they read the tenant (through moss-online) to
//! check an operator's request and to show a plan, and then publish events through the
//! producer's ingest like `moss publish`, so that every change still goes through the queue, the
//! ledger and the dead letters. Nothing is published before every check has passed.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use clap::Args;
use moss_online::{OnlineClient, UserKey, UserPrincipalName, UserProperty};
use moss_schemas::Subject;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::commands::accounts::ingest::{Ingest, IngestArgs};
use crate::commands::emulator::DEFAULT_EMULATOR_LISTEN;
use crate::commands::worker::TenantArgs;
use crate::config::{self, FileConfig};

/// The CloudEvents `source` of events these commands publish.
const SOURCE: &str = "moss-cli";

/// Where the producer is, and whether to ask before publishing.
#[derive(Debug, Args)]
pub(crate) struct PublishTarget {
    /// Where the producer is.
    #[command(flatten)]
    ingest: IngestArgs,
    /// Publish without asking (the plan is still shown).
    #[arg(long)]
    pub(crate) yes: bool,
}

/// The tenant's client, from the same settings a worker uses. With no tenant configured,
/// `moss up` serves the emulator, so these commands talk to that.
pub(crate) async fn online_client(tenant: &TenantArgs, file: &FileConfig) -> Result<OnlineClient> {
    let config = if tenant.configured(file) {
        tenant.online_config(file)?
    } else {
        emulator_config(file).await?
    };
    OnlineClient::new(config).context("the tenant settings are not usable")
}

/// The emulator `moss up` starts when no tenant is configured, at `MOSS_EMULATOR_LISTEN`; its
/// tenant and app credentials come from its `/_emulator/tenant` control page.
async fn emulator_config(file: &FileConfig) -> Result<moss_online::OnlineConfig> {
    let listen = std::env::var("MOSS_EMULATOR_LISTEN")
        .ok()
        .filter(|value| !value.is_empty())
        .or_else(|| file.emulator_listen.clone())
        .unwrap_or_else(|| DEFAULT_EMULATOR_LISTEN.to_owned());
    let addr = config::socket_addr(&listen, "MOSS_EMULATOR_LISTEN")?;
    let base = format!("http://{addr}");
    let unreachable = || {
        format!(
            "no tenant is configured (MOSS_TENANT_ID) and no emulator answers at {base}; set the tenant, or start `moss up`"
        )
    };
    let tenant: Value = reqwest::Client::new()
        .get(format!("{base}/_emulator/tenant"))
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .with_context(unreachable)?
        .error_for_status()
        .with_context(unreachable)?
        .json()
        .await
        .with_context(unreachable)?;
    let field = |name: &str| {
        tenant
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(unreachable)
    };
    eprintln!("moss: no tenant is configured (MOSS_TENANT_ID); using the emulator at {base}");
    Ok(moss_online::OnlineConfig::new(
        field("tenant_id")?,
        field("client_id")?,
        SecretString::from(field("client_secret")?),
    )
    .with_single_base_url(&base))
}

/// Turns a failed read of the tenant into one sentence.
#[allow(
    clippy::needless_pass_by_value,
    reason = "used as `map_err(tenant_error)`, which hands the error over by value"
)]
pub(crate) fn tenant_error(error: moss_online::OnlineError) -> anyhow::Error {
    anyhow::anyhow!("could not read the tenant: {error}")
}

/// A user with an online account that moss manages: its directory subject is the anchor moss
/// wrote on it (`onPremisesImmutableId`).
#[derive(Debug, Clone)]
pub(crate) struct OnlineUser {
    pub(crate) subject: Subject,
    pub(crate) upn: String,
    pub(crate) id: String,
}

const USER_SELECT: &[UserProperty] = &[
    UserProperty::UserPrincipalName,
    UserProperty::OnPremisesImmutableId,
];

/// Finds a user by subject (the directory's GUID) or by online id (UPN), as the mapping
/// knows it: the tenant holds the same link in the user's anchor.
pub(crate) async fn find_user(online: &OnlineClient, text: &str) -> Result<Option<OnlineUser>> {
    let text = text.trim();
    let user = if let Ok(subject) = Subject::parse(text) {
        let anchor = moss_online::Anchor::parse(&subject.to_string())
            .with_context(|| format!("{text} is not a usable subject"))?;
        online
            .find_user_by_anchor(&anchor, USER_SELECT)
            .await
            .map_err(tenant_error)?
    } else if text.contains('@') {
        let upn = UserPrincipalName::parse(text)
            .map_err(|error| anyhow::anyhow!("{text} is not a user principal name: {error}"))?;
        online
            .get_user(&UserKey::Upn(upn), USER_SELECT)
            .await
            .map_err(tenant_error)?
    } else {
        return Ok(None);
    };
    let Some(user) = user else {
        return Ok(None);
    };
    let upn = user.user_principal_name.clone().unwrap_or_default();
    let Some(subject) = user
        .on_premises_immutable_id
        .as_deref()
        .and_then(|anchor| Subject::parse(anchor).ok())
    else {
        bail!(
            "the online account {upn} is not linked to a directory user (it carries no moss anchor), so moss does not manage it"
        );
    };
    Ok(Some(OnlineUser {
        subject,
        upn,
        id: user.id.to_string(),
    }))
}

/// Like [`find_user`], but a user who is not there is an error naming what was typed.
pub(crate) async fn require_user(online: &OnlineClient, text: &str) -> Result<OnlineUser> {
    match find_user(online, text).await? {
        Some(user) => Ok(user),
        None if Subject::parse(text.trim()).is_ok() => {
            bail!("USER {text}: no online account carries this directory subject")
        }
        None if text.contains('@') => bail!("USER {text}: there is no online account with this id"),
        None => bail!(
            "USER {text}: give the user's directory subject (a GUID) or online id (name@domain)"
        ),
    }
}

/// A CloudEvent for the producer, with `id`, `time` and a clock `sequence` filled in as
/// `moss publish` does.
pub(crate) fn envelope(event_type: &str, subject: &Subject, data: Value) -> Value {
    let sequence = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
    let mut event = json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": SOURCE,
        "type": event_type,
        "subject": subject.to_string(),
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "sequence": sequence.to_string(),
        "datacontenttype": "application/json",
    });
    event["data"] = data;
    event
}

/// Asks on the terminal unless `--yes`; without a terminal, `--yes` is required.
pub(crate) fn confirm(target: &PublishTarget, events: usize) -> Result<()> {
    if target.yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "nothing was published: standard input is not a terminal to ask on; pass --yes to publish the plan"
        );
    }
    print!(
        "publish {events} event{}? [y/N] ",
        if events == 1 { "" } else { "s" }
    );
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("could not read the answer")?;
    if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
        bail!("nothing was published");
    }
    Ok(())
}

/// Hands the events to the producer in order, through the same ingest client as `moss
/// accounts` (batches each stored whole before `202`). Prints each accepted event's type and id.
pub(crate) async fn publish(
    target: &PublishTarget,
    file: &FileConfig,
    events: &[Value],
) -> Result<()> {
    let ingest = Ingest::resolve(&target.ingest, file)?;
    let accepted = ingest.publish(events).await?;
    for event in events {
        let id = event["id"].as_str().unwrap_or_default();
        if accepted.iter().any(|accepted| accepted == id) {
            println!(
                "published {} {id}",
                event["type"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}
