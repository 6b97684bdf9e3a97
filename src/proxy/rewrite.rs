//! Rewriting a broker's response: the row of [`versions::TABLE`] for its key says how.
//!
//! The address a client is given for node `N` is `(advertised host, port_of(N))`, a pure
//! function of the node id, so it is the same after a restart and for every connection.
//! The real address is handed back to the caller, which makes sure node `N`'s local listener
//! exists and targets it before the rewritten response goes out. The per-response rewrites
//! live in `addresses` (node addresses, DescribeConfigs' address-valued configurations) and
//! in [`versions`] (ApiVersions filtering); this module only looks the row up.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use super::versions;

pub use super::addresses::{BrokerAddress, PortError, PortMap, RewriteError, Rewritten};

/// Rewrites the body of a `key` v`version` response.
pub fn rewrite(
    key: ApiKey,
    version: i16,
    body: Bytes,
    map: &PortMap,
) -> Result<Rewritten, RewriteError> {
    match versions::row(key) {
        Some(row) => (row.rewrite)(version, body, map),
        None => Err(RewriteError::Decode {
            key,
            version,
            detail: "the proxy does not rewrite this API".to_owned(),
        }),
    }
}
