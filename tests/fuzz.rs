//! Runs every fuzz target in `fuzz/` for a short, bounded time, so the test command (and so CI) fuzzes
//! each parser of outside input on every run. Longer runs by hand: `cargo fuzz run <target>` (fuzz/README.md).
//!
//! The targets are built the way `cargo fuzz build --sanitizer none` builds them (libFuzzer with
//! coverage instrumentation; those flags are stable, so no nightly compiler or cargo-fuzz install is
//! needed) into `fuzz/target/ci`, then each runs on a scratch copy of its seed corpus from
//! `fixtures/fuzz/<target>` for `COBROWSE_FUZZ_SECS` seconds (default 5; `0` skips, saying so).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

const COVERAGE_FLAGS: &str = "--cfg fuzzing -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `[[bin]]` names of the fuzz crate.
fn targets() -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap();
    let parsed: toml::Value = toml::from_str(&manifest).unwrap();
    parsed["bin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect()
}

fn seconds() -> u64 {
    std::env::var("COBROWSE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// The host's target triple. Naming it explicitly keeps the coverage flags off build scripts and
/// proc-macros (cargo applies `RUSTFLAGS` only to the target then), as cargo-fuzz does.
fn host_triple() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc names its host")
        .to_owned()
}

fn build(target_dir: &Path, triple: &str) {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--bins", "--target", triple, "--manifest-path"])
        .arg(root().join("fuzz/Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTFLAGS", COVERAGE_FLAGS)
        // No debug info: it is most of the build time, and a finding is reproduced by hand anyway.
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the fuzz targets build");
}

/// A scratch corpus holding the committed seeds, so fuzzing never writes into `fixtures/`.
fn scratch_corpus(target: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cobrowse-fuzz-{}-{target}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let seeds = root().join("fixtures/fuzz").join(target);
    let entries = std::fs::read_dir(&seeds).unwrap_or_else(|_| panic!("seeds in {seeds:?}"));
    let mut copied = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        copied += 1;
    }
    assert!(copied > 0, "{target} has seeds");
    dir
}

#[test]
fn every_fuzz_target_runs_clean_for_a_bounded_time() {
    let secs = seconds();
    if secs == 0 {
        eprintln!("fuzz: skipped (COBROWSE_FUZZ_SECS=0)");
        return;
    }
    let target_dir = root().join("fuzz/target/ci");
    let triple = host_triple();
    build(&target_dir, &triple);
    let targets = targets();
    assert!(targets.len() >= 6, "fuzz targets: {targets:?}");
    for target in targets {
        let corpus = scratch_corpus(&target);
        let binary = target_dir.join(&triple).join("debug").join(&target);
        let output = Command::new(&binary)
            .arg(&corpus)
            .arg(format!("-max_total_time={secs}"))
            .args(["-timeout=10", "-rss_limit_mb=2048", "-max_len=8192"])
            .arg(format!(
                "-artifact_prefix={}/",
                std::env::temp_dir().display()
            ))
            .output()
            .unwrap_or_else(|e| panic!("{binary:?} runs: {e}"));
        let log = String::from_utf8_lossy(&output.stderr);
        let summary = log
            .lines()
            .rev()
            .find(|l| l.contains("Done") || l.contains("stat::number_of_executed_units"))
            .unwrap_or_default()
            .to_owned();
        eprintln!("fuzz {target}: {summary}");
        let _ = std::fs::remove_dir_all(&corpus);
        assert!(
            output.status.success(),
            "fuzz target {target} found a failure:\n{}",
            log.lines().rev().take(40).collect::<Vec<_>>().join("\n")
        );
    }
}
