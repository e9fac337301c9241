//! The sync engine end to end, through the command line only: two-way sync
//! without echo writes, conflicts settled by priority, deletes in both
//! directions, references translated between systems, and crash safety of the
//! outbox. Every system is a real SQLite file reached through the wasm `sql`
//! connector; tables and columns are named differently in each system.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

// ---------------------------------------------------------------------------
// Databases

/// Waits until the clock has passed every `updated_at` of these tables, so
/// that edits made by the test carry a stamp later than anything a previous
/// pass, or edit, has seen.
fn pause(tables: &[(&Path, &str)]) {
    for (db, table) in tables {
        after_last_stamp(db, table);
    }
}

/// The canonical contact fields, in the order of [`Layout::fields`].
const CANONICAL: [&str; 4] = ["first_name", "last_name", "email", "phone"];

/// How one system names the contacts table and its fields.
struct Layout {
    table: &'static str,
    pk: &'static str,
    /// This system's names of first_name, last_name, email, phone.
    fields: [&'static str; 4],
}

/// The contacts of system `a`: canonical names.
const PEOPLE: Layout = Layout {
    table: "people",
    pk: "id",
    fields: CANONICAL,
};

/// The contacts of system `b`: a shop's names.
const CUSTOMERS: Layout = Layout {
    table: "customers",
    pk: "customer_id",
    fields: ["fname", "lname", "mail", "phone"],
};

/// The contacts of system `c`: a club's names.
const MEMBERS: Layout = Layout {
    table: "members",
    pk: "member_id",
    fields: ["given", "family", "email_address", "tel"],
};

impl Layout {
    /// Creates the empty table.
    fn create(&self, db: &Path, key: Key) {
        let [f, l, e, p] = self.fields;
        create_table(
            db,
            self.table,
            self.pk,
            key,
            &format!("{f} TEXT NOT NULL, {l} TEXT NOT NULL, {e} TEXT NOT NULL, {p} TEXT"),
        );
    }

    /// Inserts `n` generated contacts with unique e-mail addresses; ids 1..=n
    /// in a new table with [`Key::Reused`].
    fn fill(&self, db: &Path, n: usize) {
        let [f, l, e, p] = self.fields;
        let mut conn = rusqlite::Connection::open(db).expect("open database");
        let insert = format!(
            "INSERT INTO {} ({f}, {l}, {e}, {p}) VALUES (?1, ?2, ?3, ?4)",
            self.table
        );
        insert_contacts(&mut conn, &insert, (7, 8), 1..n + 1).expect("insert contacts");
    }

    /// Every contact as sorted (first_name, last_name, email, phone) tuples.
    fn contents(&self, db: &Path) -> Vec<Vec<Option<String>>> {
        let [f, l, e, p] = self.fields;
        rows(
            db,
            &format!("SELECT {f}, {l}, {e}, {p} FROM {}", self.table),
        )
    }

    /// How many rows the table holds.
    fn count(&self, db: &Path) -> i64 {
        count(db, &format!("SELECT count(*) FROM {}", self.table))
    }

    /// How many rows have this e-mail address.
    fn with_email(&self, db: &Path, email: &str) -> i64 {
        count(
            db,
            &format!(
                "SELECT count(*) FROM {} WHERE {} = '{email}'",
                self.table, self.fields[2]
            ),
        )
    }

    /// The key of the row with this e-mail address.
    fn id_of(&self, db: &Path, email: &str) -> i64 {
        count(
            db,
            &format!(
                "SELECT {} FROM {} WHERE {} = '{email}'",
                self.pk, self.table, self.fields[2]
            ),
        )
    }

    /// The e-mail address of the row with this key.
    fn email_of(&self, db: &Path, id: i64) -> String {
        text(
            db,
            &format!(
                "SELECT {} FROM {} WHERE {} = {id}",
                self.fields[2], self.table, self.pk
            ),
        )
    }

