//! Tests against a real PostgreSQL cluster, started per test on 127.0.0.1 by
//! [`weir_tests::Postgres`] (Debian's `postgresql` server binaries, or those
//! in `WEIR_PG_BIN`).

use weir_tests::*;

/// The harness itself: a fresh cluster takes a database, a table, a row, and
/// gives the row back through psql.
#[test]
fn the_harness_starts_a_real_cluster() {
    let pg = Postgres::start().expect("start PostgreSQL");
    pg.create_database("crm").expect("create database crm");
    assert_eq!(
        pg.url("crm"),
        format!("postgres://postgres@127.0.0.1:{}/crm", pg.port())
    );
    pg.psql(
        "crm",
        "CREATE TABLE contacts (id bigint PRIMARY KEY, email text NOT NULL);
         INSERT INTO contacts VALUES (1, 'ada@example.com');",
    )
    .expect("create and fill a table");
    let out = pg
        .psql("crm", "SELECT id, email FROM contacts;")
        .expect("select");
    assert_eq!(out, "1|ada@example.com\n");
    let err = pg.psql("crm", "SELECT nope FROM contacts;").unwrap_err();
    assert!(
        err.contains("nope"),
        "the error carries psql's message: {err}"
    );
}

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// The contacts table on the PostgreSQL side: typed columns (numeric, date,
/// jsonb, json, timestamptz) and a trigger that stamps every update.
const PG_CONTACTS: &str = "
    CREATE TABLE contacts (
        id bigint PRIMARY KEY,
        first_name text NOT NULL,
        last_name text NOT NULL,
        email text NOT NULL,
        balance numeric(12,2),
        birth_date date,
        tags jsonb,
        vip boolean NOT NULL DEFAULT false,
        photo bytea,
        score real,
        prefs json,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
    CREATE TRIGGER touch BEFORE UPDATE ON contacts FOR EACH ROW EXECUTE FUNCTION touch();";

/// The same contacts in SQLite, every value text or integer.
fn lite_db(path: &std::path::Path, n: usize) {
    create_table(
        path,
        "contacts",
        "id",
        Key::Reused,
        "first_name TEXT NOT NULL,
         last_name TEXT NOT NULL,
         email TEXT NOT NULL,
         balance TEXT,
         birth_date TEXT,
         tags TEXT,
         vip BOOLEAN NOT NULL DEFAULT 0,
         photo TEXT,
         score REAL,
         prefs TEXT",
    );
    let conn = rusqlite::Connection::open(path).unwrap();
    for i in 1..=n {
        conn.execute(
            "INSERT INTO contacts (id, first_name, last_name, email, balance, birth_date, tags, vip)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                i as i64,
                format!("First{i}"),
                format!("Last{i}"),
                format!("person{i}@example.com"),
                format!("{}.{:02}", i * 3, i % 100),
                format!("19{:02}-0{}-1{}", 50 + i % 40, 1 + i % 9, i % 10),
                if i % 2 == 0 { r#"["vip"]"# } else { "[]" },
                i % 3 == 0,
            ],
        )
        .unwrap();
    }
}

/// A manifest syncing `contacts` both ways between the SQLite file `lite.db`
/// (tombstone deletes) and the PostgreSQL grant `main` (`pg_deletes`).
fn two_way_manifest(dir: &std::path::Path, pg_url: &str, pg_deletes: &str) -> std::path::PathBuf {
    two_way_manifest_of(dir, pg_url, ("contacts", "id"), pg_deletes)
}

/// The two-way manifest of entity `entity` (table of the same name on both
/// sides, keyed by `key`, shared keys, changes by `updated_at`).
fn two_way_manifest_of(
    dir: &std::path::Path,
    pg_url: &str,
    (entity, key): (&str, &str),
    pg_deletes: &str,
) -> std::path::PathBuf {
    let settings = |deletes: &str| {
        format!(
            r#"settings = {{ table = "{entity}", updated_at = "updated_at", deletes = "{deletes}" }}"#
        )
    };
    let lite = lite_system().entity(
        entity,
        &[
            r#"direction = "both""#,
            IGNORE_UPDATED_AT,
            &settings("tombstones"),
        ],
    );
    let pg = pg_system(&format!(
        r#"{{ url = "{pg_url}", password = "${{WEIR_TEST_PG_PASSWORD}}", pool_size = 2 }}"#
    ))
    .entity(
        entity,
        &[
            r#"direction = "both""#,
            IGNORE_UPDATED_AT,
            &settings(pg_deletes),
        ],
    );
    write_manifest(dir, &format!("{}{lite}{pg}", entity_of(entity, key)))
}

/// The entity `entity` keyed by `key`, the same in every system.
fn entity_of(entity: &str, key: &str) -> String {
    weir_tests::entity(entity, key, &["shared_key = true"])
}

/// System `lite`: the `sql` connector on `lite.db` beside the manifest.
fn lite_system() -> System {
    System::sqlite("lite", "lite", "lite.db")
}

/// System `pg`: the `sql` connector on the PostgreSQL grant `main` = `grant`
/// (a TOML value).
fn pg_system(grant: &str) -> System {
    System::sql("pg", "main", grant)
}

/// A fresh folder with `lite.db` holding `n` contacts, and the two-way
/// manifest between it and the cluster's `crm` database, with `pg_deletes`
/// on the PostgreSQL side.
struct TwoWay {
    dir: tempfile::TempDir,
    lite: std::path::PathBuf,
    m: std::path::PathBuf,
}

fn two_way(pg: &Postgres, n: usize, pg_deletes: &str) -> TwoWay {
    let dir = tempfile::tempdir().unwrap();
    let lite = dir.path().join("lite.db");
    lite_db(&lite, n);
    let m = two_way_manifest(dir.path(), &pg.url("crm"), pg_deletes);
    TwoWay { dir, lite, m }
}

/// Moves every backoff of the store `store` into the past, as if its time
/// had come.
fn make_due(store: &std::path::Path) {
    exec(
        store,
        "UPDATE outbox SET next_attempt_at = '2000-01-01T00:00:00.000Z'",
    );
}

/// Asserts that the store in `dir` holds no dead letters.
fn assert_no_dead_letters(dir: &std::path::Path) {
    assert_eq!(
        count(&dir.join("weir.db"), "SELECT count(*) FROM dead_letters"),
        0,
        "dead letters in {}",
        dir.display()
    );
}

/// The runs of `weir sync` print "run N: R read, W written, D deleted, ...":
/// the written and deleted counts of the last one.
fn written_and_deleted(run: &Run) -> (u64, u64) {
    let line = run
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("run "))
        .unwrap_or_else(|| panic!("no run line in: {}\n{}", run.stdout, run.stderr));
    let number = |what: &str| -> u64 {
        line.split(", ")
            .find_map(|part| part.trim().strip_suffix(what))
            .and_then(|n| n.trim().rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no '{what}' in: {line}"))
    };
    (number(" written"), number(" deleted"))
}

/// Runs weir with the grant's password in the environment (the cluster
/// trusts 127.0.0.1 and ignores it).
fn weir_pg(m: &std::path::Path, args: &[&str]) -> Run {
    weir_env(
        WEIR,
        m,
        args,
        &[("WEIR_TEST_PG_PASSWORD", "not-used-under-trust")],
    )
}

fn sync(m: &std::path::Path, args: &[&str]) -> Run {
    let mut all = vec!["sync"];
    all.extend_from_slice(args);
    let run = weir_pg(m, &all);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run
}

/// A started cluster whose database `crm` holds what `sql` makes.
fn crm_with(sql: &str) -> Postgres {
    let pg = Postgres::start().expect("start PostgreSQL");
    pg.create_database("crm").unwrap();
    pg.psql("crm", sql).unwrap();
    pg
}

/// A started cluster with database `crm` holding the contacts table.
fn with_contacts(pg: Postgres) -> Postgres {
    pg.create_database("crm").unwrap();
    pg.psql("crm", PG_CONTACTS).unwrap();
    pg
}

/// The rows of PostgreSQL table `table` as `id|first|email|balance|birth|tags|vip`
/// (vip 0 or 1), ordered by id.
fn pg_rows_of(pg: &Postgres, table: &str) -> Vec<String> {
    pg.psql(
        "crm",
        &format!("SELECT id, first_name, email, balance, birth_date, tags, vip::int FROM {table} ORDER BY id"),
    )
    .unwrap()
    .lines()
    .map(str::to_string)
    .collect()
}

/// The SQLite rows in the same shape, sorted as text.
fn lite_rows(db: &std::path::Path) -> Vec<String> {
    rows(
        db,
        "SELECT id, first_name, email, balance, birth_date, tags, vip FROM contacts ORDER BY id",
    )
    .into_iter()
    .map(|r| {
        r.into_iter()
            .map(|v| v.unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|")
    })
    .collect()
}

/// Asserts that both sides hold the same rows (sorted as text; jsonb's
/// spaces after commas removed), naming only the rows that differ.
fn assert_agree(pg: &Postgres, lite: &std::path::Path) {
    assert_agree_of(pg, "contacts", lite)
}

/// [`assert_agree`] with the PostgreSQL table `table`.
fn assert_agree_of(pg: &Postgres, table: &str, lite: &std::path::Path) {
    let mut left: Vec<String> = pg_rows_of(pg, table)
        .into_iter()
        .map(|r| r.replace(", ", ","))
        .collect();
    left.sort();
    let right = lite_rows(lite);
    let only_pg: Vec<_> = left.iter().filter(|r| !right.contains(r)).collect();
    let only_lite: Vec<_> = right.iter().filter(|r| !left.contains(r)).collect();
    assert!(
        only_pg.is_empty() && only_lite.is_empty(),
        "only in PostgreSQL: {only_pg:?}\nonly in SQLite: {only_lite:?}"
    );
}

#[test]
fn sqlite_and_postgresql_agree_both_ways_with_updates_inserts_and_deletes() {
    let pg = with_contacts(Postgres::start().expect("start PostgreSQL"));
    let TwoWay { dir: _dir, lite, m } = two_way(&pg, 300, "tombstones");

    let check = weir_pg(&m, &["check"]);
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);
    // check installed the tombstone tables and triggers on both sides
    assert_eq!(
        pg.psql(
            "crm",
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'contacts_weir_deleted_keep'"
        )
        .unwrap(),
        "1\n"
    );
    assert_eq!(
        count(
            &lite,
            "SELECT count(*) FROM sqlite_master WHERE name = 'contacts_weir_deleted_keep'"
        ),
        1
    );

    // Full sync: SQLite -> PostgreSQL, typed values intact, the same keys.
    let first = sync(&m, &["--quiet"]);
    assert_eq!(written_and_deleted(&first), (300, 0));
    assert_agree(&pg, &lite);
    assert_eq!(
        pg.psql(
            "crm",
            "SELECT balance, birth_date, tags FROM contacts WHERE id = 2"
        )
        .unwrap(),
        "6.02|1952-03-12|[\"vip\"]\n"
    );
    // Booleans cross as booleans (SQLite keeps them as 0 and 1).
    assert_eq!(
        pg.psql(
            "crm",
            "SELECT vip FROM contacts WHERE id IN (3, 4) ORDER BY id"
        )
        .unwrap(),
        "t\nf\n"
    );
    // weir's own writes come back from PostgreSQL as echoes: nothing to write.
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));

    // PostgreSQL -> SQLite: an update, an insert and a hard delete.
    pg.psql(
        "crm",
        "UPDATE contacts SET email = 'changed@example.com', balance = -1.50, vip = true,
             photo = '\\x00ff10', score = 0.1 WHERE id = 10;
         INSERT INTO contacts (id, first_name, last_name, email, balance, birth_date, tags)
             VALUES (1001, 'Grace', 'Hopper', 'grace@example.com', 99.99, '1906-12-09', '[\"navy\"]');
         DELETE FROM contacts WHERE id = 20;",
    )
    .unwrap();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (2, 1));
    assert_eq!(
        rows(
            &lite,
            "SELECT email, balance, vip, photo, score FROM contacts WHERE id = 10"
        ),
        vec![vec![
            Some("changed@example.com".into()),
            Some("-1.50".into()),
            Some("1".into()),
            Some("00ff10".into()),
            Some("0.1".into())
        ]]
    );
    assert_eq!(
        rows(
            &lite,
            "SELECT first_name, birth_date, tags FROM contacts WHERE id = 1001"
        ),
        vec![vec![
            Some("Grace".into()),
            Some("1906-12-09".into()),
            Some(r#"["navy"]"#.into())
        ]]
    );
    assert_eq!(
        count(&lite, "SELECT count(*) FROM contacts WHERE id = 20"),
        0
    );

    // SQLite -> PostgreSQL: the same three kinds of change.
    exec(
        &lite,
        "UPDATE contacts SET first_name = 'Renamed', photo = 'cafe', prefs = '{\"lang\":\"en\"}' WHERE id = 30;
         INSERT INTO contacts (id, first_name, last_name, email, balance, birth_date, tags)
             VALUES (2001, 'Edsger', 'Dijkstra', 'ewd@example.com', '0.10', '1930-05-11', '[]');
         DELETE FROM contacts WHERE id = 40;",
    );
    let run = sync(&m, &["--quiet"]);
    assert_eq!(written_and_deleted(&run), (2, 1));
    assert_eq!(
        pg.psql(
            "crm",
            "SELECT first_name, photo, prefs FROM contacts WHERE id = 30"
        )
        .unwrap(),
        "Renamed|\\xcafe|{\"lang\":\"en\"}\n"
    );
    assert_eq!(
        pg.psql("crm", "SELECT email, balance FROM contacts WHERE id = 2001")
            .unwrap(),
        "ewd@example.com|0.10\n"
    );
    assert_eq!(
        pg.psql("crm", "SELECT count(*) FROM contacts WHERE id = 40")
            .unwrap(),
        "0\n"
    );

    // In agreement: the echoes change nothing, and a full pass writes nothing.
    let settle = sync(&m, &["--quiet"]);
    assert_eq!(written_and_deleted(&settle), (0, 0));
    assert_eq!(
        written_and_deleted(&sync(&m, &["--quiet", "--full"])),
        (0, 0)
    );
    assert_agree(&pg, &lite);
    assert_eq!(lite_rows(&lite).len(), 300);

    // Tombstones are kept 30 days: an old one is removed at the next change
    // read, the recent ones stay.
    pg.psql(
        "crm",
        "INSERT INTO contacts_weir_deleted VALUES (999999, '2000-01-01T00:00:00Z')",
    )
    .unwrap();
    exec(
        &lite,
        "INSERT INTO contacts_weir_deleted VALUES (999999, '2000-01-01T00:00:00.000Z')",
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));
    assert_eq!(
        pg.psql("crm", "SELECT id FROM contacts_weir_deleted ORDER BY id")
            .unwrap(),
        "20\n40\n"
    );
    assert_eq!(
        rows(&lite, "SELECT id FROM contacts_weir_deleted ORDER BY id"),
        vec![vec![Some("20".into())], vec![Some("40".into())]]
    );
}

