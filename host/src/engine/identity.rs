//! Recognising a record that weir has no link for: one weir created there
//! itself (a create whose outcome a crash left unknown, read back), or the
//! same real-world record as a golden one by the entity's match key. And
//! the match keys kept up to date with the manifest's `match_on`.

use super::accept::AcceptCtx;
use super::error::SyncError;
use super::inbox::stored_change;
use super::pass::Pass;
use super::report::PageCounts;
use super::work::{Decision, Identified};
use crate::manifest::{Entity, Manifest, SystemEntity};
use crate::mapping;
use crate::runtime::types::Change;
use crate::store::{self, Link, NewMatch, OutboxOp, Store};

/// The most golden records a held match lists.
const CANDIDATES: u32 = 10;

impl AcceptCtx<'_, '_, '_> {
    /// Recognises a record read without a link: a create of weir's whose
    /// outcome was not known (same content as sent), a person's decision,
    /// or the one golden record with its match key that this system does
    /// not hold yet.
    pub(super) fn identify(
        &mut self,
        item: &Change,
        hash: &store::Hash,
        key: Option<&str>,
    ) -> store::Result<Identified> {
        let (entity, system) = (self.entity.name.as_str(), self.system);
        let bare = |gid| Link {
            global_id: gid,
            local_id: item.id.clone(),
            hash_seen: None,
            hash_written: None,
        };
        match self.decided {
            Some(Decision::New) => return Ok(Identified::New),
            Some(Decision::Link(gid)) => return Ok(Identified::Matched(bare(gid))),
            None => {}
        }
        if let Some(gid) = self.keyed(item)? {
            // Created here by weir, its create not recorded (a crash):
            // what weir wrote is the golden record, and what differs an
            // edit made here since.
            self.tx.create_settled(system, gid)?;
            let written = self.tx.golden(gid)?.map(|g| g.hash);
            return Ok(Identified::Answered(Link {
                hash_written: written,
                ..bare(gid)
            }));
        }
        if self.targets.iter().any(|t| t == system) {
            if let Some(gid) = self.tried(hash)? {
                self.tx.create_settled(system, gid)?;
                return Ok(Identified::Answered(Link {
                    hash_written: Some(*hash),
                    ..bare(gid)
                }));
            }
        }
        let Some(key) = key else {
            return Ok(Identified::New);
        };
        let mut candidates = Vec::new();
        for gid in self.tx.golden_by_match_key(entity, key, CANDIDATES)? {
            // A golden record this system holds already is another record
            // of the system's own, not this one.
            if self.tx.link_by_global(system, gid)?.is_none() {
                candidates.push(gid);
            }
        }
        match candidates[..] {
            [] => Ok(Identified::New),
            [gid] => {
                self.tx.create_settled(system, gid)?;
                Ok(Identified::Matched(bare(gid)))
            }
            _ => {
                let change = serde_json::json!({ "data": item.data, "actor": item.actor });
                let ids: Vec<String> = candidates.iter().map(i64::to_string).collect();
                self.tx.hold_match(NewMatch {
                    entity,
                    system,
                    local_id: Some(&item.id),
                    global_id: None,
                    match_key: key,
                    candidates: &ids,
                    change: Some(&change.to_string()),
                })?;
                tracing::warn!(entity, system, id = %item.id, "ambiguous match: {key} matches {} records ({}); held, see `weir matches`", ids.len(), ids.join(", "));
                Ok(Identified::Held)
            }
        }
    }

    /// The golden record whose key a record read carries in the system's
    /// `key_field`: weir created it there, and its create (with the
    /// content the key names) has an outcome not known yet.
    fn keyed(&mut self, item: &Change) -> store::Result<Option<i64>> {
        let Some(field) = &self.binding.key_field else {
            return Ok(None);
        };
        let data = item
            .data
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>);
        let Some(Ok(serde_json::Value::Object(record))) = data else {
            return Ok(None);
        };
        let Some(text) = record.get(field).map(mapping::id_text) else {
            return Ok(None);
        };
        let Some((gid, hash)) = super::work::parse_record_key(&text) else {
            return Ok(None);
        };
        let tried = self.tx.tried_hash(self.system, gid)?;
        if tried.is_none_or(|t| super::work::record_key(gid, &t) != format!("{gid}:{hash}")) {
            return Ok(None);
        }
        if self.tx.link_by_global(self.system, gid)?.is_some() {
            return Ok(None);
        }
        Ok(self
            .tx
            .golden(gid)?
            .filter(|g| !g.deleted && g.entity == self.entity.name)
            .map(|_| gid))
    }

    /// The golden record whose create weir sent to this system with this
    /// content and whose outcome is not known, unless the system holds it.
    fn tried(&mut self, hash: &store::Hash) -> store::Result<Option<i64>> {
        let Some(gid) = self.tx.tried_create(self.system, &self.entity.name, hash)? else {
            return Ok(None);
        };
        Ok(self
            .tx
            .link_by_global(self.system, gid)?
            .is_none()
            .then_some(gid))
    }
}

