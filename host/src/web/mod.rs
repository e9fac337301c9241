//! The status dashboard `weir run` serves at `/ui`: server-rendered HTML
//! (minijinja templates, HTML-escaped), no JavaScript and no external
//! resources. Pages: the overview (per system and entity: last activity,
//! records in the last hour and day, dead letters, held changes, open
//! conflicts, webhook health), the conflicts with both values and forms to
//! decide them, and an audit search by entity and id. Reads only; the
//! conflict forms are the one action.

use crate::manifest::Manifest;
use crate::store::{Result, Store};
use minijinja::{context, Environment};
use serde::Serialize;
use std::sync::OnceLock;

const LAYOUT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>weir · {% block title %}{% endblock %}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222}
nav a{margin-right:1rem}
table{border-collapse:collapse;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.bad{color:#a00;font-weight:600}.ok{color:#070}
pre{margin:0;white-space:pre-wrap;max-width:28rem}
form{display:inline}
</style></head>
<body><nav><a href="/ui">Overview</a><a href="/ui/conflicts">Conflicts</a><a href="/ui/matches">Matches</a><a href="/ui/audit">Audit</a></nav>
{% block body %}{% endblock %}
</body></html>"#;

const OVERVIEW: &str = r#"{% extends "layout.html" %}{% block title %}status{% endblock %}{% block body %}
<h1>Status</h1>
<p>Outbox: {{ outbox }} pending delivery(ies). Dead letters: {{ dead_letters }}. Open conflicts: <a href="/ui/conflicts">{{ open_conflicts }}</a>.</p>
<table><thead><tr><th>system</th><th>entity</th><th>direction</th><th>last activity</th><th>lag</th><th>records (1 h / 24 h)</th><th>errors</th><th>dead letters</th><th>held</th><th>open conflicts</th></tr></thead>
<tbody>{% for r in rows %}<tr>
<td>{{ r.system }}</td><td>{{ r.entity }}</td><td>{{ r.direction }}</td>
<td>{{ r.last_at or "never" }}</td><td>{{ r.lag or "-" }}</td><td>{{ r.last_hour }} / {{ r.last_day }}</td>
<td>{% if r.errors %}<span class="bad">{{ r.errors }}</span>{% else %}none{% endif %}</td>
<td{% if r.dead_letters %} class="bad"{% endif %}>{{ r.dead_letters }}</td><td>{{ r.held }}</td>
<td{% if r.open_conflicts %} class="bad"{% endif %}>{{ r.open_conflicts }}</td></tr>{% endfor %}</tbody></table>
{% if webhooks %}<h2>Webhooks</h2><table><thead><tr><th>system</th><th>health</th><th>last webhook</th><th>refused</th></tr></thead><tbody>
{% for w in webhooks %}<tr><td>{{ w.system }}</td>
<td class="{{ 'ok' if w.healthy else 'bad' }}">{{ 'healthy' if w.healthy else 'DEGRADED since ' ~ w.since ~ ' (' ~ w.reason ~ ')' }}</td>
<td>{{ w.last or "never" }}</td><td>{{ w.refused }}</td></tr>{% endfor %}</tbody></table>{% endif %}
<h2>Latest runs</h2><table><thead><tr><th>run</th><th>started</th><th>status</th><th>read</th><th>written</th><th>deleted</th><th>echoes</th><th>conflicts</th><th>failed</th></tr></thead><tbody>
{% for r in runs %}<tr><td>{{ r.id }}</td><td>{{ r.started_at }}</td><td class="{{ 'ok' if r.status == 'ok' else 'bad' }}">{{ r.status }}</td>
<td>{{ r.read }}</td><td>{{ r.written }}</td><td>{{ r.deleted }}</td><td>{{ r.echoes }}</td><td>{{ r.conflicts }}</td><td>{{ r.failed }}</td></tr>{% endfor %}</tbody></table>
{% endblock %}"#;

const CONFLICTS: &str = r#"{% extends "layout.html" %}{% block title %}conflicts{% endblock %}{% block body %}
<h1>Conflicts</h1>
{% if not conflicts %}<p>No conflict recorded.</p>{% endif %}
<table><thead><tr><th>#</th><th>when</th><th>record</th><th>{{ "value kept before" }}</th><th>arriving value</th><th>result (policy)</th><th>decision</th></tr></thead><tbody>
{% for c in conflicts %}<tr id="conflict-{{ c.id }}"><td>{{ c.id }}</td><td>{{ c.at }}</td>
<td>{{ c.entity }} <a href="/ui/audit?entity={{ c.entity|urlencode }}&amp;id={{ c.global_id }}">{{ c.global_id }}</a></td>
<td>from {{ c.other_system or "?" }}<pre>{{ c.ours }}</pre></td><td>from {{ c.system }}<pre>{{ c.theirs }}</pre></td>
<td>{{ c.winner }} wins ({{ c.policy }})<pre>{{ c.result }}</pre></td>
<td>{% if c.decision %}decided: {{ c.decision }}{% else %}
<form method="post" action="/ui/conflicts/{{ c.id }}"><input type="hidden" name="choice" value="result"><button>Keep the result</button></form>
<form method="post" action="/ui/conflicts/{{ c.id }}"><input type="hidden" name="choice" value="ours"><button>Take {{ c.other_system or "the kept" }}'s value</button></form>
<form method="post" action="/ui/conflicts/{{ c.id }}"><input type="hidden" name="choice" value="theirs"><button>Take {{ c.system }}'s value</button></form>
{% endif %}</td></tr>{% endfor %}</tbody></table>
{% endblock %}"#;

const MATCHES: &str = r#"{% extends "layout.html" %}{% block title %}matches{% endblock %}{% block body %}
<h1>Ambiguous matches</h1>
<p>A record whose match key fits several others is held here: nothing is created for it until it is decided.</p>
{% if not matches %}<p>No match held.</p>{% endif %}
<table><thead><tr><th>#</th><th>since</th><th>entity</th><th>what</th><th>match key</th><th>decision</th></tr></thead><tbody>
{% for m in matches %}<tr id="match-{{ m.id }}"><td>{{ m.id }}</td><td>{{ m.at }}</td><td>{{ m.entity }}</td><td>{{ m.what }}</td><td><code>{{ m.key }}</code></td>
<td>{% if m.decision %}decided: {{ m.decision }}{% else %}
{% for c in m.candidates %}<form method="post" action="/ui/matches/{{ m.id }}"><input type="hidden" name="choice" value="link:{{ c }}"><button>The same as {{ c }}</button></form>
{% endfor %}<form method="post" action="/ui/matches/{{ m.id }}"><input type="hidden" name="choice" value="new"><button>A record of its own</button></form>
{% endif %}</td></tr>{% endfor %}</tbody></table>
{% endblock %}"#;

const AUDIT: &str = r#"{% extends "layout.html" %}{% block title %}audit{% endblock %}{% block body %}
<h1>Audit</h1>
<form method="get" action="/ui/audit"><label>entity <select name="entity">{% for e in entities %}<option{% if e == entity %} selected{% endif %}>{{ e }}</option>{% endfor %}</select></label>
<label>global id <input name="id" value="{{ id or '' }}" size="8"></label> <button>Search</button></form>
{% if rows is not none %}<p>{{ rows|length }} row(s).</p>
<table><thead><tr><th>#</th><th>when</th><th>run</th><th>system</th><th>local id</th><th>operation</th><th>outcome</th><th>by</th><th>after</th></tr></thead><tbody>
{% for a in rows %}<tr><td>{{ a.id }}</td><td>{{ a.at }}</td><td>{{ a.run_id or "-" }}</td><td>{{ a.system }}</td><td>{{ a.local_id or "-" }}</td>
<td>{{ a.operation }}</td><td>{{ a.outcome }}</td><td>{{ a.actor or "-" }}</td><td><pre>{{ a.after or "" }}</pre></td></tr>{% endfor %}</tbody></table>{% endif %}
{% endblock %}"#;

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in [
            ("layout.html", LAYOUT),
            ("overview.html", OVERVIEW),
            ("conflicts.html", CONFLICTS),
            ("matches.html", MATCHES),
            ("audit.html", AUDIT),
        ] {
            env.add_template(name, text)
                .expect("the dashboard templates parse");
        }
        env
    })
}