#[test]
fn a_database_the_manifest_does_not_grant_is_refused_and_secrets_stay_out_of_errors() {
    let pg = with_contacts(Postgres::start().expect("start PostgreSQL"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    lite_db(&d.join("lite.db"), 1);
    let secret = "hunter2-do-not-print";
    let manifest = |database: &str, url: &str| {
        let pg = System::new("pg", "sql", &format!(r#"database = "{database}""#))
            .line(&format!(
                r#"databases = {{ main = {{ url = "{url}", password = "${{WEIR_TEST_PG_PASSWORD}}" }} }}"#
            ))
            .entity("contacts", &[r#"direction = "both""#, &tracked_table("contacts")]);
        write_manifest(d, &format!("{}{pg}", entity("contacts", "id", &[])))
    };
    let env = [("WEIR_TEST_PG_PASSWORD", secret)];

    // The connector asks for a database that is not granted.
    let m = manifest("other", &pg.url("crm"));
    let run = weir_env(WEIR, &m, &["check"], &env);
    assert_ne!(run.code, 0);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("weir.toml:7: systems.pg.config.database: 'other' names no database granted to system 'pg'")
            && out.contains("use one of main or add the grant under `databases`"),
        "{out}"
    );

    // A granted database that cannot be reached: the error names the grant
    // and the reason, never the password.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let m = manifest("main", &format!("postgres://weir@127.0.0.1:{port}/crm"));
    let run = weir_env(WEIR, &m, &["check"], &env);
    assert_ne!(run.code, 0);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("cannot connect to database 'main'"), "{out}");
    assert!(!out.contains(secret), "the password leaked: {out}");
    assert!(
        out.contains("transient error") && out.contains("[SQLSTATE 08001]"),
        "a server that cannot be reached is a passing failure, not a schema error: {out}"
    );

    // The same manifest against the live cluster works.
    let m = manifest("main", &pg.url("crm"));
    let run = weir_env(WEIR, &m, &["check"], &env);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

/// Writes a test CA and a server certificate for 127.0.0.1 signed by it into
/// `dir` (ca.crt, server.crt, server.key), readable by the server's user.
fn certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=weir test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    // The server reads the key as its own user, and only if nobody else can.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout;
    if String::from_utf8_lossy(&root).trim() == "0" {
        let chown = std::process::Command::new("chown")
            .args(["postgres:", "server.key", "server.crt"])
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(chown.success());
    }
}

#[test]
fn tls_connections_verify_the_server_certificate() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let cert = certs.path().join("server.crt");
    let key = certs.path().join("server.key");
    let pg = Postgres::start_with(&[
        "fsync=off",
        "ssl=on",
        &format!("ssl_cert_file='{}'", cert.display()),
        &format!("ssl_key_file='{}'", key.display()),
    ])
    .expect("start PostgreSQL with TLS");
    let pg = with_contacts(pg);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(certs.path().join("ca.crt"), d.join("ca.crt")).unwrap();
    let manifest = |grant: &str| {
        let pg = pg_system(grant).entity(
            "contacts",
            &[r#"direction = "both""#, &tracked_table("contacts")],
        );
        write_manifest(d, &format!("{}{pg}", entity("contacts", "id", &[])))
    };
    let url = pg.url("crm");

    // TLS with the test CA trusted: connects and reads the table.
    let m = manifest(&format!(
        r#"{{ url = "{url}", tls = "require", ca_file = "ca.crt" }}"#
    ));
    let run = weir(WEIR, &m, &["check"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    // The same server without its CA: the certificate is refused, not trusted blindly.
    let m = manifest(&format!(r#"{{ url = "{url}", tls = "require" }}"#));
    let run = weir(WEIR, &m, &["check"]);
    assert_ne!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("cannot connect to database 'main'")
            && out.to_lowercase().contains("certificate"),
        "{out}"
    );
}

/// Under `shared_key`, records both systems already hold under the same key
/// are one record: equal ones are linked, different ones are a conflict
/// resolved by the entity's policy, and neither side gets the other's row.
#[test]
fn shared_keys_already_on_both_sides_are_matched_not_swapped() {
    let pg = with_contacts(Postgres::start().expect("start PostgreSQL"));
    let TwoWay { dir: _dir, lite, m } = two_way(&pg, 3, "tombstones");
    // The same three keys in PostgreSQL: 1 and 3 equal, 2 different.
    pg.psql(
        "crm",
        "INSERT INTO contacts (id, first_name, last_name, email, balance, birth_date, tags, vip) VALUES
            (1, 'First1', 'Last1', 'person1@example.com', 3.01, '1951-02-11', '[]', false),
            (2, 'Other2', 'Last2', 'other2@example.com', 6.02, '1952-03-12', '[\"vip\"]', false),
            (3, 'First3', 'Last3', 'person3@example.com', 9.03, '1953-04-13', '[]', true);",
    )
    .unwrap();
    sync(&m, &["--quiet"]);
    sync(&m, &["--quiet"]);
    assert_agree(&pg, &lite);
    assert_eq!(lite_rows(&lite).len(), 3);
    let row2 = rows(&lite, "SELECT first_name, email FROM contacts WHERE id = 2");
    assert!(
        row2 == vec![vec![
            Some("First2".into()),
            Some("person2@example.com".into())
        ]] || row2
            == vec![vec![
                Some("Other2".into()),
                Some("other2@example.com".into())
            ]],
        "record 2 is one side's, whole: {row2:?}"
    );
    let conflicts = weir_pg(&m, &["conflicts"]);
    assert_eq!(conflicts.code, 0, "{}", conflicts.stderr);
    assert_eq!(
        conflicts
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count(),
        1,
        "one conflict, for record 2: {}",
        conflicts.stdout
    );
}

/// The WAL position of the cluster now, as text.
fn wal_position(pg: &Postgres) -> String {
    pg.psql("crm", "SELECT pg_current_wal_lsn()")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn deletes_are_read_from_a_logical_replication_slot() {
    let pg = with_contacts(
        Postgres::start_with(&["fsync=off", "wal_level=logical"]).expect("start PostgreSQL"),
    );
    let TwoWay { dir: _dir, lite, m } = two_way(&pg, 50, "logical");

    // `weir check` creates the slot, named after the system and the table.
    let check = weir_pg(&m, &["check"]);
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);
    assert_eq!(
        pg.psql(
            "crm",
            "SELECT plugin FROM pg_replication_slots WHERE slot_name = 'weir_pg_contacts'"
        )
        .unwrap(),
        "test_decoding\n"
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (50, 0));
    // weir's own inserts are in the slot too: they are not deletes.
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));

    // Two hard deletes; a row deleted and inserted again; deletes in another
    // table, in the same transaction and in one of their own.
    let before_deletes = wal_position(&pg);
    pg.psql(
        "crm",
        "CREATE TABLE notes (id bigint PRIMARY KEY);
         INSERT INTO notes VALUES (5), (6);
         BEGIN;
         DELETE FROM contacts WHERE id IN (5, 6);
         DELETE FROM notes WHERE id = 5;
         COMMIT;
         DELETE FROM contacts WHERE id = 7;
         INSERT INTO contacts (id, first_name, last_name, email) VALUES (7, 'First7', 'Again', 'person7@example.com');
         DELETE FROM notes WHERE id = 6;",
    )
    .unwrap();
    // A dry run reads them (in batches of two changes) and leaves the slot
    // where it was.
    let slot_at = || {
        pg.psql(
            "crm",
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'weir_pg_contacts'",
        )
        .unwrap()
    };
    let before_dry_run = slot_at();
    let dry = weir_pg(&m, &["sync", "--dry-run", "--batch-size", "2"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(
        slot_at(),
        before_dry_run,
        "a dry run moved the slot: {dry:?}"
    );
    let run = sync(&m, &["--quiet"]);
    assert_eq!(
        written_and_deleted(&run),
        (1, 2),
        "2 deletes, and row 7's new last name: {}",
        run.stdout
    );
    assert_eq!(
        count(&lite, "SELECT count(*) FROM contacts WHERE id IN (5, 6)"),
        0
    );
    assert_eq!(
        rows(&lite, "SELECT last_name FROM contacts WHERE id = 7"),
        vec![vec![Some("Again".into())]]
    );

    // The slot is moved on one read behind what the host committed (the
    // server may then drop that WAL), and the deletes are not read again.
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));
    assert_eq!(
        pg.psql(
            "crm",
            &format!(
                "SELECT confirmed_flush_lsn > '{before_deletes}' FROM pg_replication_slots WHERE slot_name = 'weir_pg_contacts'"
            )
        )
        .unwrap(),
        "t\n"
    );
    // Deletes in many transactions, read in batches of a few changes each:
    // the host asks for each batch before the one before is committed, and
    // every delete is reported once.
    pg.psql(
        "crm",
        "DELETE FROM contacts WHERE id = 11; DELETE FROM contacts WHERE id = 12;
         DELETE FROM contacts WHERE id = 13; DELETE FROM contacts WHERE id = 14;
         DELETE FROM contacts WHERE id = 15;",
    )
    .unwrap();
    let run = sync(&m, &["--batch-size", "4"]);
    assert_eq!(
        written_and_deleted(&run),
        (0, 5),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        count(
            &lite,
            "SELECT count(*) FROM contacts WHERE id BETWEEN 11 AND 15"
        ),
        0
    );
    // Deletes made by weir (from SQLite) are echoes, not new deletes.
    exec(&lite, "DELETE FROM contacts WHERE id = 8");
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 1));
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));
    assert_eq!(
        written_and_deleted(&sync(&m, &["--quiet", "--full"])),
        (0, 0)
    );
    assert_agree(&pg, &lite);

    // A key changed by an update: the row is gone under its old key (a
    // delete) and comes under its new one (a change).
    pg.psql("crm", "UPDATE contacts SET id = 1016 WHERE id = 16;")
        .unwrap();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (1, 1));
    assert_eq!(
        rows(&lite, "SELECT id FROM contacts WHERE id IN (16, 1016)"),
        vec![vec![Some("1016".into())]]
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));
    assert_agree(&pg, &lite);

    // A slot made anew stands past weir's cursor: the deletes in between are
    // unknown, and the pass says so until a full read settles it.
    pg.psql(
        "crm",
        "SELECT pg_drop_replication_slot('weir_pg_contacts');
         DELETE FROM contacts WHERE id = 9;",
    )
    .unwrap();
    let missing = weir_pg(&m, &["sync", "--quiet"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing
            .stderr
            .contains("replication slot 'weir_pg_contacts' is missing"),
        "{missing:?}"
    );
    assert_eq!(weir_pg(&m, &["check"]).code, 0);
    pg.psql(
        "crm",
        "CREATE TABLE filler (n int); INSERT INTO filler VALUES (1);",
    )
    .unwrap();
    let ahead = weir_pg(&m, &["sync", "--quiet"]);
    assert_ne!(ahead.code, 0);
    assert!(
        ahead.stderr.contains("has moved past weir's cursor")
            && ahead.stderr.contains("weir sync --full"),
        "{ahead:?}"
    );
    let full = sync(&m, &["--quiet", "--full"]);
    assert_eq!(
        written_and_deleted(&full),
        (0, 1),
        "the full read finds row 9 gone"
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));

    // A truncate (here with another table) names no rows: change reads stop
    // until a full read finds what it removed.
    let held = count(&lite, "SELECT count(*) FROM contacts");
    pg.psql("crm", "TRUNCATE notes, contacts;").unwrap();
    for _ in 0..2 {
        let truncated = weir_pg(&m, &["sync", "--quiet"]);
        assert_ne!(truncated.code, 0, "{truncated:?}");
        assert!(
            truncated.stderr.contains("table 'contacts' was truncated")
                && truncated.stderr.contains("weir sync --full"),
            "{truncated:?}"
        );
    }
    assert_eq!(
        written_and_deleted(&sync(&m, &["--quiet", "--full"])),
        (0, held as u64)
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));
}

