//! `weir connectors`: each system's connector, what it exports and its version.

use crate::engine;
use crate::manifest::Manifest;
use crate::runtime::Runtime;
use std::process::ExitCode;

pub(in crate::cli) async fn run(
    manifest: &Manifest,
    runtime: &Runtime,
) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for system in &manifest.systems {
        let connector = match runtime.load(&system.connector) {
            Ok(c) => c,
            Err(e) => {
                println!("{}: {e}", system.name);
                code = ExitCode::from(1);
                continue;
            }
        };
        let described = match runtime
            .instantiate(
                &connector,
                system,
                engine::connector_state(&manifest.store, &system.name),
            )
            .await
        {
            Ok(mut i) => i.describe().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match described {
            Ok(d) => println!(
                "{}: {} {} [{}] exports {} ({})\n  {}",
                system.name,
                d.name,
                d.version,
                connector.hash(),
                connector.exports(),
                system.connector.display(),
                d.summary
            ),
            Err(e) => {
                println!(
                    "{}: exports {} ({}); describe failed: {e}",
                    system.name,
                    connector.exports(),
                    system.connector.display()
                );
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}
