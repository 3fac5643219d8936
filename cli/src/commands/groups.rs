//! `moss groups add | members | user | remove`: Exchange Online distribution groups, as the
//! Essentials Dashboard managed them. Every command reads the tenant first (the groups, their
//! members, the users' online accounts and mailboxes), refuses a request that cannot work with
//! one sentence, shows a plan, and only then publishes `moss.group.*` events through the
//! producer. `groups user` only reads.
//!
//! A group moss creates here has a subject derived from its name ([`group_subject`]), so that
//! later commands find it by name without the worker's mapping (which only the running worker
//! may open). A group that would contain itself, directly or through nested groups, is refused
//! before anything is published.

use std::collections::{HashMap, HashSet, VecDeque};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use moss_online::{DistributionGroup, DistributionGroupMember, OnlineClient, RecipientId};
use moss_schemas::Subject;
use serde_json::{Value, json};

use crate::commands::online_admin::{
    OnlineUser, PublishTarget, confirm, envelope, find_user, online_client, publish, require_user,
    tenant_error,
};
use crate::commands::worker::TenantArgs;
use crate::config::FileConfig;

/// The UUID namespace of group subjects moss derives from names (UUID version 5 over the
/// lower-cased group name). Part of moss's contract: changing it orphans every such group.
const GROUP_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6d6f_7373_2d67_4072_8f75_7073_2d76_3100);

/// The subject of a group created with `moss groups add NAME`: stable for the name, whatever
/// its case, so `moss groups members NAME` reaches the same group.
pub(crate) fn group_subject(name: &str) -> Subject {
    let uuid = uuid::Uuid::new_v5(&GROUP_NAMESPACE, name.trim().to_lowercase().as_bytes());
    Subject::parse(&uuid.to_string()).unwrap_or_else(|_| unreachable!("a v5 UUID is a subject"))
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// Create a distribution group (name, alias, description, who may mail it, members).
    Add(AddArgs),
    /// Add or remove members: users with online accounts, and other groups.
    Members(MembersArgs),
    /// The groups one user belongs to, directly or through nested groups (reads only).
    User(UserArgs),
    /// Remove a distribution group.
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The group's name (unique, at most 64 characters).
    #[arg(value_name = "NAME")]
    name: String,
    /// The mail alias, the part before @ of the group's address.
    #[arg(long, value_name = "ALIAS")]
    alias: String,
    /// What the group is for.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Whether people outside the organisation may mail the group. Required: Exchange's own
    /// default (internal senders only) is never assumed.
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set, required = true)]
    allow_external_senders: Option<bool>,
    /// A member: a user (subject or online id) or a group (name or subject); repeat for several.
    #[arg(long = "member", value_name = "MEMBER")]
    members: Vec<String>,
    #[command(flatten)]
    tenant: TenantArgs,
    #[command(flatten)]
    target: PublishTarget,
}

#[derive(Debug, Args)]
pub(crate) struct MembersArgs {
    /// The group: its name or subject.
    #[arg(value_name = "GROUP")]
    group: String,
    /// A member to add: a user (subject or online id) or a group (name or subject); repeat.
    #[arg(long = "add", value_name = "MEMBER")]
    add: Vec<String>,
    /// A member to remove; repeat.
    #[arg(long = "remove", value_name = "MEMBER")]
    remove: Vec<String>,
    #[command(flatten)]
    tenant: TenantArgs,
    #[command(flatten)]
    target: PublishTarget,
}

#[derive(Debug, Args)]
pub(crate) struct UserArgs {
    /// The user: directory subject (GUID) or online id (name@domain).
    #[arg(value_name = "USER")]
    user: String,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tenant: TenantArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The group: its name or subject.
    #[arg(value_name = "GROUP")]
    group: String,
    #[command(flatten)]
    tenant: TenantArgs,
    #[command(flatten)]
    target: PublishTarget,
}