#[test]
fn logical_deletes_need_postgresql_with_wal_level_logical() {
    // The default wal_level (replica) cannot decode: `weir check` says what to change.
    let pg = with_contacts(Postgres::start().expect("start PostgreSQL"));
    let TwoWay { dir: _dir, m, .. } = two_way(&pg, 1, "logical");
    let run = weir_pg(&m, &["check"]);
    assert_ne!(run.code, 0);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("needs wal_level = logical on the server (it is 'replica')"),
        "{out}"
    );

    // SQLite has no replication slots.
    let text = std::fs::read_to_string(&m).unwrap();
    let lite_logical = text.replacen(r#"deletes = "tombstones""#, r#"deletes = "logical""#, 1);
    assert_ne!(text, lite_logical);
    std::fs::write(&m, lite_logical).unwrap();
    let run = weir_pg(&m, &["check"]);
    assert_ne!(run.code, 0);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains(r#"deletes = "logical" needs PostgreSQL, and database 'lite' is SQLite"#),
        "{out}"
    );
}

/// Polls `sql` on database `crm` until it prints `want`, for at most 30 s.
fn wait_for(pg: &Postgres, sql: &str, want: &str, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pg.psql("crm", sql).unwrap() != want {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A session on database `crm` that has run `sql` in a transaction it
/// keeps open: returned once it is idle in that transaction, holding a
/// transaction id when `writes` (and none otherwise).
fn open_transaction(pg: &Postgres, sql: &str, writes: bool) -> PsqlSession {
    let mut session = pg.session("crm").unwrap();
    session.send(&format!("BEGIN; {sql}")).unwrap();
    let xid = if writes { "IS NOT NULL" } else { "IS NULL" };
    wait_for(
        pg,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'crm'
                 AND state = 'idle in transaction' AND backend_xid {xid}"
        ),
        "1\n",
        &format!("the open transaction did not run: {sql}"),
    );
    session
}

/// Commits the open transaction of `session` after `sql`, and waits until
/// contact `id`, which it inserts, can be seen.
fn commit(pg: &Postgres, mut session: PsqlSession, sql: &str, id: u32) {
    session.send(&format!("{sql} COMMIT;")).unwrap();
    wait_for(
        pg,
        &format!("SELECT count(*) FROM contacts WHERE id = {id}"),
        "1\n",
        &format!("contact {id} was not committed"),
    );
}

/// A transaction that began before others committed stamps its rows (and
/// the tombstones of its deletes) older than theirs; committed after a change
/// read took those, its changes are still read by the next one: the cursors
/// stay before what a transaction still open may add.
#[test]
fn a_row_committed_late_with_an_older_stamp_is_read_by_the_next_pass() {
    let pg = with_contacts(Postgres::start().expect("start PostgreSQL"));
    let TwoWay { dir: _dir, lite, m } = two_way(&pg, 20, "tombstones");
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (20, 0));
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));

    // Row 501 and the tombstone of row 7 are stamped now, and their
    // transaction stays open.
    let late = open_transaction(
        &pg,
        "INSERT INTO contacts (id, first_name, last_name, email)
             VALUES (501, 'Late', 'Comer', 'late@example.com');
         DELETE FROM contacts WHERE id = 7;",
        true,
    );
    // Changes stamped after them are committed and synced first.
    pg.psql(
        "crm",
        "INSERT INTO contacts (id, first_name, last_name, email)
             VALUES (502, 'Early', 'Bird', 'early@example.com');
         UPDATE contacts SET email = 'moved@example.com' WHERE id = 3;
         DELETE FROM contacts WHERE id = 8;",
    )
    .unwrap();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (2, 1));
    assert_eq!(
        count(
            &lite,
            "SELECT count(*) FROM contacts WHERE id IN (501, 502)"
        ),
        1
    );

    commit(&pg, late, "", 501);
    // The next pass reads row 501 and the delete of row 7; rows 502 and 3
    // and the tombstone of row 8, read again, change nothing.
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (1, 1));
    assert_eq!(
        count(&lite, "SELECT count(*) FROM contacts WHERE id IN (7, 8)"),
        0
    );
    assert_eq!(
        count(
            &lite,
            "SELECT count(*) FROM contacts WHERE id = 501 AND email = 'late@example.com'"
        ),
        1
    );
    assert_agree(&pg, &lite);
    // With no transaction open, every row is settled: once the echo of row
    // 501 is read back from SQLite, nothing is read again.
    sync(&m, &["--quiet"]);
    let quiet = sync(&m, &[]);
    assert!(quiet.stdout.contains(" 0 read,"), "{quiet:?}");
}

