//! Entra ID users through Graph: read, find by anchor, list, create (adopting our own earlier
//! write), update, block, password, delete, revoke sessions.

use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

use crate::Change;
use crate::client::{Call, OnlineClient, Operation};
use crate::error::{ErrorClass, OnlineError, graph_text};
use crate::identity::{
    Anchor, DisplayName, MailNickname, SkuId, UsageLocation, UserId, UserKey, UserPrincipalName,
};
use crate::throttle::Service;

/// Largest page Graph serves for `/users` (§3.3).
const PAGE_SIZE: &str = "999";

/// A user as Graph returns it. Properties outside the `$select` of the read are `None`/empty.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The Entra object id.
    pub id: UserId,
    /// `userPrincipalName`.
    pub user_principal_name: Option<String>,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `givenName`.
    pub given_name: Option<String>,
    /// `surname`.
    pub surname: Option<String>,
    /// `mail`, set once Exchange provisions a mailbox.
    pub mail: Option<String>,
    /// `mailNickname`.
    pub mail_nickname: Option<String>,
    /// `accountEnabled` (needs `$select`).
    pub account_enabled: Option<bool>,
    /// `usageLocation` (needs `$select`).
    pub usage_location: Option<String>,
    /// `assignedLicenses` (needs `$select`).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub assigned_licenses: Vec<AssignedLicense>,
    /// `proxyAddresses` (needs `$select`).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub proxy_addresses: Vec<String>,
    /// `onPremisesImmutableId`, moss's anchor (needs `$select`).
    pub on_premises_immutable_id: Option<String>,
}

impl User {
    /// Whether this user carries `anchor`, i.e. is the one this sync created or linked.
    pub fn has_anchor(&self, anchor: &Anchor) -> bool {
        self.on_premises_immutable_id.as_deref() == Some(anchor.as_str())
    }

    /// Whether the user holds a licence for `sku`.
    pub fn holds(&self, sku: SkuId) -> bool {
        self.assigned_licenses
            .iter()
            .any(|licence| licence.sku_id == sku)
    }
}

/// One entry of `assignedLicenses`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedLicense {
    /// The SKU.
    pub sku_id: SkuId,
    /// Service plans switched off.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub disabled_plans: Vec<uuid::Uuid>,
}

pub(crate) fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A user property moss can `$select`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserProperty {
    /// `id` (always selected).
    Id,
    /// `userPrincipalName`.
    UserPrincipalName,
    /// `displayName`.
    DisplayName,
    /// `givenName`.
    GivenName,
    /// `surname`.
    Surname,
    /// `mail`.
    Mail,
    /// `mailNickname`.
    MailNickname,
    /// `accountEnabled`.
    AccountEnabled,
    /// `usageLocation`.
    UsageLocation,
    /// `assignedLicenses`.
    AssignedLicenses,
    /// `proxyAddresses`.
    ProxyAddresses,
    /// `onPremisesImmutableId`.
    OnPremisesImmutableId,
}

impl UserProperty {
    /// Every property [`User`] holds: what a sync decision usually needs.
    pub const ALL: &'static [UserProperty] = &[
        Self::Id,
        Self::UserPrincipalName,
        Self::DisplayName,
        Self::GivenName,
        Self::Surname,
        Self::Mail,
        Self::MailNickname,
        Self::AccountEnabled,
        Self::UsageLocation,
        Self::AssignedLicenses,
        Self::ProxyAddresses,
        Self::OnPremisesImmutableId,
    ];

    /// The wire name.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::UserPrincipalName => "userPrincipalName",
            Self::DisplayName => "displayName",
            Self::GivenName => "givenName",
            Self::Surname => "surname",
            Self::Mail => "mail",
            Self::MailNickname => "mailNickname",
            Self::AccountEnabled => "accountEnabled",
            Self::UsageLocation => "usageLocation",
            Self::AssignedLicenses => "assignedLicenses",
            Self::ProxyAddresses => "proxyAddresses",
            Self::OnPremisesImmutableId => "onPremisesImmutableId",
        }
    }
}

