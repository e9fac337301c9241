//! Builds the connectors workspace for wasm32-wasip2 (a separate cargo
//! workspace, never compiled for the host target) and tells the tests where
//! the components are.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf();
    let connectors = root.join("connectors");
    // Every crate of the connectors workspace (its target folder aside).
    for entry in std::fs::read_dir(&connectors)
        .expect("the connectors folder")
        .flatten()
    {
        if entry.file_name() != "target" {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    let target_dir = root.join("target").join("connectors");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(connectors.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("running cargo to build the connectors");
    if !status.success() {
        panic!(
            "building the connectors for wasm32-wasip2 failed (see above); if the target is missing, run `rustup target add wasm32-wasip2`"
        );
    }
    let out = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=WEIR_TEST_CONNECTORS={}", out.display());
    println!(
        "cargo:rustc-env=WEIR_TEST_CACHE={}",
        root.join("target").join("weir-test-cache").display()
    );
    println!("cargo:rustc-env=WEIR_TEST_ROOT={}", root.display());
}