/// A transaction that has written nothing yet holds no transaction id, but
/// `now()` is already its start: a row it stamps with `now()` and commits
/// after others is still read, because the horizon is the start of the
/// oldest transaction open, written to or not.
#[test]
fn a_row_stamped_with_the_start_of_its_transaction_is_read() {
    let pg = with_contacts(Postgres::start().expect("start PostgreSQL"));
    let TwoWay { dir: _dir, lite, m } = two_way(&pg, 5, "tombstones");
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (5, 0));

    let late = open_transaction(&pg, "SELECT 1;", false);
    pg.psql(
        "crm",
        "INSERT INTO contacts (id, first_name, last_name, email)
             VALUES (702, 'Early', 'Bird', 'early@example.com');",
    )
    .unwrap();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (1, 0));

    commit(
        &pg,
        late,
        "INSERT INTO contacts (id, first_name, last_name, email, updated_at)
             VALUES (701, 'Late', 'Comer', 'late@example.com', now());",
        701,
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (1, 0));
    assert_eq!(
        count(
            &lite,
            "SELECT count(*) FROM contacts WHERE id IN (701, 702)"
        ),
        2
    );
}

/// A role without `pg_read_all_stats` sees neither the start nor the type of
/// another role's session in `pg_stat_activity`: such a session counts as
/// having begun a minute ago, so a row it stamped within that minute and
/// commits late is still read.
#[test]
fn a_late_row_of_a_session_weir_may_not_look_into_is_read() {
    let pg = with_contacts(Postgres::start().expect("start PostgreSQL"));
    pg.psql(
        "crm",
        "CREATE ROLE syncer LOGIN; GRANT SELECT ON contacts TO syncer;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lite = dir.path().join("lite.db");
    lite_db(&lite, 0);
    let url = pg.url("crm").replace("postgres@", "syncer@");
    let pg_source = pg_system(&format!(
        r#"{{ url = "{url}", password = "${{WEIR_TEST_PG_PASSWORD}}" }}"#
    ))
    .tracked("contacts", "contacts", "read", &[]);
    let lite_target = lite_system().entity(
        "contacts",
        &[
            r#"direction = "write""#,
            IGNORE_UPDATED_AT,
            r#"settings = { table = "contacts" }"#,
        ],
    );
    let m = write_manifest(
        dir.path(),
        &format!("{}{pg_source}{lite_target}", entity_of("contacts", "id")),
    );
    // A row long settled, where the change cursor starts.
    pg.psql(
        "crm",
        "INSERT INTO contacts (id, first_name, last_name, email, updated_at)
             VALUES (600, 'Long', 'Ago', 'long@example.com', now() - interval '10 minutes');",
    )
    .unwrap();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (1, 0));

    // The superuser's transaction, hidden from syncer, stamps row 601 as if
    // it had begun 30 s ago; row 602 is committed meanwhile.
    let late = open_transaction(
        &pg,
        "INSERT INTO contacts (id, first_name, last_name, email, updated_at)
             VALUES (601, 'Late', 'Comer', 'late@example.com', now() - interval '30 seconds');",
        true,
    );
    pg.psql(
        "crm",
        "INSERT INTO contacts (id, first_name, last_name, email)
             VALUES (602, 'Early', 'Bird', 'early@example.com');",
    )
    .unwrap();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (1, 0));

    commit(&pg, late, "", 601);
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (1, 0));
    assert_eq!(
        count(
            &lite,
            "SELECT count(*) FROM contacts WHERE id IN (601, 602)"
        ),
        2
    );
}

