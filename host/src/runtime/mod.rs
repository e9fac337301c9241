//! The sandbox: compiles, caches and runs connector components.
//!
//! *Architecture invariant:* this is the only module that imports wasmtime.
//! The rest of the host sees [`Runtime`], [`Connector`] (a component loaded
//! once) and [`Instance`] (a fresh store for one run of one system) and the
//! plain data types of the WIT world re-exported in [`types`].
//!
//! Defaults, per call into a connector: the epoch deadline and a wall-clock
//! timeout are both reset to the system's `call_timeout` (30 s) before every
//! call; linear memory is capped at `memory_mib` (256 MiB); the WASI context
//! has no environment variables, no arguments, no stdio, no sockets and no
//! preopened directory except those the manifest grants. After a trap or a
//! timeout the instance is dropped and refuses further calls. One exception
//! to the timeout: file operations in granted directories run on the
//! calling thread, so one stuck in the file system (a dead network mount, a
//! FIFO no one writes) holds the call until it returns.

mod bindings;
mod error;
mod host;
mod http;
mod output;
mod sql;

use crate::manifest::{Limits, System};
use bindings::exports::weir::connector as ex;
use error::{classify, LimitExceeded};
pub use error::{kind_name, CallError, LoadError};
use host::HostState;
pub use host::{Reject, StateBackend, StateError, REJECT_RAW_BYTES};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx};

/// The plain data types of the connector world.
pub mod types {
    pub use super::bindings::exports::weir::connector::connector::Description;
    pub use super::bindings::exports::weir::connector::webhook::{Incoming, Outcome};
    pub use super::bindings::weir::connector::types::*;
}
use types::{
    Change, ConnectorError, Context, EntityBinding, EntitySchema, KeyedOutcome, KeyedWrite, Page,
    Probe,
};

/// What a connector may write to its stderr in one run (a panic message fits
/// easily); writing more traps. Connectors log through the `log` import.
const STDERR_CAPACITY: usize = 1 << 20;

/// How often the epoch advances; the unit of CPU deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exports {
    /// `source`: read and changes.
    pub source: bool,
    /// `destination`: write.
    pub destination: bool,
    /// `webhook`: handle.
    pub webhook: bool,
    /// `lookup`: records by id.
    pub lookup: bool,
    /// `keyed-destination`: writes with the host's key, and find.
    pub keyed: bool,
}

impl std::fmt::Display for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names = vec!["connector"];
        for (on, name) in [
            (self.source, "source"),
            (self.destination, "destination"),
            (self.webhook, "webhook"),
            (self.lookup, "lookup"),
            (self.keyed, "keyed-destination"),
        ] {
            if on {
                names.push(name);
            }
        }
        f.write_str(&names.join(", "))
    }
}

/// A component loaded from a file, with the file's size and modification time.
type Stamped = (u64, std::time::SystemTime, Arc<Connector>);

