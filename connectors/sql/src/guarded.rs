//! Updates made only where the record still holds what the host last saw
//! (`keyed-write.seen`): one `UPDATE` per record that sets the columns the
//! host changes, on the condition that each still holds its seen value. A
//! record that no longer does is read and answered `changed`; nothing of it
//! is written, so an edit made in the database meanwhile is never lost.

use weir_sdk::json::{self, Record};
use weir_sdk::sql::{Dialect, Statement};
use weir_sdk::sql_util::into_sql;
use weir_sdk::{Change, Context, EntityBinding, KeyedOutcome, KeyedWrite, Operation, Result};

use crate::schema::Column;
use crate::statements;
use crate::write::{self, Action};
use crate::{write_target, Database, Table};

/// An update to make only if `seen` still holds.
pub struct Guarded {
    /// The item's place in the batch.
    pub at: usize,
    /// The record's key.
    pub id: String,
    /// The columns to set, with their new values.
    pub set: Record,
    /// The same columns, with the values the host last saw in them.
    pub seen: Record,
}

/// Items of a batch with their places in it.
pub type Placed = Vec<(usize, KeyedWrite)>;

/// Splits a keyed batch: the updates with a `seen` to check, and the rest
/// (with their places), written as plain writes.
pub fn split(items: Vec<KeyedWrite>) -> (Placed, Placed) {
    items.into_iter().enumerate().partition(|(_, k)| {
        k.seen.is_some() && k.item.op == Operation::Upsert && k.item.id.is_some()
    })
}

/// What became of a guarded update.
pub enum Done {
    /// Written, changed there since (or gone), or failed: the item's outcome.
    Outcome(KeyedOutcome),
    /// To write as a plain write after all: it sets no column the host saw.
    Plain(weir_sdk::WriteItem),
}

/// Makes the guarded updates of a batch, in one transaction; returns each
/// item's place and what became of it.
pub fn write(ctx: &Context, entity: &EntityBinding, items: Placed) -> Result<Vec<(usize, Done)>> {
    let db = Database::open(ctx)?;
    let table = Table::of(entity)?;
    let columns = db.columns(&table)?;
    let target = write_target(&db, &table, &columns);
    let key = table.key(db.dialect, &columns);
    let mut done = Vec::with_capacity(items.len());
    let mut guarded = Vec::new();
    for (at, k) in items {
        match target.guarded(at, &k) {
            Ok(Some(g)) => guarded.push((g, k)),
            Ok(None) => done.push((at, Done::Plain(k.item))),
            Err(e) => done.push((at, Done::Outcome(KeyedOutcome::Failed(e)))),
        }
    }
    if guarded.is_empty() {
        return Ok(done);
    }
    let mut missed = Vec::new();
    // SQLite: runs of updates of the same columns in one statement each.
    let guarded = if db.dialect == Dialect::Sqlite {
        many(&db, &table, &target, key, guarded, &mut done, &mut missed)?
    } else {
        guarded
    };
    let statements: Vec<Statement> = guarded
        .iter()
        .map(|(g, _)| target.guarded_statement(key, g))
        .collect();
    let results = if statements.is_empty() {
        Vec::new()
    } else {
        db.batch(&table.entity, &statements)?
    };
    for ((g, k), result) in guarded.into_iter().zip(results) {
        let action = Action::Upsert(g.id.clone());
        match result {
            Ok(rows) if rows.rows.is_empty() => missed.push((g, k)),
            result => {
                let outcome = match target.outcome(&action, result) {
                    Ok(w) => KeyedOutcome::Written(w),
                    Err(e) => KeyedOutcome::Failed(e),
                };
                done.push((g.at, Done::Outcome(outcome)));
            }
        }
    }
    if !missed.is_empty() {
        done.extend(settle_missed(&db, &table, &columns, missed)?);
    }
    Ok(done)
}

/// The most updates one statement of [`many`] makes.
const RUN: usize = 200;

