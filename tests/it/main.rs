//! The integration tests, one binary: each module links the crate once instead of once per
//! file, and shares `support` (fake-google, the spawned binary, response decoding).
//!
//! Scenarios that exercise a credential type or the provider run in this process against
//! fake-google; the binary is spawned only where the process is what is under test (flags,
//! configuration, signals, the sidecar end to end, packaging).

mod support;

mod cache;
mod commands;
mod config;
mod conventions;
mod credential_types;
mod doctor;
mod faults;
mod fidelity;
mod library;
mod load;
mod operations;
mod packaging;
mod properties;
mod proxy;
mod proxy_abuse;
mod proxy_rich;
mod proxy_support;
mod public_surface;
#[cfg(feature = "rdkafka")]
mod rdkafka;
mod registry;
mod security;
mod sidecar;
mod soak;
