//! A change read from a source whose golden record changed elsewhere
//! since the source last saw it: merged field by field against what the
//! source held before (its link's base), or settled whole by the entity's
//! policy where weir does not know that; contested fields are conflicts.

use super::accept::AcceptCtx;
use super::golden::{self, Put, State};
use super::plan;
use super::prepare::Content;
use crate::mapping;
use crate::runtime::types::Change;
use crate::store::{self, AuditOp, Golden, NewConflict, Outcome};
use serde_json::Value;

impl AcceptCtx<'_, '_, '_> {
    /// A change of a record whose golden value the source had not seen:
    /// merged field by field against what the system held before, where
    /// weir knows it, else resolved whole by the entity's policy. Fields
    /// both sides changed are a conflict, recorded with both values and the
    /// result; every target, the arriving system included, gets the outcome
    /// (delivery skips those that hold it). Returns whether it was a
    /// conflict (not a clean merge).
    pub(super) fn conflict(
        &mut self,
        item: &Change,
        content: Content,
        hash: &store::Hash,
        golden: Golden,
    ) -> store::Result<bool> {
        let (text, record) = content.into_parts();
        let system = self.system;
        let gid = golden.global_id;
        let ours = golden.record(self.tx.path())?;
        let theirs = match record {
            Some(r) => r,
            None => store::parse_record(self.tx.path(), &text, || {
                format!(
                    "the change of {} record {gid} from {system}",
                    self.entity.name
                )
            })?,
        };
        let origin = golden.origin.as_deref();
        // Against what the system held before, where weir knows it: edits
        // of different fields both survive, and only fields both sides
        // changed are a conflict. Without it the records are settled whole.
        let base = match self.tx.link_base(system, gid)? {
            Some(b) => store::parse_record(self.tx.path(), &b, String::new).ok(),
            None => None,
        };
        let (resolution, contested) = match &base {
            Some(base) => {
                let m = plan::merge(self.entity, base, &ours, origin, &theirs, system);
                (m.resolution, !m.contested.is_empty())
            }
            None => (
                plan::resolve(self.entity, &ours, origin, &theirs, system),
                true,
            ),
        };
        let result = Value::Object(resolution.record.clone()).to_string();
        if contested {
            self.record_conflict(&golden, &text, &result, &resolution.winner)?;
        }
        let new_hash = mapping::hash(&resolution.record);
        let new_key = mapping::match_key(&self.entity.match_on, &resolution.record);
        let state = if resolution.record != ours {
            State::Changed {
                global_id: gid,
                text: &result,
                hash: &new_hash,
                key: new_key.as_deref(),
            }
        } else {
            State::Kept { global_id: gid }
        };
        let origin = if resolution.winner == system || resolution.winner == "merge" {
            system
        } else {
            origin.unwrap_or(system)
        };
        let audit = self.audit(
            item,
            AuditOp::ReadUpdate,
            Some(&golden.data),
            Some(&text),
            if contested {
                Outcome::Conflict
            } else {
                Outcome::Ok
            },
        );
        let put = Put {
            entity: &self.entity.name,
            state,
            origin,
            audit,
        };
        let writers = self.writers_but(None);
        golden::put(self.tx, put, writers)?;
        self.tx
            .record_seen(&self.entity.name, system, &item.id, gid, hash, Some(&text))?;
        Ok(contested)
    }

    /// Records a conflict of the change `theirs` of this system with the
    /// golden record, settled as `result` in favour of `winner`.
    fn record_conflict(
        &mut self,
        golden: &Golden,
        theirs: &str,
        result: &str,
        winner: &str,
    ) -> store::Result<()> {
        let (system, gid) = (self.system, golden.global_id);
        let origin = golden.origin.as_deref();
        self.tx.conflict(NewConflict {
            run_id: self.run_id,
            entity: &self.entity.name,
            global_id: gid,
            system,
            other_system: origin,
            ours: &golden.data,
            theirs,
            result,
            winner,
            policy: self.entity.conflict.name(),
        })?;
        tracing::warn!(entity = %self.entity.name, global_id = gid, "conflict: {system} vs {}: {winner} wins", origin.unwrap_or("?"));
        Ok(())
    }
}
