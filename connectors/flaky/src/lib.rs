//! A test-only destination whose writes fail on purpose, so that the host's
//! retries can be tested: it keeps records in its `state` (the host's
//! connector-private key/value store) and fails the first calls as configured.
//!
//! System config: `{"rate_limited_calls": N, "retry_after_ms": MS,
//! "transient_calls": N, "reject_field": "name", "crash_on_call": N,
//! "crash_on_calls": [N, ...]}`. The
//! first `rate_limited_calls` calls fail every item with `rate-limited` (and
//! `retry_after_ms`), the next `transient_calls` calls with `transient`; after
//! that items are stored, except those having a true `reject_field`, which are
//! `rejected`. Call number `crash_on_call` (and each of `crash_on_calls`)
//! traps, as a connector that crashes.

weir_sdk::bindings!("destination-connector");

use exports::weir::connector::connector::{self, Description};
use exports::weir::connector::destination;
use serde::Deserialize;
use weir_sdk::{
    state, ConnectorError, Context, EntityBinding, EntitySchema, ErrorKind, FieldSchema, FieldType,
    Operation, Result, WriteItem, Written,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    rate_limited_calls: u32,
    retry_after_ms: Option<u64>,
    transient_calls: u32,
    reject_field: Option<String>,
    crash_on_call: Option<u32>,
    crash_on_calls: Vec<u32>,
}

struct Flaky;

impl connector::Guest for Flaky {
    fn describe() -> Description {
        Description {
            name: "flaky".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "a destination that fails on purpose, to test retries".to_string(),
            config_schema: r#"{"type":"object"}"#.to_string(),
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

/// Counts this call in the state and returns its number (1 for the first).
fn next_call() -> u32 {
    let n = state::get("calls")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + 1;
    state::set("calls", &n.to_string());
    n
}

impl destination::Guest for Flaky {
    fn write(
        ctx: Context,
        entity: EntityBinding,
        items: Vec<WriteItem>,
    ) -> Result<Vec<Result<Written>>> {
        let config: Config = weir_sdk::config(&ctx)?;
        let call = next_call();
        if config.crash_on_call == Some(call) || config.crash_on_calls.contains(&call) {
            panic!("call {call}: crashed on purpose");
        }
        let failure = if call <= config.rate_limited_calls {
            Some(ConnectorError {
                kind: ErrorKind::RateLimited,
                message: format!("call {call}: slow down"),
                retry_after_ms: config.retry_after_ms,
            })
        } else if call <= config.rate_limited_calls + config.transient_calls {
            Some(ConnectorError::transient(format!("call {call}: try again")))
        } else {
            None
        };
        Ok(items
            .into_iter()
            .map(|item| match &failure {
                Some(e) => Err(e.clone()),
                None => store(&entity, &config, item),
            })
            .collect())
    }
}

/// Stores one item under `ENTITY/ID` in the state.
fn store(entity: &EntityBinding, config: &Config, item: WriteItem) -> Result<Written> {
    let next = state::get("next-id")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1);
    let id = match item.id {
        Some(id) => id,
        None => {
            state::set("next-id", &(next + 1).to_string());
            next.to_string()
        }
    };
    let key = format!("{}/{id}", entity.name);
    match item.op {
        Operation::Delete => state::remove(&key),
        Operation::Upsert => {
            let data = item.data.unwrap_or_default();
            let record = weir_sdk::json::parse_record(&data)?;
            if let Some(field) = &config.reject_field {
                if record.get(field).and_then(|v| v.as_bool()) == Some(true) {
                    return Err(ConnectorError::rejected(format!(
                        "record {id}: field '{field}' is set"
                    )));
                }
            }
            state::set(&key, &data);
        }
    }
    Ok(Written { id, version: None })
}

export!(Flaky);
