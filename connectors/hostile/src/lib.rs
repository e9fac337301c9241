//! The `hostile` connector, for tests only: its `read` misbehaves on purpose so that
//! the host's sandbox (time, memory and access limits) can be tested.
//!
//! System config: `{"behaviour": "<name>"}`, where the name is one of
//! - `loop`: burns CPU forever;
//! - `memory`: allocates memory without bound;
//! - `http`: sends a request the manifest does not allow and returns the error;
//! - `sql`: queries a database that is not granted and returns the error;
//! - `trap`: panics, which aborts the instance;
//! - `ok`: returns one record, `{"id":"1","name":"ok"}`;
//! - `probe`: returns one record describing what the sandbox lets it see:
//!   `env` (number of environment variables), `args` (number of arguments),
//!   `root` (whether `/` can be listed), `etc` (whether `/etc/passwd` can be read),
//!   `tcp` (whether a direct TCP connection to 127.0.0.1:`port` succeeded);
//! - `fetch`: sends a GET to `url` through the `http` import (with `credential`)
//!   and returns `{"id":"1","status":..,"body":..}`;
//! - `rejects`: rejects twice as many records as the call's limit (the
//!   `rejects` import), which the host must stop;
//! - `huge`: returns one record of `size_mib` MiB (default 200);
//! - `many`: returns three times as many records as the call's limit;
//! - `stuck`: returns a page whose `next` is the cursor it was asked at;
//! - `chatty`: writes a hundred thousand log lines;
//! - `hoard`: keeps a value of 2 MiB in its state.
//!
//! `describe` and `check` behave normally. A webhook (`handle`) behaves as
//! `read` does: `loop`, `memory` and `trap` misbehave, the others answer
//! 200 with the record of `ok`.

// The bindings reuse the SDK's types and host imports.
weir_sdk::bindings!("webhook-source-connector");

use std::hint::black_box;

use exports::weir::connector::connector::{self, Description};
use exports::weir::connector::source;
use exports::weir::connector::webhook::{self, Incoming, Outcome};
use serde::Deserialize;
use weir_sdk::{
    http, sql, Change, ChangeBatch, ConnectorError, Context, EntityBinding, EntitySchema,
    FieldSchema, FieldType, Operation, Page, Result,
};

/// The JSON Schema of the system configuration.
const CONFIG_SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{"behaviour":{"enum":["loop","memory","http","sql","trap","ok","probe","fetch","rejects","huge","many","stuck","chatty","hoard"]},"port":{"type":"integer"},"size_mib":{"type":"integer"},"url":{"type":"string"},"credential":{"type":"string"}},"required":["behaviour"],"additionalProperties":false}"#;

/// What `read` does.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Behaviour {
    /// Burns CPU forever.
    Loop,
    /// Allocates memory without bound.
    Memory,
    /// Sends a request the manifest does not allow.
    Http,
    /// Queries a database that is not granted.
    Sql,
    /// Panics.
    Trap,
    /// Returns one record.
    Ok,
    /// Returns one record describing the sandbox.
    Probe,
    /// Sends a GET to `url` (with `credential`, if set) and returns the answer as a record.
    Fetch,
    /// Rejects twice as many records as the call's limit.
    Rejects,
    /// Returns one record of `size_mib` MiB.
    Huge,
    /// Returns three times as many records as the call's limit.
    Many,
    /// Returns a page whose `next` is the cursor it was asked at.
    Stuck,
    /// Writes a hundred thousand log lines.
    Chatty,
    /// Keeps a value of 2 MiB in its state.
    Hoard,
}

/// The system-level configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// What `read` does.
    behaviour: Behaviour,
    /// `probe`: a TCP port on 127.0.0.1 to try to connect to directly.
    port: Option<u16>,
    /// `fetch`: the URL to request.
    url: Option<String>,
    /// `fetch`: the credential to ask the host to add.
    credential: Option<String>,
    /// `huge`: the size of the record, in MiB.
    size_mib: Option<usize>,
}

/// Spins forever; `black_box` keeps the optimizer from removing the loop.
fn burn_cpu() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Keeps allocating 1 MiB blocks of non-zero bytes and never frees them.
fn exhaust_memory() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![0xA5; 1 << 20]);
        black_box(&mut blocks);
    }
}

/// Sends a request the manifest does not allow; its error is the expected outcome.
fn forbidden_http() -> ConnectorError {
    let request = http::Request {
        method: "GET".to_string(),
        url: "http://example.com/".to_string(),
        headers: Vec::new(),
        body: None,
        credential: None,
    };
    match http::send(&request) {
        Err(e) => e.into(),
        Ok(_) => ConnectorError::unsupported("http request was not denied"),
    }
}

/// Queries a database that is not granted; its error is the expected outcome.
fn forbidden_sql() -> ConnectorError {
    let statement = sql::Statement {
        sql: "SELECT 1".to_string(),
        params: Vec::new(),
    };
    match sql::query("not-granted", &statement) {
        Err(e) => e.into(),
        Ok(_) => ConnectorError::unsupported("sql query on database 'not-granted' was not denied"),
    }
}

