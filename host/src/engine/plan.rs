//! The pure part of a sync: from what a source holds and what the links say,
//! to the operations to apply. No I/O.

use crate::manifest::{ConflictPolicy, Entity};
use crate::mapping::Record;
use crate::store::{Hash, Link};

/// What to do with a record read from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// First time this record is seen: create a golden record and link it.
    New,
    /// Same content as last read from this system: nothing to do.
    Unchanged,
    /// Same content as weir last wrote to this system: its own echo, dropped.
    Echo,
    /// Changed here, and the golden record already holds this content.
    Same,
    /// Changed here, and the golden record did not change since this system's
    /// last sync: the change applies as it is.
    FastForward,
    /// Changed here while the golden record changed elsewhere: a conflict.
    Conflict,
}

/// The golden record as `accept` needs it.
#[derive(Debug, Clone, Copy)]
pub struct GoldenState {
    /// Its content hash.
    pub hash: Hash,
    /// Whether it was deleted.
    pub deleted: bool,
}

/// Decides how a source record is accepted, from its hash, the link of the
/// source's copy and the golden record. The base of a change is what the
/// system last held as far as weir knows: what was last read from it, or, if
/// weir wrote to it since (a write clears `hash_seen`), what was written.
pub fn accept(hash: &Hash, source_link: Option<&Link>, golden: Option<GoldenState>) -> Accept {
    let Some(link) = source_link else {
        return Accept::New;
    };
    if link.hash_seen.as_ref() == Some(hash) {
        return Accept::Unchanged;
    }
    if link.hash_written.as_ref() == Some(hash) {
        return Accept::Echo;
    }
    match golden {
        None => Accept::FastForward,
        Some(g) if g.deleted => Accept::FastForward,
        Some(g) if &g.hash == hash => Accept::Same,
        Some(g) if link.hash_seen.or(link.hash_written) == Some(g.hash) => Accept::FastForward,
        Some(_) => Accept::Conflict,
    }
}

/// How a conflict was resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The golden record after.
    pub record: Record,
    /// The system whose value won, or `merge` when fields came from both.
    pub winner: String,
}

/// Resolves a conflict between the golden record (`ours`, last taken from
/// `ours_origin`) and a change from `theirs_system`.
pub fn resolve(
    entity: &Entity,
    ours: &Record,
    ours_origin: Option<&str>,
    theirs: &Record,
    theirs_system: &str,
) -> Resolution {
    let rank = |s: Option<&str>| {
        s.and_then(|s| entity.priority.iter().position(|p| p == s))
            .unwrap_or(usize::MAX)
    };
    let theirs_first = rank(Some(theirs_system)) <= rank(ours_origin);
    let by_priority = || {
        if theirs_first {
            Resolution {
                record: theirs.clone(),
                winner: theirs_system.to_string(),
            }
        } else {
            Resolution {
                record: ours.clone(),
                winner: ours_origin.unwrap_or("golden").to_string(),
            }
        }
    };
    match entity.conflict {
        ConflictPolicy::LastWriterWins => Resolution {
            record: theirs.clone(),
            winner: theirs_system.to_string(),
        },
        ConflictPolicy::Priority => by_priority(),
        ConflictPolicy::FieldOwner => {
            let unowned_theirs = entity.priority.is_empty() || theirs_first;
            let mut record = Record::new();
            let mut fields: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
            fields.sort();
            fields.dedup();
            for field in fields {
                let take_theirs = match entity.owners.get(field) {
                    Some(owner) => owner == theirs_system,
                    None => unowned_theirs,
                };
                let value = if take_theirs {
                    theirs.get(field)
                } else {
                    ours.get(field)
                };
                if let Some(v) = value {
                    record.insert(field.clone(), v.clone());
                }
            }
            let winner = if &record == theirs {
                theirs_system.to_string()
            } else if &record == ours {
                ours_origin.unwrap_or("golden").to_string()
            } else {
                "merge".to_string()
            };
            Resolution { record, winner }
        }
    }
}

/// A change merged into the golden record against its base.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The golden record after, and who won where both sides changed.
    pub resolution: Resolution,
    /// The fields both sides changed, to different values: settled by the
    /// policy. None: the change merged cleanly.
    pub contested: Vec<String>,
}