#[test]
fn a_row_locked_at_the_target_is_retried_not_dead_lettered() {
    let pg = with_contacts(Postgres::start().expect("start PostgreSQL"));
    // weir's sessions give up on a lock after 300 ms (SQLSTATE 55P03).
    pg.psql("postgres", "ALTER ROLE postgres SET lock_timeout = '300ms'")
        .unwrap();
    let TwoWay { dir, lite, m } = two_way(&pg, 20, "tombstones");
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (20, 0));

    // Another session holds row 5 while weir writes its change.
    let mut holder = pg.session("crm").unwrap();
    holder
        .send("BEGIN; SELECT id FROM contacts WHERE id = 5 FOR UPDATE;")
        .unwrap();
    wait_for(
        &pg,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'crm' AND state = 'idle in transaction'",
        "1\n",
        "the lock was not taken",
    );
    exec(
        &lite,
        "UPDATE contacts SET email = 'locked@example.com' WHERE id = 5",
    );
    let run = weir_pg(&m, &["sync", "--quiet"]);
    assert_ne!(run.code, 0, "the write waits for a later pass: {run:?}");
    assert!(run.stdout.contains(" 1 failed"), "{run:?}");
    let letters = weir_pg(&m, &["dead-letters"]);
    assert!(
        letters.stdout.trim().is_empty(),
        "a lock is no reason to give up on a record: {letters:?}"
    );

    let store = dir.path().join("weir.db");
    assert_eq!(
        rows(
            &store,
            "SELECT attempts, last_error LIKE '%[SQLSTATE 55P03]%' FROM outbox"
        ),
        vec![vec![Some("1".into()), Some("1".into())]]
    );

    // Once the lock is let go and the backoff has passed (moved into the
    // past here), the next pass delivers the change.
    drop(holder);
    make_due(&store);
    let run = sync(&m, &["--quiet"]);
    assert_eq!(written_and_deleted(&run), (1, 0));
    assert_eq!(
        pg.psql("crm", "SELECT email FROM contacts WHERE id = 5")
            .unwrap(),
        "locked@example.com\n"
    );
}

#[test]
fn the_service_reads_a_table_altered_under_it() {
    let pg = with_contacts(Postgres::start().expect("start PostgreSQL"));
    let TwoWay { dir: _dir, lite, m } = two_way(&pg, 3, "tombstones");
    // `weir refresh` asks the service with the system's publish token.
    // One pooled connection, so that every pass meets its prepared statements.
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace(
            r#"config = { database = "main" }"#,
            "config = { database = \"main\" }\npublish_token = \"${WEIR_TEST_TOKEN}\"",
        )
        .replace("pool_size = 2", "pool_size = 1");
    std::fs::write(&m, text).unwrap();
    let env = [
        ("WEIR_TEST_PG_PASSWORD", "not-used-under-trust"),
        ("WEIR_TEST_TOKEN", "refresh-token"),
    ];
    let daemon = Daemon::start(WEIR, &m, &env);
    daemon.expect_line("run 1: 3 read, 3 written");
    let refresh = || {
        let url = format!("http://127.0.0.1:{}", daemon.port);
        let run = weir_env(WEIR, &m, &["refresh", "pg", "--daemon", &url], &env);
        assert_eq!(run.code, 0, "{run:?}");
    };
    // weir's own rows come back from PostgreSQL as echoes; the pass after
    // prepares the change read that later passes use.
    for _ in 0..2 {
        refresh();
        let quiet = daemon.expect_line(" written, ");
        assert!(quiet.contains(" 0 written, "), "{quiet}");
    }

    // A column changes type while the service runs: its prepared `SELECT *`
    // no longer fits the table. That read fails once, and the next one
    // prepares afresh and carries the change.
    pg.psql(
        "crm",
        "ALTER TABLE contacts ALTER COLUMN first_name TYPE varchar(100);
         UPDATE contacts SET email = 'altered@example.com' WHERE id = 2;",
    )
    .unwrap();
    refresh();
    let mut lines = Vec::new();
    while !lines
        .last()
        .is_some_and(|l: &String| l.contains(" written,") && l.contains(" read, 1 written"))
    {
        assert!(lines.len() < 5, "the change never arrived: {lines:?}");
        lines.push(daemon.expect_line(" written, "));
        if !lines.last().unwrap().contains(" read, 1 written") {
            refresh();
        }
    }
    assert_eq!(
        rows(&lite, "SELECT email FROM contacts WHERE id = 2"),
        vec![vec![Some("altered@example.com".into())]]
    );
}