    /// The manifest's `rename` line (system field = canonical field), or nothing.
    fn rename(&self) -> String {
        let pairs: Vec<String> = self
            .fields
            .iter()
            .zip(CANONICAL)
            .filter(|(system, canonical)| *system != canonical)
            .map(|(system, canonical)| format!("{system} = \"{canonical}\""))
            .collect();
        if pairs.is_empty() {
            String::new()
        } else {
            format!("rename = {{ {} }}", pairs.join(", "))
        }
    }
}

// ---------------------------------------------------------------------------
// Manifests

/// An `sql` system whose database is `NAME.db`, granted as `NAME`.
fn sql_system(name: &str) -> System {
    System::sqlite(name, name, &format!("{name}.db"))
}

/// An `sql` system holding the contacts entity with the given layout;
/// `extra` is appended to its entity table.
fn contacts_system(name: &str, layout: &Layout, direction: &str, extra: &str) -> System {
    let key = format!("primary_key = \"{}\"", layout.pk);
    sql_system(name).tracked(
        "contacts",
        layout.table,
        direction,
        &[&key, &layout.rename(), extra],
    )
}

// ---------------------------------------------------------------------------
// Running weir and reading what it prints

/// `weir sync --quiet` with more arguments.
fn sync(m: &Path, args: &[&str]) -> (Summary, Run) {
    let mut all = vec!["sync", "--quiet"];
    all.extend_from_slice(args);
    let run = weir(WEIR, m, &all);
    (summary(&run), run)
}

/// A sync that must be clean: exit 0 and nothing failed.
fn sync_ok(m: &Path, args: &[&str]) -> (Summary, Run) {
    let (s, run) = sync(m, args);
    assert_eq!(run.code, 0, "the sync should be clean: {run:?}");
    assert_eq!(s.failed, 0, "{run:?}");
    (s, run)
}

/// Every audit row matching the filters (`--system S`, `--entity E`).
fn audit(m: &Path, filters: &[&str]) -> Vec<AuditRow> {
    weir_tests::audit(WEIR, m, filters)
}

/// Every recorded conflict.
fn conflicts(m: &Path) -> Vec<ConflictRow> {
    weir_tests::conflicts(WEIR, m)
}

/// The `outbox: {n} pending` line of `weir status`.
fn outbox_pending(m: &Path) -> u64 {
    weir_tests::outbox_pending(WEIR, m)
}

// ---------------------------------------------------------------------------
// Two-way sync

#[test]
fn two_way_edits_converge_without_echo_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    PEOPLE.create(&a, Key::Reused);
    PEOPLE.fill(&a, 200);
    CUSTOMERS.create(&b, Key::Sequence(0));
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity("contacts", "id", &[]),
            contacts_system("a", &PEOPLE, "both", ""),
            contacts_system("b", &CUSTOMERS, "both", ""),
        ),
    );

    // Pass 1: B receives all of A.
    let (s1, r1) = sync_ok(&m, &[]);
    assert_eq!(
        s1.written, 200,
        "every contact is created in b once: {r1:?}"
    );
    assert_eq!(s1.conflicts, 0, "{r1:?}");
    assert_eq!(CUSTOMERS.count(&b), 200);
    assert_eq!(CUSTOMERS.contents(&b), PEOPLE.contents(&a));

    // Pass 2: nothing changed, and weir's own writes to b are not sent back to a.
    let (s2, r2) = sync_ok(&m, &[]);
    assert_eq!(
        (s2.written, s2.deleted, s2.conflicts),
        (0, 0, 0),
        "an unchanged second pass writes nothing: {r2:?}"
    );

    // Edits on both sides, to different records, and new records in b.
    pause(&[(&a, "people"), (&b, "customers")]);
    let b_edited: Vec<String> = (101..=105).map(|id| PEOPLE.email_of(&a, id)).collect();
    exec(
        &a,
        "UPDATE people SET email = 'edited.' || email, phone = '+1 555 000' || id WHERE id BETWEEN 1 AND 5",
    );
    let list = b_edited
        .iter()
        .map(|e| format!("'{e}'"))
        .collect::<Vec<_>>()
        .join(", ");
    exec(
        &b,
        &format!("UPDATE customers SET lname = lname || '-b', phone = NULL WHERE mail IN ({list})"),
    );
    exec(
        &b,
        "INSERT INTO customers (fname, lname, mail, phone) VALUES
             ('Radia', 'Perlman', 'radia.new1@example.com', '+1 555 1111'),
             ('Tony', 'Hoare', 'tony.new2@example.com', NULL),
             ('Niklaus', 'Wirth', 'niklaus.new3@example.com', '+1 555 3333');",
    );
    assert_eq!(CUSTOMERS.count(&b), 203);

    // Pass 3: 5 updates a → b, 5 updates and 3 creates b → a, nothing else.
    let (s3, r3) = sync_ok(&m, &[]);
    assert_eq!(
        s3.written, 13,
        "exactly the 5 edits of a, the 5 edits of b and the 3 new records of b are written: {r3:?}"
    );
    assert_eq!(
        (s3.deleted, s3.conflicts),
        (0, 0),
        "different records were edited: {r3:?}"
    );
    assert_eq!(PEOPLE.count(&a), 203, "{r3:?}");
    assert_eq!(CUSTOMERS.count(&b), 203, "{r3:?}");
    assert_eq!(
        PEOPLE.contents(&a),
        CUSTOMERS.contents(&b),
        "a and b converge after pass 3: {r3:?}"
    );
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM customers WHERE mail LIKE 'edited.%'"
        ),
        5,
        "a's edits reached b"
    );
    assert_eq!(
        count(
            &a,
            "SELECT count(*) FROM people WHERE last_name LIKE '%-b' AND phone IS NULL"
        ),
        5,
        "b's edits reached a"
    );
    for new in [
        "radia.new1@example.com",
        "tony.new2@example.com",
        "niklaus.new3@example.com",
    ] {
        assert_eq!(PEOPLE.with_email(&a, new), 1, "{new} reached a once");
    }

    // Pass 4: what weir wrote in pass 3 comes back as echoes and is not written again.
    let (s4, r4) = sync_ok(&m, &[]);
    assert_eq!(
        [s2.run, s3.run, s4.run],
        [s1.run + 1, s1.run + 2, s1.run + 3],
        "runs are numbered one after the other"
    );
    assert_eq!(
        (s4.written, s4.deleted, s4.conflicts),
        (0, 0, 0),
        "echoes are never written back: {r4:?}"
    );
    assert_eq!(
        s3.echoes + s4.echoes,
        13,
        "the 13 records weir wrote in pass 3 come back once each as echoes (pass 3: {r3:?}\npass 4: {r4:?})"
    );
    assert_eq!(PEOPLE.contents(&a), CUSTOMERS.contents(&b));
    assert_eq!(PEOPLE.count(&a), 203);
}