/// Merges a change from `theirs_system` into the golden record (`ours`)
/// field by field against `base`, what the system held before: a field
/// only one side changed takes that side's value, a field both changed to
/// different values is settled by the entity's policy (as `resolve` does,
/// on those fields alone). A field the change lacks is one the system does
/// not hold: ours is kept.
pub fn merge(
    entity: &Entity,
    base: &Record,
    ours: &Record,
    ours_origin: Option<&str>,
    theirs: &Record,
    theirs_system: &str,
) -> Merged {
    let mut record = ours.clone();
    let (mut ours_part, mut theirs_part) = (Record::new(), Record::new());
    // A field a record lacks is a field it holds empty.
    let null = serde_json::Value::Null;
    for (field, t) in theirs {
        let (o, b) = (ours.get(field), base.get(field));
        let (o_value, b_value) = (o.unwrap_or(&null), b.unwrap_or(&null));
        if o_value == t || b_value == t {
            continue;
        }
        if o_value == b_value {
            record.insert(field.clone(), t.clone());
            continue;
        }
        if let Some(o) = o {
            ours_part.insert(field.clone(), o.clone());
        }
        theirs_part.insert(field.clone(), t.clone());
    }
    let contested: Vec<String> = theirs_part.keys().cloned().collect();
    if contested.is_empty() {
        let winner = if &record == ours {
            ours_origin.unwrap_or("golden").to_string()
        } else {
            theirs_system.to_string()
        };
        return Merged {
            resolution: Resolution { record, winner },
            contested,
        };
    }
    let settled = resolve(entity, &ours_part, ours_origin, &theirs_part, theirs_system);
    for field in &contested {
        match settled.record.get(field) {
            Some(v) => record.insert(field.clone(), v.clone()),
            None => record.remove(field),
        };
    }
    Merged {
        resolution: Resolution {
            record,
            winner: settled.winner,
        },
        contested,
    }
}

/// A write to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// The target has no copy: create one.
    Create,
    /// The target has a copy with other content: update it.
    Update {
        /// The record's id in the target.
        local_id: String,
    },
}