/// The engine, linker and component cache shared by every system.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<[u8; 32], Arc<Connector>>>,
    /// The component last loaded from each path, with the file's size and
    /// modification time then: an unchanged file is not read and hashed again.
    by_path: Mutex<HashMap<PathBuf, Stamped>>,
    http: http::Clients,
    pools: sql::Pools,
    ticker: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Runtime {
    /// Creates the runtime. Compiled components are cached in `cache_dir`
    /// (by content hash) when one is given.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::FullConnector::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |h| h,
        )?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("weir-epoch".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?
        };
        Ok(Runtime {
            engine,
            linker,
            cache_dir,
            loaded: Mutex::new(HashMap::new()),
            by_path: Mutex::new(HashMap::new()),
            http: http::Clients::default(),
            pools: sql::Pools::default(),
            ticker: Some(ticker),
            stop,
        })
    }

    /// Loads a component: from memory if loaded before, else from the compile
    /// cache, else by compiling it (and filling the cache).
    pub fn load(&self, path: &Path) -> Result<Arc<Connector>, LoadError> {
        let read_err = |source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let stamp = (meta.len(), meta.modified().map_err(read_err)?);
        if let Some((len, modified, c)) = self.by_path.lock().expect("path cache lock").get(path) {
            if (*len, *modified) == stamp {
                return Ok(c.clone());
            }
        }
        let connector = self.load_bytes(path, std::fs::read(path).map_err(read_err)?)?;
        self.by_path
            .lock()
            .expect("path cache lock")
            .insert(path.to_path_buf(), (stamp.0, stamp.1, connector.clone()));
        Ok(connector)
    }

    fn load_bytes(&self, path: &Path, bytes: Vec<u8>) -> Result<Arc<Connector>, LoadError> {
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(c) = self.loaded.lock().expect("component cache lock").get(&hash) {
            return Ok(c.clone());
        }
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let component = self.compile_cached(&bytes, &hash).map_err(invalid)?;
        let pre = self.linker.instantiate_pre(&component).map_err(invalid)?;
        let guests = Guests::new(&pre).map_err(invalid)?;
        let connector = Arc::new(Connector {
            pre,
            guests,
            hash: hex::encode(&hash[..8]),
        });
        self.loaded
            .lock()
            .expect("component cache lock")
            .insert(hash, connector.clone());
        Ok(connector)
    }

    fn compile_cached(&self, bytes: &[u8], hash: &[u8; 32]) -> wasmtime::Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes);
        };
        let file = dir.join(format!("{}.cwasm", hex::encode(hash)));
        if file.is_file() {
            // SAFETY: the cache directory is written only by this runtime, with
            // artifacts it compiled itself; wasmtime also checks that the
            // artifact matches this engine's version and configuration.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(&self.engine, &file) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(file = %file.display(), "recompiling stale cached component: {e:#}")
                }
            }
        }
        let artifact = self.engine.precompile_component(bytes)?;
        if std::fs::create_dir_all(dir).is_ok() {
            let tmp = file.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, &artifact).is_ok() {
                let _ = std::fs::rename(&tmp, &file);
            }
        }
        // SAFETY: `artifact` was produced by this engine just now.
        #[allow(unsafe_code)]
        unsafe {
            Component::deserialize(&self.engine, &artifact)
        }
    }

    /// Starts a fresh instance of `connector` for `system`, with the system's
    /// grants and limits; its `state` import is served by `state`.
    pub async fn instantiate(
        &self,
        connector: &Connector,
        system: &System,
        state: Box<dyn StateBackend>,
    ) -> Result<Instance, CallError> {
        let name = system.name.clone();
        let trap = |e: wasmtime::Error| CallError::Trap {
            system: name.clone(),
            message: format!("{e:#}"),
        };
        let mut wasi = WasiCtx::builder();
        // File reads and writes run on the thread running the connector
        // instead of being handed to a blocking-pool thread and back: a
        // change scan reads a large file in some ten thousand calls, and the
        // hand-offs cost more than the reads. The price: a call stuck in a
        // hung file system (a dead network mount, a FIFO) cannot be timed out.
        wasi.allow_blocking_current_thread(true);
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        wasi.stderr(stderr.clone());
        for (guest, host) in &system.directories {
            wasi.preopened_dir(host, format!("/{guest}"), FsPerms::ReadWrite)
                .map_err(trap)?;
        }
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(system.limits.memory_bytes)
                .trap_on_grow_failure(true)
                .instances(20)
                .tables(20)
                .memories(4)
                .build(),
            system: Arc::new(system.clone()),
            http: self.http.for_system(system),
            sql: sql::Connections::new(system, self.pools.clone()),
            state,
            deadline: Instant::now(),
            denials: Vec::new(),
            rejects: Vec::new(),
            reject_limit: host::REJECT_LIMIT,
            log_lines: 0,
            reached: false,
        };
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter(|h| &mut h.limits);
        store.set_hostcall_fuel(error::hostcall_fuel(&system.limits));
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(LimitExceeded::Time.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store.data_mut().deadline = Instant::now() + system.limits.call_timeout;
        let instance = connector
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| classify(&system.name, &system.limits, e, &stderr))?;
        let guests = connector.guests.load(&mut store, &instance).map_err(trap)?;
        let config = serde_json::to_string(&system.config).unwrap_or_else(|_| "{}".into());
        Ok(Instance {
            store: Some(store),
            guests,
            ctx: Context {
                system: system.name.clone(),
                config,
                dry_run: false,
            },
            system: system.name.clone(),
            limits: system.limits,
            stderr,
        })
    }
}