/// The one page of the `probe` behaviour: what the sandbox lets the connector see.
fn probe_page(entity: &EntityBinding, config: &Config) -> Page {
    let tcp = config
        .port
        .map(|port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let record = serde_json::json!({
        "tcp": tcp,
        "id": "1",
        "env": std::env::vars_os().count(),
        "args": std::env::args_os().count(),
        "root": std::fs::read_dir("/").is_ok(),
        "etc": std::fs::read("/etc/passwd").is_ok(),
    });
    Page {
        items: vec![Change {
            entity: entity.name.clone(),
            id: "1".to_string(),
            op: Operation::Upsert,
            data: Some(record.to_string()),
            previous: None,
            version: None,
            actor: None,
        }],
        next: None,
    }
}

/// The page of the `fetch` behaviour: one record with the response's status and body.
fn fetch(entity: &EntityBinding, config: &Config) -> Result<Page> {
    let url = config
        .url
        .clone()
        .ok_or_else(|| ConnectorError::invalid_config("behaviour 'fetch' needs 'url'"))?;
    let request = http::Request {
        method: "GET".to_string(),
        url,
        headers: Vec::new(),
        body: None,
        credential: config.credential.clone(),
    };
    let response = http::send(&request)?;
    let record = serde_json::json!({
        "id": "1",
        "status": response.status,
        "body": String::from_utf8_lossy(&response.body),
    });
    Ok(Page {
        items: vec![Change {
            entity: entity.name.clone(),
            id: "1".to_string(),
            op: Operation::Upsert,
            data: Some(record.to_string()),
            previous: None,
            version: None,
            actor: None,
        }],
        next: None,
    })
}

/// The one page of the `ok` behaviour.
fn ok_page(entity: &EntityBinding) -> Page {
    Page {
        items: vec![Change {
            entity: entity.name.clone(),
            id: "1".to_string(),
            op: Operation::Upsert,
            data: Some(r#"{"id":"1","name":"ok"}"#.to_string()),
            previous: None,
            version: None,
            actor: None,
        }],
        next: None,
    }
}

/// The `hostile` connector.
struct HostileConnector;

impl connector::Guest for HostileConnector {
    fn describe() -> Description {
        Description {
            name: "hostile".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "misbehaves on purpose, to test the host's sandbox".to_string(),
            config_schema: CONFIG_SCHEMA.to_string(),
        }
    }

    fn check(ctx: Context, entities: Vec<EntityBinding>) -> Result<Vec<EntitySchema>> {
        weir_sdk::config::<Config>(&ctx)?;
        Ok(entities
            .into_iter()
            .map(|entity| EntitySchema {
                fields: vec![FieldSchema {
                    name: entity.primary_key.clone(),
                    kind: FieldType::Text,
                    required: true,
                }],
                name: entity.name,
                primary_key: entity.primary_key,
                incremental: false,
            })
            .collect())
    }
}

impl source::Guest for HostileConnector {
    fn read(
        ctx: Context,
        entity: EntityBinding,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page> {
        let config: Config = weir_sdk::config(&ctx)?;
        match config.behaviour {
            Behaviour::Loop => burn_cpu(),
            Behaviour::Memory => exhaust_memory(),
            Behaviour::Http => Err(forbidden_http()),
            Behaviour::Sql => Err(forbidden_sql()),
            Behaviour::Trap => panic!("hostile connector panics on purpose"),
            Behaviour::Ok => Ok(ok_page(&entity)),
            Behaviour::Probe => Ok(probe_page(&entity, &config)),
            Behaviour::Fetch => fetch(&entity, &config),
            Behaviour::Huge => {
                let size = config.size_mib.unwrap_or(200) << 20;
                let data = serde_json::json!({ "id": "1", "name": "x".repeat(size) });
                Ok(Page {
                    items: vec![upsert(&entity, "1", data.to_string())],
                    next: None,
                })
            }
            Behaviour::Many => Ok(Page {
                items: (0..limit.saturating_mul(3))
                    .map(|i| upsert(&entity, &i.to_string(), format!("{{\"id\":\"{i}\"}}")))
                    .collect(),
                next: None,
            }),
            Behaviour::Stuck => Ok(Page {
                items: ok_page(&entity).items,
                next: Some(cursor.unwrap_or_else(|| "start".to_string())),
            }),
            Behaviour::Chatty => {
                for i in 0..100_000 {
                    weir_sdk::log(weir_sdk::log::Level::Info, format!("line {i}"));
                }
                Ok(ok_page(&entity))
            }
            Behaviour::Hoard => {
                weir_sdk::state::set("hoard", &"x".repeat(2 << 20));
                Ok(ok_page(&entity))
            }
            Behaviour::Rejects => {
                for i in 0..limit.saturating_mul(2) {
                    let id = i.to_string();
                    weir_sdk::reject(&entity.name, Some(&id), "rejected on purpose", "{}");
                }
                Ok(ok_page(&entity))
            }
        }
    }

    fn checkpoint(_ctx: Context, _entity: EntityBinding) -> Result<String> {
        Err(ConnectorError::unsupported(
            "the hostile connector has no change feed",
        ))
    }

    fn changes(
        _ctx: Context,
        _entity: EntityBinding,
        _cursor: String,
        _limit: u32,
    ) -> Result<ChangeBatch> {
        Err(ConnectorError::unsupported(
            "the hostile connector has no change feed",
        ))
    }
}

/// An upsert of record `id` with `data`.
fn upsert(entity: &EntityBinding, id: &str, data: String) -> Change {
    Change {
        entity: entity.name.clone(),
        id: id.to_string(),
        op: Operation::Upsert,
        data: Some(data),
        previous: None,
        version: None,
        actor: None,
    }
}

impl webhook::Guest for HostileConnector {
    fn handle(ctx: Context, entities: Vec<EntityBinding>, _request: Incoming) -> Result<Outcome> {
        let config: Config = weir_sdk::config(&ctx)?;
        match config.behaviour {
            Behaviour::Loop => burn_cpu(),
            Behaviour::Memory => exhaust_memory(),
            Behaviour::Trap => panic!("hostile connector panics on purpose"),
            _ => {
                let changes = entities
                    .first()
                    .map(|e| ok_page(e).items)
                    .unwrap_or_default();
                Ok(Outcome {
                    changes,
                    status: 200,
                    body: b"{}".to_vec(),
                })
            }
        }
    }
}

export!(HostileConnector);
