//! The part of accepting a source's records that needs no store, done on
//! a blocking thread while the pass accepts the page before: bodies
//! parsed, mapped, validated, and where possible hashed and serialized,
//! with the writes of new records to the targets along the intake.

use crate::manifest::{Entity, SystemEntity};
use crate::mapping::{self, Record};
use crate::runtime::types::{Change, Operation};
use crate::store;
use serde_json::Value;

/// What accepting a source's upserts needs of their entity that is not in
/// the store: the entity (rules, references) and the source's binding (its
/// mapping). Shared with the tasks that read pages.
pub(super) struct Shape {
    pub(super) entity: Entity,
    pub(super) binding: SystemEntity,
    /// The bindings of the targets written along the intake, in turn.
    pub(super) along: Vec<SystemEntity>,
    /// Whether the records read are mostly new (as in the last page
    /// accepted): only then are their writes along made ready, which an
    /// unchanged record does not need.
    pub(super) mostly_new: std::sync::atomic::AtomicBool,
}

impl Shape {
    /// The shape of an intake with the targets `along` (their bindings),
    /// whose records are taken for mostly `new` until its first page is
    /// accepted.
    pub(super) fn of(
        entity: &Entity,
        binding: &SystemEntity,
        along: Vec<SystemEntity>,
        new: bool,
    ) -> std::sync::Arc<Shape> {
        std::sync::Arc::new(Shape {
            entity: entity.clone(),
            binding: binding.clone(),
            along,
            mostly_new: new.into(),
        })
    }

    /// Learns from an accepted page: `created` of its `read` records were new.
    pub(super) fn learn(&self, created: u64, read: u64) {
        self.mostly_new
            .store(created * 2 >= read, std::sync::atomic::Ordering::Relaxed);
    }

    /// Each item prepared, and sealed where it can be; none for deletes.
    pub(super) fn prepare(&self, items: &[Change]) -> Vec<Option<Prepared>> {
        let along: &[SystemEntity] = if self.mostly_new.load(std::sync::atomic::Ordering::Relaxed) {
            &self.along
        } else {
            &[]
        };
        items
            .iter()
            .map(|item| {
                (item.op != Operation::Delete)
                    .then(|| Prepared::of(&self.entity, &self.binding, item, Some(along)))
            })
            .collect()
    }
}

/// The part of accepting an upsert that needs no store: the body parsed,
/// mapped to the canonical model and validated, and, for an entity without
/// references (nothing left to translate through the links), its hash and
/// canonical text. A page's items are prepared on another thread while this
/// one accepts the page before.
pub(super) enum Prepared {
    /// Why the body is refused (a dead letter).
    Refused(String),
    /// The canonical record, whose references are still to translate.
    Record(Record),
    /// The final hash, canonical text and match key, and the record's write
    /// to each target along the intake should it be new. The record itself
    /// is dropped on the preparing thread: most reads of a full pass change
    /// nothing and need only the hash (a conflict parses the text back).
    Sealed {
        hash: store::Hash,
        text: String,
        key: Option<String>,
        ready: Vec<Option<Ready>>,
    },
}

/// A new record's write to a target along the intake, made on the
/// preparing thread: the key it is written under (none where the target
/// assigns it) and its body in the target's fields. None for a record the
/// target's filter leaves out or its mapping cannot take: the outbox and its
/// dispatcher deal with those as with any other.
pub(super) struct Ready {
    pub(super) id: Option<String>,
    pub(super) data: String,
}

impl Ready {
    pub(super) fn of(target: &SystemEntity, record: &Record) -> Option<Ready> {
        if !target.mapping.accepts(record).ok()? {
            return None;
        }
        let data = target.mapping.from_canonical(record).ok()?;
        Some(Ready {
            id: target.mapping.shared_key(record),
            data: Value::Object(data).to_string(),
        })
    }
}

impl Prepared {
    /// An upsert prepared; given the targets `along` the intake, sealed
    /// when its entity has no references.
    pub(super) fn of(
        entity: &Entity,
        binding: &SystemEntity,
        item: &Change,
        along: Option<&[SystemEntity]>,
    ) -> Prepared {
        match (canonical(entity, binding, item), along) {
            (Err(reason), _) => Prepared::Refused(reason),
            (Ok(r), Some(along)) if entity.references.is_empty() => Prepared::Sealed {
                hash: mapping::hash(&r),
                text: serde_json::to_string(&r).unwrap_or_default(),
                key: mapping::match_key(&entity.match_on, &r),
                ready: along.iter().map(|t| Ready::of(t, &r)).collect(),
            },
            (Ok(r), _) => Prepared::Record(r),
        }
    }
}

/// An accepted upsert's content: its canonical text when it came sealed,
/// else the record (serialized only if it is stored).
pub(super) enum Content {
    Text(String),
    Record(Record),
}

impl Content {
    /// The canonical text, and the record when it was at hand.
    pub(super) fn into_parts(self) -> (String, Option<Record>) {
        match self {
            Content::Text(text) => (text, None),
            Content::Record(r) => (serde_json::to_string(&r).unwrap_or_default(), Some(r)),
        }
    }
}

/// An upsert's body as a canonical record, or why it cannot be one.
pub(super) fn canonical(
    entity: &Entity,
    binding: &SystemEntity,
    item: &Change,
) -> Result<Record, String> {
    let map = match item.data.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(map))) => map,
        Some(Ok(_)) => {
            return Err("bad record from the source: record body is not a JSON object".into())
        }
        Some(Err(e)) => {
            return Err(format!(
                "bad record from the source: record body is not valid JSON: {e}"
            ))
        }
        None => return Err("bad record from the source: upsert without a record body".into()),
    };
    let record = binding
        .mapping
        .to_canonical(map)
        .map_err(|e| format!("cannot map the record: {e}"))?;
    mapping::validate(&entity.rules, &record).map_err(|v| format!("invalid record: {v}"))?;
    Ok(record)
}