/// The `$select` value: `id` first, each property once.
pub(crate) fn select_list(select: &[UserProperty]) -> String {
    let mut names = vec![UserProperty::Id.wire_name()];
    for property in select {
        let name = property.wire_name();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(",")
}

/// An OData string literal: quoted, with embedded `'` doubled (§3.3).
pub(crate) fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Which users a list returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserFilter {
    /// `onPremisesImmutableId eq '…'`.
    Anchor(Anchor),
    /// `userPrincipalName eq '…'`.
    UserPrincipalName(UserPrincipalName),
    /// `accountEnabled eq true|false`.
    AccountState(AccountState),
    /// `startswith(userPrincipalName,'…')`.
    UserPrincipalNameStartsWith(String),
}

impl UserFilter {
    fn expression(&self) -> String {
        match self {
            Self::Anchor(anchor) => {
                format!("onPremisesImmutableId eq {}", odata_string(anchor.as_str()))
            }
            Self::UserPrincipalName(upn) => {
                format!("userPrincipalName eq {}", odata_string(upn.as_str()))
            }
            Self::AccountState(state) => format!("accountEnabled eq {}", state.is_enabled()),
            Self::UserPrincipalNameStartsWith(prefix) => {
                format!("startswith(userPrincipalName,{})", odata_string(prefix))
            }
        }
    }
}

/// Whether a user may sign in (`accountEnabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountState {
    /// Sign-in allowed.
    Enabled,
    /// Sign-in blocked.
    Disabled,
}

impl AccountState {
    fn is_enabled(self) -> bool {
        self == Self::Enabled
    }
}

/// Whether the user must change the password at the next sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasswordChange {
    /// `forceChangePasswordNextSignIn: true`.
    RequiredAtNextSignIn,
    /// `forceChangePasswordNextSignIn: false`: the password was chosen by the user (password sync).
    NotRequired,
}

impl PasswordChange {
    fn forced(self) -> bool {
        self == Self::RequiredAtNextSignIn
    }
}

/// A password to set, exposed only while the request body is serialised.
#[derive(Debug, Clone)]
pub struct NewPassword {
    /// The password; `Debug` shows it redacted.
    pub password: SecretString,
    /// Whether it must be changed at the next sign-in.
    pub change: PasswordChange,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PasswordProfileBody<'a> {
    password: &'a str,
    force_change_password_next_sign_in: bool,
}

impl NewPassword {
    fn body(&self) -> PasswordProfileBody<'_> {
        PasswordProfileBody {
            password: self.password.expose_secret(),
            force_change_password_next_sign_in: self.change.forced(),
        }
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// `userPrincipalName`, in a verified domain.
    pub user_principal_name: UserPrincipalName,
    /// `displayName`.
    pub display_name: DisplayName,
    /// `mailNickname`.
    pub mail_nickname: MailNickname,
    /// `givenName`.
    pub given_name: Option<String>,
    /// `surname`.
    pub surname: Option<String>,
    /// `usageLocation`, set at creation so licences can be assigned (§11.7).
    pub usage_location: UsageLocation,
    /// The initial password.
    pub password: NewPassword,
    /// Whether sign-in starts enabled.
    pub account_state: AccountState,
    /// moss's identity key, written to `onPremisesImmutableId`.
    pub anchor: Anchor,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewUserBody<'a> {
    account_enabled: bool,
    display_name: &'a str,
    mail_nickname: &'a str,
    user_principal_name: &'a str,
    usage_location: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    given_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    surname: Option<&'a str>,
    on_premises_immutable_id: &'a str,
    password_profile: PasswordProfileBody<'a>,
}

/// What `create_user` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCreation {
    /// Graph created the user now.
    Created(User),
    /// The user already existed with our anchor (an earlier attempt or delivery created it):
    /// adopted, nothing written.
    Adopted(User),
}

