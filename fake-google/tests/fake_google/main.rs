//! Proves the fake behaves like Google, so that tests of the sidecar against it mean something.
//! One test binary (modules below) to keep link time down.

mod common;
mod control;
mod faults;
mod federation;
mod fidelity;
mod lifecycle;
mod metadata;
mod refresh;
mod schema_registry;
mod service_account;
mod tokeninfo;
