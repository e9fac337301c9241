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

mod subjects;

pub use subjects::{Csv, Pg, Rest, Sqlite};

use crate::{
    audit_args, audit_rows, entity, summary, weir_env, write_manifest, Run, Summary, System,
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
    /// Adds the field `deleted` that a soft delete sets, where records do
    /// not take any field (a column of a table).
    fn add_deleted_flag(&self) {}
    /// The addresses of the contacts whose `deleted` field is true, sorted.
    fn flagged(&self) -> Vec<String>;
    /// Whether weir reads the system in full at every pass (it has no change
    /// feed).
    fn read_in_full(&self) -> bool {
        false
    }
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
    /// subject does not refuse them itself; `rule` is the entity's rule of
    /// `email` instead.
    fn new(bin: &str, make: &Make, sub: (&str, &[&str]), hub: &str) -> Case {
        Case::with_rule(bin, make, sub, hub, None)
    }

    /// [`Case::new`] with the entity's rule of `email`.
    fn with_rule(
        bin: &str,
        make: &Make,
        sub: (&str, &[&str]),
        hub: &str,
        rule: Option<&str>,
    ) -> Case {
        let dir = tempfile::tempdir().expect("a temp folder");
        let path = dir.path().to_path_buf();
        let subject = make(&path);
        let hub_table = Sqlite::new(&path, "hub", false);
        let mut text = entity("contacts", "id", &[]);
        let rule = rule.or((!subject.refuses()).then_some(r#"email = { format = "email" }"#));
        if let Some(rule) = rule {
            text.push_str(&format!("[entities.contacts.fields]\n{rule}\n"));
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
        if run.code != code {
            let letters = self.weir(&["dead-letters"], &[]);
            panic!(
                "`weir sync` exited {}, not {code}: {}\n{run:?}\ndead letters: {letters:?}",
                run.code,
                self.what()
            );
        }
        (summary(&run), run)
    }

    /// A clean `weir sync --quiet ARGS`: exit 0, nothing failed.
    fn sync(&self, args: &[&str]) -> (Summary, Run) {
        let (s, run) = self.sync_exiting(args, 0);
        assert_eq!(s.failed, 0, "{}\n{run:?}", self.what());
        (s, run)
    }

    /// A clean pass with `args` that writes and deletes nothing.
    fn settled(&self, args: &[&str]) -> Run {
        let (s, r) = self.sync(args);
        assert_eq!(
            (s.written, s.deleted),
            (0, 0),
            "nothing is left to write: {}\n{r:?}",
            self.what()
        );
        r
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

    case.settled(&["--full"]);
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
    let r = case.settled(&["--full"]);
    assert_eq!(
        case.sub.contacts(),
        held,
        "the system keeps the contact: {}\n{r:?}",
        case.what()
    );
    case.settled(&["--full"]);
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
    case.settled(&[]);

    // A delete in the system, found by a full read, reaches the hub.
    case.sub.delete("sub4@example.com");
    held = without(&held, "sub4@example.com");
    let (s, r) = case.sync(&["--full"]);
    assert_eq!((s.written, s.deleted), (0, 1), "{}\n{r:?}", case.what());
    case.assert_both_hold(&held, &r);
    case.settled(&["--full"]);
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
    case.settled(&["--full"]);
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

/// As a target with `on_delete = "soft"`: a record deleted in the hub stays
/// in the system with its `deleted` field set to true, and later passes
/// write nothing.
pub fn a_delete_sets_the_flag_when_on_delete_is_soft(bin: &str, make: &Make) {
    let case = Case::new(
        bin,
        make,
        (
            "write",
            &[r#"on_delete = "soft""#, r#"soft_delete_field = "deleted""#],
        ),
        "read",
    );
    case.sub.add_deleted_flag();
    let held = contacts("hub", 4);
    case.hub.insert(&held);
    let (s, r) = case.sync(&[]);
    assert_eq!(s.written, 4, "{}\n{r:?}", case.what());
    assert!(case.sub.flagged().is_empty(), "{}\n{r:?}", case.what());
    case.hub.delete("hub2@example.com");
    let (s, r) = case.sync(&["--full"]);
    assert_eq!((s.written, s.deleted), (0, 1), "{}\n{r:?}", case.what());
    assert_eq!(
        case.sub.contacts(),
        held,
        "the system keeps the contact: {}\n{r:?}",
        case.what()
    );
    assert_eq!(
        case.sub.flagged(),
        ["hub2@example.com"],
        "the contact is flagged deleted: {}\n{r:?}",
        case.what()
    );
    case.settled(&["--full"]);
}

/// The address of a contact that breaks the rule of
/// [`a_record_breaking_a_rule_is_a_dead_letter_of_its_source`]: a well-formed
/// address every system takes, at a domain the rule does not allow.
const STRANGER: &str = "stranger@example.org";

/// As a source: a record that breaks the entity's rule is a dead letter of
/// this system (its id here, the rule and the value named), the run is
/// partial, the other records reach the hub, and the next pass goes on.
pub fn a_record_breaking_a_rule_is_a_dead_letter_of_its_source(bin: &str, make: &Make) {
    let case = Case::with_rule(
        bin,
        make,
        ("read", &[]),
        "write",
        Some(r#"email = { format = "email", pattern = "@example\\.com$" }"#),
    );
    let mut good = contacts("sub", 4);
    let mut all = good[..2].to_vec();
    all.push(Contact::new("stranger", STRANGER));
    all.extend_from_slice(&good[2..]);
    case.sub.insert(&all);
    let (s, r) = case.sync_exiting(&[], 1);
    assert_eq!(
        (s.read, s.written, s.failed),
        (5, 4, 1),
        "{}\n{r:?}",
        case.what()
    );
    good.sort();
    assert_eq!(case.hub.contacts(), good, "{}\n{r:?}", case.what());
    let letters = case.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}\n{}", case.what());
    for part in [
        "sub/contacts record ",
        "invalid record: field 'email' breaks rule 'pattern'",
        STRANGER,
    ] {
        assert!(
            letters[0].contains(part),
            "{part:?} in {letters:?}\n{}",
            case.what()
        );
    }

    // A system read in full offers the record again, and it is refused
    // again; the letter is not repeated.
    case.sub.insert(&contacts("later", 2));
    good.extend(contacts("later", 2));
    good.sort();
    let again = u64::from(case.sub.read_in_full());
    let (s, r) = case.sync_exiting(&[], again as i32);
    assert_eq!((s.written, s.failed), (2, again), "{}\n{r:?}", case.what());
    assert_eq!(case.hub.contacts(), good, "{}\n{r:?}", case.what());
    let letters = case.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}\n{}", case.what());
}
