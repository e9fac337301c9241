//! Helpers for writing weir connectors.
//!
//! A connector crate generates the bindings of the world it implements with
//! [`bindings!`], which reuses the types and host imports generated here, so
//! that the helpers of this crate work with the connector's own types:
//!
//! ```text
//! weir_sdk::bindings!("sync-connector");
//! struct MyConnector;
//! impl exports::weir::connector::connector::Guest for MyConnector { /* ... */ }
//! export!(MyConnector);
//! ```

pub mod http_util;
pub mod json;
pub mod sql_util;

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        world: "host",
        path: "../../wit",
        generate_all,
    });
}

pub use types::{
    Change, ChangeBatch, ConnectorError, Context, EntityBinding, EntitySchema, ErrorKind,
    FieldSchema, FieldType, KeyedOutcome, KeyedWrite, Operation, Page, Probe, WriteItem, Written,
};
pub use wit::weir::connector::{http, log, rejects, sql, state, types};

/// Generates the bindings of a connector world, reusing this crate's types and
/// host imports. The first argument names the world (`source-connector`,
/// `destination-connector`, `sync-connector` or `full-connector`); the second,
/// optional, is the path of the `wit` folder relative to the connector crate
/// (default `../../wit`, as in the weir repository).
#[macro_export]
macro_rules! bindings {
    ($world:tt) => {
        ::weir_sdk::bindings!($world, "../../wit");
    };
    ($world:tt, $path:tt) => {
        wit_bindgen::generate!({
            world: $world,
            path: $path,
            with: {
                "weir:connector/types@0.1.3": ::weir_sdk::types,
                "weir:connector/http@0.1.3": ::weir_sdk::http,
                "weir:connector/sql@0.1.3": ::weir_sdk::sql,
                "weir:connector/log@0.1.3": ::weir_sdk::log,
                "weir:connector/state@0.1.3": ::weir_sdk::state,
                "weir:connector/rejects@0.1.3": ::weir_sdk::rejects,
            },
        });
    };
}

/// The result type of connector calls.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

impl ConnectorError {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectorError {
            kind,
            message: message.into(),
            retry_after_ms: None,
        }
    }
    /// The configuration is wrong.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }
    /// This item alone was refused.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Rejected, message)
    }
    /// A passing failure: retry later.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }
    /// The data does not fit the schema.
    pub fn schema(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Schema, message)
    }
    /// Not supported by this connector or system.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// The record or resource does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// Access was refused.
    pub fn permission(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permission, message)
    }
}

impl From<sql::SqlError> for ConnectorError {
    fn from(e: sql::SqlError) -> Self {
        match e {
            sql::SqlError::Denied(m) => ConnectorError::permission(m),
            // A deadlock, a lock timeout, a lost connection: try again later.
            sql::SqlError::Failed(m) if sql_util::passing(&m) => ConnectorError::transient(m),
            sql::SqlError::Failed(m) => ConnectorError::schema(m),
            sql::SqlError::Timeout => ConnectorError::transient("sql statement timed out"),
            sql::SqlError::TooManyRows(n) => {
                ConnectorError::unsupported(format!("query returned more than {n} rows"))
            }
        }
    }
}

impl From<http::HttpError> for ConnectorError {
    fn from(e: http::HttpError) -> Self {
        match e {
            http::HttpError::Denied(m) => ConnectorError::permission(m),
            http::HttpError::Timeout => ConnectorError::transient("http request timed out"),
            http::HttpError::TooLarge => ConnectorError::rejected("http response too large"),
            http::HttpError::Transport(m) => ConnectorError::transient(m),
        }
    }
}

/// The delete of record `id` of `entity`: what a keyed write answers
/// (`changed`) when the record it was to update is gone from the system,
/// deleted there since the host last saw it.
pub fn gone(entity: &str, id: &str) -> Change {
    Change {
        entity: entity.to_string(),
        id: id.to_string(),
        op: Operation::Delete,
        data: None,
        previous: None,
        version: None,
        actor: None,
    }
}

/// Tells the host about a record of `entity` the system holds that cannot
/// be turned into a change (see the `rejects` interface): during `read` or
/// `changes` it becomes a dead letter, kept once however often it is read
/// again, and a full read does not take the record for deleted. `why` says
/// where the record is and what is wrong; `raw` shows it as text.
pub fn reject(entity: &str, id: Option<&str>, why: &str, raw: &str) {
    rejects::reject(entity, id, why, raw);
}

/// Parses the system-level configuration into `T`.
pub fn config<T: serde::de::DeserializeOwned>(ctx: &Context) -> Result<T> {
    serde_json::from_str(&ctx.config).map_err(|e| {
        ConnectorError::invalid_config(format!("system '{}': bad config: {e}", ctx.system))
    })
}

/// Parses an entity's system-specific settings into `T`.
pub fn settings<T: serde::de::DeserializeOwned>(entity: &EntityBinding) -> Result<T> {
    serde_json::from_str(&entity.settings).map_err(|e| {
        ConnectorError::invalid_config(format!("entity '{}': bad settings: {e}", entity.name))
    })
}

/// The outcomes of keyed writes made as plain writes (the whole record,
/// whatever `seen` says): what a connector whose system cannot check a
/// record before writing it returns from `keyed-destination.write`.
pub fn keyed_outcomes(results: Vec<Result<Written>>) -> Vec<KeyedOutcome> {
    results.into_iter().map(keyed_outcome).collect()
}

/// The outcome of a keyed write made as a plain write.
pub fn keyed_outcome(result: Result<Written>) -> KeyedOutcome {
    match result {
        Ok(w) => KeyedOutcome::Written(w),
        Err(e) => KeyedOutcome::Failed(e),
    }
}

/// Writes a log line through the host.
pub fn log(level: log::Level, message: impl AsRef<str>) {
    log::write(level, message.as_ref());
}
