//! Changes kept in the store before they are accepted: pushed to the
//! service (the inbox), parked until a record they refer to is read, or
//! held for review.

use super::accept::Offered;
use super::error::SyncError;
use super::pass::Pass;
use super::work::CursorUpdate;
use crate::manifest::{Entity, SystemEntity};
use crate::runtime::types::{Change, EntityBinding, Operation};
use crate::store;
use serde_json::Value;

impl<'m> Pass<'_, 'm> {
    /// Accepts the changes pushed to a system's inbox (webhooks, the publish
    /// API). A burst of changes to one record becomes its last change. An
    /// upsert without a record body is completed by reading the record
    /// (`lookup`); a record gone meanwhile is left to its delete. Returns
    /// whether the source must be polled instead: its connector cannot look
    /// records up, or the lookup failed (the entries then stay in the inbox).
    pub(super) async fn take_inbox(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
        bind: &EntityBinding,
        inbox: Vec<(i64, String, String)>,
    ) -> Result<bool, SyncError> {
        let entries: Vec<i64> = inbox.iter().map(|(id, _, _)| *id).collect();
        self.report.counts.read += inbox.len() as u64;
        let mut last: Vec<Change> = Vec::new();
        let mut at = std::collections::HashMap::new();
        for (_, local, change) in &inbox {
            let change = stored_change(&entity.name, local, change);
            match at.get(local) {
                Some(&i) => last[i] = change,
                None => {
                    at.insert(local.clone(), last.len());
                    last.push(change);
                }
            }
        }
        let bare: Vec<String> = last
            .iter()
            .filter(|c| c.op == Operation::Upsert && c.data.is_none())
            .map(|c| c.id.clone())
            .collect();
        let mut poll = false;
        if !bare.is_empty() {
            let instance = self.participants[s]
                .instance
                .as_mut()
                .expect("checked by the caller");
            if !instance.can_look_up() {
                tracing::debug!(system = %instance.system(), entity = %entity.name, "changes without a record body: polling instead");
                last.retain(|c| c.op == Operation::Delete || c.data.is_some());
                poll = true;
            } else {
                let mut found = std::collections::HashMap::new();
                for chunk in bare.chunks(self.options.batch_size.max(1) as usize) {
                    match instance.lookup(bind, chunk.to_vec()).await {
                        Ok(records) => {
                            found.extend(records.into_iter().map(|c| (c.id.clone(), c.data)))
                        }
                        Err(e) => {
                            // The entries stay in the inbox for the next pass.
                            self.fail(s, e);
                            return Ok(true);
                        }
                    }
                }
                last.retain_mut(|c| {
                    if c.op == Operation::Delete || c.data.is_some() {
                        return true;
                    }
                    match found.remove(&c.id).flatten() {
                        Some(data) => {
                            c.data = Some(data);
                            true
                        }
                        None => false,
                    }
                });
            }
        }
        self.accept(
            s,
            entity,
            b,
            Offered::changes(last),
            CursorUpdate::Inbox(entries),
        )?;
        Ok(poll)
    }
}

/// A change kept in the store (parked, held or in the inbox), back as a
/// change: `{"op": "upsert"|"delete", "data": "<record JSON>", "actor": ...}`,
/// where `op` defaults to upsert.
pub(super) fn stored_change(entity: &str, id: &str, change: &str) -> Change {
    let v: Value = serde_json::from_str(change).unwrap_or_default();
    let delete = v.get("op").and_then(Value::as_str) == Some("delete");
    Change {
        entity: entity.to_string(),
        id: id.to_string(),
        op: if delete {
            Operation::Delete
        } else {
            Operation::Upsert
        },
        data: v.get("data").and_then(Value::as_str).map(String::from),
        previous: None,
        version: None,
        actor: v.get("actor").and_then(Value::as_str).map(String::from),
    }
}

/// A held change, back as a change.
pub(super) fn held_change(entity: &str, h: &store::Held) -> Change {
    Change {
        actor: h.actor.clone(),
        ..stored_change(entity, &h.local_id, &h.change)
    }
}