/// Makes runs of guarded updates that set the same columns with one
/// statement each ([`statements::guarded_update_many`]): an update whose
/// row the statement returns is written, one it does not return is missed
/// (its row is read after). Returns the updates left to make one by one:
/// those of a statement that failed, to learn which of them fails.
fn many(
    db: &Database,
    table: &Table,
    target: &write::Target<'_>,
    key: statements::Key<'_>,
    guarded: Vec<(Guarded, KeyedWrite)>,
    done: &mut Vec<(usize, Done)>,
    missed: &mut Vec<(Guarded, KeyedWrite)>,
) -> Result<Vec<(Guarded, KeyedWrite)>> {
    let mut runs: Vec<Vec<(Guarded, KeyedWrite)>> = Vec::new();
    for item in guarded {
        match runs.last_mut() {
            Some(run) if run.len() < RUN && run[0].0.set.keys().eq(item.0.set.keys()) => {
                run.push(item)
            }
            _ => runs.push(vec![item]),
        }
    }
    let statements: Vec<Statement> = runs
        .iter()
        .map(|run| {
            let set: Vec<&str> = run[0].0.set.keys().map(String::as_str).collect();
            let sql = statements::guarded_update_many(
                target.table,
                key,
                target.updated_at,
                &set,
                run.len(),
            );
            let mut params = Vec::new();
            for (g, _) in run {
                params.push(target.key_param(&g.id));
                params.extend(g.set.values().cloned().map(into_sql));
                params.extend(
                    set.iter()
                        .map(|c| into_sql(target.cell(c, g.seen[*c].clone()))),
                );
            }
            Statement { sql, params }
        })
        .collect();
    let results = db.batch(&table.entity, &statements)?;
    let mut singles = Vec::new();
    for (run, result) in runs.into_iter().zip(results) {
        let Ok(rows) = result else {
            singles.extend(run);
            continue;
        };
        let mut returned: std::collections::HashMap<String, &Vec<weir_sdk::sql::Value>> = rows
            .rows
            .iter()
            .filter_map(|r| r.first().map(|k| (weir_sdk::sql_util::to_id(k), r)))
            .collect();
        for (g, k) in run {
            match returned.remove(&g.id) {
                Some(row) => {
                    let one = weir_sdk::sql::Rows {
                        columns: rows.columns.clone(),
                        rows: vec![row.clone()],
                    };
                    let outcome = match target.outcome(&Action::Upsert(g.id.clone()), Ok(one)) {
                        Ok(w) => KeyedOutcome::Written(w),
                        Err(e) => KeyedOutcome::Failed(e),
                    };
                    done.push((g.at, Done::Outcome(outcome)));
                }
                None => missed.push((g, k)),
            }
        }
    }
    Ok(singles)
}

/// The updates whose condition held no row: read what the rows hold now.
/// A row gone is answered with its delete, one that no longer holds what
/// was seen with what it holds; one that holds it, spelled as the database
/// spells it (a number as text, a time format), is updated on the
/// condition that it still holds those very values, so that an edit
/// committed since the read is not written over either.
fn settle_missed(
    db: &Database,
    table: &Table,
    columns: &[Column],
    missed: Vec<(Guarded, KeyedWrite)>,
) -> Result<Vec<(usize, Done)>> {
    let key = table.key(db.dialect, columns);
    let target = write_target(db, table, columns);
    let now = read_now(db, table, columns, &target, missed.iter().map(|(g, _)| g))?;
    let mut done = Vec::with_capacity(missed.len());
    let mut again = Vec::new();
    for (g, _) in missed {
        let Some(change) = now.get(&g.id) else {
            done.push((
                g.at,
                Done::Outcome(KeyedOutcome::Changed(gone(table, &g.id))),
            ));
            continue;
        };
        match change.data.as_deref().map(json::parse_record) {
            Some(Ok(held)) if json::holds_seen(&held, &g.seen) => {
                let seen = g
                    .seen
                    .keys()
                    .map(|c| (c.clone(), held.get(c).cloned().unwrap_or_default()))
                    .collect();
                again.push(Guarded { seen, ..g });
            }
            _ => done.push((g.at, Done::Outcome(KeyedOutcome::Changed(change.clone())))),
        }
    }
    if again.is_empty() {
        return Ok(done);
    }
    let statements: Vec<Statement> = again
        .iter()
        .map(|g| target.guarded_statement(key, g))
        .collect();
    let results = db.batch(&table.entity, &statements)?;
    let mut lost = Vec::new();
    for (g, result) in again.into_iter().zip(results) {
        match result {
            Ok(rows) if rows.rows.is_empty() => lost.push(g),
            result => {
                let outcome = match target.outcome(&Action::Upsert(g.id.clone()), result) {
                    Ok(w) => KeyedOutcome::Written(w),
                    Err(e) => KeyedOutcome::Failed(e),
                };
                done.push((g.at, Done::Outcome(outcome)));
            }
        }
    }
    // Changed between the read and the update: answered as they are now.
    let now = read_now(db, table, columns, &target, lost.iter())?;
    for g in lost {
        let change = now
            .get(&g.id)
            .cloned()
            .unwrap_or_else(|| gone(table, &g.id));
        done.push((g.at, Done::Outcome(KeyedOutcome::Changed(change))));
    }
    Ok(done)
}