/// A table in a schema other than the search path's first, next to a table
/// of the same name in `public`: the `schema` setting finds it, and its
/// tombstone table, trigger function and replication slot go with it.
fn in_sales_schema(pg: &Postgres, deletes: &str, n: usize) -> TwoWay {
    pg.create_database("crm").unwrap();
    pg.psql(
        "crm",
        &format!(
            "CREATE SCHEMA sales; SET search_path = sales; {PG_CONTACTS}
             SET search_path = public; CREATE TABLE contacts (id bigint PRIMARY KEY, email text);"
        ),
    )
    .unwrap();
    let two = two_way(pg, n, deletes);
    // The PostgreSQL system's settings come last in the manifest.
    let text = std::fs::read_to_string(&two.m).unwrap();
    let pg_settings = format!(r#"deletes = "{deletes}" }}"#);
    let at = text.rfind(&pg_settings).expect("the PostgreSQL settings");
    let in_schema = format!(
        r#"{}deletes = "{deletes}", schema = "sales" }}{}"#,
        &text[..at],
        &text[at + pg_settings.len()..]
    );
    std::fs::write(&two.m, in_schema).unwrap();
    two
}

#[test]
fn a_table_in_another_schema_syncs_both_ways_with_its_tombstones_there() {
    let pg = Postgres::start().expect("start PostgreSQL");
    let TwoWay { dir: _dir, lite, m } = in_sales_schema(&pg, "tombstones", 30);
    let check = weir_pg(&m, &["check"]);
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);
    assert_eq!(
        pg.psql(
            "crm",
            "SELECT to_regclass('sales.contacts_weir_deleted') IS NOT NULL,
                    to_regclass('public.contacts_weir_deleted') IS NULL,
                    (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                      WHERE p.proname = 'contacts_weir_deleted_keep' AND n.nspname = 'sales')"
        )
        .unwrap(),
        "t|t|1\n"
    );

    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (30, 0));
    let counts =
        "SELECT (SELECT count(*) FROM sales.contacts), (SELECT count(*) FROM public.contacts)";
    assert_eq!(pg.psql("crm", counts).unwrap(), "30|0\n");

    // Changes and a hard delete in the schema's table reach SQLite.
    pg.psql(
        "crm",
        "UPDATE sales.contacts SET email = 'moved@example.com' WHERE id = 3;
         DELETE FROM sales.contacts WHERE id = 4;
         INSERT INTO public.contacts VALUES (3, 'decoy@example.com');",
    )
    .unwrap();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (1, 1));
    assert_eq!(
        rows(&lite, "SELECT email FROM contacts WHERE id IN (3, 4)"),
        [[Some("moved@example.com".to_string())]]
    );
    // And SQLite's reach the schema's table.
    exec(&lite, "DELETE FROM contacts WHERE id = 5");
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 1));
    assert_eq!(pg.psql("crm", counts).unwrap(), "28|1\n");
    assert_agree_of(&pg, "sales.contacts", &lite);
}

#[test]
fn a_table_in_another_schema_has_its_own_replication_slot() {
    let pg = Postgres::start_with(&["fsync=off", "wal_level=logical"]).expect("start PostgreSQL");
    let TwoWay { dir: _dir, lite, m } = in_sales_schema(&pg, "logical", 10);
    let check = weir_pg(&m, &["check"]);
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);
    assert_eq!(
        pg.psql("crm", "SELECT slot_name FROM pg_replication_slots")
            .unwrap(),
        "weir_pg_sales_contacts\n"
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (10, 0));
    // A delete in the other schema's table of the same name is not one.
    pg.psql(
        "crm",
        "INSERT INTO public.contacts VALUES (2, 'decoy@example.com');
         DELETE FROM public.contacts WHERE id = 2;
         DELETE FROM sales.contacts WHERE id = 3;",
    )
    .unwrap();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 1));
    assert_eq!(count(&lite, "SELECT count(*) FROM contacts"), 9);
    assert_eq!(
        count(&lite, "SELECT count(*) FROM contacts WHERE id = 2"),
        1
    );
}

#[test]
fn a_schema_setting_on_sqlite_is_refused_by_name() {
    let pg = Postgres::start().expect("start PostgreSQL");
    let TwoWay { dir: _dir, m, .. } = in_sales_schema(&pg, "tombstones", 1);
    let text = std::fs::read_to_string(&m).unwrap();
    let lite_schema = text.replacen(
        r#"deletes = "tombstones" }"#,
        r#"deletes = "tombstones", schema = "main" }"#,
        1,
    );
    assert_ne!(text, lite_schema);
    std::fs::write(&m, lite_schema).unwrap();
    let out = weir_pg(&m, &["check"]);
    assert_ne!(out.code, 0);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains(
            "setting 'schema' is for PostgreSQL, and database 'lite' is SQLite; leave it out"
        ),
        "{text}"
    );
}

/// Columns the database computes, on both sides: a key `GENERATED ALWAYS AS
/// IDENTITY` and a stored full name on PostgreSQL, a generated full name on
/// SQLite. Records cross both ways with their keys; computed columns are
/// read, never written, and come back as echoes.
#[test]
fn identity_keys_and_generated_columns_sync_both_ways() {
    let pg = crm_with(
        "CREATE TABLE people (
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             first_name text NOT NULL,
             last_name text NOT NULL,
             full_name text NOT NULL GENERATED ALWAYS AS (first_name || ' ' || last_name) STORED
         );",
    );
    let (dir, m) = lite_and_pg(
        &pg,
        "people",
        "id",
        "CREATE TABLE people (
             id INTEGER PRIMARY KEY,
             first_name TEXT NOT NULL,
             last_name TEXT NOT NULL,
             full_name TEXT GENERATED ALWAYS AS (first_name || ' ' || last_name) VIRTUAL
         );
         INSERT INTO people (id, first_name, last_name) VALUES
             (1, 'Ada', 'Lovelace'), (2, 'Grace', 'Hopper'), (7, 'Alan', 'Turing');",
        ("both", "both"),
    );
    let lite = dir.path().join("lite.db");
    let pg_people = || {
        pg.psql("crm", "SELECT id, full_name FROM people ORDER BY id")
            .unwrap()
    };
    let lite_people = || {
        rows(&lite, "SELECT id, full_name FROM people ORDER BY id")
            .into_iter()
            .map(|r| format!("{}|{}\n", r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect::<String>()
    };
    let check = weir_pg(&m, &["check"]);
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);

    // SQLite -> PostgreSQL under SQLite's keys.
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (3, 0));
    assert_eq!(
        pg_people(),
        "1|Ada Lovelace\n2|Grace Hopper\n7|Alan Turing\n"
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));

    // PostgreSQL -> SQLite: a change, and a row whose key PostgreSQL assigns.
    pg.psql(
        "crm",
        "UPDATE people SET last_name = 'Hopper-Murray' WHERE id = 2;
         INSERT INTO people (first_name, last_name) VALUES ('Edsger', 'Dijkstra');",
    )
    .unwrap();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (2, 0));
    assert_eq!(lite_people(), pg_people());
    assert!(
        lite_people().contains("2|Grace Hopper-Murray\n"),
        "{}",
        lite_people()
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));
    assert_no_dead_letters(dir.path());
}

/// Records that hold nothing but their key reach a table whose key is
/// `GENERATED ALWAYS AS IDENTITY`, whether their row is there already or
/// not (an update of such a key to itself is refused).
#[test]
fn records_of_only_a_key_reach_an_identity_key_table() {
    let pg = crm_with(
        "CREATE TABLE badges (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
         INSERT INTO badges (id) OVERRIDING SYSTEM VALUE VALUES (2);",
    );
    let (dir, m) = lite_and_pg(
        &pg,
        "badges",
        "id",
        "CREATE TABLE badges (id INTEGER PRIMARY KEY);
         INSERT INTO badges VALUES (1), (2), (3);",
        ("read", "write"),
    );
    let pg_badges = || pg.psql("crm", "SELECT id FROM badges ORDER BY id").unwrap();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (3, 0));
    assert_eq!(pg_badges(), "1\n2\n3\n");
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));
    // One alone takes a statement of its own.
    exec(&dir.path().join("lite.db"), "INSERT INTO badges VALUES (4)");
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (1, 0));
    assert_eq!(pg_badges(), "1\n2\n3\n4\n");
    assert_no_dead_letters(dir.path());
}

