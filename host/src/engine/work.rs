//! The types handed from one step of a pass to the next: where a page's
//! cursor goes, the writes planned from the outbox or from memory, and a
//! target's delivery with its write in flight.

use super::error::SyncError;
use crate::manifest::SystemEntity;
use crate::runtime::types::{EntityBinding, KeyedWrite, WriteItem};
use crate::runtime::{CallError, Instance};
use crate::store::{self, AuditOp, Link, OutboxRow, Tx};

/// The binding of a system's entity as the connector sees it.
pub fn binding(e: &SystemEntity) -> EntityBinding {
    EntityBinding {
        name: e.name.clone(),
        primary_key: e.primary_key.clone(),
        settings: e.settings.to_string(),
    }
}

/// Where a source's cursor goes after a page commits.
pub(super) enum CursorUpdate {
    /// Nowhere (parked changes retried).
    None,
    /// Nowhere, and these inbox entries are removed.
    Inbox(Vec<i64>),
    /// A full read continues at this state.
    Reading(String),
    /// A full read ended: the change cursor is set, or cleared when there is
    /// none to go on from (the next pass reads in full).
    ReadDone(Option<String>),
    /// A change batch: the new change cursor.
    Changes(String),
}

/// Whether writing a batch twice does no harm: every item names its key.
pub(super) fn idempotent(planned: &[Planned]) -> bool {
    planned.iter().all(|p| p.item.id.is_some())
}

/// The delivery of one entity to one target, served in turn with the others.
pub(super) struct Delivery<'e> {
    pub(super) t: usize,
    pub(super) tb: &'e SystemEntity,
    pub(super) bind: EntityBinding,
    pub(super) target: String,
    /// The last outbox row planned.
    pub(super) after: i64,
    /// Whether deletes are held back (over `max_delete_percent`, or, along
    /// an intake, until the dispatcher).
    pub(super) hold_deletes: bool,
    /// Only the creates sent whose outcome is not known (settled at the
    /// start of a pass, before anything new).
    pub(super) only_tried: bool,
    /// Along an intake: once nothing is due, the last write is left in
    /// flight instead of waited for.
    pub(super) linger: bool,
    /// The write on its way to the target.
    pub(super) in_flight: Option<InFlight>,
    /// Along an intake: the new records accepted for this target, planned
    /// as they were accepted and written before any outbox row.
    pub(super) fresh: std::collections::VecDeque<Planned>,
    /// The outbox rows taken in this pass (for `SyncOptions::pass_rows`).
    pub(super) taken: usize,
}

/// A batch being written by a target's connector on a task of its own.
pub(super) struct InFlight {
    pub(super) task: tokio::task::JoinHandle<(Instance, WriteResult)>,
    pub(super) planned: Vec<Planned>,
}

/// The outcome of a connector's `write` call.
pub(super) type WriteResult = Result<Vec<crate::runtime::types::KeyedOutcome>, CallError>;

/// What became of a write in flight.
pub(super) enum Landed {
    /// Written (item by item outcomes): record them.
    Done(Vec<Planned>, Vec<crate::runtime::types::KeyedOutcome>),
    /// Failed and postponed; the next batch may go.
    Skip,
    /// Failed so that the target takes no more writes in this pass.
    Stop,
}

/// A planned write as it is sent: a create into a system that keeps weir's
/// key (`key_field`) carries it in that field ([`record_key`]).
fn with_key(p: &Planned, key_field: Option<&str>) -> WriteItem {
    let mut item = p.item.clone();
    let (Some(field), Kind::Create, None) = (key_field, p.kind, &item.id) else {
        return item;
    };
    let data = item
        .data
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>);
    if let Some(Ok(serde_json::Value::Object(mut record))) = data {
        record.insert(field.to_string(), record_key(p.gid, &p.hash).into());
        item.data = Some(serde_json::Value::Object(record).to_string());
    }
    item
}

/// weir's key of a record it creates, as a `key_field` keeps it: the
/// golden record's id and the start of the content hash it was created
/// with (`57:1a2b3c4d`). The hash tells this create from another one of a
/// golden record under the same id (a store restored from a backup hands
/// out the ids made since again).
pub(super) fn record_key(gid: i64, hash: &store::Hash) -> String {
    format!("{gid}:{}", hex::encode(&hash[..4]))
}

/// The golden id and hash start of a [`record_key`].
pub(super) fn parse_record_key(text: &str) -> Option<(i64, &str)> {
    let (gid, hash) = text.trim().split_once(':')?;
    Some((gid.parse().ok()?, hash))
}