fn render(name: &str, ctx: minijinja::Value) -> String {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| format!("template {name}: {e:#}"))
}

/// A system's webhook health, as the overview shows it.
#[derive(Serialize)]
pub struct WebhookRow {
    pub system: String,
    pub healthy: bool,
    pub since: Option<String>,
    pub reason: Option<String>,
    pub last: Option<String>,
    pub refused: u64,
}

#[derive(Serialize)]
struct Row {
    system: String,
    entity: String,
    direction: &'static str,
    last_at: Option<String>,
    lag: Option<String>,
    last_hour: u64,
    last_day: u64,
    errors: Option<String>,
    dead_letters: u64,
    held: u64,
    open_conflicts: u64,
}

/// The overview page.
pub fn overview(manifest: &Manifest, store: &Store, webhooks: Vec<WebhookRow>) -> Result<String> {
    let polls = store.last_polls()?;
    let now = jiff::Timestamp::now();
    let mut rows = Vec::new();
    for system in &manifest.systems {
        for b in &system.entities {
            let a = store.activity(&system.name, &b.name)?;
            let poll = polls
                .iter()
                .find(|p| p.system == system.name && p.entity == b.name);
            let lag = poll
                .filter(|p| !p.failed)
                .and_then(|p| p.at.parse::<jiff::Timestamp>().ok())
                .map(|at| format!("{} s", now.duration_since(at).as_secs()));
            let mut errors = Vec::new();
            if let Some(p) = poll.filter(|p| p.failed) {
                errors.push(format!("the last poll failed ({})", p.at));
            }
            if a.retrying > 0 {
                let since = a
                    .failing_since
                    .as_deref()
                    .map(|s| format!(", failing since {s}"))
                    .unwrap_or_default();
                errors.push(format!(
                    "{} write(s) waiting for a retry{since}: {}",
                    a.retrying,
                    a.last_error.as_deref().unwrap_or("-")
                ));
            }
            let errors = (!errors.is_empty()).then(|| errors.join("; "));
            rows.push(Row {
                system: system.name.clone(),
                entity: b.name.clone(),
                direction: match (b.direction.reads(), b.direction.writes()) {
                    (true, true) => "both",
                    (true, false) => "read",
                    _ => "write",
                },
                last_at: a.last_at,
                lag,
                errors,
                last_hour: a.last_hour,
                last_day: a.last_day,
                dead_letters: a.dead_letters,
                held: a.held,
                open_conflicts: store.open_conflicts(&b.name)?,
            });
        }
    }
    let gauges = store.gauges()?;
    let open: u64 = manifest
        .entities
        .iter()
        .map(|e| store.open_conflicts(&e.name))
        .sum::<Result<u64>>()?;
    let runs: Vec<minijinja::Value> = store
        .runs(10)?
        .into_iter()
        .map(|r| {
            context! {
                id => r.id, started_at => r.started_at, status => r.status,
                read => r.counts.read, written => r.counts.written, deleted => r.counts.deleted,
                echoes => r.counts.echoes, conflicts => r.counts.conflicts, failed => r.counts.failed,
            }
        })
        .collect();
    Ok(render(
        "overview.html",
        context! {
            rows, webhooks, runs,
            outbox => gauges.outbox, dead_letters => gauges.dead_letters, open_conflicts => open,
        },
    ))
}