/// The rows of the updates `of` as they are now, by key.
fn read_now<'g>(
    db: &Database,
    table: &Table,
    columns: &[Column],
    target: &write::Target<'_>,
    of: impl Iterator<Item = &'g Guarded>,
) -> Result<std::collections::HashMap<String, Change>> {
    let params: Vec<_> = of.map(|g| target.key_param(&g.id)).collect();
    if params.is_empty() {
        return Ok(Default::default());
    }
    let key = table.key(db.dialect, columns);
    let select = statements::select_list(db.dialect, columns);
    let sql = statements::select_by_keys(
        db.dialect,
        table.sql_name(),
        &select,
        key.name,
        params.len(),
    );
    let rows = db.query(&table.entity, sql, params)?;
    Ok(table
        .changes_of(columns, &rows)?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect())
}

/// A row gone from the table, as the delete of record `id`.
fn gone(table: &Table, id: &str) -> Change {
    weir_sdk::gone(&table.entity, id)
}

impl write::Target<'_> {
    /// An item's guarded update: none when it sets no column the host saw
    /// (it is written as a plain write).
    fn guarded(&self, at: usize, k: &KeyedWrite) -> Result<Option<Guarded>> {
        let id = k.item.id.clone().unwrap_or_default();
        let mut record = self.record_of(Some(&id), k.item.data.as_deref())?;
        record.remove(self.pk);
        let seen = json::parse_record(k.seen.as_deref().unwrap_or("{}"))?;
        let mut set = Record::new();
        let mut was = Record::new();
        for (column, value) in seen {
            if column == self.pk || self.generated.contains(&column.as_str()) {
                continue;
            }
            let new = record.remove(&column).unwrap_or(serde_json::Value::Null);
            set.insert(column.clone(), new);
            was.insert(column, value);
        }
        Ok((!set.is_empty()).then_some(Guarded {
            at,
            id,
            set,
            seen: was,
        }))
    }

    /// The statement of a guarded update.
    fn guarded_statement(&self, key: statements::Key<'_>, g: &Guarded) -> Statement {
        let set: Vec<&str> = g.set.keys().map(String::as_str).collect();
        let compare_as = |c: &str| {
            self.compared_as
                .iter()
                .find(|(name, _)| *name == c)
                .map(|(_, ty)| *ty)
        };
        let sql = statements::guarded_update(
            self.dialect,
            self.table,
            key,
            self.updated_at,
            &set,
            &compare_as,
        );
        let mut params: Vec<_> = g.set.values().cloned().map(into_sql).collect();
        params.push(self.key_param(&g.id));
        params.extend(
            set.iter()
                .map(|c| into_sql(self.cell(c, g.seen[*c].clone()))),
        );
        Statement { sql, params }
    }
}
