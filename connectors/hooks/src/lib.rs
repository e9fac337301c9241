//! A test-only connector for a system known through its webhooks: it checks a
//! shared secret header and turns Directus-style event payloads into changes.
//! Its source cannot be listed: reads are unsupported, changes arrive only
//! as webhooks.
//!
//! System config: `{"secret": "..."}`; requests must carry it in
//! `x-sync-secret`. Body: `{"event": "ENTITY.items.create|update|delete",
//! "key": ID | "keys": [IDS], "payload": {...} | [IDS]}`.

weir_sdk::bindings!("webhook-source-connector");

use exports::weir::connector::connector::{self, Description};
use exports::weir::connector::source;
use exports::weir::connector::webhook::{self, Incoming, Outcome};
use serde::Deserialize;
use serde_json::Value;
use weir_sdk::{
    Change, ChangeBatch, ConnectorError, Context, EntityBinding, EntitySchema, FieldSchema,
    FieldType, Operation, Page, Result,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    secret: String,
}

struct Hooks;

impl connector::Guest for Hooks {
    fn describe() -> Description {
        Description {
            name: "hooks".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "a system known through its webhooks (test only)".to_string(),
            config_schema: r#"{"type":"object","properties":{"secret":{"type":"string"}},"required":["secret"]}"#.to_string(),
        }
    }

    fn check(ctx: Context, entities: Vec<EntityBinding>) -> Result<Vec<EntitySchema>> {
        weir_sdk::config::<Config>(&ctx)?;
        Ok(entities
            .into_iter()
            .map(|e| EntitySchema {
                fields: vec![FieldSchema {
                    name: e.primary_key.clone(),
                    kind: FieldType::Text,
                    required: true,
                }],
                name: e.name,
                primary_key: e.primary_key,
                incremental: false,
            })
            .collect())
    }
}

impl source::Guest for Hooks {
    fn read(
        _ctx: Context,
        _entity: EntityBinding,
        _cursor: Option<String>,
        _limit: u32,
    ) -> Result<Page> {
        Err(ConnectorError::unsupported(
            "this system cannot be listed; its changes arrive as webhooks",
        ))
    }

    fn checkpoint(_ctx: Context, _entity: EntityBinding) -> Result<String> {
        Err(ConnectorError::unsupported(
            "this system has no change feed; its changes arrive as webhooks",
        ))
    }

    fn changes(
        _ctx: Context,
        _entity: EntityBinding,
        _cursor: String,
        _limit: u32,
    ) -> Result<ChangeBatch> {
        Err(ConnectorError::unsupported(
            "this system has no change feed; its changes arrive as webhooks",
        ))
    }
}

fn text(status: u16, body: &str) -> Outcome {
    Outcome {
        changes: Vec::new(),
        status,
        body: body.as_bytes().to_vec(),
    }
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl webhook::Guest for Hooks {
    fn handle(ctx: Context, entities: Vec<EntityBinding>, request: Incoming) -> Result<Outcome> {
        let config: Config = weir_sdk::config(&ctx)?;
        let secret = request
            .headers
            .iter()
            .find(|(k, _)| k == "x-sync-secret")
            .map(|(_, v)| v.as_str());
        if secret != Some(config.secret.as_str()) {
            return Ok(text(401, "bad or missing x-sync-secret"));
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return Ok(text(400, "the body is not JSON"));
        };
        let event = body
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some((entity, action)) = event.split_once(".items.") else {
            return Ok(text(400, "no event ENTITY.items.ACTION"));
        };
        if !entities.iter().any(|e| e.name == entity) {
            return Ok(text(200, "ignored: entity not synced"));
        }
        let ids: Vec<String> = match (body.get("key"), body.get("keys")) {
            (Some(k), _) => id_text(k).into_iter().collect(),
            (None, Some(Value::Array(keys))) => keys.iter().filter_map(id_text).collect(),
            _ => return Ok(text(400, "no key or keys")),
        };
        let (op, data) = match action {
            "create" | "update" => (
                Operation::Upsert,
                body.get("payload")
                    .filter(|p| p.is_object())
                    .map(Value::to_string),
            ),
            "delete" => (Operation::Delete, None),
            _ => return Ok(text(400, "unknown action")),
        };
        let changes = ids
            .into_iter()
            .map(|id| Change {
                entity: entity.to_string(),
                id,
                op,
                data: data.clone(),
                previous: None,
                version: None,
                actor: None,
            })
            .collect();
        Ok(Outcome {
            changes,
            status: 200,
            body: b"ok".to_vec(),
        })
    }
}

export!(Hooks);