/// Target tables whose key column has no primary key or unique index, on
/// PostgreSQL and SQLite: `weir check` warns, a write is refused whole with
/// the fix, and the records wait in the outbox (no dead letters) until the
/// index exists.
#[test]
fn a_target_table_without_a_unique_key_is_refused_whole_and_waits() {
    let pg = crm_with("CREATE TABLE people (id bigint, name text);");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    exec(
        &d.join("src.db"),
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO people VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Alan');",
    );
    let dst = d.join("dst.db");
    // A unique index with a condition cannot match records either.
    exec(
        &dst,
        "CREATE TABLE people (id INTEGER, name TEXT);
         CREATE UNIQUE INDEX named ON people (id) WHERE name IS NOT NULL;",
    );
    let src = System::sqlite("src", "src", "src.db").entity("people", &[r#"direction = "read""#]);
    let dst_system =
        System::sqlite("dst", "dst", "dst.db").entity("people", &[r#"direction = "write""#]);
    let pg_target = pg_system(&format!(r#"{{ url = "{}" }}"#, pg.url("crm")))
        .entity("people", &[r#"direction = "write""#]);
    let m = write_manifest(
        d,
        &format!("{}{src}{dst_system}{pg_target}", entity_of("people", "id")),
    );
    let fix = "is neither its primary key nor alone in a unique index, so writes cannot match records by it; add one";
    let check = weir_pg(&m, &["check"]);
    let text = format!("{}{}", check.stdout, check.stderr);
    assert!(
        text.contains(&format!(
            "column 'id' of table 'people' in database 'main' {fix}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "column 'id' of table 'people' in database 'dst' {fix}"
        )),
        "{text}"
    );

    let run = weir_pg(&m, &["sync"]);
    let text = format!("{}{}", run.stdout, run.stderr);
    assert_ne!(run.code, 0, "{text}");
    assert!(text.contains(fix), "{text}");
    let store = d.join("weir.db");
    assert_eq!(count(&store, "SELECT count(*) FROM dead_letters"), 0);
    assert_eq!(count(&store, "SELECT count(*) FROM outbox"), 6);
    assert_eq!(
        pg.psql("crm", "SELECT count(*) FROM people").unwrap(),
        "0\n"
    );

    // The fix, and the backoff moved into the past: the records arrive.
    pg.psql("crm", "ALTER TABLE people ADD PRIMARY KEY (id);")
        .unwrap();
    exec(&dst, "CREATE UNIQUE INDEX by_id ON people (id);");
    make_due(&store);
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (6, 0));
    assert_eq!(
        pg.psql("crm", "SELECT id, name FROM people ORDER BY id")
            .unwrap(),
        "1|Ada\n2|Grace\n3|Alan\n"
    );
    assert_eq!(count(&dst, "SELECT count(*) FROM people"), 3);
}

/// Column types the host does not read as they are: arrays read as JSON and
/// are written back as arrays; `interval`, `inet` and a range read and are
/// written as their text. Two-way with SQLite, with no echo.
#[test]
fn arrays_and_other_postgresql_types_sync_both_ways() {
    let pg = crm_with(
        r#"CREATE TABLE things (
             id bigint PRIMARY KEY,
             tags text[],
             grid integer[][],
             span interval,
             addr inet,
             days int4range
         );
         INSERT INTO things VALUES
             (1, '{"a","b c","say \"hi\""}', '{{1,2},{3,4}}', '1 day 02:00:00', '10.0.0.1', '[1,5)'),
             (2, '{}', NULL, NULL, '192.168.0.0/16', 'empty');"#,
    );
    let (dir, m) = lite_and_pg(
        &pg,
        "things",
        "id",
        "CREATE TABLE things (id INTEGER PRIMARY KEY, tags TEXT, grid TEXT, span TEXT, addr TEXT, days TEXT);",
        ("both", "both"),
    );
    let lite = dir.path().join("lite.db");
    let lite_things = || {
        rows(
            &lite,
            "SELECT id, tags, grid, span, addr, days FROM things ORDER BY id",
        )
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| v.unwrap_or_else(|| "NULL".into()))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect::<Vec<_>>()
    };
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (2, 0));
    assert_eq!(
        lite_things(),
        [
            r#"1|["a", "b c", "say \"hi\""]|[[1, 2], [3, 4]]|1 day 02:00:00|10.0.0.1|[1,5)"#,
            "2|[]|NULL|NULL|192.168.0.0/16|empty",
        ]
    );
    // What weir wrote to SQLite comes back as an echo.
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));

    // SQLite -> PostgreSQL: arrays as JSON text, the rest as text.
    exec(
        &lite,
        r#"UPDATE things SET tags = '["x", "y,z", null]', grid = '[[5], [6]]', span = '03:00:00', addr = '::1', days = '[2,3]' WHERE id = 2;
           INSERT INTO things (id, tags) VALUES (3, '["new"]');
           INSERT INTO things (id, grid) VALUES (4, '[[]]');"#,
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (3, 0));
    assert_eq!(
        pg.psql(
            "crm",
            "SELECT id, tags, grid, span, addr, days FROM things WHERE id > 1 ORDER BY id"
        )
        .unwrap(),
        "2|{x,\"y,z\",NULL}|{{5},{6}}|03:00:00|::1|[2,4)\n3|{new}||||\n4||{}|||\n"
    );
    // PostgreSQL spells the range and the empty grid its own way: they
    // come back to SQLite once, and then nothing moves.
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (2, 0));
    assert_eq!(
        rows(
            &lite,
            "SELECT id, days, grid FROM things WHERE id IN (2, 4)"
        ),
        [
            [
                Some("2".to_string()),
                Some("[2,4)".to_string()),
                Some("[[5], [6]]".to_string())
            ],
            [Some("4".to_string()), None, Some("[]".to_string())]
        ]
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));
}

/// A folder holding `lite.db`, made by `sql`, and the file's path.
fn lite_with(sql: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let lite = dir.path().join("lite.db");
    exec(&lite, sql);
    (dir, lite)
}

/// A folder whose `lite.db` is made by `lite_sql`, and a manifest that
/// syncs entity `entity` (keyed by `key`, shared keys) between it (system
/// `lite`) and the cluster's `crm` database (system `pg`), each system with
/// its direction: `read`, `write` or `both`.
fn lite_and_pg(
    pg: &Postgres,
    entity: &str,
    key: &str,
    lite_sql: &str,
    (lite, pg_direction): (&str, &str),
) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, _) = lite_with(lite_sql);
    let lite = lite_system().entity(entity, &[&direction(lite)]);
    let pg = pg_system(&format!(r#"{{ url = "{}" }}"#, pg.url("crm")))
        .entity(entity, &[&direction(pg_direction)]);
    let m = write_manifest(dir.path(), &format!("{}{lite}{pg}", entity_of(entity, key)));
    (dir, m)
}

/// A batch of new rows is loaded with `COPY` (a statement trigger notes
/// each statement's kind and the keys it inserted), its values just as
/// upserts write them. A batch with a row the table holds already makes the
/// `COPY` fail: its rows are upserted instead, and so are the later batches
/// of the run. The run's first `COPY` asks first whether rows exist, so a
/// run of updates tries none (the server log counts the failed ones).
#[test]
fn new_rows_in_bulk_are_copied_and_rows_that_exist_upserted() {
    let pg = crm_with(
        "CREATE TABLE people (id bigint PRIMARY KEY, name text, vip boolean, balance numeric(10,2), tags text[], seen timestamptz, photo bytea);
         CREATE TABLE statements (kind text);
         CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO statements SELECT split_part(ltrim(current_query()), ' ', 1) || min(id) || '-' || max(id) FROM fresh; RETURN NULL; END $$;
         CREATE TRIGGER noted AFTER INSERT ON people REFERENCING NEW TABLE AS fresh FOR EACH STATEMENT EXECUTE FUNCTION note();",
    );
    let (dir, m) = lite_and_pg(
        &pg,
        "people",
        "id",
        r#"CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, vip INTEGER, balance TEXT, tags TEXT, seen TEXT, photo BLOB);
           WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 250)
           INSERT INTO people SELECT i, 'person ' || i, i % 2, i * 1.25, '["a", "b\\c"]', '2025-01-02T03:04:05Z', unhex(printf('%04x', i)) FROM n;
           UPDATE people SET name = 'tab' || char(9) || 'new' || char(10) || 'line back\slash \N' WHERE id = 1;
           UPDATE people SET name = NULL WHERE id = 2;"#,
        ("read", "write"),
    );
    let one = |sql: &str| pg.psql("crm", sql).unwrap().trim().to_string();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (250, 0));
    assert_eq!(
        one("SELECT string_agg(kind, ',') FROM statements"),
        "COPY1-250"
    );
    assert_eq!(one("SELECT count(*) FROM people WHERE vip"), "125");
    assert_eq!(one("SELECT sum(balance) FROM people"), "39218.75");
    assert_eq!(
        one(r"SELECT id FROM people WHERE name = E'tab\tnew\nline back\\slash \\N'"),
        "1"
    );
    assert_eq!(one("SELECT id FROM people WHERE name IS NULL"), "2");
    assert_eq!(one("SELECT tags[2] FROM people WHERE id = 3"), r"b\c");
    assert_eq!(
        one("SELECT count(*) FROM people WHERE seen = '2025-01-02T03:04:05Z'"),
        "250"
    );
    // Bytes (read from SQLite as hex) are copied as bytes.
    assert_eq!(
        one("SELECT count(*) FROM people WHERE photo = decode(lpad(to_hex(id), 4, '0'), 'hex')"),
        "250"
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));

    // 400 more in batches of 100, with rows from 460 on in the table
    // already: the full batches before 460 are copied, the batch that holds
    // 460 fails to be and is upserted, and so are the batches after it.
    let add = |from: u32, to: u32, there: &str| {
        rusqlite::Connection::open(dir.path().join("lite.db"))
            .unwrap()
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
                 INSERT INTO people SELECT i, 'person ' || i, 0, '1', '[]', NULL, unhex(printf('%04x', i)) FROM n",
                [from, to],
            )
            .unwrap();
        pg.psql(
            "crm",
            &format!(
                "INSERT INTO people (id, name) SELECT i, 'old' FROM {there};
                 DELETE FROM statements;"
            ),
        )
        .unwrap();
    };
    let failed_copies = || {
        pg.log()
            .matches(r#"violates unique constraint "people_pkey""#)
            .count()
    };
    add(251, 650, "generate_series(460, 550, 25) AS i");
    assert_eq!(
        written_and_deleted(&sync(&m, &["--quiet", "--batch-size", "100"])),
        (400, 0)
    );
    assert_eq!(one("SELECT count(*) FROM people"), "650");
    assert_eq!(
        one("SELECT count(*) FROM people WHERE name = 'person ' || id"),
        "648"
    );
    // The failed COPY left nothing, and was the run's only one.
    let copies = |rule: &str| {
        one(&format!(
            "SELECT count(*) FROM statements WHERE kind LIKE 'COPY%' AND {rule}"
        ))
    };
    assert_ne!(copies("true"), "0", "the first batches are copied");
    assert_eq!(
        copies("split_part(substr(kind, 5), '-', 2)::int >= 460"),
        "0"
    );
    assert_eq!(failed_copies(), 1);

    // 200 more, with a row there already in every 100: the run's first
    // COPY asks whether its rows exist, and none is tried.
    add(651, 850, "generate_series(660, 850, 25) AS i");
    assert_eq!(
        written_and_deleted(&sync(&m, &["--quiet", "--batch-size", "100"])),
        (200, 0)
    );
    assert_eq!(copies("true"), "0");
    assert_eq!(one("SELECT count(*) FROM people WHERE name = 'old'"), "0");
    // Bytes reach the table whether copied or upserted, after a failed
    // COPY too.
    assert_eq!(
        one("SELECT count(*) FROM people WHERE photo = decode(lpad(to_hex(id), 4, '0'), 'hex')"),
        "850"
    );
    assert_eq!(failed_copies(), 1, "no COPY was tried");
    assert_no_dead_letters(dir.path());
}