/// Logs the rejects no one took (told outside `read` and `changes`, or
/// left by a call that failed) and forgets them: the record is read again.
fn leftover_rejects(state: &mut HostState) {
    for r in state.rejects.drain(..) {
        tracing::warn!(system = %state.system.name, entity = %r.entity, "a rejected record outside a read: {}", r.reason);
    }
}

/// A connector component, compiled and linked once.
pub struct Connector {
    pre: InstancePre<HostState>,
    guests: Guests,
    hash: String,
}

impl Connector {
    /// What the component exports.
    pub fn exports(&self) -> Exports {
        Exports {
            source: self.guests.source.is_some(),
            destination: self.guests.destination.is_some(),
            webhook: self.guests.webhook.is_some(),
            lookup: self.guests.lookup.is_some(),
            keyed: self.guests.keyed.is_some(),
        }
    }
    /// A short content hash identifying the component.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// Export indices of the interfaces a component has, looked up once.
#[derive(Clone)]
struct Guests {
    connector: ex::connector::GuestIndices,
    source: Option<ex::source::GuestIndices>,
    destination: Option<ex::destination::GuestIndices>,
    webhook: Option<ex::webhook::GuestIndices>,
    lookup: Option<ex::lookup::GuestIndices>,
    keyed: Option<ex::keyed_destination::GuestIndices>,
}

impl Guests {
    fn new(pre: &InstancePre<HostState>) -> wasmtime::Result<Guests> {
        Ok(Guests {
            connector: ex::connector::GuestIndices::new(pre)?,
            source: ex::source::GuestIndices::new(pre).ok(),
            destination: ex::destination::GuestIndices::new(pre).ok(),
            webhook: ex::webhook::GuestIndices::new(pre).ok(),
            lookup: ex::lookup::GuestIndices::new(pre).ok(),
            keyed: ex::keyed_destination::GuestIndices::new(pre).ok(),
        })
    }

    fn load(
        &self,
        store: &mut wasmtime::Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Loaded> {
        Ok(Loaded {
            connector: self.connector.load(&mut *store, instance)?,
            source: self
                .source
                .as_ref()
                .map(|g| g.load(&mut *store, instance))
                .transpose()?,
            destination: self
                .destination
                .as_ref()
                .map(|g| g.load(&mut *store, instance))
                .transpose()?,
            webhook: self
                .webhook
                .as_ref()
                .map(|g| g.load(&mut *store, instance))
                .transpose()?,
            lookup: self
                .lookup
                .as_ref()
                .map(|g| g.load(&mut *store, instance))
                .transpose()?,
            keyed: self
                .keyed
                .as_ref()
                .map(|g| g.load(&mut *store, instance))
                .transpose()?,
        })
    }
}

struct Loaded {
    connector: ex::connector::Guest,
    source: Option<ex::source::Guest>,
    destination: Option<ex::destination::Guest>,
    webhook: Option<ex::webhook::Guest>,
    lookup: Option<ex::lookup::Guest>,
    keyed: Option<ex::keyed_destination::Guest>,
}

/// One system's connector, instantiated in its own store for one run.
pub struct Instance {
    store: Option<wasmtime::Store<HostState>>,
    guests: Loaded,
    ctx: Context,
    system: String,
    limits: Limits,
    stderr: MemoryOutputPipe,
}

impl Instance {
    /// The system's name.
    pub fn system(&self) -> &str {
        &self.system
    }

    /// Marks every later call as part of a dry run (the connector is told so).
    pub fn set_dry_run(&mut self) {
        self.ctx.dry_run = true;
    }

    /// Policy denials (http, sql) this instance ran into, for reporting even if
    /// the connector swallowed the error.
    pub fn denials(&self) -> Vec<String> {
        self.store
            .as_ref()
            .map(|s| s.data().denials.clone())
            .unwrap_or_default()
    }