impl InFlight {
    /// Starts writing `planned` through `instance`.
    pub(super) fn start(
        mut instance: Instance,
        bind: &EntityBinding,
        tb: &SystemEntity,
        planned: Vec<Planned>,
    ) -> InFlight {
        let items: Vec<KeyedWrite> = planned
            .iter()
            .map(|p| KeyedWrite {
                item: with_key(p, tb.key_field.as_deref()),
                key: p.gid.to_string(),
                seen: p.seen.clone(),
            })
            .collect();
        let bind = bind.clone();
        let task = tokio::spawn(async move {
            let result = instance.write(&bind, items).await;
            (instance, result)
        });
        InFlight { task, planned }
    }

    /// Waits for the write; the instance comes back with the outcome.
    pub(super) async fn finish(self) -> Result<(Instance, Vec<Planned>, WriteResult), SyncError> {
        let (instance, result) = self
            .task
            .await
            .map_err(|e| SyncError::task("connector write", e))?;
        Ok((instance, self.planned, result))
    }
}

/// A planned write: of an outbox row, or of a new record from a span.
pub(super) struct Planned {
    pub(super) gid: i64,
    pub(super) kept: Kept,
    pub(super) hash: store::Hash,
    pub(super) kind: Kind,
    pub(super) item: WriteItem,
    /// A create of the record was sent before, with this content, and its
    /// outcome is not known: the target is asked before it is sent again.
    pub(super) tried: Option<store::Hash>,
    /// The canonical record written, where the plan read it: the target's
    /// base once the write is recorded, should the golden record change
    /// meanwhile.
    pub(super) canonical: Option<String>,
    /// An update's changed fields with what weir last saw in them, in the
    /// target's field names: the write is made only if they still hold it.
    pub(super) seen: Option<String>,
}

/// Where a planned write is kept in the store until it is recorded.
pub(super) enum Kept {
    /// An outbox row.
    Row { id: i64, attempts: u32 },
    /// A span of new records; the span goes with the `last` of them.
    Span { id: i64, last: bool },
}

impl Kept {
    pub(super) fn of(row: &OutboxRow) -> Kept {
        Kept::Row {
            id: row.id,
            attempts: row.attempts,
        }
    }
}

impl Planned {
    /// Failed attempts so far.
    pub(super) fn attempts(&self) -> u32 {
        match self.kept {
            Kept::Row { attempts, .. } => attempts,
            Kept::Span { .. } => 0,
        }
    }

    /// Whether it is the write of a new record from a span.
    pub(super) fn in_span(&self) -> bool {
        matches!(self.kept, Kept::Span { .. })
    }

    /// Ends what keeps a recorded write (delivered, or refused for good):
    /// its outbox row, unless the record changed since it was planned; its
    /// span, with the last of the span's records.
    pub(super) fn settle(&self, tx: &mut Tx<'_>) -> store::Result<()> {
        match self.kept {
            Kept::Row { id, .. } => {
                tx.outbox_delivered(id, self.gid, &self.hash, self.kind.deletes())
            }
            Kept::Span { id, last: true } => tx.span_done(id),
            Kept::Span { last: false, .. } => Ok(()),
        }
    }

    /// Keeps a failed write for another attempt at `at`: its outbox row
    /// postponed, or, from a span, a row of its own. Returns the row.
    pub(super) fn retry(
        &self,
        tx: &mut Tx<'_>,
        target: &str,
        entity: &str,
        at: &str,
        error: &str,
        failed: bool,
    ) -> store::Result<i64> {
        match self.kept {
            Kept::Row { id, .. } => {
                tx.outbox_retry(id, at, error, failed)?;
                Ok(id)
            }
            Kept::Span { id, last } => {
                let row = tx.enqueue_failed(target, entity, self.gid, at, error)?;
                if self.kind == Kind::Create {
                    // It may have landed: asked about before it is sent again.
                    tx.try_create(row, &self.hash)?;
                }
                if last {
                    tx.span_done(id)?;
                }
                Ok(row)
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Create,
    Update,
    Delete,
    SoftDelete,
}

impl Kind {
    /// What its audit row records.
    pub(super) fn operation(self) -> AuditOp {
        match self {
            Kind::Create => AuditOp::WriteCreate,
            Kind::Update | Kind::SoftDelete => AuditOp::WriteUpdate,
            Kind::Delete => AuditOp::WriteDelete,
        }
    }

    /// Whether the write delivers the record's deletion.
    pub(super) fn deletes(self) -> bool {
        matches!(self, Kind::Delete | Kind::SoftDelete)
    }
}

/// What became of a record read without a link.
pub(super) enum Identified {
    /// None of weir's: a new record.
    New,
    /// A create weir sent there itself, read back: linked as written.
    Answered(Link),
    /// The same real-world record as a golden one: linked.
    Matched(Link),
    /// Its key matches several golden records: held for a person.
    Held,
}

/// A person's decision on a held match, carried out as the record is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// A new golden record.
    New,
    /// The golden record with this global id.
    Link(i64),
}