/// A key whose type is read as text (`inet`) is still paged in the key's
/// own order: text order (`10.0.0.10` before `10.0.0.9`) would skip rows.
#[test]
fn a_key_read_as_text_is_paged_in_its_own_order() {
    let pg = crm_with(
        "CREATE TABLE hosts (addr inet PRIMARY KEY, name text);
         INSERT INTO hosts VALUES ('10.0.0.9', 'a'), ('10.0.0.10', 'b'), ('10.0.0.11', 'c'), ('10.0.0.100', 'd');",
    );
    let (dir, m) = lite_and_pg(
        &pg,
        "hosts",
        "addr",
        "CREATE TABLE hosts (addr TEXT PRIMARY KEY, name TEXT);",
        ("write", "read"),
    );
    sync(&m, &["--quiet", "--batch-size", "2"]);
    assert_eq!(
        rows(
            &dir.path().join("lite.db"),
            "SELECT name FROM hosts ORDER BY name"
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect::<Vec<_>>(),
        ["a", "b", "c", "d"]
    );
}

/// A key whose type the host reads as text (`inet`) on both sides of a
/// two-way sync: rows written to PostgreSQL give their key back, and change
/// reads, their checkpoint and the tombstones of deletes read it as text.
#[test]
fn a_key_read_as_text_syncs_both_ways_with_changes_and_deletes() {
    let pg = crm_with(
        "CREATE TABLE hosts (addr inet PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
         INSERT INTO hosts (addr, name) VALUES ('10.0.0.9', 'a'), ('10.0.0.10', 'b');",
    );
    let (dir, lite) = lite_with(
        "CREATE TABLE hosts (addr TEXT PRIMARY KEY, name TEXT, updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
             INSERT INTO hosts (addr, name) VALUES ('192.168.1.1', 'c');",
    );
    let m = two_way_manifest_of(dir.path(), &pg.url("crm"), ("hosts", "addr"), "tombstones");
    let pg_hosts = || {
        pg.psql("crm", "SELECT addr, name FROM hosts ORDER BY addr")
            .unwrap()
    };
    let lite_hosts = || {
        rows(&lite, "SELECT addr, name FROM hosts")
            .into_iter()
            .map(|r| format!("{}|{}", r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (3, 0));
    assert_eq!(pg_hosts(), "10.0.0.9|a\n10.0.0.10|b\n192.168.1.1|c\n");
    assert_eq!(lite_hosts(), ["10.0.0.10|b", "10.0.0.9|a", "192.168.1.1|c"]);
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));

    // Changes and a delete in PostgreSQL reach SQLite.
    pg.psql(
        "crm",
        "UPDATE hosts SET name = 'b2', updated_at = clock_timestamp() WHERE addr = '10.0.0.10';
         DELETE FROM hosts WHERE addr = '10.0.0.9';",
    )
    .unwrap();
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (1, 1));
    assert_eq!(lite_hosts(), ["10.0.0.10|b2", "192.168.1.1|c"]);
    // And back: a delete in SQLite reaches PostgreSQL.
    exec(&lite, "DELETE FROM hosts WHERE addr = '192.168.1.1'");
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 1));
    assert_eq!(pg_hosts(), "10.0.0.10|b2\n");
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));
    assert_no_dead_letters(dir.path());
}

/// Keys PostgreSQL spells anew (a `uuid` given in capitals) are not loaded
/// by `COPY`, which would report them as given: the upserts' `RETURNING`
/// gives the spelling reads give, so the rows read back are the records
/// written (their new spelling comes back once, as other re-spelt values
/// do), not new records to copy back.
#[test]
fn keys_the_database_spells_anew_are_upserted_and_read_back_as_the_same_records() {
    let pg = crm_with(
        "CREATE TABLE tags (id uuid PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());",
    );
    let (dir, lite) = lite_with(
        "CREATE TABLE tags (id TEXT PRIMARY KEY, name TEXT, updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150)
             INSERT INTO tags (id, name) SELECT printf('%08X-ABCD-4000-8000-%012X', i, i), 'tag ' || i FROM n;",
    );
    let m = two_way_manifest_of(dir.path(), &pg.url("crm"), ("tags", "id"), "tombstones");
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (150, 0));
    assert_eq!(
        pg.psql(
            "crm",
            "SELECT count(*) FROM tags WHERE id::text = lower(id::text)"
        )
        .unwrap()
        .trim(),
        "150"
    );
    // The ids in the records come back in small letters, once.
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (150, 0));
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (0, 0));
    assert_eq!(
        rows(&lite, "SELECT count(*) FROM tags"),
        [[Some("150".to_string())]]
    );
    assert_eq!(
        pg.psql("crm", "SELECT count(*) FROM tags").unwrap().trim(),
        "150"
    );
}

/// A key sequence that starts past the keys written as given (each system
/// its own range of keys) is left where it is.
#[test]
fn a_key_sequence_that_starts_past_the_keys_is_left_alone() {
    let pg = crm_with(
        "CREATE TABLE people (id bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 1000) PRIMARY KEY, name text);",
    );
    let (_dir, m) = lite_and_pg(
        &pg,
        "people",
        "id",
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO people VALUES (1, 'Ada'), (2, 'Grace');",
        ("read", "write"),
    );
    assert_eq!(written_and_deleted(&sync(&m, &["--quiet"])), (2, 0));
    assert_eq!(
        pg.psql(
            "crm",
            "INSERT INTO people (name) VALUES ('Alan') RETURNING id"
        )
        .unwrap(),
        "1000\n"
    );
}
