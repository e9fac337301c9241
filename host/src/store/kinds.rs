//! The store's protocol values: what an audit row records, how it ended,
//! and which cursor a source has. Each is kept in the store as the text
//! `as_str` gives (the texts earlier versions wrote), so existing stores
//! keep working.

/// Defines an enum whose variants are stored as fixed texts.
macro_rules! stored_text {
    ($(#[$doc:meta])* $name:ident ($what:literal) { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text kept in the store.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value a stored text names, if any.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!(concat!("unknown ", $what, " '{}'"), text).into(),
                    )
                })
            }
        }
    };
}

stored_text! {
    /// What an audit row records.
    AuditOp ("audit operation") {
        /// A record new to weir, read from a source.
        ReadCreate = "read:create",
        /// A change of a known record, read from a source.
        ReadUpdate = "read:update",
        /// A record deleted at a source.
        ReadDelete = "read:delete",
        /// A record created in a target.
        WriteCreate = "write:create",
        /// A record updated (or soft-deleted) in a target.
        WriteUpdate = "write:update",
        /// A record deleted in a target.
        WriteDelete = "write:delete",
        /// A rollback deleted a record its run had created.
        RollbackDelete = "rollback:delete",
        /// A rollback brought back a record its run had deleted.
        RollbackRestore = "rollback:restore",
        /// A rollback put back a record as it was before its run.
        RollbackUpdate = "rollback:update",
        /// A person kept the golden value of a conflict.
        ReviewOurs = "review:ours",
        /// A person took the arriving value of a conflict.
        ReviewTheirs = "review:theirs",
        /// `weir merge`: the surviving record took the merged values.
        MergeUpdate = "merge:update",
        /// `weir merge`: the other record was merged away.
        MergeDelete = "merge:delete",
        /// `weir merge`: a system's copy of the other record became the
        /// survivor's (the audit row names the other record).
        MergeRelink = "merge:relink",
    }
}

stored_text! {
    /// How an audited operation ended.
    Outcome ("outcome") {
        /// Done.
        Ok = "ok",
        /// weir's own write coming back: dropped.
        Echo = "echo",
        /// A concurrent edit, resolved by the entity's policy.
        Conflict = "conflict",
        /// Refused: a dead letter, or a held change a person rejected.
        Rejected = "rejected",
        /// Failed for now: tried again later.
        Failed = "failed",
        /// Held for review (per-user limits).
        Held = "held",
    }
}

stored_text! {
    /// Which cursor of a source (system and entity).
    CursorKind ("cursor kind") {
        /// Where an interrupted full read goes on.
        Read = "read",
        /// Where the next change read starts.
        Changes = "changes",
    }
}

stored_text! {
    /// A person's decision on a conflict.
    Choice ("conflict choice") {
        /// Keep what the entity's policy made of it.
        Result = "result",
        /// Take the golden value from before the conflict.
        Ours = "ours",
        /// Take the value that arrived.
        Theirs = "theirs",
    }
}

stored_text! {
    /// How a run ended (`running` while it has not).
    RunStatus ("run status") {
        /// Still going, or killed before its end.
        Running = "running",
        /// Every system and record synced.
        Ok = "ok",
        /// Some system or record failed; the rest synced.
        Partial = "partial",
    }
}

stored_text! {
    /// Where a held change stands.
    HeldStatus ("held change status") {
        /// Waiting for a person.
        Held = "held",
        /// Approved: accepted at the next intake of its source.
        Approved = "approved",
        /// Rejected: dropped, and its record put back, at the next intake.
        Rejected = "rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_those_stores_hold_and_read_back() {
        let texts: Vec<&str> = AuditOp::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            texts,
            [
                "read:create",
                "read:update",
                "read:delete",
                "write:create",
                "write:update",
                "write:delete",
                "rollback:delete",
                "rollback:restore",
                "rollback:update",
                "review:ours",
                "review:theirs",
                "merge:update",
                "merge:delete",
                "merge:relink"
            ]
        );
        let outcomes: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            outcomes,
            ["ok", "echo", "conflict", "rejected", "failed", "held"]
        );
        assert_eq!(CursorKind::Read.as_str(), "read");
        let held: Vec<&str> = HeldStatus::ALL.iter().map(|h| h.as_str()).collect();
        assert_eq!(held, ["held", "approved", "rejected"]);
        let choices: Vec<&str> = Choice::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(choices, ["result", "ours", "theirs"]);
        assert_eq!(CursorKind::Changes.as_str(), "changes");
        for op in AuditOp::ALL {
            assert_eq!(AuditOp::parse(op.as_str()), Some(*op));
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(*o));
        }
        assert_eq!(AuditOp::parse("read:maybe"), None);
        assert_eq!(Outcome::parse("OK"), None);
    }

    #[test]
    fn an_unknown_stored_text_is_an_error_naming_it() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let got: rusqlite::Result<AuditOp> =
            conn.query_row("SELECT 'read:maybe'", [], |r| r.get(0));
        let e = got.unwrap_err().to_string();
        assert!(e.contains("unknown audit operation 'read:maybe'"), "{e}");
        let ok: AuditOp = conn
            .query_row("SELECT 'write:delete'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, AuditOp::WriteDelete);
    }
}