// ---------------------------------------------------------------------------
// Conflicts

#[test]
fn three_way_priority_a_wins() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b, c) = (d.join("a.db"), d.join("b.db"), d.join("c.db"));
    PEOPLE.create(&a, Key::Reused);
    PEOPLE.fill(&a, 20);
    CUSTOMERS.create(&b, Key::Sequence(0));
    MEMBERS.create(&c, Key::Sequence(300));
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}{}",
            entity(
                "contacts",
                "id",
                &[r#"conflict = "priority""#, r#"priority = ["a", "b", "c"]"#]
            ),
            contacts_system("a", &PEOPLE, "both", ""),
            contacts_system("b", &CUSTOMERS, "both", ""),
            contacts_system("c", &MEMBERS, "both", ""),
        ),
    );

    let (s1, r1) = sync_ok(&m, &[]);
    assert_eq!(s1.written, 40, "20 contacts created in b and in c: {r1:?}");
    let (s2, r2) = sync_ok(&m, &[]);
    assert_eq!(s2.written, 0, "{r2:?}");
    assert_eq!(PEOPLE.contents(&a), CUSTOMERS.contents(&b));
    assert_eq!(PEOPLE.contents(&a), MEMBERS.contents(&c));

    // The same record gets a different e-mail in each system; a's edit is the
    // oldest, so only the priority (not the time) can make it win.
    let original = PEOPLE.email_of(&a, 7);
    let (from_a, from_b, from_c) = (
        "ada.from.a@example.com",
        "ada.from.b@example.com",
        "ada.from.c@example.com",
    );
    pause(&[(&a, "people"), (&b, "customers"), (&c, "members")]);
    exec(
        &a,
        &format!("UPDATE people SET email = '{from_a}' WHERE id = 7"),
    );
    pause(&[(&a, "people"), (&b, "customers")]);
    exec(
        &b,
        &format!("UPDATE customers SET mail = '{from_b}' WHERE mail = '{original}'"),
    );
    pause(&[(&b, "customers"), (&c, "members")]);
    exec(
        &c,
        &format!(
            "UPDATE members SET email_address = '{from_c}' WHERE email_address = '{original}'"
        ),
    );

    let (s3, r3) = sync_ok(&m, &[]);
    assert_eq!(s3.conflicts, 2, "b and c each conflict with a: {r3:?}");
    assert_eq!(
        s3.written, 2,
        "a's value is written to b and to c, nothing else: {r3:?}"
    );
    for (db, layout) in [(&a, &PEOPLE), (&b, &CUSTOMERS), (&c, &MEMBERS)] {
        assert_eq!(
            layout.with_email(db, from_a),
            1,
            "{} holds a's value: {r3:?}",
            layout.table
        );
        assert_eq!(layout.with_email(db, from_b), 0, "{}: {r3:?}", layout.table);
        assert_eq!(layout.with_email(db, from_c), 0, "{}: {r3:?}", layout.table);
        assert_eq!(
            layout.with_email(db, &original),
            0,
            "{}: {r3:?}",
            layout.table
        );
        assert_eq!(layout.count(db), 20, "{}: {r3:?}", layout.table);
    }
    assert_eq!(PEOPLE.contents(&a), CUSTOMERS.contents(&b));
    assert_eq!(PEOPLE.contents(&a), MEMBERS.contents(&c));

    // The record's global id, as the audit log knows it from a's reads.
    let globals: BTreeSet<String> = audit(&m, &["--system", "a", "--entity", "contacts"])
        .into_iter()
        .filter(|r| r.local == "7")
        .map(|r| r.global)
        .collect();
    assert_eq!(
        globals.len(),
        1,
        "one global id for a's record 7: {globals:?}"
    );
    let global = globals.into_iter().next().unwrap();

    let recorded = conflicts(&m);
    assert_eq!(recorded.len(), 2, "{recorded:#?}");
    let mut losers = BTreeSet::new();
    for conflict in &recorded {
        assert_eq!(conflict.entity, "contacts", "{conflict:?}");
        assert_eq!(conflict.global, global, "{conflict:?}");
        assert_eq!(conflict.winner, "a", "{conflict:?}");
        assert_eq!(conflict.policy, "priority", "{conflict:?}");
        // The other side may be a or the golden record ("-"), which holds a's value.
        for side in [&conflict.system, &conflict.other] {
            if side != "a" && side != "-" {
                losers.insert(side.clone());
            }
        }
    }
    assert_eq!(
        losers,
        BTreeSet::from(["b".to_string(), "c".to_string()]),
        "{recorded:#?}"
    );

    let (s4, r4) = sync_ok(&m, &[]);
    assert_eq!(
        (s4.written, s4.conflicts),
        (0, 0),
        "the settled record is not written again: {r4:?}"
    );
    assert_eq!(conflicts(&m).len(), 2);
}