/// The conflicts page: the latest 200.
pub fn conflicts(store: &Store) -> Result<String> {
    let pretty = |v: &Option<String>| {
        v.as_deref()
            .map(|t| {
                serde_json::from_str::<serde_json::Value>(t)
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or_else(|_| t.to_string())
            })
            .unwrap_or_default()
    };
    let conflicts: Vec<minijinja::Value> = store
        .conflicts(200)?
        .into_iter()
        .rev()
        .map(|c| {
            context! {
                id => c.id, at => c.at, entity => c.entity, global_id => c.global_id,
                system => c.system, other_system => c.other_system,
                ours => pretty(&c.ours), theirs => pretty(&c.theirs), result => pretty(&Some(c.result)),
                winner => c.winner, policy => c.policy, decision => c.decision,
            }
        })
        .collect();
    Ok(render("conflicts.html", context! { conflicts }))
}

/// The page of ambiguous matches held for a decision.
pub fn matches(store: &Store) -> Result<String> {
    let matches: Vec<minijinja::Value> = store
        .matches(None)?
        .into_iter()
        .filter_map(|m| {
            let what = match (&m.local_id, m.global_id) {
                (Some(local), _) => format!(
                    "record {local} read from {} fits golden records {}",
                    m.system,
                    m.candidates.join(", ")
                ),
                (None, Some(gid)) => format!(
                    "golden record {gid} fits records {} of {}",
                    m.candidates.join(", "),
                    m.system
                ),
                (None, None) => return None,
            };
            Some(context! {
                id => m.id, at => m.created_at, entity => m.entity, what, key => m.match_key,
                candidates => m.candidates, decision => m.decision,
            })
        })
        .collect();
    Ok(render("matches.html", context! { matches }))
}

/// The audit search page: rows of one entity, of one golden record if `id`.
pub fn audit(
    manifest: &Manifest,
    store: &Store,
    entity: Option<&str>,
    id: Option<i64>,
) -> Result<String> {
    let entities: Vec<&str> = manifest.entities.iter().map(|e| e.name.as_str()).collect();
    let rows = match entity {
        Some(e) => Some(
            store
                .audit(Some(e), None, id, None, 500)?
                .into_iter()
                .map(|a| {
                    context! {
                        id => a.id, at => a.at, run_id => a.run_id, system => a.system,
                        local_id => a.local_id, operation => a.operation, outcome => a.outcome,
                        actor => a.actor, after => a.after,
                    }
                })
                .collect::<Vec<_>>(),
        ),
        None => None,
    };
    Ok(render(
        "audit.html",
        context! { entities, entity, id, rows },
    ))
}
