//! The pages, rendered on the server. Every value put into HTML goes through [`esc`]; the
//! JavaScript (`/static/dashboard.js`) only polls fragments and posts actions.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use super::Shared;
use super::letters::{FilterForm, Snapshot, fresh};
use super::overview::{Overview, gather};
use crate::figures::HELD;
use crate::operate::dead_letters::DeadLetter;

/// A page reads the dead queue again when the last read is older than this.
const PAGE_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn page(shared: &Shared, title: &str, active: &str, body: &str) -> Html<String> {
    let nav: String = [
        ("/", "Overview"),
        ("/users", "Users"),
        ("/dead-letters", "Dead letters"),
        ("/held-deletes", "Held deletes"),
    ]
    .iter()
    .map(|(href, name)| {
        let class = if *name == active {
            " class=\"active\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{class}>{name}</a>")
    })
    .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · moss</title><link rel=\"stylesheet\" href=\"/static/dashboard.css\"></head>\
<body><header><span class=\"brand\">moss</span><nav>{nav}</nav>\
<span class=\"prefix\">installation <b>{prefix}</b></span></header><main>{body}</main>\
<script src=\"/static/dashboard.js\"></script></body></html>",
        title = esc(title),
        prefix = esc(shared.settings.topology.prefix().as_str()),
    ))
}

fn or_unknown<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(
        || "<span class=\"muted\">unknown</span>".to_owned(),
        |value| esc(&value.to_string()),
    )
}

pub(crate) async fn overview_page(State(shared): State<Arc<Shared>>) -> Html<String> {
    let overview = gather(&shared).await;
    let body = format!(
        "<h1>Overview</h1><noscript><p class=\"muted\">Without JavaScript this page does not update itself; reload it.</p></noscript>\
<div id=\"overview\" data-live=\"/fragment/overview\" data-every=\"2000\">{}</div>",
        render_overview(&overview)
    );
    page(&shared, "Overview", "Overview", &body)
}

pub(crate) async fn overview_fragment(State(shared): State<Arc<Shared>>) -> Html<String> {
    Html(render_overview(&gather(&shared).await))
}