// ---------------------------------------------------------------------------
// Deletes

#[test]
fn deletes_propagate_both_ways_and_reused_ids_are_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    // a reuses the id of a deleted last row; b never reuses ids, so a record
    // written to b as new gets an id b has not used before.
    PEOPLE.create(&a, Key::Reused);
    PEOPLE.fill(&a, 10);
    CUSTOMERS.create(&b, Key::Sequence(0));
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity("contacts", "id", &[]),
            contacts_system("a", &PEOPLE, "both", "on_delete = \"delete\""),
            contacts_system("b", &CUSTOMERS, "both", ""),
        ),
    );
    let (s, r) = sync_ok(&m, &[]);
    assert_eq!(s.written, 10, "{r:?}");
    assert_eq!(CUSTOMERS.contents(&b), PEOPLE.contents(&a));

    // Deleted in a → deleted in b.
    let gone_in_a = PEOPLE.email_of(&a, 3);
    exec(&a, "DELETE FROM people WHERE id = 3");
    let (s, r) = sync_ok(&m, &["--full"]);
    assert_eq!(s.deleted, 1, "{r:?}");
    assert_eq!(CUSTOMERS.with_email(&b, &gone_in_a), 0, "{r:?}");
    assert_eq!(CUSTOMERS.count(&b), 9, "{r:?}");
    assert_eq!(CUSTOMERS.contents(&b), PEOPLE.contents(&a));

    // Deleted in b → deleted in a.
    let gone_in_b = PEOPLE.email_of(&a, 5);
    exec(
        &b,
        &format!("DELETE FROM customers WHERE mail = '{gone_in_b}'"),
    );
    let (s, r) = sync_ok(&m, &["--full"]);
    assert_eq!(s.deleted, 1, "{r:?}");
    assert_eq!(PEOPLE.with_email(&a, &gone_in_b), 0, "{r:?}");
    assert_eq!(PEOPLE.count(&a), 8, "{r:?}");
    assert_eq!(CUSTOMERS.contents(&b), PEOPLE.contents(&a));

    // The last row of a is deleted, and its id is then reused for another contact.
    let old = PEOPLE.email_of(&a, 10);
    let old_in_b = CUSTOMERS.id_of(&b, &old);
    let max_in_b = count(&b, "SELECT max(customer_id) FROM customers");
    exec(&a, "DELETE FROM people WHERE id = 10");
    let (s, r) = sync_ok(&m, &["--full"]);
    assert_eq!(s.deleted, 1, "{r:?}");
    assert_eq!(CUSTOMERS.with_email(&b, &old), 0, "{r:?}");
    assert_eq!(CUSTOMERS.count(&b), 7, "{r:?}");

    pause(&[(&a, "people")]);
    exec(
        &a,
        "INSERT INTO people (first_name, last_name, email, phone)
         VALUES ('Radia', 'Perlman', 'radia.reborn@example.com', '+1 555 4242')",
    );
    assert_eq!(
        PEOPLE.id_of(&a, "radia.reborn@example.com"),
        10,
        "the test needs a to reuse id 10"
    );
    let (s, r) = sync_ok(&m, &["--full"]);
    assert_eq!(
        (s.written, s.deleted),
        (1, 0),
        "the new contact under the reused id is created in b: {r:?}"
    );
    assert_eq!(
        CUSTOMERS.with_email(&b, "radia.reborn@example.com"),
        1,
        "{r:?}"
    );
    assert_eq!(
        CUSTOMERS.with_email(&b, &old),
        0,
        "the old contact stays deleted: {r:?}"
    );
    let new_in_b = CUSTOMERS.id_of(&b, "radia.reborn@example.com");
    assert_ne!(
        new_in_b, old_in_b,
        "the contact is a new row of b, not the old one written again"
    );
    assert!(
        new_in_b > max_in_b,
        "b created a new row ({new_in_b}) after its last id {max_in_b}"
    );
    assert_eq!(PEOPLE.count(&a), 8);
    assert_eq!(CUSTOMERS.count(&b), 8);
    assert_eq!(CUSTOMERS.contents(&b), PEOPLE.contents(&a));

    // The audit log shows two records that had local id 10 in a.
    let in_a = audit(&m, &["--system", "a", "--entity", "contacts"]);
    let tens: BTreeSet<&str> = in_a
        .iter()
        .filter(|r| r.local == "10" && r.op == "read:create")
        .map(|r| r.global.as_str())
        .collect();
    assert_eq!(
        tens.len(),
        2,
        "a's id 10 was read as two different records: {in_a:#?}"
    );
    assert_eq!(audited(&in_a, "write:delete", "ok"), 1, "{in_a:#?}");
    let in_b = audit(&m, &["--system", "b", "--entity", "contacts"]);
    assert_eq!(audited(&in_b, "write:delete", "ok"), 2, "{in_b:#?}");
    assert_eq!(audited(&in_b, "write:create", "ok"), 11, "{in_b:#?}");

    let (s, r) = sync_ok(&m, &["--full"]);
    assert_eq!((s.written, s.deleted), (0, 0), "{r:?}");
    assert_eq!(
        s.read, 16,
        "a full pass reads all 8 contacts of a and of b: {r:?}"
    );
}

