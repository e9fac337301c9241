//! `weir matches`: ambiguous matches held for a decision, and `link ID
//! CANDIDATE` / `new ID`; `weir duplicates ENTITY`: golden records that
//! share a match key.

use crate::cli::{DuplicatesArgs, MatchAction, MatchesArgs};
use crate::manifest::Manifest;
use crate::store::Store;
use std::process::ExitCode;

pub(in crate::cli) fn run(manifest: &Manifest, args: &MatchesArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&manifest.store)?;
    let (id, decision) = match &args.action {
        None => return list(&store),
        Some(MatchAction::Link { id, candidate }) => (*id, Some(candidate.as_str())),
        Some(MatchAction::New { id }) => (*id, None),
    };
    let Some(held) = store.matches(None)?.into_iter().find(|m| m.id == id) else {
        eprintln!("error: there is no held match #{id}; list them with `weir matches`");
        return Ok(ExitCode::from(1));
    };
    if let Some(c) = decision {
        if !held.candidates.iter().any(|k| k == c) {
            eprintln!(
                "error: '{c}' is not a candidate of match #{id}; give one of: {}",
                held.candidates.join(", ")
            );
            return Ok(ExitCode::from(2));
        }
    }
    let text = decision.map_or_else(|| "new".to_string(), |c| format!("link:{c}"));
    store.decide_match(id, &text)?;
    match decision {
        Some(c) => println!("match #{id}: the record is taken for {c} at the next `weir sync`"),
        None => println!(
            "match #{id}: the record is taken for a record of its own at the next `weir sync`"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir matches`: every held match.
fn list(store: &Store) -> anyhow::Result<ExitCode> {
    for m in store.matches(None)? {
        let what = match (&m.local_id, m.global_id) {
            (Some(local), _) => format!(
                "record {local} read from {} matches golden records {}",
                m.system,
                m.candidates.join(", ")
            ),
            (None, Some(gid)) => format!(
                "golden record {gid} matches records {} of {}",
                m.candidates.join(", "),
                m.system
            ),
            (None, None) => continue,
        };
        let decided = m
            .decision
            .as_deref()
            .map(|d| format!(" [decided: {d}]"))
            .unwrap_or_default();
        println!(
            "#{} {} {}: {what} by match key {}{decided}",
            m.id, m.created_at, m.entity, m.match_key
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir duplicates ENTITY`: golden records sharing a match key.
pub(in crate::cli) fn duplicates(
    manifest: &Manifest,
    args: &DuplicatesArgs,
) -> anyhow::Result<ExitCode> {
    let Some(entity) = manifest.entities.iter().find(|e| e.name == args.entity) else {
        eprintln!(
            "error: entity '{}' is not in the manifest; give one of: {}",
            args.entity,
            manifest
                .entities
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(ExitCode::from(2));
    };
    if entity.match_on.is_empty() {
        eprintln!(
            "error: entity '{}' has no match key; declare one with match_on = [\"FIELD\"] under [entities.{}]",
            entity.name, entity.name
        );
        return Ok(ExitCode::from(2));
    }
    let mut store = Store::open(&manifest.store)?;
    let spec = serde_json::to_string(&entity.match_on)?;
    if store
        .transaction(|tx| tx.match_spec(&entity.name))?
        .as_deref()
        != Some(spec.as_str())
    {
        eprintln!(
            "note: the match keys of {} are made under match_on = {spec} at the next `weir sync`; until then this lists none or old ones",
            entity.name
        );
    }
    let groups = store.duplicates(&entity.name)?;
    for (key, ids) in &groups {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        println!("{key}: golden records {}", ids.join(", "));
    }
    println!(
        "{} group(s) of {} records sharing a match key",
        groups.len(),
        entity.name
    );
    Ok(ExitCode::SUCCESS)
}