impl UserCreation {
    /// The user, however it came to be.
    pub fn user(&self) -> &User {
        match self {
            Self::Created(user) | Self::Adopted(user) => user,
        }
    }
}

/// Properties to change on a user; `None` leaves a property as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// `accountEnabled`.
    pub account_state: Option<AccountState>,
    /// `displayName`.
    pub display_name: Option<DisplayName>,
    /// `givenName`.
    pub given_name: Option<String>,
    /// `surname`.
    pub surname: Option<String>,
    /// `usageLocation`.
    pub usage_location: Option<UsageLocation>,
    /// `passwordProfile`.
    pub password: Option<NewPassword>,
    /// `onPremisesImmutableId`, to link an existing online account to a directory user.
    pub anchor: Option<Anchor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserUpdateBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    account_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    given_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    surname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_location: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_profile: Option<PasswordProfileBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_premises_immutable_id: Option<&'a str>,
}

impl UserUpdate {
    fn is_empty(&self) -> bool {
        self.account_state.is_none()
            && self.display_name.is_none()
            && self.given_name.is_none()
            && self.surname.is_none()
            && self.usage_location.is_none()
            && self.password.is_none()
            && self.anchor.is_none()
    }

    fn body(&self) -> UserUpdateBody<'_> {
        UserUpdateBody {
            account_enabled: self.account_state.map(AccountState::is_enabled),
            display_name: self.display_name.as_ref().map(DisplayName::as_str),
            given_name: self.given_name.as_deref(),
            surname: self.surname.as_deref(),
            usage_location: self.usage_location.as_ref().map(UsageLocation::as_str),
            password_profile: self.password.as_ref().map(NewPassword::body),
            on_premises_immutable_id: self.anchor.as_ref().map(Anchor::as_str),
        }
    }
}

/// One page of a Graph collection.
#[derive(Debug, Deserialize)]
pub(crate) struct Page<T> {
    #[serde(default = "Vec::new")]
    pub(crate) value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    pub(crate) next_link: Option<String>,
}

impl OnlineClient {
    /// Reads one user by id or UPN with `$select`; `None` when Graph answers 404.
    pub async fn get_user(
        &self,
        key: &UserKey,
        select: &[UserProperty],
    ) -> Result<Option<User>, OnlineError> {
        let mut op = self.operation("get user");
        self.get_user_in(&mut op, key, select).await
    }

    /// Reads a user that was just written, repeating a 404 a bounded number of times because
    /// directory reads lag behind writes (§3.3, §11.9); `None` once the retries are spent.
    pub async fn wait_for_user(
        &self,
        key: &UserKey,
        select: &[UserProperty],
    ) -> Result<Option<User>, OnlineError> {
        let mut op = self.operation("get new user");
        self.wait_for_user_in(&mut op, key, select).await
    }

    /// Finds the user carrying `anchor` (`$filter=onPremisesImmutableId eq '…'`).
    pub async fn find_user_by_anchor(
        &self,
        anchor: &Anchor,
        select: &[UserProperty],
    ) -> Result<Option<User>, OnlineError> {
        let mut op = self.operation("find user by anchor");
        let users = self
            .list_users_in(&mut op, Some(&UserFilter::Anchor(anchor.clone())), select)
            .await?;
        match users.as_slice() {
            [] => Ok(None),
            [user] => Ok(Some(user.clone())),
            [first, second, ..] => Err(OnlineError::new(
                op.name,
                ErrorClass::Conflict,
                format!(
                    "users {} and {} both carry anchor {anchor}",
                    first.id, second.id
                ),
            )
            .with_client_request_id(op.client_request_id)),
        }
    }

    /// Lists users, following `@odata.nextLink` verbatim with `$top=999` (§3.3).
    pub async fn list_users(
        &self,
        filter: Option<&UserFilter>,
        select: &[UserProperty],
    ) -> Result<Vec<User>, OnlineError> {
        let mut op = self.operation("list users");
        self.list_users_in(&mut op, filter, select).await
    }