// ---------------------------------------------------------------------------
// References

/// a's orders with their contact's e-mail address.
fn placed(a: &Path) -> Vec<Vec<Option<String>>> {
    rows(
        a,
        "SELECT o.product, o.quantity, c.email FROM orders o JOIN contacts c ON c.id = o.contact_id",
    )
}

/// b's purchases with their customer's e-mail address.
fn landed(b: &Path) -> Vec<Vec<Option<String>>> {
    rows(
        b,
        "SELECT p.item, p.qty, c.mail FROM purchases p JOIN customers c ON c.customer_id = p.customer_ref",
    )
}

/// Checks that every purchase of b points at an existing customer, and that
/// b holds exactly a's orders except those in `missing`.
fn assert_orders_landed(a: &Path, b: &Path, missing: &[&str], context: &Run) {
    let purchases = count(b, "SELECT count(*) FROM purchases");
    let joined = landed(b);
    assert_eq!(
        joined.len() as i64,
        purchases,
        "every purchase references a customer of b: {:?}\n{context:?}",
        rows(b, "SELECT * FROM purchases")
    );
    let expected: Vec<_> = placed(a)
        .into_iter()
        .filter(|r| !missing.contains(&r[0].as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(joined, expected, "{context:?}");
    assert_eq!(
        count(
            b,
            "SELECT count(*) FROM purchases WHERE customer_ref <= 500"
        ),
        0,
        "references are b's own customer ids, not a's: {context:?}"
    );
}

#[test]
fn orders_reference_contacts_with_translated_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    create_table(
        &a,
        "contacts",
        "id",
        Key::Reused,
        "name TEXT NOT NULL, email TEXT NOT NULL",
    );
    create_table(
        &a,
        "orders",
        "id",
        Key::Reused,
        "contact_id INTEGER, product TEXT NOT NULL, quantity INTEGER NOT NULL",
    );
    // b numbers its customers from 501 and its purchases from 901, and refuses
    // an e-mail address without '@'.
    create_table(
        &b,
        "customers",
        "customer_id",
        Key::Sequence(500),
        "full_name TEXT NOT NULL, mail TEXT NOT NULL CHECK (mail LIKE '%@%')",
    );
    create_table(
        &b,
        "purchases",
        "purchase_id",
        Key::Sequence(900),
        "customer_ref INTEGER, item TEXT NOT NULL, qty INTEGER NOT NULL",
    );
    exec(
        &a,
        "INSERT INTO contacts (id, name, email) VALUES
             (1, 'Ada Lovelace', 'ada@example.com'),
             (2, 'Grace Hopper', 'grace@example.com'),
             (3, 'Alan Turing', 'alan@example.com'),
             (4, 'Barbara Liskov', 'barbara@example.com'),
             (5, 'Ken Thompson', 'ken@example.com');
         INSERT INTO orders (id, contact_id, product, quantity) VALUES
             (1, 1, 'order-1', 1),
             (2, 2, 'order-2', 2),
             (3, 2, 'order-3', 3),
             (4, 3, 'order-4', 4),
             (5, 5, 'order-5', 5),
             (6, 5, 'order-6', 6),
             (7, 5, 'order-7', 7),
             (8, 4, 'order-8', 8);",
    );
    let a_system = sql_system("a")
        .tracked("contacts", "contacts", "read", &[])
        .tracked("orders", "orders", "read", &[]);
    let b_system = sql_system("b")
        .tracked(
            "contacts",
            "customers",
            "write",
            &[
                r#"primary_key = "customer_id""#,
                r#"rename = { full_name = "name", mail = "email" }"#,
            ],
        )
        .tracked(
            "orders",
            "purchases",
            "write",
            &[
                r#"primary_key = "purchase_id""#,
                r#"rename = { customer_ref = "contact_id", item = "product", qty = "quantity" }"#,
            ],
        );
    let m = write_manifest(
        d,
        &format!(
            "{}{}{a_system}{b_system}",
            entity("contacts", "id", &[]),
            entity(
                "orders",
                "id",
                &[r#"references = { contact_id = "contacts" }"#]
            ),
        ),
    );

    // Every order lands, pointing at b's id of its contact.
    let (s, r) = sync_ok(&m, &[]);
    assert_eq!(s.written, 13, "5 customers and 8 purchases: {r:?}");
    assert_eq!(count(&b, "SELECT count(*) FROM customers"), 5, "{r:?}");
    assert_eq!(
        count(&b, "SELECT min(customer_id) FROM customers"),
        501,
        "{r:?}"
    );
    assert_eq!(count(&b, "SELECT count(*) FROM purchases"), 8, "{r:?}");
    assert_orders_landed(&a, &b, &[], &r);
    assert_eq!(outbox_pending(&m), 0);

    // An order whose contact a does not hold yet waits (weir has never read
    // that contact, so it may wait before the outbox), and lands once the
    // contact has been added to a and synced.
    pause(&[(&a, "orders")]);
    exec(
        &a,
        "INSERT INTO orders (id, contact_id, product, quantity) VALUES (9, 6, 'late-order', 9)",
    );
    let (_, r) = sync_ok(&m, &[]);
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM purchases WHERE item = 'late-order'"
        ),
        0,
        "the order cannot land before its contact: {r:?}"
    );
    let status = weir(WEIR, &m, &["status"]);
    assert!(
        status
            .stdout
            .contains("parked: 1 change(s) waiting for a record they refer to"),
        "the order is parked until its contact is read: {status:?}"
    );
    pause(&[(&a, "contacts")]);
    exec(
        &a,
        "INSERT INTO contacts (id, name, email) VALUES (6, 'Radia Perlman', 'radia@example.com')",
    );
    let (_, r) = sync_ok(&m, &[]);
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM purchases WHERE item = 'late-order'"
        ),
        1,
        "the order lands after its contact: {r:?}"
    );
    assert_orders_landed(&a, &b, &[], &r);
    assert_eq!(outbox_pending(&m), 0);

    // A contact b refuses holds back its order; once the contact is fixed in
    // a, both land.
    pause(&[(&a, "contacts"), (&a, "orders")]);
    exec(
        &a,
        "INSERT INTO contacts (id, name, email) VALUES (7, 'Tony Hoare', 'tony.at.example.com');
         INSERT INTO orders (id, contact_id, product, quantity) VALUES (10, 7, 'blocked-order', 10);",
    );
    let (s, r) = sync(&m, &[]);
    assert_eq!(r.code, 1, "a refused contact makes the run partial: {r:?}");
    assert_eq!(s.failed, 1, "only the refused contact failed: {r:?}");
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM customers WHERE full_name = 'Tony Hoare'"
        ),
        0,
        "{r:?}"
    );
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM purchases WHERE item = 'blocked-order'"
        ),
        0,
        "the order waits for its contact: {r:?}"
    );
    assert_orders_landed(&a, &b, &["blocked-order"], &r);
    assert_eq!(
        outbox_pending(&m),
        1,
        "the order waits in the outbox: {r:?}"
    );

    pause(&[(&a, "contacts")]);
    exec(
        &a,
        "UPDATE contacts SET email = 'tony@example.com' WHERE id = 7",
    );
    let (_, r) = sync_ok(&m, &[]);
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM customers WHERE mail = 'tony@example.com'"
        ),
        1,
        "{r:?}"
    );
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM purchases WHERE item = 'blocked-order'"
        ),
        1,
        "the order lands once its contact has: {r:?}"
    );
    assert_orders_landed(&a, &b, &[], &r);
    assert_eq!(outbox_pending(&m), 0);

    let (s, r) = sync_ok(&m, &[]);
    assert_eq!(s.written, 0, "{r:?}");
}

