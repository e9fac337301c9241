//! Mapping file-system and CSV errors to connector errors.

use std::io;

use weir_sdk::ConnectorError;

/// A file-system error about `what` (for example "file 'people.csv'").
pub fn io(e: &io::Error, what: &str) -> ConnectorError {
    let message = format!("{what}: {e}");
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            ConnectorError::permission(message)
        }
        io::ErrorKind::NotFound => ConnectorError::not_found(message),
        _ => ConnectorError::transient(message),
    }
}

/// A CSV error while reading `file`.
pub fn csv(e: csv::Error, file: &str) -> ConnectorError {
    let what = format!("file '{file}'");
    match e.kind() {
        csv::ErrorKind::Io(io_error) => io(io_error, &what),
        _ => ConnectorError::schema(format!("{what}: {e}")),
    }
}