    /// Creates a user. A UPN conflict, or a reply lost after sending, is resolved by reading the
    /// UPN back: a user with our anchor is adopted, anyone else's is a `Conflict` (§11.3, §11.4).
    pub async fn create_user(&self, new: &NewUser) -> Result<UserCreation, OnlineError> {
        let mut op = self.operation("create user");
        let body = NewUserBody {
            account_enabled: new.account_state.is_enabled(),
            display_name: new.display_name.as_str(),
            mail_nickname: new.mail_nickname.as_str(),
            user_principal_name: new.user_principal_name.as_str(),
            usage_location: new.usage_location.as_str(),
            given_name: new.given_name.as_deref(),
            surname: new.surname.as_deref(),
            on_premises_immutable_id: new.anchor.as_str(),
            password_profile: new.password.body(),
        };
        let call = Call::graph(Method::POST, self.graph_url("users", &[])).json(&body);
        let upn_key = UserKey::Upn(new.user_principal_name.clone());
        loop {
            let error = match self.send(&mut op, &call).await {
                Ok(reply) => return reply.json(&op).map(UserCreation::Created),
                Err(error) => error,
            };
            match error.class() {
                ErrorClass::Conflict if is_upn_conflict(&error) => {
                    return match self
                        .wait_for_user_in(&mut op, &upn_key, UserProperty::ALL)
                        .await?
                    {
                        Some(user) if user.has_anchor(&new.anchor) => {
                            Ok(UserCreation::Adopted(user))
                        }
                        Some(user) => Err(taken_by_other(error, &new.user_principal_name, &user)),
                        None => Err(error),
                    };
                }
                ErrorClass::OutcomeUnknown => {
                    match self
                        .get_user_in(&mut op, &upn_key, UserProperty::ALL)
                        .await?
                    {
                        Some(user) if user.has_anchor(&new.anchor) => {
                            return Ok(UserCreation::Adopted(user));
                        }
                        Some(user) => {
                            return Err(taken_by_other(error, &new.user_principal_name, &user));
                        }
                        None => {
                            // Not visible: either not applied or not replicated yet. Sending
                            // again is safe: a replica that catches up turns it into a UPN
                            // conflict, which the branch above resolves by the anchor.
                            let as_transient = error.clone().with_class(ErrorClass::Transient);
                            if self.wait_before_retry(&mut op, as_transient).await.is_err() {
                                return Err(error);
                            }
                        }
                    }
                }
                _ => return Err(error),
            }
        }
    }

    /// Changes the given properties (`PATCH`, naturally idempotent). An empty update sends nothing.
    pub async fn update_user(&self, key: &UserKey, update: &UserUpdate) -> Result<(), OnlineError> {
        if update.is_empty() {
            return Ok(());
        }
        let mut op = self.operation("update user");
        let call = Call::graph(Method::PATCH, self.user_url(key, "", &[])).json(&update.body());
        self.send(&mut op, &call).await.map(drop)
    }

    /// Blocks or allows sign-in, as a call of its own: deactivation must not ride with a change
    /// that can fail for other reasons (§5, §11.10).
    pub async fn set_account_state(
        &self,
        key: &UserKey,
        state: AccountState,
    ) -> Result<(), OnlineError> {
        let update = UserUpdate {
            account_state: Some(state),
            ..UserUpdate::default()
        };
        let mut op = self.operation(match state {
            AccountState::Enabled => "allow sign-in",
            AccountState::Disabled => "block sign-in",
        });
        let call = Call::graph(Method::PATCH, self.user_url(key, "", &[])).json(&update.body());
        self.send(&mut op, &call).await.map(drop)
    }

