//! The proxy's public surface is deliberate: `src/proxy/mod.rs` exports exactly the allowed
//! modules and items, and none of them names a `kafka-protocol` type (that crate is pinned
//! exactly; a type of it in a public signature would make every bump of the pin a breaking
//! change). Read from the sources, since `cargo doc` is too slow for a test.

use std::collections::BTreeSet;
use std::path::Path;

fn source(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `pub mod` and `pub use` lines of `src/proxy/mod.rs`, `#[doc(hidden)]` ones marked.
fn exports(module: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut hidden = false;
    let mut pending = String::new();
    for line in module.lines().map(str::trim) {
        if !pending.is_empty() {
            pending.push(' ');
            pending.push_str(line);
        } else if line.starts_with("pub mod ") || line.starts_with("pub use ") {
            pending = line.to_owned();
        } else {
            hidden = line == "#[doc(hidden)]";
            continue;
        }
        if pending.ends_with(';') {
            let mark = if hidden { "hidden " } else { "" };
            out.insert(format!(
                "{mark}{}",
                pending.replace("{ ", "{").replace(" }", "}")
            ));
            pending.clear();
            hidden = false;
        }
    }
    out
}

const ALLOWED: &[&str] = &[
    "pub mod cluster_name;",
    "pub mod dial;",
    "pub mod limits;",
    "hidden pub mod bench_hooks;",
    "hidden pub mod fuzz_hooks;",
    "pub use addresses::{BrokerAddress, PortError};",
    "pub use builder::{ProxyBuildError, ProxyBuilder};",
    "pub use errors::{CheckError, MetadataError, NotReady, ProbeError};",
    "pub use health::HealthPort;",
    "pub use limits::Limits;",
    "pub use nodes::BindError;",
    "pub use sasl::SaslMechanism;",
    "pub use wire::{DecodeError, TlsProblem, UpstreamError, UpstreamHint};",
];

#[test]
fn the_proxy_exports_only_the_allowed_modules_and_items() {
    let got = exports(&source("src/proxy/mod.rs"));
    let allowed: BTreeSet<String> = ALLOWED.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        got, allowed,
        "src/proxy/mod.rs exports changed: a new public module or item is API for good; \
         make it private, or add it here deliberately (and to ARCHITECTURE.md)"
    );
}

/// Every type name any proxy source imports from `kafka_protocol`.
fn kafka_protocol_names(sources: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for text in sources {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("use kafka_protocol::") {
            let statement = &rest[at..];
            let end = statement.find(';').unwrap_or(statement.len());
            for word in statement[..end].split(|c: char| !c.is_alphanumeric() && c != '_') {
                if word.starts_with(|c: char| c.is_ascii_uppercase()) {
                    names.insert(word.to_owned());
                }
            }
            rest = &statement[end..];
        }
    }
    names.insert("kafka_protocol".to_owned());
    names
}

/// The public items of `text`: each `pub` item's signature or whole body (struct fields,
/// enum variants), up to its closing brace at the item's indentation, without comments.
/// `pub(crate)` and `pub(super)` items are not public.
fn public_items(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if line.starts_with("#[cfg(test)]") || trimmed.starts_with("mod tests") {
            break;
        }
        if !trimmed.starts_with("pub ") {
            i += 1;
            continue;
        }
        let indent = line.len() - trimmed.len();
        let mut item = String::new();
        loop {
            let code = lines[i].split("//").next().unwrap_or("");
            item.push_str(code);
            item.push('\n');
            let t = lines[i].trim_end();
            let is_fn = trimmed.contains(" fn ");
            // A fn's signature ends at its body's brace; a type's body at its closing one.
            if t.ends_with(';')
                || (is_fn && t.ends_with('{'))
                || (!is_fn && t == format!("{}}}", " ".repeat(indent)))
                || i + 1 == lines.len()
            {
                break;
            }
            i += 1;
        }
        items.push(item);
        i += 1;
    }
    items
}

#[test]
fn no_public_proxy_item_names_a_kafka_protocol_type() {
    let files = [
        // The public modules and the hooks, whole.
        "src/proxy/mod.rs",
        "src/proxy/cluster_name.rs",
        "src/proxy/dial.rs",
        "src/proxy/limits.rs",
        "src/proxy/bench_hooks.rs",
        "src/proxy/fuzz_hooks.rs",
        // Where the re-exported items are defined.
        "src/proxy/addresses.rs",
        "src/proxy/builder.rs",
        "src/proxy/errors.rs",
        "src/proxy/nodes.rs",
        "src/proxy/sasl/mod.rs",
        "src/proxy/wire.rs",
    ];
    let mut all = Vec::new();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proxy")).unwrap()
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            all.push(std::fs::read_to_string(path).unwrap());
        }
    }
    all.push(source("src/proxy/sasl/mod.rs"));
    let names = kafka_protocol_names(&all);
    assert!(names.contains("ApiKey"), "{names:?}");
    let reexported = [
        "BrokerAddress",
        "PortError",
        "ProxyBuildError",
        "ProxyBuilder",
        "CheckError",
        "NotReady",
        "ProbeError",
        "BindError",
        "SaslMechanism",
        "UpstreamError",
        "UpstreamHint",
        "TlsProblem",
    ];
    let public_module = |file: &str| {
        !file.ends_with("addresses.rs")
            && !file.ends_with("nodes.rs")
            && !file.ends_with("wire.rs")
            && !file.ends_with("sasl/mod.rs")
    };
    for file in files {
        for item in public_items(&source(file)) {
            let is_exported = public_module(file)
                || reexported.iter().any(|name| {
                    item.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .take(4)
                        .any(|w| w == *name)
                });
            if !is_exported {
                continue;
            }
            for word in item.split(|c: char| !c.is_alphanumeric() && c != '_') {
                assert!(
                    !names.contains(word),
                    "{file}: a public item names the kafka-protocol type `{word}`:\n{item}"
                );
            }
        }
    }
}