impl<'m> Pass<'_, 'm> {
    /// Carries out people's decisions on held matches of records read from
    /// source `s`: each record is accepted now, as its own golden record or
    /// as the candidate chosen.
    pub(super) fn carry_out_matches(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
    ) -> Result<(), SyncError> {
        let system = self.participants[s].system.name.clone();
        let decided = self
            .store
            .transaction(|tx| tx.decided_matches(&system, &entity.name))?;
        if decided.iter().all(|m| m.local_id.is_none()) {
            return Ok(());
        }
        let targets = self.targets(&entity.name);
        let run_id = self.run_id;
        let mut notes = Vec::new();
        let counts = self.store.transaction(|tx| {
            let mut counts = PageCounts::default();
            for m in decided {
                let (Some(local), Some(change)) = (&m.local_id, &m.change) else {
                    continue;
                };
                let decided = match m.decision.as_deref().and_then(|d| d.strip_prefix("link:")) {
                    Some(gid) => match gid.parse() {
                        Ok(gid) => Decision::Link(gid),
                        Err(_) => continue,
                    },
                    None => Decision::New,
                };
                if let Decision::Link(gid) = decided {
                    if let Some(l) = tx.link_by_global(&system, gid)? {
                        tx.undecide_match(m.id)?;
                        notes.push(format!(
                            "match #{}: golden record {gid} is already record {} of {system}; decide again with `weir matches`",
                            m.id, l.local_id
                        ));
                        continue;
                    }
                }
                tx.drop_match(m.id)?;
                let ctx = AcceptCtx {
                    tx: &mut *tx,
                    run_id,
                    system: &system,
                    entity,
                    binding: b,
                    targets: &targets,
                    approved: false,
                    along: &[],
                    fresh: &mut [],
                    decided: Some(decided),
                };
                ctx.accept_one(stored_change(&entity.name, local, change), None, &mut counts)?;
            }
            Ok(counts)
        })?;
        counts.add_to(&mut self.report, &system, &entity.name);
        self.report.notes.extend(notes);
        Ok(())
    }

    /// Carries out people's decisions on held matches of golden records
    /// to create in `target`: linked to the record chosen (and updated
    /// there), or queued to be created without asking again.
    pub(super) fn carry_out_target_matches(
        &mut self,
        target: &str,
        entity: &Entity,
    ) -> Result<(), SyncError> {
        let decided = self
            .store
            .transaction(|tx| tx.decided_matches(target, &entity.name))?;
        if decided.iter().all(|m| m.global_id.is_none()) {
            return Ok(());
        }
        self.store.transaction(|tx| {
            for m in decided {
                let Some(gid) = m.global_id else { continue };
                // "new" is kept, with its decision, until the create is asked about.
                if let Some(local) = m.decision.as_deref().and_then(|d| d.strip_prefix("link:")) {
                    tx.drop_match(m.id)?;
                    let taken = tx.link_by_local(&entity.name, target, local)?;
                    if taken.is_some_and(|l| l.global_id != gid)
                        || tx.link_by_global(target, gid)?.is_some()
                    {
                        continue;
                    }
                    // Its content is not known: the golden record is written to it.
                    tx.record_seen(&entity.name, target, local, gid, &UNKNOWN, None)?;
                }
                tx.enqueue(target, &entity.name, gid, OutboxOp::Upsert)?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// The content hash of a record whose content weir does not know.
const UNKNOWN: store::Hash = [0; 16];

/// Makes the match keys of every entity's golden records agree with its
/// `match_on`: where it changed since the keys were made (or keys were
/// never made), all of the entity's keys are made anew, a page of records
/// per transaction. Returns the entities rekeyed.
pub(super) fn rekey(store: &mut Store, manifest: &Manifest) -> store::Result<Vec<String>> {
    let mut rekeyed = Vec::new();
    for entity in &manifest.entities {
        let spec = serde_json::to_string(&entity.match_on).unwrap_or_default();
        let known = store.transaction(|tx| tx.match_spec(&entity.name))?;
        let none = entity.match_on.is_empty();
        if known.as_deref() == Some(spec.as_str()) || (known.is_none() && none) {
            continue;
        }
        let mut after = 0;
        loop {
            let last = store.transaction(|tx| {
                let page = tx.golden_page(&entity.name, after, 1000)?;
                let last = page.last().map(|(gid, _)| *gid);
                for (gid, data) in page {
                    let key = serde_json::from_str::<mapping::Record>(&data)
                        .ok()
                        .and_then(|r| mapping::match_key(&entity.match_on, &r));
                    tx.set_match_key(gid, key.as_deref())?;
                }
                Ok(last)
            })?;
            match last {
                Some(gid) => after = gid,
                None => break,
            }
        }
        store.transaction(|tx| tx.set_match_spec(&entity.name, &spec))?;
        rekeyed.push(entity.name.clone());
    }
    Ok(rekeyed)
}
