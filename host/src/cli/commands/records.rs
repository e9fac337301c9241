//! `weir records ENTITY ID`: one record, its links and its history.

use crate::cli::RecordsArgs;
use crate::manifest::Manifest;
use std::process::ExitCode;

/// `weir records ENTITY ID`: the golden record, its links and its history.
pub(in crate::cli) fn run(manifest: &Manifest, args: &RecordsArgs) -> anyhow::Result<ExitCode> {
    let (entity, id, system) = (
        args.entity.as_str(),
        args.id.as_str(),
        args.system.as_deref(),
    );
    if manifest.entity(entity).is_none() {
        anyhow::bail!("no entity '{entity}' in the manifest: give one of its [entities] names");
    }
    let store = crate::store::Store::open(&manifest.store)?;
    let global_id = match system {
        Some(system) => match store.global_id_of(entity, system, id)? {
            Some(g) => g,
            None => {
                eprintln!("error: weir knows no {entity} '{id}' in system '{system}'");
                return Ok(ExitCode::from(1));
            }
        },
        None => id.parse::<i64>().map_err(|_| {
            anyhow::anyhow!("'{id}' is not a global id: give a number, or --system NAME to look up that system's id")
        })?,
    };
    let Some(golden) = store.golden(global_id)?.filter(|g| g.entity == entity) else {
        eprintln!("error: no {entity} with global id {global_id}");
        return Ok(ExitCode::from(1));
    };
    println!(
        "{entity} {global_id}{}{}",
        if golden.deleted { " (deleted)" } else { "" },
        golden
            .origin
            .as_deref()
            .map(|o| format!(", last taken from {o}"))
            .unwrap_or_default()
    );
    let data = serde_json::Value::Object(golden.record(store.path())?);
    println!(
        "{}",
        serde_json::to_string_pretty(&data).unwrap_or(golden.data.clone())
    );
    println!("links:");
    for l in store.links_of(global_id)? {
        println!("  {}: {} (since {})", l.system, l.local_id, l.updated_at);
    }
    println!("history:");
    for a in store.audit(Some(entity), None, Some(global_id), None, u32::MAX)? {
        println!(
            "  #{} {} run {} {} {} {}{}",
            a.id,
            a.at,
            a.run_id
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            a.system,
            a.operation,
            a.outcome,
            a.actor.map(|x| format!(" by {x}")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