pub(crate) async fn run(command: GroupsCommand, file: &FileConfig) -> Result<()> {
    match command {
        GroupsCommand::Add(args) => add(args, file).await,
        GroupsCommand::Members(args) => members(args, file).await,
        GroupsCommand::User(args) => user(args, file).await,
        GroupsCommand::Remove(args) => remove(args, file).await,
    }
}

/// The tenant's distribution groups and their direct members, read once per command.
struct Tenancy {
    groups: Vec<DistributionGroup>,
    /// Direct members by the group's `ExternalDirectoryObjectId`.
    members: HashMap<String, Vec<DistributionGroupMember>>,
}

fn group_id(group: &DistributionGroup) -> String {
    group
        .external_directory_object_id
        .clone()
        .unwrap_or_else(|| group.name.clone())
        .to_lowercase()
}

fn is_group(member: &DistributionGroupMember) -> bool {
    member
        .recipient_type
        .as_deref()
        .is_some_and(|kind| kind.contains("Group"))
}

fn member_id(member: &DistributionGroupMember) -> String {
    member
        .external_directory_object_id
        .clone()
        .or_else(|| member.name.clone())
        .unwrap_or_default()
        .to_lowercase()
}

impl Tenancy {
    async fn read(online: &OnlineClient) -> Result<Tenancy> {
        let groups = online
            .list_distribution_groups()
            .await
            .map_err(tenant_error)?;
        let mut members = HashMap::new();
        for group in &groups {
            let identity = RecipientId::parse(&group.name)
                .map_err(|error| anyhow::anyhow!("group {}: {error}", group.name))?;
            let rows = online
                .get_distribution_group_members(&identity)
                .await
                .map_err(tenant_error)?;
            members.insert(group_id(group), rows);
        }
        Ok(Tenancy { groups, members })
    }

    fn by_id(&self, id: &str) -> Option<&DistributionGroup> {
        self.groups.iter().find(|group| group_id(group) == id)
    }

    /// A group by name, address or subject (a subject matches only groups made by `moss groups add`).
    fn find(&self, text: &str) -> Option<&DistributionGroup> {
        let text = text.trim();
        if let Ok(subject) = Subject::parse(text) {
            return self
                .groups
                .iter()
                .find(|group| group_subject(&group.name) == subject);
        }
        self.groups.iter().find(|group| {
            group.name.eq_ignore_ascii_case(text)
                || group
                    .alias
                    .as_deref()
                    .is_some_and(|alias| alias.eq_ignore_ascii_case(text))
                || group.email_addresses.iter().any(|proxy| {
                    proxy
                        .split_once(':')
                        .map_or(proxy.as_str(), |(_, bare)| bare)
                        .eq_ignore_ascii_case(text)
                })
        })
    }

    fn members_of(&self, group: &DistributionGroup) -> &[DistributionGroupMember] {
        self.members
            .get(&group_id(group))
            .map_or(&[], Vec::as_slice)
    }

    /// The chain of group names from `outer` down to `inner` through nested groups, if `inner`
    /// is inside `outer` (directly or deeper).
    fn path(&self, outer: &DistributionGroup, inner: &DistributionGroup) -> Option<Vec<String>> {
        let target = group_id(inner);
        let mut seen = HashSet::from([group_id(outer)]);
        let mut queue = VecDeque::from([(outer, vec![outer.name.clone()])]);
        while let Some((group, path)) = queue.pop_front() {
            for member in self.members_of(group).iter().filter(|m| is_group(m)) {
                let id = member_id(member);
                let Some(nested) = self.by_id(&id) else {
                    continue;
                };
                let mut next = path.clone();
                next.push(nested.name.clone());
                if id == target {
                    return Some(next);
                }
                if seen.insert(id) {
                    queue.push_back((nested, next));
                }
            }
        }
        None
    }

