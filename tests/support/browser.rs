//! Headless Chromium for tests: whether it is here, and running one of the `tests/browser/*.mjs`
//! scripts, which print one JSON object of what they saw.

use std::path::Path;
use std::time::Duration;

/// Whether the browser tools are here. Without them a test is skipped with a message, unless
/// `COBROWSE_REQUIRE_BROWSER` is set (CI), where their absence is a failure.
pub fn browser_ready() -> bool {
    let Some(missing) = browser_tools_missing() else {
        return true;
    };
    assert!(
        std::env::var("COBROWSE_REQUIRE_BROWSER").is_err(),
        "browser test required but {missing}"
    );
    eprintln!("SKIPPED browser test: {missing}");
    false
}

/// Runs one of the `tests/browser/*.mjs` scripts and parses the JSON it prints.
pub async fn node(script: &str, args: &[String]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("browser run within 120 s")
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "bad output ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn browser_tools_missing() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let modules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} is missing (apt-get install chromium)"));
    }
    if !modules.exists() {
        return Some(
            "tests/browser/node_modules is missing (npm ci --prefix tests/browser)".into(),
        );
    }
    None
}

/// The steps of a `check_cobrowse.mjs` run, once it is shown that the run finished, that no step
/// failed, and that each of `required` ran.
pub fn cobrowse_steps<'a>(
    result: &'a serde_json::Value,
    required: &[&str],
) -> &'a serde_json::Map<String, serde_json::Value> {
    assert!(
        result.get("error").is_none(),
        "browser run failed: {}\nsteps: {}\nerrors: {}",
        result["error"],
        result["steps"],
        result["errors"]
    );
    let steps = result["steps"].as_object().expect("steps");
    let failed: Vec<_> = steps
        .iter()
        .filter(|(_, v)| **v == false)
        .map(|(k, _)| k.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "steps failed: {failed:?}\nerrors: {}",
        result["errors"]
    );
    for step in required {
        assert!(steps.contains_key(*step), "step {step} did not run");
    }
    steps
}