    /// Runs one call with the deadline reset and the wall-clock timeout around it.
    async fn call<T, F>(&mut self, name: &'static str, f: F) -> Result<T, CallError>
    where
        F: for<'a> FnOnce(
            &'a Loaded,
            &'a Context,
            &'a mut wasmtime::Store<HostState>,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = wasmtime::Result<Result<T, ConnectorError>>>
                    + Send
                    + 'a,
            >,
        >,
    {
        let system = self.system.clone();
        let Some(store) = self.store.as_mut() else {
            return Err(CallError::Stopped { system });
        };
        let limit = self.limits.call_timeout;
        leftover_rejects(store.data_mut());
        store.data_mut().log_lines = 0;
        // Files in a granted directory are written through WASI, unseen:
        // a system with directories counts as reached by every call.
        let files = !store.data().system.directories.is_empty();
        store.data_mut().reached = files;
        store.data_mut().deadline = Instant::now() + limit;
        store.set_epoch_deadline(1);
        // The epoch callback stops the guest at the deadline; the timeout also
        // covers time spent waiting in host calls (but for file operations,
        // which block this thread: see the module's doc). A little slack lets
        // the callback win when both apply, for a precise message.
        let began = Instant::now();
        let outcome = tokio::time::timeout(
            limit + EPOCH_TICK * 10,
            f(&self.guests, &self.ctx, &mut *store),
        )
        .await;
        crate::telemetry::events::ConnectorCalled {
            system: &system,
            call: name,
            took: began.elapsed(),
        }
        .emit();
        store.data_mut().reject_limit = host::REJECT_LIMIT;
        if !matches!(name, "read" | "changes") {
            leftover_rejects(store.data_mut());
        }
        match outcome {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(error))) => Err(CallError::Connector { system, error }),
            Ok(Err(e)) => {
                self.store = None;
                Err(classify(&system, &self.limits, e, &self.stderr))
            }
            Err(_) => {
                self.store = None;
                Err(CallError::Timeout { system, limit })
            }
        }
    }

    /// Describes the connector.
    pub async fn describe(&mut self) -> Result<types::Description, CallError> {
        self.call("describe", |g, _, s| {
            Box::pin(async move { g.connector.call_describe(s).await.map(Ok) })
        })
        .await
    }

    /// Checks the connection and returns the schema of the given entities.
    pub async fn check(
        &mut self,
        entities: &[EntityBinding],
    ) -> Result<Vec<EntitySchema>, CallError> {
        let entities = entities.to_vec();
        self.call("check", move |g, c, s| {
            Box::pin(async move { g.connector.call_check(s, c, &entities).await })
        })
        .await
    }

    fn require<T>(&self, present: Option<&T>, interface: &'static str) -> Result<(), CallError> {
        match present {
            Some(_) => Ok(()),
            None => Err(CallError::Unsupported {
                system: self.system.clone(),
                interface,
            }),
        }
    }

    /// The records the connector rejected in the last `read` or `changes`
    /// call (see [`Reject`]).
    pub fn take_rejects(&mut self) -> Vec<Reject> {
        self.store
            .as_mut()
            .map(|s| std::mem::take(&mut s.data_mut().rejects))
            .unwrap_or_default()
    }

    /// Lets the next call report as many rejects as it may return records.
    fn allow_rejects(&mut self, limit: u32) {
        if let Some(store) = self.store.as_mut() {
            store.data_mut().reject_limit = (limit as usize).max(1);
        }
    }