// ---------------------------------------------------------------------------
// Crash safety

/// 300 contacts in a (read), to b (write, sql) and to a CSV folder (write).
fn crash_setup(d: &Path) -> PathBuf {
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    PEOPLE.create(&a, Key::Reused);
    PEOPLE.fill(&a, 300);
    CUSTOMERS.create(&b, Key::Sequence(0));
    write_manifest(
        d,
        &format!(
            "{}{}{}{}",
            entity("contacts", "id", &[]),
            contacts_system("a", &PEOPLE, "read", ""),
            contacts_system("b", &CUSTOMERS, "write", ""),
            csv_target(d, "contacts", "export", "csv"),
        ),
    )
}

/// A sync with a fault switch set, which must end by the process killing itself.
fn killed_sync(m: &Path, fault: &str, n: u32, what: &str) {
    let n = n.to_string();
    let run = weir_env(
        WEIR,
        m,
        &["sync", "--quiet", "--batch-size", "7"],
        &[(fault, n.as_str())],
    );
    assert_eq!(
        run.code, -1,
        "{what}: {fault}={n} should kill the sync with SIGKILL: {run:?}"
    );
}

/// After the crashes, one clean run completes the sync: b and the CSV hold
/// each of a's contacts exactly once, no record was created twice, and a
/// further run writes nothing.
fn assert_recovers(d: &Path, m: &Path, what: &str) {
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    let (s, r) = sync(m, &["--batch-size", "7"]);
    assert_eq!(
        r.code, 0,
        "{what}: the run after the crashes completes: {r:?}"
    );
    assert_eq!(s.failed, 0, "{what}: {r:?}");

    let source = PEOPLE.contents(&a);
    assert_eq!(source.len(), 300);
    assert_eq!(
        CUSTOMERS.count(&b),
        300,
        "{what}: no duplicates, none missing in b: {r:?}"
    );
    assert_eq!(
        count(&b, "SELECT count(DISTINCT mail) FROM customers"),
        300,
        "{what}: {r:?}"
    );
    assert_eq!(CUSTOMERS.contents(&b), source, "{what}: {r:?}");

    let csv = d.join("csv").join("contacts.csv");
    let exported = csv_columns(&csv, &CANONICAL);
    assert_eq!(
        exported.len(),
        300,
        "{what}: no duplicates, none missing in the CSV: {r:?}"
    );
    assert_eq!(exported, source, "{what}: {r:?}");
    let ids: BTreeSet<_> = csv_columns(&csv, &["id"]).into_iter().collect();
    assert_eq!(ids.len(), 300, "{what}: CSV ids are unique");

    for system in ["b", "files"] {
        let log = audit(m, &["--system", system]);
        let mut creates: BTreeMap<&str, usize> = BTreeMap::new();
        for row in log
            .iter()
            .filter(|r| r.op == "write:create" && r.outcome == "ok")
        {
            assert_eq!(row.system, system, "{what}: {row:?}");
            assert_eq!(row.entity, "contacts", "{what}: {row:?}");
            *creates.entry(row.global.as_str()).or_default() += 1;
        }
        let twice: Vec<_> = creates.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{what}: records created more than once in {system}: {twice:?}"
        );
        assert_eq!(
            creates.len(),
            300,
            "{what}: every contact was created once in {system}"
        );
        assert!(
            log.iter()
                .filter(|r| r.op.starts_with("write:"))
                .all(|r| r.run.is_some()),
            "{what}: writes are audited with their run"
        );
    }

    assert_eq!(outbox_pending(m), 0, "{what}: the outbox is drained");
    let (s, r) = sync_ok(m, &["--batch-size", "7"]);
    assert_eq!(
        (s.written, s.deleted),
        (0, 0),
        "{what}: after recovery nothing is left to write: {r:?}"
    );
}

