//! A test-only destination built against the connector API as version 0.1.0
//! shipped it (`wit/` beside this crate, frozen), to show that the host still
//! links and runs components built before later additions to the API. It
//! writes each record, as JSON, into table `records (id, data)` of the
//! SQLite database granted as `database` in its config, through the `sql`
//! import of version 0.1.0.

wit_bindgen::generate!({
    world: "destination-connector",
    path: "wit",
});

use exports::weir::connector::connector::{self, Description};
use exports::weir::connector::destination;
use weir::connector::sql::{self, Statement, Value};
use weir::connector::types::{
    ConnectorError, Context, EntityBinding, EntitySchema, ErrorKind, FieldSchema, FieldType,
    Operation, WriteItem, Written,
};

struct Legacy;

/// An error of the kind given.
fn error(kind: ErrorKind, message: String) -> ConnectorError {
    ConnectorError {
        kind,
        message,
        retry_after_ms: None,
    }
}

/// The granted database named by the config's `database`.
fn database(ctx: &Context) -> Result<String, ConnectorError> {
    serde_json::from_str::<serde_json::Value>(&ctx.config)
        .ok()
        .and_then(|c| c.get("database")?.as_str().map(str::to_string))
        .ok_or_else(|| {
            error(
                ErrorKind::InvalidConfig,
                "config needs `database`, a granted SQLite database".to_string(),
            )
        })
}

impl connector::Guest for Legacy {
    fn describe() -> Description {
        Description {
            name: "legacy".to_string(),
            version: "0.1.0".to_string(),
            summary: "a destination built against the connector API 0.1.0".to_string(),
            config_schema: r#"{"type":"object"}"#.to_string(),
        }
    }

    fn check(
        ctx: Context,
        entities: Vec<EntityBinding>,
    ) -> Result<Vec<EntitySchema>, ConnectorError> {
        database(&ctx)?;
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

impl destination::Guest for Legacy {
    fn write(
        ctx: Context,
        _entity: EntityBinding,
        items: Vec<WriteItem>,
    ) -> Result<Vec<Result<Written, ConnectorError>>, ConnectorError> {
        let db = database(&ctx)?;
        let statements: Vec<Statement> = items
            .iter()
            .map(|item| match (&item.op, &item.id) {
                (Operation::Delete, Some(id)) => Statement {
                    sql: "DELETE FROM records WHERE id = ?1".to_string(),
                    params: vec![Value::Text(id.clone())],
                },
                (_, id) => Statement {
                    sql: "INSERT OR REPLACE INTO records (id, data) VALUES (?1, ?2)".to_string(),
                    params: vec![
                        Value::Text(id.clone().unwrap_or_default()),
                        item.data.clone().map_or(Value::Null, Value::Text),
                    ],
                },
            })
            .collect();
        let outcomes = sql::batch(&db, &statements)
            .map_err(|e| error(ErrorKind::Transient, format!("{e:?}")))?;
        Ok(items
            .iter()
            .zip(outcomes)
            .map(|(item, outcome)| {
                outcome
                    .map(|_| Written {
                        id: item.id.clone().unwrap_or_default(),
                        version: None,
                    })
                    .map_err(|message| error(ErrorKind::Rejected, message))
            })
            .collect())
    }
}

export!(Legacy);