    /// Reads one page of a full snapshot.
    pub async fn read(
        &mut self,
        entity: &EntityBinding,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page, CallError> {
        self.require(self.guests.source.as_ref(), "source")?;
        self.allow_rejects(limit);
        let entity = entity.clone();
        let asked = cursor.clone();
        let page = self
            .call("read", move |g, c, s| {
                Box::pin(async move {
                    let src = g.source.as_ref().expect("checked above");
                    src.call_read(s, c, &entity, cursor.as_deref(), limit).await
                })
            })
            .await?;
        let stuck = page.next.is_some() && page.next == asked;
        output::check(self, &page.items, limit, stuck)?;
        Ok(page)
    }

    /// The change cursor of "now", taken before a full snapshot.
    pub async fn checkpoint(&mut self, entity: &EntityBinding) -> Result<String, CallError> {
        self.require(self.guests.source.as_ref(), "source")?;
        let entity = entity.clone();
        self.call("checkpoint", move |g, c, s| {
            Box::pin(async move {
                let src = g.source.as_ref().expect("checked above");
                src.call_checkpoint(s, c, &entity).await
            })
        })
        .await
    }

    /// Changes since a cursor.
    pub async fn changes(
        &mut self,
        entity: &EntityBinding,
        cursor: String,
        limit: u32,
    ) -> Result<types::ChangeBatch, CallError> {
        self.require(self.guests.source.as_ref(), "source")?;
        self.allow_rejects(limit);
        let entity = entity.clone();
        let asked = cursor.clone();
        let batch = self
            .call("changes", move |g, c, s| {
                Box::pin(async move {
                    let src = g.source.as_ref().expect("checked above");
                    src.call_changes(s, c, &entity, &cursor, limit).await
                })
            })
            .await?;
        let stuck = batch.more && batch.cursor == asked;
        output::check(self, &batch.items, limit, stuck)?;
        Ok(batch)
    }

    /// Hands an incoming webhook request to the connector.
    pub async fn handle(
        &mut self,
        entities: &[EntityBinding],
        request: types::Incoming,
    ) -> Result<types::Outcome, CallError> {
        self.require(self.guests.webhook.as_ref(), "webhook")?;
        let entities = entities.to_vec();
        self.call("handle", move |g, c, s| {
            Box::pin(async move {
                let hook = g.webhook.as_ref().expect("checked above");
                hook.call_handle(s, c, &entities, &request).await
            })
        })
        .await
    }

    /// Whether the connector can read records by id.
    pub fn can_look_up(&self) -> bool {
        self.guests.lookup.is_some()
    }

    /// Reads the current records with these ids; gone records are left out.
    pub async fn lookup(
        &mut self,
        entity: &EntityBinding,
        ids: Vec<String>,
    ) -> Result<Vec<Change>, CallError> {
        self.require(self.guests.lookup.as_ref(), "lookup")?;
        let entity = entity.clone();
        self.call("lookup", move |g, c, s| {
            Box::pin(async move {
                let lookup = g.lookup.as_ref().expect("checked above");
                lookup.call_get(s, c, &entity, &ids).await
            })
        })
        .await
    }

    /// Writes a batch; one outcome per item. Through `keyed-destination`
    /// where the component exports it, each item with its key; else through
    /// `destination`, without the keys.
    pub async fn write(
        &mut self,
        entity: &EntityBinding,
        items: Vec<KeyedWrite>,
    ) -> Result<Vec<KeyedOutcome>, CallError> {
        let entity = entity.clone();
        if self.guests.keyed.is_some() {
            return self
                .call("write", move |g, c, s| {
                    Box::pin(async move {
                        let dst = g.keyed.as_ref().expect("checked above");
                        dst.call_write(s, c, &entity, &items).await
                    })
                })
                .await;
        }
        self.require(self.guests.destination.as_ref(), "destination")?;
        let items: Vec<_> = items.into_iter().map(|k| k.item).collect();
        let outcomes = self
            .call("write", move |g, c, s| {
                Box::pin(async move {
                    let dst = g.destination.as_ref().expect("checked above");
                    dst.call_write(s, c, &entity, &items).await
                })
            })
            .await?;
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                Ok(w) => KeyedOutcome::Written(w),
                Err(e) => KeyedOutcome::Failed(e),
            })
            .collect())
    }

    /// Whether the last call may have reached the system (see
    /// `HostState::reached`); true when that is not known (the instance
    /// stopped).
    pub fn reached_system(&self) -> bool {
        self.store.as_ref().is_none_or(|s| s.data().reached)
    }

    /// Whether the connector can find records by key or field values.
    pub fn can_find(&self) -> bool {
        self.guests.keyed.is_some()
    }

    /// For each probe, the records the connector finds for it.
    pub async fn find(
        &mut self,
        entity: &EntityBinding,
        probes: Vec<Probe>,
    ) -> Result<Vec<Vec<Change>>, CallError> {
        self.require(self.guests.keyed.as_ref(), "keyed-destination")?;
        let entity = entity.clone();
        self.call("find", move |g, c, s| {
            Box::pin(async move {
                let keyed = g.keyed.as_ref().expect("checked above");
                keyed.call_find(s, c, &entity, &probes).await
            })
        })
        .await
    }
}
