//! `weir refresh SYSTEM [ENTITY]`: asks a running service to poll now.

use crate::cli::RefreshArgs;
use crate::manifest::Manifest;
use anyhow::Context as _;
use std::process::ExitCode;

pub(in crate::cli) async fn run(
    manifest: &Manifest,
    args: &RefreshArgs,
) -> anyhow::Result<ExitCode> {
    let RefreshArgs {
        system,
        entity,
        daemon,
    } = args;
    let Some(s) = manifest.system(system) else {
        anyhow::bail!("no system '{system}' in {}", manifest.file.display());
    };
    let Some(token) = &s.publish_token else {
        anyhow::bail!("system '{system}' has no publish_token; add one to the manifest (and restart `weir run`)");
    };
    let mut url = format!("{}/refresh/{system}", daemon.trim_end_matches('/'));
    if let Some(e) = entity {
        url.push('/');
        url.push_str(e);
    }
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&token.0)
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the service at {daemon} (is `weir run` running?)")
        })?;
    if resp.status().is_success() {
        match entity {
            Some(e) => println!("refresh of {system} {e} requested"),
            None => println!("refresh of {system} requested"),
        }
        Ok(ExitCode::SUCCESS)
    } else {
        let status = resp.status();
        eprintln!(
            "error: the service answered {status}: {}",
            resp.text().await.unwrap_or_default()
        );
        Ok(ExitCode::from(1))
    }
}
