//! weir: keeps systems in agreement through sandboxed WebAssembly connectors
//! and a central SQLite store. See ARCHITECTURE.md for the map.

pub mod check;
pub mod cli;
pub mod engine;
pub mod manifest;
pub mod mapping;
pub mod runtime;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod web;
