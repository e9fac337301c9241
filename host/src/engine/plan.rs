//! The pure part of a sync: from what a source holds and what the links say,
//! to the operations to apply. No I/O.

use crate::store::{Hash, Link};

/// What to do with a record read from a source, as far as the store goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// First time this record is seen: create a golden record and link it.
    New,
    /// The record changed since it was last read: update the golden record.
    Changed,
    /// Same content as last read: nothing to record.
    Unchanged,
    /// Same content as weir last wrote to this system: its own echo.
    Echo,
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

/// Decides how a source record is accepted.
pub fn accept(hash: &Hash, source_link: Option<&Link>) -> Accept {
    match source_link {
        None => Accept::New,
        Some(l) if l.hash_seen.as_ref() == Some(hash) => Accept::Unchanged,
        Some(l) if l.hash_written.as_ref() == Some(hash) => Accept::Echo,
        Some(_) => Accept::Changed,
    }
}

/// Decides the write to a target: none when the target already holds this
/// content (never write a no-op), an update when it holds another version,
/// a create when it holds none.
pub fn write(hash: &Hash, target_link: Option<&Link>) -> Option<Write> {
    match target_link {
        None => Some(Write::Create),
        Some(l) if l.hash_written.as_ref() == Some(hash) || l.hash_seen.as_ref() == Some(hash) => {
            None
        }
        Some(l) => Some(Write::Update {
            local_id: l.local_id.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn accept_table() {
        let cases: &[(Option<Link>, Accept)] = &[
            (None, Accept::New),
            (Some(link(Some(H1), None)), Accept::Unchanged),
            (Some(link(Some(H1), Some(H2))), Accept::Unchanged),
            (Some(link(Some(H2), Some(H1))), Accept::Echo),
            (Some(link(Some(H2), Some(H3))), Accept::Changed),
            (Some(link(None, None)), Accept::Changed),
        ];
        for (l, want) in cases {
            assert_eq!(accept(&H1, l.as_ref()), *want, "link {l:?}");
        }
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
            (Some(link(None, None)), upd),
        ];
        for (l, want) in cases {
            assert_eq!(write(&H1, l.as_ref()), *want, "link {l:?}");
        }
    }
}
