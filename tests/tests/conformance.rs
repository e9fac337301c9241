//! The connector conformance suite (`weir_tests::conformance`) against each
//! shipped connector on a real system: `sql` on SQLite and on PostgreSQL,
//! `csv` on a folder, `rest` on json-server. Each check is a test of its
//! own per connector, named `connector::check`.

use weir_tests::conformance::{self, Csv, Make, Pg, Rest, Sqlite};

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// A module per connector with a test per check of the suite.
macro_rules! suite {
    ($($connector:ident: $subject:expr;)*) => {$(
        mod $connector {
            use super::*;

            fn make() -> &'static Make {
                &$subject
            }

            #[test]
            fn creates_updates_and_deletes_reach_it() {
                conformance::creates_updates_and_deletes_reach_it(WEIR, make());
            }

            #[test]
            fn a_delete_is_ignored_when_on_delete_says_so() {
                conformance::a_delete_is_ignored_when_on_delete_says_so(WEIR, make());
            }

            #[test]
            fn two_way_sync_writes_no_echoes() {
                conformance::two_way_sync_writes_no_echoes(WEIR, make());
            }

            #[test]
            fn an_interrupted_full_read_resumes() {
                conformance::an_interrupted_full_read_resumes(WEIR, make());
            }

            #[test]
            fn a_refused_record_is_a_dead_letter() {
                conformance::a_refused_record_is_a_dead_letter(WEIR, make());
            }
        }
    )*};
}

suite! {
    sql_sqlite: Sqlite::subject;
    sql_postgres: Pg::subject;
    csv: Csv::subject;
    rest: Rest::subject;
}