    /// Every group that holds `member_id` directly, and those that hold them through nesting,
    /// each with the chain it comes through (empty for a direct membership).
    fn memberships(&self, member_id: &str) -> Vec<(&DistributionGroup, Vec<String>)> {
        let mut found: Vec<(&DistributionGroup, Vec<String>)> = Vec::new();
        let mut seen = HashSet::new();
        let mut queue: VecDeque<(String, Vec<String>)> =
            VecDeque::from([(member_id.to_lowercase(), Vec::new())]);
        while let Some((id, via)) = queue.pop_front() {
            for group in &self.groups {
                let holds = self.members_of(group).iter().any(|m| member_id_eq(m, &id));
                if holds && seen.insert(group_id(group)) {
                    found.push((group, via.clone()));
                    let mut next = via.clone();
                    next.push(group.name.clone());
                    queue.push_back((group_id(group), next));
                }
            }
        }
        found
    }
}

fn member_id_eq(member: &DistributionGroupMember, id: &str) -> bool {
    member_id(member) == id
}

/// A member named on the command line.
#[derive(Debug, Clone)]
enum Member {
    User(OnlineUser),
    Group {
        subject: Subject,
        name: String,
        id: String,
    },
}

impl Member {
    fn subject(&self) -> Subject {
        match self {
            Member::User(user) => user.subject,
            Member::Group { subject, .. } => *subject,
        }
    }

    fn id(&self) -> String {
        match self {
            Member::User(user) => user.id.to_lowercase(),
            Member::Group { id, .. } => id.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Member::User(user) => format!("{} (user)", user.upn),
            Member::Group { name, .. } => format!("{name} (group)"),
        }
    }
}

/// A user with an online account (by subject or online id), or a group (by name, address or
/// subject). A user must have a mailbox to be a member of a distribution group.
async fn resolve_member(online: &OnlineClient, tenancy: &Tenancy, text: &str) -> Result<Member> {
    if let Some(user) = find_user(online, text).await? {
        let identity = RecipientId::parse(&user.upn).map_err(|error| {
            anyhow::anyhow!("the online id {} is not usable: {error}", user.upn)
        })?;
        if online
            .get_mailbox(&identity)
            .await
            .map_err(tenant_error)?
            .is_none()
        {
            bail!(
                "MEMBER {text}: {} has no mailbox (not licensed for Exchange, or still being provisioned), so no distribution group can hold them yet",
                user.upn
            );
        }
        return Ok(Member::User(user));
    }
    if let Some(group) = tenancy.find(text) {
        return Ok(Member::Group {
            subject: group_subject(&group.name),
            name: group.name.clone(),
            id: group_id(group),
        });
    }
    bail!(
        "MEMBER {text}: no user with an online account and no distribution group moss created goes by this name, address or subject"
    )
}

/// The group named by GROUP, which must exist.
fn require_group<'a>(tenancy: &'a Tenancy, text: &str) -> Result<&'a DistributionGroup> {
    tenancy.find(text).ok_or_else(|| {
        anyhow::anyhow!(
            "GROUP {text}: there is no distribution group by this name, address or subject (a subject finds only groups made with `moss groups add`)"
        )
    })
}

/// Refuses `member` inside `group` when `group` is `member` or already inside it.
fn refuse_self_containment(
    tenancy: &Tenancy,
    group_name: &str,
    group: Option<&DistributionGroup>,
    member: &Member,
) -> Result<()> {
    let Member::Group { name, id, .. } = member else {
        return Ok(());
    };
    let same =
        name.eq_ignore_ascii_case(group_name) || group.is_some_and(|group| group_id(group) == *id);
    if same {
        bail!("group {group_name} cannot be a member of itself; nothing was published");
    }
    if let (Some(group), Some(nested)) = (group, tenancy.by_id(id))
        && let Some(path) = tenancy.path(nested, group)
    {
        bail!(
            "adding {name} to {group_name} would make {group_name} contain itself ({} → {group_name}); nothing was published",
            path.join(" → ")
        );
    }
    Ok(())
}

/// Each member once, in the order given.
fn distinct(members: Vec<Member>) -> Vec<Member> {
    let mut seen = HashSet::new();
    members
        .into_iter()
        .filter(|member| seen.insert(member.subject()))
        .collect()
}