#[test]
fn crash_safety_sigkill_at_many_points() {
    for n in [1, 2, 5, 17, 40] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let m = crash_setup(d);
        // Killed in the first run, then again while that run's work is resumed.
        let what = format!("killed after {n} deliveries");
        killed_sync(&m, "WEIR_FAULT_KILL_AFTER_DELIVERIES", n, &what);
        killed_sync(&m, "WEIR_FAULT_KILL_AFTER_DELIVERIES", n, &what);
        assert_recovers(d, &m, &what);
    }
}

#[test]
fn crash_safety_sigkill_between_accepting_and_delivering() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = crash_setup(d);
    let what = "killed after 3 accepted pages";
    killed_sync(&m, "WEIR_FAULT_KILL_AFTER_PAGES", 3, what);
    assert!(
        outbox_pending(&m) > 0,
        "{what}: the accepted but undelivered records wait in the outbox"
    );
    killed_sync(&m, "WEIR_FAULT_KILL_AFTER_PAGES", 3, what);
    killed_sync(&m, "WEIR_FAULT_KILL_AFTER_DELIVERIES", 4, what);
    assert_recovers(d, &m, what);
}

/// A record read twice in one pass, first new and then changed (here twice
/// in a CSV file, read a row a page), reaches a target that reads nothing
/// once, with its last content: the new record's write goes from memory,
/// and the change is planned once that write is recorded, as an update.
/// Both with keys the target assigns (each create is recorded at once) and
/// with shared keys (a write stays in flight while the next page is read).
#[test]
fn a_record_new_and_changed_in_one_pass_reaches_a_target_once() {
    for (key, shared) in [(Key::Sequence(0), "false"), (Key::Reused, "true")] {
        let what = format!("shared_key = {shared}");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let b = d.join("b.db");
        CUSTOMERS.create(&b, key);
        std::fs::create_dir_all(d.join("csv")).unwrap();
        std::fs::write(
            d.join("csv/contacts.csv"),
            "id,first_name,last_name,email,phone\n\
             1,Ann,Lee,ann@example.com,1\n\
             1,Ann,Lee,ann.lee@example.com,1\n\
             2,Bob,Ray,bob@example.com,2\n",
        )
        .unwrap();
        let files = System::csv("files", "in", "csv").entity(
            "contacts",
            &[
                r#"direction = "read""#,
                r#"settings = { file = "contacts.csv" }"#,
            ],
        );
        let m = write_manifest(
            d,
            &format!(
                "{}{files}{}",
                entity("contacts", "id", &[&format!("shared_key = {shared}")]),
                contacts_system("b", &CUSTOMERS, "write", ""),
            ),
        );
        let (s, r) = sync_ok(&m, &["--batch-size", "1"]);
        assert_eq!(s.read, 3, "{what}: {r:?}");
        let row =
            |f: &str, l: &str, e: &str, p: &str| [f, l, e, p].map(|v| Some(v.to_string())).to_vec();
        let mut contents = CUSTOMERS.contents(&b);
        contents.sort();
        assert_eq!(
            contents,
            vec![
                row("Ann", "Lee", "ann.lee@example.com", "1"),
                row("Bob", "Ray", "bob@example.com", "2"),
            ],
            "{what}: each record once in b, with its last content: {r:?}"
        );
        let log = audit(&m, &["--system", "b"]);
        let ops: Vec<&str> = log.iter().map(|a| a.op.as_str()).collect();
        assert_eq!(
            ops,
            ["write:create", "write:update", "write:create"],
            "{what}: {log:?}"
        );
        assert_eq!(outbox_pending(&m), 0, "{what}: nothing is left to deliver");
    }
}

