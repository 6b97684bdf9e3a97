//! `version`: the version, target and git commit as one JSON object.

/// Prints the JSON object on stdout.
pub fn run() {
    println!(
        "{}",
        serde_json::json!({
            "name": env!("CARGO_PKG_NAME"),
            "version": env!("CARGO_PKG_VERSION"),
            "target": env!("GKAH_TARGET"),
            "git_commit": env!("GKAH_GIT_COMMIT"),
        })
    );
}