    /// Sets the password (`passwordProfile`).
    pub async fn set_password(
        &self,
        key: &UserKey,
        password: &NewPassword,
    ) -> Result<(), OnlineError> {
        let mut op = self.operation("set password");
        let update = UserUpdate {
            password: Some(password.clone()),
            ..UserUpdate::default()
        };
        let call = Call::graph(Method::PATCH, self.user_url(key, "", &[])).json(&update.body());
        self.send(&mut op, &call).await.map(drop)
    }

    /// Deletes (soft-deletes) a user; a 404 means an earlier attempt already did.
    pub async fn delete_user(&self, key: &UserKey) -> Result<Change, OnlineError> {
        let mut op = self.operation("delete user");
        let call = Call::graph(Method::DELETE, self.user_url(key, "", &[]));
        match self.send(&mut op, &call).await {
            Ok(_) => Ok(Change::Applied),
            Err(error) if error.is_not_found() => Ok(Change::AlreadyDone),
            Err(error) => Err(error),
        }
    }

    /// Invalidates the user's refresh tokens and session cookies (`revokeSignInSessions`).
    pub async fn revoke_sign_in_sessions(&self, key: &UserKey) -> Result<(), OnlineError> {
        let mut op = self.operation("revoke sign-in sessions");
        let call = Call::graph(
            Method::POST,
            self.user_url(key, "/revokeSignInSessions", &[]),
        )
        .idempotent();
        self.send(&mut op, &call).await.map(drop)
    }

    pub(crate) fn user_url(&self, key: &UserKey, suffix: &str, query: &[(&str, &str)]) -> Url {
        self.graph_url(&format!("users/{}{suffix}", key.path_segment()), query)
    }