/// A golden record whose stored text is corrupt is never delivered as an
/// empty record: its write is a dead letter whose reason names the entity
/// and the global id, the other records of the pass go on, and `weir
/// records` refuses to show it with the same words. (A corrupt row is a
/// fault no real system makes on demand: the test writes it into the store.)
#[test]
fn a_corrupt_golden_record_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b, store) = (d.join("a.db"), d.join("b.db"), d.join("weir.db"));
    PEOPLE.create(&a, Key::Reused);
    PEOPLE.fill(&a, 5);
    CUSTOMERS.create(&b, Key::Sequence(0));
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity("contacts", "id", &[]),
            contacts_system("a", &PEOPLE, "read", ""),
            contacts_system("b", &CUSTOMERS, "write", ""),
        ),
    );
    let (s, r) = sync_ok(&m, &[]);
    assert_eq!(s.written, 5, "{r:?}");
    let before = CUSTOMERS.contents(&b);
    let gid = text(
        &store,
        "SELECT global_id FROM links WHERE system = 'a' AND local_id = '2'",
    );

    // Record 2's golden text is cut short, and it is due for b again; record
    // 4 changes at the source.
    exec(
        &store,
        &format!(
            "UPDATE golden SET data = '{{\"first_name\": \"Ad', hash = randomblob(16) WHERE global_id = {gid};
             INSERT INTO outbox (target, entity, global_id, op, next_attempt_at, created_at)
             VALUES ('b', 'contacts', {gid}, 'upsert', '2000-01-01T00:00:00.000Z', '2000-01-01T00:00:00.000Z')"
        ),
    );
    pause(&[(&a, PEOPLE.table)]);
    exec(&a, "UPDATE people SET phone = '+1 555 0004' WHERE id = 4");

    let (s, r) = sync(&m, &[]);
    assert_eq!(r.code, 1, "a dead letter makes the pass partial: {r:?}");
    assert_eq!((s.written, s.failed), (1, 1), "{r:?}");
    let named = format!("golden record {gid} of contacts is corrupt");
    let letters = weir(WEIR, &m, &["dead-letters"]);
    assert!(
        letters.stdout.contains(&named) && letters.stdout.contains("restore the store"),
        "the dead letter names the record and the fix: {letters:?}"
    );
    let mut after = CUSTOMERS.contents(&b);
    let mut expected = before.clone();
    for row in expected.iter_mut() {
        if row[2].as_deref() == Some(PEOPLE.email_of(&a, 4).as_str()) {
            row[3] = Some("+1 555 0004".into());
        }
    }
    after.sort();
    expected.sort();
    assert_eq!(
        after, expected,
        "record 2 kept in b as it was, record 4 updated"
    );
    assert_eq!(outbox_pending(&m), 0, "the refused row left the outbox");

    let shown = weir(WEIR, &m, &["records", "contacts", &gid]);
    assert_ne!(shown.code, 0, "{shown:?}");
    assert!(shown.stderr.contains(&named), "{shown:?}");
    let (s, r) = sync_ok(&m, &[]);
    assert_eq!(s.written, 0, "the dead letter is not written again: {r:?}");
}
