//! Looking before creating: a create is sent to a target only once weir
//! knows the target does not hold the record. A target is asked (through
//! its connector's `keyed-destination.find`) for each create whose earlier
//! attempt has an unknown outcome (a crash, a timeout), and, for an entity
//! with a match key, for every create in a target that weir does not read
//! (a target that is read is matched as its records are read). A create
//! that is sent is first marked as tried, in a transaction of its own.

use super::error::SyncError;
use super::pass::Pass;
use super::work::{Delivery, Kept, Kind, Planned};
use crate::manifest::{Entity, SystemEntity};
use crate::mapping::{self, Record};
use crate::runtime::types::{Change, ErrorKind, Probe};
use crate::runtime::CallError;
use crate::store::{self, AuditOp, NewAudit, NewMatch, Outcome, Tx};
use serde_json::Value;

/// What one probe is about: its planned write, the golden record's key
/// and the fields asked for.
struct Asked {
    at: usize,
    gid: i64,
    key: Option<String>,
    fields: Record,
}

impl<'m> Pass<'_, 'm> {
    /// Settles the creates of a batch before it is written to `d`'s target:
    /// those the target is asked about and holds become updates of the
    /// record found (linked); those it holds several of are held for a
    /// person (`weir matches`); the rest are marked as tried. None when the
    /// target failed (the batch is postponed).
    pub(super) async fn look_before_create(
        &mut self,
        entity: &Entity,
        d: &Delivery<'_>,
        mut planned: Vec<Planned>,
    ) -> Result<Option<Vec<Planned>>, SyncError> {
        let reads = self.participants[d.t]
            .system
            .entity(&entity.name)
            .is_some_and(|b| b.direction.reads());
        let ask = |p: &Planned| {
            p.kind == Kind::Create
                && p.item.id.is_none()
                && (p.tried.is_some() || (!entity.match_on.is_empty() && !reads))
        };
        let can_find = self.participants[d.t]
            .instance
            .as_ref()
            .is_some_and(|i| i.can_find());
        let wanted = planned.iter().filter(|p| ask(p)).count();
        let found = if wanted > 0 && can_find {
            let asked = self.store.transaction(|tx| {
                let mut asked = Vec::new();
                for (at, p) in planned.iter().enumerate().filter(|(_, p)| ask(p)) {
                    asked.extend(probe_of(tx, entity, d.tb, &d.target, p, at)?);
                }
                Ok(asked)
            })?;
            match self.find(d, &asked).await {
                Ok(Some(found)) => Some((asked, found)),
                Ok(None) => None,
                Err(e) => {
                    self.postpone(&d.target, &entity.name, &planned, &e.to_string())?;
                    self.report.counts.failed += planned.len() as u64;
                    self.fail(d.t, e);
                    return Ok(None);
                }
            }
        } else {
            None
        };
        if found.is_none()
            && planned
                .iter()
                .any(|p| p.tried.is_some() && p.item.id.is_none())
        {
            self.cannot_look(d, entity);
        }
        let target = d.target.clone();
        let run_id = self.run_id;
        let (linked, held, planned) = self.store.transaction(|tx| {
            let mut drop = vec![false; planned.len()];
            let (linked, held) = match found {
                Some((asked, found)) => {
                    let at = (entity, d.tb, target.as_str(), reads, run_id);
                    link_found(tx, at, &mut planned, &asked, found, &mut drop)?
                }
                None => (0, 0),
            };
            let mut kept = Vec::with_capacity(planned.len());
            for (p, drop) in planned.into_iter().zip(drop) {
                if drop {
                    continue;
                }
                if let (Kind::Create, None, Kept::Row { id, .. }) = (p.kind, &p.item.id, &p.kept) {
                    tx.try_create(*id, &p.hash)?;
                }
                kept.push(p);
            }
            Ok((linked, held, kept))
        })?;
        let identity = self
            .report
            .identity
            .entry((target, entity.name.clone()))
            .or_default();
        identity.found += linked;
        identity.ambiguous += held;
        Ok(Some(planned))
    }

    /// Asks the target for the records of `asked`; none when its connector
    /// cannot find records of the entity (it said `unsupported`).
    async fn find(
        &mut self,
        d: &Delivery<'_>,
        asked: &[Asked],
    ) -> Result<Option<Vec<Vec<Change>>>, CallError> {
        let Some(instance) = self.participants[d.t].instance.as_mut() else {
            return Err(CallError::Stopped {
                system: d.target.clone(),
            });
        };
        let probes = asked
            .iter()
            .map(|a| Probe {
                key: a.gid.to_string(),
                fields: Value::Object(a.fields.clone()).to_string(),
            })
            .collect();
        match instance.find(&d.bind, probes).await {
            Ok(found) if found.len() == asked.len() => Ok(Some(found)),
            Ok(found) => Err(CallError::Trap {
                system: d.target.clone(),
                message: format!(
                    "connector returned {} answers for {} probes",
                    found.len(),
                    asked.len()
                ),
            }),
            Err(CallError::Connector { error, .. }) if error.kind == ErrorKind::Unsupported => {
                tracing::debug!(system = %d.target, "find: {}", error.message);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Says once per pass and target that creates with an unknown outcome
    /// are sent again without asking the target first.
    fn cannot_look(&mut self, d: &Delivery<'_>, entity: &Entity) {
        let note = format!(
            "system '{}' cannot be asked whether creates of {} sent before a crash or a timeout landed \
             (its connector exports no keyed-destination `find` for them): they are sent again, \
             which may make duplicates there",
            d.target, entity.name
        );
        if !self.report.notes.contains(&note) {
            tracing::warn!("{note}");
            self.report.notes.push(note);
        }
    }
}

/// The probe of a planned create: the golden record's match key and the
/// fields it is asked by (the match key's fields in the target's names, or
/// without a match key every field the create writes).
fn probe_of(
    tx: &mut Tx<'_>,
    entity: &Entity,
    tb: &SystemEntity,
    target: &str,
    p: &Planned,
    at: usize,
) -> store::Result<Option<Asked>> {
    if tx.decided_new(target, p.gid)? {
        // A person decided: a record of its own, not one of those found.
        return Ok(None);
    }
    if let (Some(field), Some(tried)) = (&tb.key_field, p.tried) {
        // The record weir created carries weir's key, edited or not.
        let key = super::work::record_key(p.gid, &tried);
        let fields = Record::from_iter([(field.clone(), Value::String(key))]);
        return Ok(Some(Asked {
            at,
            gid: p.gid,
            key: None,
            fields,
        }));
    }
    let written: Record = p
        .item
        .data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    if entity.match_on.is_empty() {
        return Ok(Some(Asked {
            at,
            gid: p.gid,
            key: None,
            fields: written,
        }));
    }
    let Some(golden) = tx.golden(p.gid)? else {
        return Ok(None);
    };
    let canonical = golden.record(tx.path())?;
    let Some(key) = mapping::match_key(&entity.match_on, &canonical) else {
        // Without a key the record is recognised by nothing but a link.
        return Ok(p.tried.is_some().then_some(Asked {
            at,
            gid: p.gid,
            key: None,
            fields: written,
        }));
    };
    let sub: Record = entity
        .match_on
        .iter()
        .filter_map(|f| Some((f.clone(), canonical.get(f)?.clone())))
        .collect();
    let fields = tb.mapping.from_canonical(&sub).unwrap_or_default();
    Ok(Some(Asked {
        at,
        gid: p.gid,
        key: Some(key),
        fields,
    }))
}

/// Links the records the target was found to hold for the creates asked
/// about: one found, the create is settled (recorded as landed where the
/// target is read and the record was tried as it is, else made an update
/// of the record found); several, the record is held for a person. Marks
/// in `drop` the creates that are not to be written. Returns how many
/// were linked and held.
fn link_found(
    tx: &mut Tx<'_>,
    (entity, tb, target, reads, run_id): (&Entity, &SystemEntity, &str, bool, i64),
    planned: &mut [Planned],
    asked: &[Asked],
    found: Vec<Vec<Change>>,
    drop: &mut [bool],
) -> store::Result<(u64, u64)> {
    let (mut linked, mut held) = (0, 0);
    for (a, records) in asked.iter().zip(found) {
        let p = &mut planned[a.at];
        let mine = theirs(tx, entity, tb, target, p.gid, a, records)?;
        match &mine[..] {
            [] => {}
            [(id, _)] if reads && p.tried == Some(p.hash) => {
                // The create landed, as it was planned: recorded
                // as if it had been then. The target's record is
                // read by the intake, and an edit made there since
                // is merged against what weir wrote, not written
                // over.
                let canonical = p.canonical.as_deref();
                tx.record_written(&entity.name, target, id, p.gid, &p.hash, canonical, false)?;
                tx.create_settled(target, p.gid)?;
                tx.audit(NewAudit {
                    run_id: Some(run_id),
                    system: target,
                    entity: &entity.name,
                    global_id: Some(p.gid),
                    local_id: Some(id),
                    actor: None,
                    operation: AuditOp::WriteCreate,
                    before: None,
                    after: p.item.data.as_deref(),
                    outcome: Outcome::Ok,
                })?;
                p.settle(tx)?;
                drop[a.at] = true;
                linked += 1;
            }
            [(id, hash)] => {
                tx.record_seen(&entity.name, target, id, p.gid, hash, None)?;
                tx.create_settled(target, p.gid)?;
                p.kind = Kind::Update;
                p.item.id = Some(id.clone());
                linked += 1;
            }
            many => {
                let ids: Vec<String> = many.iter().map(|(id, _)| id.clone()).collect();
                tx.hold_match(NewMatch {
                    entity: &entity.name,
                    system: target,
                    local_id: None,
                    global_id: Some(p.gid),
                    match_key: a.key.as_deref().unwrap_or(""),
                    candidates: &ids,
                    change: None,
                })?;
                tracing::warn!(entity = %entity.name, system = %target, global_id = p.gid, "ambiguous match: {} records of {target} match ({}); held, see `weir matches`", ids.len(), ids.join(", "));
                p.settle(tx)?;
                drop[a.at] = true;
                held += 1;
            }
        }
    }
    Ok((linked, held))
}

/// The records of the target, of those found for `a`, that are the golden
/// record `gid`: their id and content hash. A record linked to another
/// golden record is that one's.
fn theirs(
    tx: &mut Tx<'_>,
    entity: &Entity,
    tb: &SystemEntity,
    target: &str,
    gid: i64,
    a: &Asked,
    found: Vec<Change>,
) -> store::Result<Vec<(String, store::Hash)>> {
    let mut mine = Vec::new();
    for change in found {
        let Some(Ok(Value::Object(data))) = change.data.as_deref().map(serde_json::from_str) else {
            continue;
        };
        let same = match &a.key {
            Some(key) => tb
                .mapping
                .to_canonical(data.clone())
                .ok()
                .and_then(|c| mapping::match_key(&entity.match_on, &c))
                .is_some_and(|k| &k == key),
            None => mapping::same_values(&a.fields, &data),
        };
        if !same || mine.iter().any(|(id, _)| id == &change.id) {
            continue;
        }
        if let Some(l) = tx.link_by_local(&entity.name, target, &change.id)? {
            if l.global_id != gid {
                continue;
            }
        }
        let hash = tb
            .mapping
            .to_canonical(data)
            .map(|c| mapping::hash(&c))
            .unwrap_or_default();
        mine.push((change.id, hash));
    }
    Ok(mine)
}