    pub(crate) async fn get_user_in(
        &self,
        op: &mut Operation,
        key: &UserKey,
        select: &[UserProperty],
    ) -> Result<Option<User>, OnlineError> {
        let select = select_list(select);
        let call = Call::graph(Method::GET, self.user_url(key, "", &[("$select", &select)]));
        match self.send(op, &call).await {
            Ok(reply) => reply.json(op).map(Some),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn wait_for_user_in(
        &self,
        op: &mut Operation,
        key: &UserKey,
        select: &[UserProperty],
    ) -> Result<Option<User>, OnlineError> {
        let policy = self.retry_policy().clone();
        for attempt in 0..=policy.replication_retries {
            if attempt > 0 {
                tokio::time::sleep(policy.replication_delay).await;
            }
            if let Some(user) = self.get_user_in(op, key, select).await? {
                return Ok(Some(user));
            }
        }
        Ok(None)
    }

    async fn list_users_in(
        &self,
        op: &mut Operation,
        filter: Option<&UserFilter>,
        select: &[UserProperty],
    ) -> Result<Vec<User>, OnlineError> {
        let select = select_list(select);
        let expression = filter.map(UserFilter::expression);
        let mut query = vec![("$select", select.as_str()), ("$top", PAGE_SIZE)];
        if let Some(expression) = &expression {
            query.insert(0, ("$filter", expression.as_str()));
        }
        let mut url = self.graph_url("users", &query);
        let mut users = Vec::new();
        loop {
            let call = Call::graph(Method::GET, url);
            let page: Page<User> = self.send(op, &call).await?.json(op)?;
            users.extend(page.value);
            let Some(next) = page.next_link else {
                return Ok(users);
            };
            url = self.next_page_url(op, &next, Service::Graph)?;
            // Each page gets the whole retry budget: a long listing is not a long retry.
            op.restart_budget(self.retry_policy());
        }
    }

    /// Checks an `@odata.nextLink` before following it verbatim.
    pub(crate) fn next_page_url(
        &self,
        op: &Operation,
        link: &str,
        service: Service,
    ) -> Result<Url, OnlineError> {
        match Url::parse(link) {
            Ok(url) if self.is_own_link(&url, service) => Ok(url),
            _ => Err(OnlineError::new(
                op.name,
                ErrorClass::Permanent {
                    status: 200,
                    code: "UnexpectedNextLink".to_owned(),
                    message: format!(
                        "the next page link {link} does not point at the configured {service} host"
                    ),
                    request_id: None,
                },
                format!(
                    "the next page link {link} does not point at the configured {service} host"
                ),
            )
            .with_client_request_id(op.client_request_id)),
        }
    }
}

fn is_upn_conflict(error: &OnlineError) -> bool {
    error.reply().is_some_and(|reply| {
        reply.target.as_deref() == Some("userPrincipalName")
            || reply.message.contains(graph_text::UPN_TAKEN)
    })
}

fn taken_by_other(error: OnlineError, upn: &UserPrincipalName, holder: &User) -> OnlineError {
    let anchor = holder.on_premises_immutable_id.as_deref().unwrap_or("none");
    let detail = format!(
        "userPrincipalName {upn} belongs to another account (id {}, anchor {anchor})",
        holder.id
    );
    error.with_class(ErrorClass::Conflict).with_detail(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_select_list_starts_with_id_and_repeats_nothing() {
        let list = select_list(&[
            UserProperty::AccountEnabled,
            UserProperty::Id,
            UserProperty::AccountEnabled,
        ]);
        assert_eq!(list, "id,accountEnabled");
    }

    #[test]
    fn a_quote_in_a_filter_value_is_doubled() {
        let filter = UserFilter::UserPrincipalName(
            UserPrincipalName::parse("o'neil@contoso.example").unwrap(),
        );
        assert_eq!(
            filter.expression(),
            "userPrincipalName eq 'o''neil@contoso.example'"
        );
    }

    #[test]
    fn a_new_user_body_carries_the_required_properties_and_the_anchor() {
        let new = NewUser {
            user_principal_name: UserPrincipalName::parse("adelev@contoso.example").unwrap(),
            display_name: DisplayName::parse("Adele Vance").unwrap(),
            mail_nickname: MailNickname::parse("AdeleV").unwrap(),
            given_name: Some("Adele".into()),
            surname: None,
            usage_location: UsageLocation::parse("US").unwrap(),
            password: NewPassword {
                password: SecretString::from("xWwvJ]6NMw+bWH-d"),
                change: PasswordChange::RequiredAtNextSignIn,
            },
            account_state: AccountState::Enabled,
            anchor: Anchor::parse("5a3f-entry-uuid").unwrap(),
        };
        let body = NewUserBody {
            account_enabled: true,
            display_name: new.display_name.as_str(),
            mail_nickname: new.mail_nickname.as_str(),
            user_principal_name: new.user_principal_name.as_str(),
            usage_location: new.usage_location.as_str(),
            given_name: new.given_name.as_deref(),
            surname: None,
            on_premises_immutable_id: new.anchor.as_str(),
            password_profile: new.password.body(),
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json["passwordProfile"]["forceChangePasswordNextSignIn"],
            true
        );
        assert_eq!(json["passwordProfile"]["password"], "xWwvJ]6NMw+bWH-d");
        assert_eq!(json["onPremisesImmutableId"], "5a3f-entry-uuid");
        assert_eq!(json["usageLocation"], "US");
        assert!(json.get("surname").is_none());
        assert!(!format!("{new:?}").contains("xWwvJ"));
    }

    #[test]
    fn an_update_sends_only_what_changes() {
        let update = UserUpdate {
            account_state: Some(AccountState::Disabled),
            ..UserUpdate::default()
        };
        assert_eq!(
            serde_json::to_string(&update.body()).unwrap(),
            r#"{"accountEnabled":false}"#
        );
        assert!(UserUpdate::default().is_empty());
    }

    #[test]
    fn a_user_with_null_collections_reads_as_empty() {
        let user: User = serde_json::from_str(
            r#"{"id":"8b0c3f5e-0000-4000-8000-000000000001","userPrincipalName":"a@contoso.example","assignedLicenses":null,"businessPhones":[]}"#,
        )
        .unwrap();
        assert!(user.assigned_licenses.is_empty());
        assert_eq!(user.account_enabled, None);
    }
}
