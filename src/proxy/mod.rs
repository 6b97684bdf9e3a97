//! A Kafka-protocol proxy (placeholder while being built).
pub mod frame;
pub mod rewrite;
pub mod versions;
