//! Connector conformance: one suite of checks that every shipped connector
//! must pass on a real system, through the weir command line, as a target
//! and (where it reads) as a source. A connector enters the suite through a
//! [`Subject`]: how to reach its system in a manifest, how to add, change
//! and delete contacts there behind weir's back, and how to read back what
//! the system holds. The other side of every sync is the *hub*, a SQLite
//! table of contacts read and written through the `sql` connector.
//!
//! The contacts entity is `name` and `email`, keyed by each system's own id
//! (`shared_key = false`: a record written to a system gets the id that
//! system gives it). A contact whose e-mail address holds no `@` is one a
//! system may refuse: [`Subject::refuses`] says whether it does by itself
//! (a `CHECK` constraint, an API that validates its input); for one that
//! does not, the manifest gives the entity the rule `format = "email"`, and
//! weir refuses the record before any write.

use crate::{
    after_last_stamp, audit_args, audit_rows, create_table, csv_rows, entity, exec, rows, summary,
    weir_env, write_manifest, JsonServer, Key, Postgres, Run, Summary, System,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A contact as every system holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

impl Contact {
    /// Contact `name` at `email`.
    pub fn new(name: &str, email: &str) -> Contact {
        Contact {
            name: name.to_string(),
            email: email.to_string(),
        }
    }
}

/// `n` contacts whose addresses start with `tag` (so that two sets differ),
/// `person{i}` at `{tag}{i}@example.com`.
pub fn contacts(tag: &str, n: usize) -> Vec<Contact> {
    (1..=n)
        .map(|i| Contact::new(&format!("person {i}"), &format!("{tag}{i}@example.com")))
        .collect()
}

/// The address of a contact every system refuses, by itself or by the rule.
pub const REFUSED_EMAIL: &str = "refused.at.example.com";

/// One connector on one real system, as the suite drives it. The system is
/// named `sub` in the manifest and holds the entity `contacts`.
pub trait Subject {
    /// What is under test, for messages (`sql on SQLite`).
    fn label(&self) -> String;
    /// The system's manifest tables: the entity in `direction` with `lines`
    /// (`on_delete = ...`) and whatever the connector needs (settings,
    /// fields weir does not sync).
    fn system(&self, direction: &str, lines: &[&str]) -> System;
    /// Adds contacts behind weir's back, each under an id the system gives.
    fn insert(&self, contacts: &[Contact]);
    /// Changes the address of the contact at `from` to `to`.
    fn set_email(&self, from: &str, to: &str);
    /// Deletes the contact at `email`.
    fn delete(&self, email: &str);
    /// Every contact the system holds, sorted.
    fn contacts(&self) -> Vec<Contact>;
    /// Whether the system itself refuses a contact at [`REFUSED_EMAIL`].
    fn refuses(&self) -> bool;
    /// Environment variables weir needs for the system.
    fn envs(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
}

/// Makes a fresh subject in a test's folder.
pub type Make = dyn Fn(&Path) -> Box<dyn Subject>;

// ---------------------------------------------------------------------------
// The subjects

/// The `sql` connector on a SQLite table `contacts` (`NAME.db` beside the
/// manifest), `updated_at` kept by a trigger.
pub struct Sqlite {
    name: String,
    db: PathBuf,
    refuses: bool,
}

impl Sqlite {
    /// The table of system `name` in `dir`; with `refuses`, a `CHECK`
    /// constraint refuses addresses without `@`.
    pub fn new(dir: &Path, name: &str, refuses: bool) -> Sqlite {
        let db = dir.join(format!("{name}.db"));
        let check = if refuses {
            " CHECK (email LIKE '%@%')"
        } else {
            ""
        };
        create_table(
            &db,
            "contacts",
            "id",
            Key::Sequence(0),
            &format!("name TEXT NOT NULL, email TEXT NOT NULL{check}"),
        );
        Sqlite {
            name: name.to_string(),
            db,
            refuses,
        }
    }

    /// The subject `sub`, refusing addresses without `@`.
    pub fn subject(dir: &Path) -> Box<dyn Subject> {
        Box::new(Sqlite::new(dir, "sub", true))
    }

    /// Runs `sql` on the table's database once its clock has passed every
    /// stamp there, so that a change read sees the edit.
    fn edit(&self, sql: &str) {
        after_last_stamp(&self.db, "contacts");
        exec(&self.db, sql);
    }
}

impl Subject for Sqlite {
    fn label(&self) -> String {
        "sql on SQLite".into()
    }
    fn system(&self, direction: &str, lines: &[&str]) -> System {
        System::sqlite(&self.name, "db", &format!("{}.db", self.name))
            .tracked("contacts", "contacts", direction, lines)
    }
    fn insert(&self, contacts: &[Contact]) {
        self.edit(&values_insert(contacts));
    }
    fn set_email(&self, from: &str, to: &str) {
        self.edit(&format!(
            "UPDATE contacts SET email = '{to}' WHERE email = '{from}'"
        ));
    }
    fn delete(&self, email: &str) {
        self.edit(&format!("DELETE FROM contacts WHERE email = '{email}'"));
    }
    fn contacts(&self) -> Vec<Contact> {
        rows(&self.db, "SELECT name, email FROM contacts")
            .into_iter()
            .map(|r| Contact::new(r[0].as_deref().unwrap(), r[1].as_deref().unwrap()))
            .collect()
    }
    fn refuses(&self) -> bool {
        self.refuses
    }
}

/// `INSERT INTO contacts (name, email) VALUES ...` of `contacts`.
fn values_insert(contacts: &[Contact]) -> String {
    let values: Vec<String> = contacts
        .iter()
        .map(|c| format!("('{}', '{}')", c.name, c.email))
        .collect();
    format!(
        "INSERT INTO contacts (name, email) VALUES {};",
        values.join(", ")
    )
}

/// The `sql` connector on a table `contacts` of a private PostgreSQL
/// cluster: an identity key, a `CHECK` on the address, `updated_at` kept by
/// a trigger.
pub struct Pg {
    pg: Postgres,
}

impl Pg {
    /// Starts a cluster whose database `crm` holds the table.
    pub fn subject(_dir: &Path) -> Box<dyn Subject> {
        let pg = Postgres::start().expect("start PostgreSQL");
        pg.create_database("crm").expect("create database crm");
        pg.psql(
            "crm",
            "CREATE TABLE contacts (
                 id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                 name text NOT NULL,
                 email text NOT NULL CHECK (email LIKE '%@%'),
                 updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
             );
             CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
             CREATE TRIGGER touch BEFORE UPDATE ON contacts FOR EACH ROW EXECUTE FUNCTION touch();",
        )
        .expect("create the contacts table");
        Box::new(Pg { pg })
    }

    fn psql(&self, sql: &str) -> String {
        self.pg
            .psql("crm", sql)
            .unwrap_or_else(|e| panic!("PostgreSQL: {e}"))
    }
}

impl Subject for Pg {
    fn label(&self) -> String {
        "sql on PostgreSQL".into()
    }
    fn system(&self, direction: &str, lines: &[&str]) -> System {
        System::sql(
            "sub",
            "main",
            &format!(
                r#"{{ url = "{}", password = "${{WEIR_TEST_PG_PASSWORD}}" }}"#,
                self.pg.url("crm")
            ),
        )
        .tracked("contacts", "contacts", direction, lines)
    }
    fn insert(&self, contacts: &[Contact]) {
        self.psql(&values_insert(contacts));
    }
    fn set_email(&self, from: &str, to: &str) {
        self.psql(&format!(
            "UPDATE contacts SET email = '{to}' WHERE email = '{from}';"
        ));
    }
    fn delete(&self, email: &str) {
        self.psql(&format!("DELETE FROM contacts WHERE email = '{email}';"));
    }
    fn contacts(&self) -> Vec<Contact> {
        let mut out: Vec<Contact> = self
            .psql("SELECT name, email FROM contacts")
            .lines()
            .map(|l| {
                let (name, email) = l.split_once('|').expect("name|email");
                Contact::new(name, email)
            })
            .collect();
        out.sort();
        out
    }
    fn refuses(&self) -> bool {
        true
    }
    fn envs(&self) -> Vec<(&'static str, &'static str)> {
        vec![("WEIR_TEST_PG_PASSWORD", "not-used-under-trust")]
    }
}

/// The `csv` connector on `contacts.csv` in the folder `sub-csv` (columns
/// `id`, `name`, `email`; ids are numbers). It has no change feed (no
/// `updated_at` column), so weir reads it in full, and it refuses no
/// well-formed record: the rule refuses the bad address.
pub struct Csv {
    file: PathBuf,
}

impl Csv {
    /// An empty file (its header only) in `dir`.
    pub fn subject(dir: &Path) -> Box<dyn Subject> {
        let folder = dir.join("sub-csv");
        std::fs::create_dir_all(&folder).expect("create the CSV folder");
        let file = folder.join("contacts.csv");
        std::fs::write(&file, "id,name,email\n").expect("write the CSV file");
        Box::new(Csv { file })
    }

    /// Rewrites the file with `f` applied to its rows (header first).
    fn rewrite(&self, f: impl FnOnce(&mut Vec<Vec<String>>)) {
        let mut all = csv_rows(&self.file);
        f(&mut all);
        let mut w = csv::Writer::from_path(&self.file).expect("open the CSV file");
        for row in &all {
            w.write_record(row).expect("write a CSV row");
        }
        w.flush().expect("flush the CSV file");
    }

    /// The positions of `names` in the header.
    fn columns(header: &[String], names: [&str; 3]) -> [usize; 3] {
        names.map(|n| {
            header
                .iter()
                .position(|h| h == n)
                .unwrap_or_else(|| panic!("no column {n} in {header:?}"))
        })
    }
}

impl Subject for Csv {
    fn label(&self) -> String {
        "csv".into()
    }
    fn system(&self, direction: &str, lines: &[&str]) -> System {
        let mut all = vec![format!("direction = \"{direction}\"")];
        all.extend(lines.iter().map(|l| l.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        System::csv("sub", "data", "sub-csv").entity("contacts", &all)
    }
    fn insert(&self, contacts: &[Contact]) {
        self.rewrite(|all| {
            let [id, name, email] = Csv::columns(&all[0], ["id", "name", "email"]);
            let mut next = all[1..]
                .iter()
                .filter_map(|r| r[id].parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            for c in contacts {
                next += 1;
                let mut row = vec![String::new(); all[0].len()];
                row[id] = next.to_string();
                row[name] = c.name.clone();
                row[email] = c.email.clone();
                all.push(row);
            }
        });
    }
    fn set_email(&self, from: &str, to: &str) {
        self.rewrite(|all| {
            let [_, _, email] = Csv::columns(&all[0], ["id", "name", "email"]);
            let row = all[1..]
                .iter_mut()
                .find(|r| r[email] == from)
                .unwrap_or_else(|| panic!("no contact at {from}"));
            row[email] = to.to_string();
        });
    }
    fn delete(&self, email: &str) {
        self.rewrite(|all| {
            let [_, _, at] = Csv::columns(&all[0], ["id", "name", "email"]);
            let before = all.len();
            all.retain(|r| r[at] != email);
            assert_eq!(all.len() + 1, before, "one contact at {email}");
        });
    }
    fn contacts(&self) -> Vec<Contact> {
        let all = csv_rows(&self.file);
        let [_, name, email] = Csv::columns(&all[0], ["id", "name", "email"]);
        let mut out: Vec<Contact> = all[1..]
            .iter()
            .map(|r| Contact::new(&r[name], &r[email]))
            .collect();
        out.sort();
        out
    }
    fn refuses(&self) -> bool {
        false
    }
}

/// The `rest` connector on json-server's collection `/contacts`, changes
/// by its `updatedAt` stamps; json-server refuses addresses without `@`
/// with 422 (see [`JsonServer::start`]).
pub struct Rest {
    api: JsonServer,
}

impl Rest {
    /// Starts json-server with an empty collection in `dir`.
    pub fn subject(dir: &Path) -> Box<dyn Subject> {
        let db = dir.join("db.json");
        std::fs::write(&db, r#"{"contacts": []}"#).expect("write db.json");
        Box::new(Rest {
            api: JsonServer::start(dir, &db),
        })
    }

    /// Every contact with its id.
    fn listed(&self) -> Vec<(u64, Contact)> {
        let (status, body) = self
            .api
            .request("GET", "/contacts", None)
            .expect("json-server answers");
        assert_eq!(status, 200, "{body}");
        let all: serde_json::Value = serde_json::from_str(&body).expect("a JSON list");
        all.as_array()
            .expect("a JSON list")
            .iter()
            .map(|c| {
                let field = |k: &str| c[k].as_str().unwrap_or_else(|| panic!("{k} of {c}"));
                (
                    c["id"].as_u64().unwrap_or_else(|| panic!("id of {c}")),
                    Contact::new(field("name"), field("email")),
                )
            })
            .collect()
    }

    /// The id of the contact at `email`.
    fn id_of(&self, email: &str) -> u64 {
        self.listed()
            .into_iter()
            .find(|(_, c)| c.email == email)
            .unwrap_or_else(|| panic!("no contact at {email}"))
            .0
    }

    /// Sends a request that must answer `want`.
    fn send(&self, method: &str, path: &str, body: Option<&str>, want: u16) {
        let (status, answer) = self
            .api
            .request(method, path, body)
            .expect("json-server answers");
        assert_eq!(status, want, "{method} {path}: {answer}");
    }
}

impl Subject for Rest {
    fn label(&self) -> String {
        "rest on json-server".into()
    }
    fn system(&self, direction: &str, lines: &[&str]) -> System {
        let mut all = vec![format!("direction = \"{direction}\"")];
        all.extend(lines.iter().map(|l| l.to_string()));
        all.push(r#"ignore = ["updatedAt"]"#.into());
        all.push(r#"settings = { path = "/contacts", updated_at = "updatedAt", since_param = "updatedAt_gte", change_params = "_sort=updatedAt&_order=asc" }"#.into());
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        System::rest("sub", &self.api.url).entity("contacts", &all)
    }
    fn insert(&self, contacts: &[Contact]) {
        for c in contacts {
            let body = serde_json::json!({"name": c.name, "email": c.email}).to_string();
            self.send("POST", "/contacts", Some(&body), 201);
        }
    }
    fn set_email(&self, from: &str, to: &str) {
        let id = self.id_of(from);
        let body = serde_json::json!({ "email": to }).to_string();
        self.send("PATCH", &format!("/contacts/{id}"), Some(&body), 200);
    }
    fn delete(&self, email: &str) {
        let id = self.id_of(email);
        self.send("DELETE", &format!("/contacts/{id}"), None, 200);
    }
    fn contacts(&self) -> Vec<Contact> {
        let mut out: Vec<Contact> = self.listed().into_iter().map(|(_, c)| c).collect();
        out.sort();
        out
    }
    fn refuses(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------
// Running a case

/// A case of the suite: the subject, the hub beside it, and the manifest
/// between them.
struct Case {
    bin: String,
    _dir: tempfile::TempDir,
    sub: Box<dyn Subject>,
    hub: Sqlite,
    m: PathBuf,
}

impl Case {
    /// A fresh folder with the subject and the hub; the manifest syncs
    /// contacts between them, the subject in `sub` (with `lines`), the hub
    /// in `hub`. Addresses without `@` are refused by the rule where the
    /// subject does not refuse them itself.
    fn new(bin: &str, make: &Make, sub: (&str, &[&str]), hub: &str) -> Case {
        let dir = tempfile::tempdir().expect("a temp folder");
        let path = dir.path().to_path_buf();
        let subject = make(&path);
        let hub_table = Sqlite::new(&path, "hub", false);
        let mut text = entity("contacts", "id", &[]);
        if !subject.refuses() {
            text.push_str("[entities.contacts.fields]\nemail = { format = \"email\" }\n");
        }
        let hub_system = hub_table.system(hub, &[]);
        text.push_str(&format!("{hub_system}{}", subject.system(sub.0, sub.1)));
        let m = write_manifest(&path, &text);
        Case {
            bin: bin.to_string(),
            _dir: dir,
            sub: subject,
            hub: hub_table,
            m,
        }
    }

    /// What is under test, and the manifest, for messages.
    fn what(&self) -> String {
        format!(
            "{} (manifest {}):\n{}",
            self.sub.label(),
            self.m.display(),
            std::fs::read_to_string(&self.m).unwrap_or_default()
        )
    }

    /// Runs weir with `args` and the subject's environment, plus `envs`.
    fn weir(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let mut all: Vec<(&str, &str)> = self.sub.envs();
        all.extend_from_slice(envs);
        weir_env(&self.bin, &self.m, args, &all)
    }

    /// `weir sync --quiet ARGS`, which must exit with `code`.
    fn sync_exiting(&self, args: &[&str], code: i32) -> (Summary, Run) {
        let mut all = vec!["sync", "--quiet"];
        all.extend_from_slice(args);
        let run = self.weir(&all, &[]);
        assert_eq!(run.code, code, "{}\n{run:?}", self.what());
        (summary(&run), run)
    }

    /// A clean `weir sync --quiet ARGS`: exit 0, nothing failed.
    fn sync(&self, args: &[&str]) -> (Summary, Run) {
        let (s, run) = self.sync_exiting(args, 0);
        assert_eq!(s.failed, 0, "{}\n{run:?}", self.what());
        (s, run)
    }

    /// Asserts that the subject and the hub hold `want`.
    fn assert_both_hold(&self, want: &[Contact], run: &Run) {
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(
            self.hub.contacts(),
            want,
            "the hub: {}\n{run:?}",
            self.what()
        );
        assert_eq!(
            self.sub.contacts(),
            want,
            "the system: {}\n{run:?}",
            self.what()
        );
    }

    /// The dead letters `weir dead-letters` lists, one a line.
    fn dead_letters(&self) -> Vec<String> {
        let run = self.weir(&["dead-letters"], &[]);
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout
            .lines()
            .filter(|l| l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }
}

/// `contacts` with the one at `email` given the address `to`.
fn moved(contacts: &[Contact], email: &str, to: &str) -> Vec<Contact> {
    let mut out = contacts.to_vec();
    let c = out
        .iter_mut()
        .find(|c| c.email == email)
        .expect("the contact");
    c.email = to.to_string();
    out
}

/// `contacts` without the one at `email`.
fn without(contacts: &[Contact], email: &str) -> Vec<Contact> {
    contacts
        .iter()
        .filter(|c| c.email != email)
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------
// The checks

/// As a target: records created, updated and deleted in the hub reach the
/// system (`on_delete = "delete"`; the delete found by a full read), each
/// written once, and a pass with nothing new writes nothing.
pub fn creates_updates_and_deletes_reach_it(bin: &str, make: &Make) {
    let case = Case::new(bin, make, ("write", &[r#"on_delete = "delete""#]), "read");
    let mut held = contacts("hub", 12);
    case.hub.insert(&held);
    let (s, r) = case.sync(&[]);
    assert_eq!((s.read, s.written), (12, 12), "{}\n{r:?}", case.what());
    case.assert_both_hold(&held, &r);

    case.hub.set_email("hub3@example.com", "moved3@example.com");
    held = moved(&held, "hub3@example.com", "moved3@example.com");
    let (s, r) = case.sync(&[]);
    assert_eq!(
        (s.read, s.written, s.deleted),
        (1, 1, 0),
        "the update, and only it: {}\n{r:?}",
        case.what()
    );
    case.assert_both_hold(&held, &r);

    case.hub.delete("hub5@example.com");
    held = without(&held, "hub5@example.com");
    let (s, r) = case.sync(&["--full"]);
    assert_eq!(
        (s.written, s.deleted),
        (0, 1),
        "the delete, and only it: {}\n{r:?}",
        case.what()
    );
    case.assert_both_hold(&held, &r);

    let (s, r) = case.sync(&["--full"]);
    assert_eq!(
        (s.written, s.deleted),
        (0, 0),
        "nothing is left to write: {}\n{r:?}",
        case.what()
    );
}

/// As a target with `on_delete = "ignore"`: a record deleted in the hub
/// stays in the system, and later passes do not write it again.
pub fn a_delete_is_ignored_when_on_delete_says_so(bin: &str, make: &Make) {
    let case = Case::new(bin, make, ("write", &[r#"on_delete = "ignore""#]), "read");
    let held = contacts("hub", 4);
    case.hub.insert(&held);
    let (s, r) = case.sync(&[]);
    assert_eq!(s.written, 4, "{}\n{r:?}", case.what());
    case.hub.delete("hub2@example.com");
    let (s, r) = case.sync(&["--full"]);
    assert_eq!((s.written, s.deleted), (0, 0), "{}\n{r:?}", case.what());
    assert_eq!(
        case.sub.contacts(),
        held,
        "the system keeps the contact: {}\n{r:?}",
        case.what()
    );
    let (s, r) = case.sync(&["--full"]);
    assert_eq!((s.written, s.deleted), (0, 0), "{}\n{r:?}", case.what());
}

/// Two-way with the hub: what each side holds reaches the other, weir's
/// own writes come back as echoes and are not written again, an edit and a
/// delete in the system reach the hub, and the passes after write nothing.
pub fn two_way_sync_writes_no_echoes(bin: &str, make: &Make) {
    let case = Case::new(bin, make, ("both", &[]), "both");
    let mut held = contacts("sub", 8);
    case.sub.insert(&held);
    let from_hub = contacts("hub", 4);
    case.hub.insert(&from_hub);
    held.extend(from_hub);
    let (s1, r1) = case.sync(&[]);
    assert_eq!(
        (s1.read, s1.written, s1.conflicts),
        (12, 12, 0),
        "8 contacts to the hub, 4 to the system: {}\n{r1:?}",
        case.what()
    );
    case.assert_both_hold(&held, &r1);

    // What weir wrote is read back (from a change feed, or a full read)
    // and recognised as its own: nothing is written, each write an echo once.
    let (s2, r2) = case.sync(&[]);
    let (s3, r3) = case.sync(&[]);
    for (s, r) in [(s2, &r2), (s3, &r3)] {
        assert_eq!(
            (s.written, s.deleted, s.conflicts),
            (0, 0, 0),
            "a pass after the first writes nothing: {}\n{r:?}",
            case.what()
        );
    }
    assert_eq!(
        s2.echoes + s3.echoes,
        12,
        "the 12 records weir wrote come back once each as echoes: {}\n{r2:?}\n{r3:?}",
        case.what()
    );
    case.assert_both_hold(&held, &r3);

    // An edit in the system reaches the hub, once.
    case.sub.set_email("sub2@example.com", "moved2@example.com");
    held = moved(&held, "sub2@example.com", "moved2@example.com");
    let (s, r) = case.sync(&[]);
    assert_eq!(
        (s.written, s.deleted, s.conflicts),
        (1, 0, 0),
        "{}\n{r:?}",
        case.what()
    );
    case.assert_both_hold(&held, &r);
    let (s, r) = case.sync(&[]);
    assert_eq!((s.written, s.deleted), (0, 0), "{}\n{r:?}", case.what());

    // A delete in the system, found by a full read, reaches the hub.
    case.sub.delete("sub4@example.com");
    held = without(&held, "sub4@example.com");
    let (s, r) = case.sync(&["--full"]);
    assert_eq!((s.written, s.deleted), (0, 1), "{}\n{r:?}", case.what());
    case.assert_both_hold(&held, &r);
    let (s, r) = case.sync(&["--full"]);
    assert_eq!((s.written, s.deleted), (0, 0), "{}\n{r:?}", case.what());
}

/// Pages of [`interrupted_full_read_resumes`].
const PAGE: u64 = 5;
/// Pages accepted before the process is killed.
const PAGES_BEFORE_KILL: u64 = 3;

/// As a source: a full read killed (SIGKILL) after a few accepted pages
/// resumes at the next pass from where it stopped, not from the start, and
/// the hub ends with every record exactly once, each created once.
pub fn an_interrupted_full_read_resumes(bin: &str, make: &Make) {
    let case = Case::new(bin, make, ("read", &[]), "write");
    let held = contacts("sub", 40);
    case.sub.insert(&held);
    let page = PAGE.to_string();
    let pages = PAGES_BEFORE_KILL.to_string();
    let killed = case.weir(
        &["sync", "--quiet", "--batch-size", &page],
        &[("WEIR_FAULT_KILL_AFTER_PAGES", &pages)],
    );
    assert_eq!(
        killed.code,
        -1,
        "the sync is killed after {pages} pages: {}\n{killed:?}",
        case.what()
    );
    assert!(
        case.hub.contacts().len() as u64 <= PAGE * PAGES_BEFORE_KILL,
        "{}",
        case.what()
    );

    let (s, r) = case.sync(&["--batch-size", &page]);
    assert_eq!(
        s.read,
        held.len() as u64 - PAGE * PAGES_BEFORE_KILL,
        "the read resumes after the last accepted page: {}\n{r:?}",
        case.what()
    );
    case.assert_both_hold(&held, &r);
    let mut creates: BTreeMap<String, usize> = BTreeMap::new();
    for row in audit_rows(&case.weir(&audit_args(&["--system", "hub"]), &[])) {
        if row.op == "write:create" && row.outcome == "ok" {
            *creates.entry(row.global).or_default() += 1;
        }
    }
    assert_eq!(
        creates.len(),
        held.len(),
        "every contact was created in the hub: {}",
        case.what()
    );
    assert!(
        creates.values().all(|n| *n == 1),
        "no contact was created twice: {creates:?}\n{}",
        case.what()
    );
    let (s, r) = case.sync(&["--full"]);
    assert_eq!((s.written, s.deleted), (0, 0), "{}\n{r:?}", case.what());
}

/// As a target: a record the system refuses (or, for a system that refuses
/// nothing, that breaks the entity's rule) is a dead letter naming it, the
/// run is partial (exit 1), the other records of its batch and pass are
/// written, and the next pass goes on.
pub fn a_refused_record_is_a_dead_letter(bin: &str, make: &Make) {
    let case = Case::new(bin, make, ("write", &[]), "read");
    let mut good = contacts("hub", 6);
    let refused = Contact::new("refused", REFUSED_EMAIL);
    let mut all = good[..3].to_vec();
    all.push(refused);
    all.extend_from_slice(&good[3..]);
    case.hub.insert(&all);
    let (s, r) = case.sync_exiting(&[], 1);
    assert_eq!(
        (s.read, s.written, s.failed),
        (7, 6, 1),
        "{}\n{r:?}",
        case.what()
    );
    good.sort();
    assert_eq!(case.sub.contacts(), good, "{}\n{r:?}", case.what());

    let letters = case.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}\n{}", case.what());
    // Refused by the system, the letter is the system's; by the rule, the
    // record never left the hub.
    let (system, reason) = if case.sub.refuses() {
        ("sub/contacts", "")
    } else {
        (
            "hub/contacts",
            "invalid record: field 'email' breaks rule 'format'",
        )
    };
    assert!(
        letters[0].contains(system) && letters[0].contains(reason),
        "{letters:?}\n{}",
        case.what()
    );

    case.hub.insert(&contacts("later", 2));
    good.extend(contacts("later", 2));
    good.sort();
    let (s, r) = case.sync(&[]);
    assert_eq!(s.written, 2, "{}\n{r:?}", case.what());
    assert_eq!(case.sub.contacts(), good, "{}\n{r:?}", case.what());
    assert_eq!(case.dead_letters().len(), 1, "{}", case.what());
}
