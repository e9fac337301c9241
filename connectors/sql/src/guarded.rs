//! Updates made only where the record still holds what the host last saw
//! (`keyed-write.seen`): one `UPDATE` per record that sets the columns the
//! host changes, on the condition that each still holds its seen value. A
//! record that no longer does is read and answered `changed`; nothing of it
//! is written, so an edit made in the database meanwhile is never lost.

use weir_sdk::json::{self, Record};
use weir_sdk::sql::Statement;
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
    /// Written, changed there since, or failed: the item's outcome.
    Outcome(KeyedOutcome),
    /// To write as a plain write after all: the row is gone (it is written
    /// again, as an update of a missing row always was), or it still holds
    /// the seen values in a spelling the condition did not take.
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
    let statements: Vec<Statement> = guarded
        .iter()
        .map(|(g, _)| target.guarded_statement(key, g))
        .collect();
    let results = db.batch(&table.entity, &statements)?;
    let mut missed = Vec::new();
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

/// The updates whose condition held no row: read what the rows hold now.
fn settle_missed(
    db: &Database,
    table: &Table,
    columns: &[Column],
    missed: Vec<(Guarded, KeyedWrite)>,
) -> Result<Vec<(usize, Done)>> {
    let key = table.key(db.dialect, columns);
    let target = write_target(db, table, columns);
    let select = statements::select_list(db.dialect, columns);
    let sql = statements::select_by_keys(
        db.dialect,
        table.sql_name(),
        &select,
        key.name,
        missed.len(),
    );
    let params = missed
        .iter()
        .map(|(g, _)| target.key_param(&g.id))
        .collect();
    let rows = db.query(&table.entity, sql, params)?;
    let now: std::collections::HashMap<String, Change> = table
        .changes_of(columns, &rows)?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    Ok(missed
        .into_iter()
        .map(|(g, k)| {
            let Some(change) = now.get(&g.id) else {
                return (g.at, Done::Plain(k.item));
            };
            let held = change.data.as_deref().map(json::parse_record);
            match held {
                Some(Ok(held)) if json::holds_seen(&held, &g.seen) => {
                    // It holds what was seen: write the changed columns as they are.
                    let mut item = k.item;
                    item.data = Some(serde_json::Value::Object(g.set).to_string());
                    (g.at, Done::Plain(item))
                }
                _ => (g.at, Done::Outcome(KeyedOutcome::Changed(change.clone()))),
            }
        })
        .collect())
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
        let sql = statements::guarded_update(self.dialect, self.table, key, self.updated_at, &set);
        let mut params: Vec<_> = g.set.values().cloned().map(into_sql).collect();
        params.push(self.key_param(&g.id));
        params.extend(
            set.iter()
                .map(|c| into_sql(self.cell(c, g.seen[*c].clone()))),
        );
        Statement { sql, params }
    }
}