fn render_overview(overview: &Overview) -> String {
    let mut html = String::new();
    html.push_str("<ul class=\"health\">");
    for signal in &overview.health {
        let _ = write!(
            html,
            "<li class=\"{}\">{}</li>",
            signal.level,
            esc(&signal.text)
        );
    }
    html.push_str("</ul><div class=\"cards\">");
    let circuit = overview.circuit.as_ref().map_or_else(
        || "<span class=\"muted\">unknown</span>".to_owned(),
        |circuit| {
            format!(
                "<span class=\"{}\">{}</span>{}",
                if circuit.state == "closed" {
                    "ok"
                } else {
                    "bad"
                },
                esc(&circuit.state),
                circuit
                    .cause
                    .as_deref()
                    .map(|cause| format!("<small>cause: {}</small>", esc(cause)))
                    .unwrap_or_default()
            )
        },
    );
    let card = |html: &mut String, id: &str, label: &str, value: &str| {
        let _ = write!(
            html,
            "<div class=\"card\" id=\"{id}\"><div class=\"label\">{label}</div><div class=\"value\">{value}</div></div>"
        );
    };
    card(&mut html, "card-circuit", "Circuit", &circuit);
    card(
        &mut html,
        "card-dead",
        "Dead letters",
        &format!(
            "<a href=\"/dead-letters\">{}</a>",
            overview.dead_letters.in_queue
        ),
    );
    card(
        &mut html,
        "card-held",
        "Held deletes",
        &format!(
            "<a href=\"/held-deletes\" class=\"{}\">{}</a>",
            if overview.dead_letters.held_deletes > 0 {
                "bad"
            } else {
                ""
            },
            overview.dead_letters.held_deletes
        ),
    );
    card(
        &mut html,
        "card-outbox",
        "Outbox backlog",
        &or_unknown(overview.outbox_backlog),
    );
    card(
        &mut html,
        "card-throttled",
        "429s / min",
        &format!(
            "{}<small>{} in all</small>",
            or_unknown(overview.throttled_per_minute),
            or_unknown(overview.throttled_total)
        ),
    );
    card(
        &mut html,
        "card-retries",
        "Retries / min",
        &format!(
            "{}<small>{} in all</small>",
            or_unknown(overview.retries_per_minute),
            or_unknown(overview.retries_total)
        ),
    );
    html.push_str("</div><div class=\"columns\"><section><h2>Partitions</h2><table id=\"partitions\"><thead><tr><th>partition</th><th class=\"num\">ready</th><th class=\"num\">unacked</th><th class=\"num\">consumers</th></tr></thead><tbody>");
    for partition in &overview.partitions {
        let _ = write!(
            html,
            "<tr><td title=\"{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num {}\">{}</td></tr>",
            esc(&partition.queue),
            esc(partition
                .queue
                .rsplit('.')
                .next()
                .unwrap_or(&partition.queue)),
            or_unknown(partition.ready),
            or_unknown(partition.unacked),
            if partition.consumers == Some(0) {
                "bad"
            } else {
                ""
            },
            or_unknown(partition.consumers)
        );
    }
    html.push_str("</tbody></table></section><section><h2>Applied per minute</h2>");
    match &overview.applied_per_minute {
        None => html.push_str(
            "<p class=\"muted\">measuring (needs two readings of the worker's /metrics)</p>",
        ),
        Some(rates) if rates.values().all(|rate| *rate <= 0.0) => {
            html.push_str("<p class=\"muted\">nothing applied in the last minute</p>");
        }
        Some(rates) => {
            html.push_str("<table id=\"applied\"><thead><tr><th>event type</th><th class=\"num\">per minute</th></tr></thead><tbody>");
            for (kind, rate) in rates.iter().filter(|(_, rate)| **rate > 0.0) {
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td class=\"num\">{rate}</td></tr>",
                    esc(kind)
                );
            }
            html.push_str("</tbody></table>");
        }
    }
    html.push_str("<h2>Free seats</h2>");
    match &overview.free_seats {
        None => {
            html.push_str("<p class=\"muted\">unknown (the worker's /metrics does not say)</p>")
        }
        Some(seats) => {
            html.push_str("<table id=\"seats\"><thead><tr><th>SKU</th><th class=\"num\">free</th></tr></thead><tbody>");
            for (sku, free) in seats {
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td class=\"num {}\">{free}</td></tr>",
                    esc(sku),
                    if *free <= 0.0 { "bad" } else { "" }
                );
            }
            html.push_str("</tbody></table>");
        }
    }
    html.push_str("<h2>Dead letters by class</h2>");
    if overview.dead_letters.by_class.is_empty() {
        html.push_str("<p class=\"muted\">none</p>");
    } else {
        html.push_str("<table id=\"classes\"><tbody>");
        for (class, count) in &overview.dead_letters.by_class {
            let _ = write!(
                html,
                "<tr><td><a href=\"/dead-letters?class={0}\">{0}</a></td><td class=\"num\">{count}</td></tr>",
                esc(class)
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str(
        "</section></div><h2>Sources</h2><table id=\"sources\" class=\"sources\"><tbody>",
    );
    for source in &overview.sources {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(source.name),
            esc(&source.address),
            if source.problem.is_some() {
                "warn"
            } else {
                "ok"
            },
            esc(source.problem.as_deref().unwrap_or("answers"))
        );
    }
    let _ = write!(
        html,
        "</tbody></table><p class=\"muted\">updated {} · {} outcome events kept since the dashboard started</p>",
        esc(&overview.time),
        overview.outcome_history
    );
    html
}

fn age(letter: &DeadLetter) -> String {
    letter.age(Utc::now()).map_or_else(
        || "?".to_owned(),
        |age| {
            let seconds = age.num_seconds().max(0);
            match seconds {
                0..60 => format!("{seconds}s ago"),
                60..3_600 => format!("{}m ago", seconds / 60),
                3_600..86_400 => format!("{}h ago", seconds / 3_600),
                _ => format!("{}d ago", seconds / 86_400),
            }
        },
    )
}

fn reason(letter: &DeadLetter) -> String {
    let error = &letter.error;
    let mut text = String::new();
    if let Some(code) = &error.code {
        text.push_str(code);
    }
    if let Some(status) = error.status {
        let _ = write!(text, " ({status})");
    }
    if let Some(message) = &error.message {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(message);
    }
    text
}

fn letters_table(letters: &[&DeadLetter], id: &str) -> String {
    if letters.is_empty() {
        return format!("<p id=\"{id}-empty\" class=\"muted\">no dead letters</p>");
    }
    let mut html = format!(
        "<table id=\"{id}\" class=\"letters\"><thead><tr><th><input type=\"checkbox\" class=\"pick-all\" title=\"select all\"></th>\
<th>dead</th><th>type</th><th>user</th><th>class</th><th>reason</th><th class=\"num\">try</th><th>event id</th></tr></thead><tbody>"
    );
    for letter in letters {
        let who = letter
            .upn
            .clone()
            .or_else(|| letter.subject.clone())
            .unwrap_or_default();
        let _ = write!(
            html,
            "<tr data-id=\"{id_attr}\"><td><input type=\"checkbox\" class=\"pick\" value=\"{id_attr}\"></td><td class=\"nowrap\" title=\"{dead_at}\">{age}</td>\
<td>{kind}</td><td>{who}</td><td><span class=\"class {class}\">{class}</span></td><td class=\"reason\">{reason}</td><td class=\"num\">{attempt}</td>\
<td><a class=\"mono\" href=\"/dead-letters/{id_attr}\">{id_text}</a></td></tr>",
            id_attr = esc(&letter.id),
            dead_at = esc(letter.dead_at.as_deref().unwrap_or("")),
            age = esc(&age(letter)),
            kind = esc(&letter.event_type),
            who = esc(&who),
            class = esc(&letter.error.class),
            reason = esc(&reason(letter)),
            attempt = letter.attempt,
            id_text = esc(&letter.id),
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn filtered(snapshot: &Snapshot, form: &FilterForm) -> Result<Vec<DeadLetter>, String> {
    let filters = form.filters().map_err(|error| format!("{error:#}"))?;
    Ok(snapshot
        .letters
        .iter()
        .filter(|letter| filters.matches(letter))
        .cloned()
        .collect())
}

async fn letters_body(shared: &Shared, form: &FilterForm) -> String {
    let snapshot = fresh(shared, PAGE_FRESH).await;
    let mut html = String::new();
    match filtered(&snapshot, form) {
        Err(error) => {
            let _ = write!(html, "<p class=\"error\">{}</p>", esc(&error));
        }
        Ok(letters) => {
            let refs: Vec<&DeadLetter> = letters.iter().collect();
            html.push_str(&letters_table(&refs, "dead-letters"));
            let _ = write!(
                html,
                "<p class=\"muted\">{} shown of {} in {} · read {}</p>",
                letters.len(),
                snapshot.in_queue,
                esc(&shared.settings.topology.dead_queue()),
                esc(&snapshot
                    .read_at
                    .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "not yet".to_owned()))
            );
        }
    }
    if let Some(problem) = &snapshot.problem {
        let _ = write!(
            html,
            "<p class=\"error\">the dead queue could not be read: {}</p>",
            esc(problem)
        );
    }
    html
}

pub(crate) async fn letters_page(
    State(shared): State<Arc<Shared>>,
    Query(form): Query<FilterForm>,
) -> Html<String> {
    let value = |field: &Option<String>| esc(field.as_deref().unwrap_or(""));
    let body = format!(
        "<h1>Dead letters</h1>\
<form id=\"filters\" method=\"get\" action=\"/dead-letters\" class=\"filters\">\
<label>type <input name=\"type\" value=\"{}\" placeholder=\"user.added\"></label>\
<label>user <input name=\"user\" value=\"{}\" placeholder=\"UPN or subject\"></label>\
<label>class <input name=\"class\" value=\"{}\" placeholder=\"permanent\"></label>\
<label>since <input name=\"since\" value=\"{}\" placeholder=\"30m, 6h, 2026-01-31T08:00:00Z\"></label>\
<button type=\"submit\">Filter</button> <a href=\"/dead-letters\">clear</a></form>\
<div class=\"actions\">\
<button data-action=\"replay\" data-scope=\"selected\">Replay selected…</button>\
<button data-action=\"replay\" data-scope=\"filter\">Replay all matching…</button>\
<button data-action=\"purge\" data-scope=\"selected\" class=\"danger\">Purge selected…</button>\
<button data-action=\"purge\" data-scope=\"filter\" class=\"danger\">Purge all matching…</button></div>\
<div id=\"action-panel\"></div>\
<div id=\"letters\" data-refresh=\"/fragment/dead-letters\">{}</div>",
        value(&form.event_type),
        value(&form.user),
        value(&form.class),
        value(&form.since),
        letters_body(&shared, &form).await
    );
    page(&shared, "Dead letters", "Dead letters", &body)
}

pub(crate) async fn letters_fragment(
    State(shared): State<Arc<Shared>>,
    Query(form): Query<FilterForm>,
) -> Html<String> {
    Html(letters_body(&shared, &form).await)
}

pub(crate) async fn letter_page(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let snapshot = fresh(&shared, PAGE_FRESH).await;
    let Some(letter) = snapshot.letters.iter().find(|letter| letter.id == id) else {
        let body = format!(
            "<h1>Dead letter</h1><p class=\"error\">no dead letter has the id {}; it may have been replayed or purged. <a href=\"/dead-letters\">All dead letters</a></p>",
            esc(&id)
        );
        return (
            StatusCode::NOT_FOUND,
            page(&shared, "Dead letter", "Dead letters", &body),
        )
            .into_response();
    };
    let mut html = format!(
        "<h1>Dead letter <span class=\"mono\">{}</span></h1><table class=\"fields\">",
        esc(&letter.id)
    );
    let mut field = |name: &str, value: Option<String>| {
        let _ = write!(
            html,
            "<tr><th>{name}</th><td>{}</td></tr>",
            esc(value.as_deref().unwrap_or("-"))
        );
    };
    field("type", Some(letter.event_type.clone()));
    field("subject", letter.subject.clone());
    field("user", letter.upn.clone());
    field(
        "sequence",
        letter.sequence.map(|sequence| sequence.to_string()),
    );
    field("partition", letter.partition.clone());
    field("replay of", letter.replay_of.clone());
    html.push_str("</table><div class=\"actions\">");
    let _ = write!(
        html,
        "<button data-action=\"replay\" data-scope=\"one\" data-id=\"{0}\">Replay…</button>\
<button data-action=\"purge\" data-scope=\"one\" data-id=\"{0}\" class=\"danger\">Purge…</button>",
        esc(&letter.id)
    );
    html.push_str("</div><div id=\"action-panel\"></div><h2>Attempts and errors, oldest first</h2><table id=\"attempts\"><thead><tr><th>try</th><th>dead at</th><th>by</th><th>calls</th><th>class</th><th>status</th><th>code</th><th>message</th><th>request id</th></tr></thead><tbody>");
    let mut history = letter.history.clone();
    history.push(letter.as_past_failure());
    for failure in &history {
        let error = &failure.error;
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
            failure.attempt,
            esc(failure.dead_at.as_deref().unwrap_or("?")),
            esc(failure.dead_by.as_deref().unwrap_or("")),
            failure
                .attempts
                .map(|calls| calls.to_string())
                .unwrap_or_default(),
            esc(&error.class),
            error
                .status
                .map(|status| status.to_string())
                .unwrap_or_default(),
            esc(error.code.as_deref().unwrap_or("")),
            esc(error.message.as_deref().unwrap_or("")),
            esc(error
                .request_id
                .as_deref()
                .or(error.client_request_id.as_deref())
                .unwrap_or(""))
        );
    }
    html.push_str("</tbody></table><h2>Event (passwords and secrets redacted)</h2>");
    match snapshot.events.get(&letter.id).cloned().flatten() {
        Some(event) => {
            let _ = write!(
                html,
                "<pre id=\"event\">{}</pre>",
                esc(&serde_json::to_string_pretty(&event).unwrap_or_default())
            );
        }
        None => html.push_str(
            "<p class=\"muted\">not JSON; not shown, as it could hold a secret in clear</p>",
        ),
    }
    page(&shared, "Dead letter", "Dead letters", &html).into_response()
}

pub(crate) async fn held_page(State(shared): State<Arc<Shared>>) -> Html<String> {
    let snapshot = fresh(&shared, PAGE_FRESH).await;
    let held: Vec<&DeadLetter> = snapshot
        .letters
        .iter()
        .filter(|letter| letter.error.class == HELD)
        .collect();
    let body = format!(
        "<h1>Held deletes</h1><p>Removals and deactivations past the mass-delete guard's threshold wait here. \
Approving applies them even over the threshold, with the events of their users that waited behind them; \
rejecting drops them and the accounts stay as they are.</p>\
<div class=\"actions\"><button data-action=\"approve\" data-scope=\"selected\">Approve selected…</button>\
<button data-action=\"reject\" data-scope=\"selected\" class=\"danger\">Reject selected…</button></div>\
<div id=\"action-panel\"></div><div id=\"letters\" data-refresh=\"/held-deletes\">{}</div>",
        letters_table(&held, "held")
    );
    page(&shared, "Held deletes", "Held deletes", &body)
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserQuery {
    #[serde(default)]
    q: Option<String>,
}

pub(crate) async fn users_page(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<UserQuery>,
) -> Html<String> {
    let q = query.q.as_deref().map(str::trim).unwrap_or("").to_owned();
    let mut html = format!(
        "<h1>Users</h1><form method=\"get\" action=\"/users\" class=\"filters\"><label>UPN or subject \
<input name=\"q\" id=\"q\" value=\"{}\" size=\"48\" autofocus></label> <button type=\"submit\">Search</button></form>",
        esc(&q)
    );
    if q.is_empty() {
        html.push_str("<p class=\"muted\">Search a user by UPN (ana@contoso.com) or by the directory's subject.</p>");
        return page(&shared, "Users", "Users", &html);
    }
    let snapshot = fresh(&shared, PAGE_FRESH).await;
    // The subject: given, or named by a dead letter or the tenant's anchor for this UPN.
    let mut subject = moss_schemas::Subject::parse(&q)
        .ok()
        .map(|subject| subject.to_string());
    let upn = (subject.is_none() && q.contains('@')).then(|| q.clone());
    if subject.is_none() {
        subject = snapshot
            .letters
            .iter()
            .find(|letter| {
                letter
                    .upn
                    .as_deref()
                    .is_some_and(|theirs| theirs.eq_ignore_ascii_case(&q))
            })
            .and_then(|letter| letter.subject.clone());
    }
    html.push_str("<h2>Mapping</h2>");
    match mapping(&shared, subject.as_deref(), upn.as_deref()).await {
        Ok(Some(user)) => {
            if subject.is_none() {
                subject = user.on_premises_immutable_id.clone();
            }
            let status = match user.account_enabled {
                Some(true) => "active",
                Some(false) if user.assigned_licenses.is_empty() => "unassigned",
                Some(false) => "inactive",
                None => "unknown",
            };
            let _ = write!(
                html,
                "<table class=\"fields\" id=\"mapping\"><tr><th>subject (anchor)</th><td class=\"mono\">{}</td></tr>\
<tr><th>online object id</th><td class=\"mono\">{}</td></tr><tr><th>UPN</th><td>{}</td></tr>\
<tr><th>display name</th><td>{}</td></tr><tr><th>status</th><td><span class=\"status {status}\">{status}</span></td></tr>\
<tr><th>licences</th><td>{}</td></tr></table>",
                esc(user.on_premises_immutable_id.as_deref().unwrap_or("-")),
                esc(&user.id.to_string()),
                esc(user.user_principal_name.as_deref().unwrap_or("-")),
                esc(user.display_name.as_deref().unwrap_or("-")),
                user.assigned_licenses.len()
            );
        }
        Ok(None) => html.push_str("<p id=\"mapping\" class=\"muted\">the tenant has no such user (not created yet, or removed)</p>"),
        Err(error) => {
            let _ = write!(html, "<p id=\"mapping\" class=\"warn\">mapping unknown: {}</p>", esc(&error));
        }
    }
    html.push_str("<h2>Timeline</h2>");
    let Some(subject) = subject else {
        html.push_str(
            "<p class=\"muted\">no subject is known for this user, so no events can be shown</p>",
        );
        return page(&shared, "Users", "Users", &html);
    };
    let waiting: Vec<&DeadLetter> = snapshot
        .letters
        .iter()
        .filter(|letter| {
            letter
                .subject
                .as_deref()
                .is_some_and(|theirs| theirs.eq_ignore_ascii_case(&subject))
        })
        .collect();
    if !waiting.is_empty() {
        let _ = write!(
            html,
            "<h3>In the dead queue now</h3>{}",
            letters_table(&waiting, "user-letters")
        );
    }
    let entries = shared.outcomes.for_subject(&subject);
    if entries.is_empty() {
        html.push_str(
            "<p class=\"muted\">no outcome of this user's events since the dashboard started</p>",
        );
    } else {
        html.push_str("<table id=\"timeline\"><thead><tr><th>time</th><th>what</th><th>type</th><th class=\"num\">seq</th><th>event id</th><th class=\"num\">calls</th><th>Graph request ids</th><th>error</th><th>by</th></tr></thead><tbody>");
        for entry in entries {
            let text = |name: &str| {
                entry
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let what =
                if entry.get("schema").and_then(Value::as_str) == Some("moss.operator_action.v1") {
                    format!("operator: {}", text("action"))
                } else {
                    text("outcome")
                };
            let request_ids: Vec<&str> = entry
                .get("request_ids")
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let error = match (
                entry.get("error_class").and_then(Value::as_str),
                entry.get("error_message").and_then(Value::as_str),
            ) {
                (Some(class), Some(message)) => format!("{class}: {message}"),
                (Some(class), None) => class.to_owned(),
                _ => text("result"),
            };
            let by = if text("by").is_empty() {
                text("worker")
            } else {
                text("by")
            };
            let _ = write!(
                html,
                "<tr><td class=\"nowrap\" title=\"{}\">{}</td><td><span class=\"outcome {what_class}\">{}</span></td><td>{}</td><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&text("time")),
                esc(&text("time")
                    .replace('T', " ")
                    .chars()
                    .take(19)
                    .collect::<String>()),
                esc(&what),
                esc(&text("type")),
                entry
                    .get("sequence")
                    .and_then(Value::as_u64)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                esc(&text("event_id")),
                entry
                    .get("attempts")
                    .and_then(Value::as_u64)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                esc(&request_ids.join(" ")),
                esc(&error),
                esc(&by),
                what_class = esc(&what.replace([' ', ':'], "_")),
            );
        }
        html.push_str("</tbody></table>");
    }
    page(&shared, "Users", "Users", &html)
}

async fn mapping(
    shared: &Shared,
    subject: Option<&str>,
    upn: Option<&str>,
) -> Result<Option<moss_online::User>, String> {
    let Some(online) = &shared.online else {
        return Err("no tenant is configured for the dashboard (MOSS_TENANT_ID)".to_owned());
    };
    let select = moss_online::UserProperty::ALL;
    if let Some(upn) = upn {
        let upn = moss_online::UserPrincipalName::parse(upn)
            .map_err(|error| format!("{upn:?} is not a UPN: {error}"))?;
        return online
            .get_user(&moss_online::UserKey::Upn(upn), select)
            .await
            .map_err(|error| error.to_string());
    }
    if let Some(subject) = subject {
        let anchor = moss_online::Anchor::parse(subject)
            .map_err(|error| format!("{subject:?} is not an anchor: {error}"))?;
        return online
            .find_user_by_anchor(&anchor, select)
            .await
            .map_err(|error| error.to_string());
    }
    Err("give a UPN (name@domain) or a subject".to_owned())
}

pub(crate) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("dashboard.js"),
    )
        .into_response()
}

pub(crate) async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("dashboard.css"),
    )
        .into_response()
}