async fn add(args: AddArgs, file: &FileConfig) -> Result<()> {
    let name = args.name.trim().to_owned();
    let data_check = json!({
        "name": name,
        "alias": args.alias,
        "allow_external_senders": args.allow_external_senders.unwrap_or(false),
        "members": [],
    });
    check_fields(&data_check, args.description.as_deref())?;
    let online = online_client(&args.tenant, file).await?;
    let tenancy = Tenancy::read(&online).await?;
    if let Some(existing) = tenancy.find(&name) {
        bail!(
            "NAME {name}: a distribution group {} already exists",
            existing.name
        );
    }
    if let Some(existing) = tenancy.find(&args.alias) {
        bail!(
            "--alias {}: the distribution group {} already uses it",
            args.alias,
            existing.name
        );
    }
    let mut members = Vec::new();
    for text in &args.members {
        if text.trim().eq_ignore_ascii_case(&name)
            || Subject::parse(text.trim()).is_ok_and(|subject| subject == group_subject(&name))
        {
            bail!("group {name} cannot be a member of itself; nothing was published");
        }
        let member = resolve_member(&online, &tenancy, text).await?;
        refuse_self_containment(&tenancy, &name, None, &member)?;
        members.push(member);
    }
    let members = distinct(members);
    let allow = args.allow_external_senders.unwrap_or(false);
    let subject = group_subject(&name);

    println!("plan: create the distribution group {name}");
    println!("  subject          {subject}");
    println!("  alias            {}", args.alias);
    if let Some(description) = &args.description {
        println!("  description      {description}");
    }
    println!(
        "  outside senders  {}",
        if allow {
            "may mail it"
        } else {
            "refused (internal senders only)"
        }
    );
    for member in &members {
        println!("  member           {}", member.describe());
    }
    println!("1 event: moss.group.added.v1");
    confirm(&args.target, 1)?;
    let mut data = json!({
        "name": name,
        "alias": args.alias,
        "allow_external_senders": allow,
        "members": members.iter().map(|m| m.subject().to_string()).collect::<Vec<_>>(),
    });
    if let Some(description) = &args.description {
        data["description"] = json!(description);
    }
    publish(
        &args.target,
        file,
        &[envelope("moss.group.added.v1", &subject, data)],
    )
    .await
}

/// The schema's own checks of a group's fields, so a bad name or alias is reported here, by
/// field, before the tenant is read.
fn check_fields(data: &Value, description: Option<&str>) -> Result<()> {
    let mut data = data.clone();
    if let Some(description) = description {
        data["description"] = json!(description);
    }
    let event = envelope("moss.group.added.v1", &group_subject("check"), data);
    if let Err(error) = moss_schemas::Envelope::from_json_value(&event) {
        let problems: Vec<String> = error
            .violations
            .iter()
            .map(|violation| {
                let field = violation
                    .pointer
                    .strip_prefix("/data/")
                    .unwrap_or(&violation.pointer)
                    .replace('_', "-");
                format!("{field}: {}", violation.message)
            })
            .collect();
        bail!("the group is not valid: {}", problems.join("; "));
    }
    Ok(())
}