/// Decides the write to a target: none when the target already holds this
/// content (never write a no-op), an update when it holds another version,
/// a create when it holds none.
pub fn write(hash: &Hash, target_link: Option<&Link>) -> Option<Write> {
    match target_link {
        None => Some(Write::Create),
        // What the target holds now: what was last read from it, or, if
        // nothing was read since, what was last written.
        Some(l) if l.hash_seen.or(l.hash_written).as_ref() == Some(hash) => None,
        Some(l) => Some(Write::Update {
            local_id: l.local_id.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const H1: Hash = [1; 16];
    const H2: Hash = [2; 16];
    const H3: Hash = [3; 16];

    fn link(seen: Option<Hash>, written: Option<Hash>) -> Link {
        Link {
            global_id: 1,
            local_id: "L".into(),
            hash_seen: seen,
            hash_written: written,
        }
    }

    fn g(hash: Hash) -> Option<GoldenState> {
        Some(GoldenState {
            hash,
            deleted: false,
        })
    }

    #[test]
    fn accept_table() {
        let deleted = Some(GoldenState {
            hash: H2,
            deleted: true,
        });
        let cases: &[(Option<Link>, Option<GoldenState>, Accept)] = &[
            (None, None, Accept::New),
            (Some(link(Some(H1), None)), g(H1), Accept::Unchanged),
            (Some(link(Some(H1), Some(H2))), g(H2), Accept::Unchanged),
            (Some(link(Some(H2), Some(H1))), g(H1), Accept::Echo),
            (Some(link(Some(H2), None)), g(H2), Accept::FastForward),
            (Some(link(Some(H2), Some(H3))), g(H1), Accept::Same),
            (Some(link(Some(H2), None)), g(H3), Accept::Conflict),
            (Some(link(Some(H2), None)), deleted, Accept::FastForward),
            (Some(link(None, None)), g(H3), Accept::Conflict),
            (Some(link(Some(H2), None)), None, Accept::FastForward),
            (Some(link(None, Some(H2))), g(H2), Accept::FastForward),
            (Some(link(None, Some(H2))), g(H3), Accept::Conflict),
        ];
        for (l, golden, want) in cases {
            assert_eq!(
                accept(&H1, l.as_ref(), *golden),
                *want,
                "link {l:?}, golden {golden:?}"
            );
        }
    }

    fn entity(policy: ConflictPolicy, priority: &[&str], owners: &[(&str, &str)]) -> Entity {
        Entity {
            name: "contacts".into(),
            primary_key: Some("id".into()),
            conflict: policy,
            priority: priority.iter().map(|s| s.to_string()).collect(),
            owners: owners
                .iter()
                .map(|(f, s)| (f.to_string(), s.to_string()))
                .collect(),
            references: Default::default(),
            rules: Default::default(),
            sensitive: Vec::new(),
            max_delete_percent: None,
            max_changes_per_user: None,
            shared_key: false,
            match_on: Vec::new(),
        }
    }

    fn rec(v: serde_json::Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn resolve_table() {
        let ours = rec(serde_json::json!({"email": "a@x", "phone": "1"}));
        let theirs = rec(serde_json::json!({"email": "b@x", "phone": "2"}));
        let prio = entity(ConflictPolicy::Priority, &["a", "b", "c"], &[]);
        let lww = entity(ConflictPolicy::LastWriterWins, &[], &[]);
        let owner = entity(ConflictPolicy::FieldOwner, &[], &[("email", "a")]);
        let owner_prio = entity(ConflictPolicy::FieldOwner, &["c", "b"], &[("email", "b")]);
        let cases: &[(&Entity, Option<&str>, &str, serde_json::Value, &str)] = &[
            (
                &prio,
                Some("a"),
                "b",
                serde_json::json!({"email": "a@x", "phone": "1"}),
                "a",
            ),
            (
                &prio,
                Some("b"),
                "a",
                serde_json::json!({"email": "b@x", "phone": "2"}),
                "a",
            ),
            (
                &prio,
                Some("c"),
                "b",
                serde_json::json!({"email": "b@x", "phone": "2"}),
                "b",
            ),
            (
                &prio,
                Some("x"),
                "c",
                serde_json::json!({"email": "b@x", "phone": "2"}),
                "c",
            ),
            (
                &prio,
                Some("b"),
                "b",
                serde_json::json!({"email": "b@x", "phone": "2"}),
                "b",
            ),
            (
                &lww,
                Some("a"),
                "b",
                serde_json::json!({"email": "b@x", "phone": "2"}),
                "b",
            ),
            (
                &owner,
                Some("a"),
                "b",
                serde_json::json!({"email": "a@x", "phone": "2"}),
                "merge",
            ),
            (
                &owner,
                Some("b"),
                "a",
                serde_json::json!({"email": "b@x", "phone": "2"}),
                "a",
            ),
            (
                &owner_prio,
                Some("c"),
                "b",
                serde_json::json!({"email": "b@x", "phone": "1"}),
                "merge",
            ),
            (
                &owner_prio,
                Some("b"),
                "c",
                serde_json::json!({"email": "a@x", "phone": "2"}),
                "merge",
            ),
        ];
        for (entity, origin, system, want, winner) in cases {
            let r = resolve(entity, &ours, *origin, &theirs, system);
            assert_eq!(
                serde_json::Value::Object(r.record),
                *want,
                "{:?} {origin:?} vs {system}",
                entity.conflict
            );
            assert_eq!(
                r.winner, *winner,
                "{:?} {origin:?} vs {system}",
                entity.conflict
            );
        }
    }

    #[test]
    fn merge_table() {
        let e = entity(ConflictPolicy::Priority, &["a", "b"], &[]);
        let base = rec(json!({"x": 1, "y": 1, "z": 1}));
        // Different fields: both edits survive, nothing contested.
        let m = merge(
            &e,
            &base,
            &rec(json!({"x": 2, "y": 1, "z": 1})),
            Some("a"),
            &rec(json!({"x": 1, "y": 3, "z": 1})),
            "b",
        );
        assert_eq!(m.resolution.record, rec(json!({"x": 2, "y": 3, "z": 1})));
        assert!(m.contested.is_empty());
        // The same field: the policy settles it (a outranks b), the rest merges.
        let m = merge(
            &e,
            &base,
            &rec(json!({"x": 2, "y": 1, "z": 1})),
            Some("a"),
            &rec(json!({"x": 5, "y": 1, "z": 4})),
            "b",
        );
        assert_eq!(m.resolution.record, rec(json!({"x": 2, "y": 1, "z": 4})));
        assert_eq!(m.contested, vec!["x".to_string()]);
        assert_eq!(m.resolution.winner, "a");
        // A field the change lacks is kept; the same new value is no contest.
        let m = merge(
            &e,
            &base,
            &rec(json!({"x": 2, "y": 1, "z": 1})),
            Some("a"),
            &rec(json!({"x": 2})),
            "b",
        );
        assert_eq!(m.resolution.record, rec(json!({"x": 2, "y": 1, "z": 1})));
        assert!(m.contested.is_empty());
        let lww = entity(ConflictPolicy::LastWriterWins, &[], &[]);
        let m = merge(
            &lww,
            &base,
            &rec(json!({"x": 2, "y": 1, "z": 1})),
            Some("a"),
            &rec(json!({"x": 5, "y": 1, "z": 1})),
            "b",
        );
        assert_eq!(m.resolution.record, rec(json!({"x": 5, "y": 1, "z": 1})));
        assert_eq!(m.resolution.winner, "b");
        // A field ours lacks is one it holds empty: the change fills it,
        // uncontested, whichever side the policy favours.
        let m = merge(
            &e,
            &rec(json!({"x": null})),
            &rec(json!({"y": 1})),
            Some("a"),
            &rec(json!({"x": 7, "y": 1})),
            "b",
        );
        assert_eq!(m.resolution.record, rec(json!({"x": 7, "y": 1})));
        assert!(m.contested.is_empty());
    }

    #[test]
    fn write_table() {
        let upd = Some(Write::Update {
            local_id: "L".into(),
        });
        let cases: &[(Option<Link>, Option<Write>)] = &[
            (None, Some(Write::Create)),
            (Some(link(None, Some(H1))), None),
            (Some(link(Some(H1), Some(H2))), None),
            (Some(link(Some(H2), Some(H3))), upd.clone()),
            // Written once, changed there since: what was read counts.
            (Some(link(Some(H2), Some(H1))), upd.clone()),
            (Some(link(None, None)), upd),
        ];
        for (l, want) in cases {
            assert_eq!(write(&H1, l.as_ref()), *want, "link {l:?}");
        }
    }
}