async fn members(args: MembersArgs, file: &FileConfig) -> Result<()> {
    if args.add.is_empty() && args.remove.is_empty() {
        bail!("say what changes: --add MEMBER and/or --remove MEMBER");
    }
    let online = online_client(&args.tenant, file).await?;
    let tenancy = Tenancy::read(&online).await?;
    let group = require_group(&tenancy, &args.group)?;
    let current: HashSet<String> = tenancy.members_of(group).iter().map(member_id).collect();
    let mut add = Vec::new();
    let mut remove = Vec::new();
    let mut skipped = Vec::new();
    for text in &args.add {
        let member = resolve_member(&online, &tenancy, text).await?;
        refuse_self_containment(&tenancy, &group.name, Some(group), &member)?;
        if current.contains(&member.id()) {
            skipped.push(format!("{} is already a member", member.describe()));
        } else {
            add.push(member);
        }
    }
    for text in &args.remove {
        let member = match find_user(&online, text).await? {
            Some(user) => Member::User(user),
            None => match tenancy.find(text) {
                Some(nested) => Member::Group {
                    subject: group_subject(&nested.name),
                    name: nested.name.clone(),
                    id: group_id(nested),
                },
                None => bail!(
                    "MEMBER {text}: no user with an online account and no distribution group goes by this name, address or subject"
                ),
            },
        };
        if current.contains(&member.id()) {
            remove.push(member);
        } else {
            skipped.push(format!("{} is not a member", member.describe()));
        }
    }
    let (add, remove) = (distinct(add), distinct(remove));
    if let Some(both) = add
        .iter()
        .find(|a| remove.iter().any(|r| r.subject() == a.subject()))
    {
        bail!("{} is both added and removed; say one", both.describe());
    }
    println!("plan: change the members of {}", group.name);
    for member in &add {
        println!("  add     {}", member.describe());
    }
    for member in &remove {
        println!("  remove  {}", member.describe());
    }
    for note in &skipped {
        println!("  skip    {note}");
    }
    if add.is_empty() && remove.is_empty() {
        println!("nothing to publish");
        return Ok(());
    }
    println!("1 event: moss.group.members_changed.v1");
    confirm(&args.target, 1)?;
    let data = json!({
        "add": add.iter().map(|m| m.subject().to_string()).collect::<Vec<_>>(),
        "remove": remove.iter().map(|m| m.subject().to_string()).collect::<Vec<_>>(),
    });
    publish(
        &args.target,
        file,
        &[envelope(
            "moss.group.members_changed.v1",
            &group_subject(&group.name),
            data,
        )],
    )
    .await
}

async fn user(args: UserArgs, file: &FileConfig) -> Result<()> {
    let online = online_client(&args.tenant, file).await?;
    let user = require_user(&online, &args.user).await?;
    let tenancy = Tenancy::read(&online).await?;
    let memberships = tenancy.memberships(&user.id);
    if args.json {
        let document = json!({
            "schema": "moss.groups.user.v1",
            "user": user.upn,
            "subject": user.subject.to_string(),
            "groups": memberships.iter().map(|(group, via)| json!({
                "name": group.name,
                "address": group.primary_smtp_address,
                "subject": group_subject(&group.name).to_string(),
                "direct": via.is_empty(),
                "via": via,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    if memberships.is_empty() {
        println!("{} is in no distribution group", user.upn);
        return Ok(());
    }
    println!(
        "{} is in {} distribution group{}:",
        user.upn,
        memberships.len(),
        if memberships.len() == 1 { "" } else { "s" }
    );
    let width = memberships
        .iter()
        .map(|(group, _)| group.name.chars().count())
        .max()
        .unwrap_or(0);
    for (group, via) in &memberships {
        let how = if via.is_empty() {
            "directly".to_owned()
        } else {
            format!("through {}", via.join(" → "))
        };
        println!("  {:<width$}  {how}", group.name);
    }
    Ok(())
}

async fn remove(args: RemoveArgs, file: &FileConfig) -> Result<()> {
    let online = online_client(&args.tenant, file).await?;
    let tenancy = Tenancy::read(&online).await?;
    let group = require_group(&tenancy, &args.group)?;
    let parents: Vec<String> = tenancy
        .memberships(&group_id(group))
        .into_iter()
        .filter(|(_, via)| via.is_empty())
        .map(|(parent, _)| parent.name.clone())
        .collect();
    println!("plan: remove the distribution group {}", group.name);
    println!(
        "  members     {} (they keep their accounts)",
        tenancy.members_of(group).len()
    );
    if !parents.is_empty() {
        println!("  leaves      {}", parents.join(", "));
    }
    println!("1 event: moss.group.removed.v1");
    confirm(&args.target, 1)?;
    publish(
        &args.target,
        file,
        &[envelope(
            "moss.group.removed.v1",
            &group_subject(&group.name),
            json!({}),
        )],
    )
    .await
}
