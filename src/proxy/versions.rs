//! Which API versions the proxy offers clients: the broker's ranges, cut to what the proxy
//! has reviewed and can rewrite.
//!
//! - Keys whose responses carry broker addresses are offered only at versions the proxy
//!   decodes ([`REWRITTEN`]); if that would raise the broker's minimum the key is dropped
//!   instead, since a raised minimum silently changes what clients send (KAFKA-18659: kcat
//!   stopped compressing when Produce's minimum rose).
//! - Produce and Fetch are forwarded opaquely. Their versions that carry KIP-951
//!   `node_endpoints` (Produce v10+, Fetch v16+) are not offered ([`CLAMPED`]), so the hot
//!   path never decodes a record-carrying response; the proxy still rewrites them should a
//!   client send one anyway.
//! - Every other key known to the pinned `kafka-protocol` crate is offered up to the crate's
//!   maximum (later versions have not been reviewed for addresses); its minimum is the
//!   broker's.
//! - Unknown keys (future or proprietary, e.g. ≥ 10000), the SASL keys (17, 36: the proxy
//!   authenticates for the client) and the delegation-token keys (38–41: tokens would be
//!   issued to the proxy's identity) are removed, and so is DescribeQuorum (55): from v2
//!   (KIP-853) it lists the controllers' listener addresses, which the proxy does not front.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};

/// An inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// Lowest version.
    pub min: i16,
    /// Highest version.
    pub max: i16,
}

const fn v(min: i16, max: i16) -> Versions {
    Versions { min, max }
}

/// The keys whose responses the proxy decodes and re-encodes, at these versions (reviewed
/// against kafka-protocol 0.18.0). `tests::rewritten_versions_match_the_pinned_crate` fails
/// when the crate changes one of them.
pub const REWRITTEN: &[(ApiKey, Versions)] = &[
    (ApiKey::ApiVersions, v(0, 4)),
    (ApiKey::Metadata, v(0, 13)),
    (ApiKey::FindCoordinator, v(0, 6)),
    (ApiKey::DescribeCluster, v(0, 2)),
    (ApiKey::ShareFetch, v(1, 1)),
    (ApiKey::ShareAcknowledge, v(1, 1)),
];

/// Opaque keys offered below the versions that added KIP-951 `node_endpoints`.
pub const CLAMPED: &[(ApiKey, i16)] = &[(ApiKey::Produce, 9), (ApiKey::Fetch, 15)];

/// First version of Produce whose response may carry `node_endpoints`.
pub const PRODUCE_NODE_ENDPOINTS: i16 = 10;
/// First version of Fetch whose response may carry `node_endpoints`.
pub const FETCH_NODE_ENDPOINTS: i16 = 16;

/// Keys never offered to clients.
pub const HIDDEN: &[ApiKey] = &[
    ApiKey::SaslHandshake,
    ApiKey::SaslAuthenticate,
    ApiKey::CreateDelegationToken,
    ApiKey::RenewDelegationToken,
    ApiKey::ExpireDelegationToken,
    ApiKey::DescribeDelegationToken,
    ApiKey::DescribeQuorum,
];

/// UNSUPPORTED_VERSION.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// What the proxy can do with a response of `(api_key, version)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Forward untouched but for the correlation id.
    Opaque,
    /// Decode, rewrite, re-encode.
    Rewrite(ApiKey),
    /// The response could carry a broker address at a version the proxy cannot decode.
    Undecodable,
}

/// How the response to a request `(api_key, version)` is handled.
pub fn handling(api_key: i16, version: i16) -> Handling {
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Handling::Opaque;
    };
    if let Some((_, range)) = REWRITTEN.iter().find(|(k, _)| *k == key) {
        return if (range.min..=range.max).contains(&version) {
            Handling::Rewrite(key)
        } else {
            Handling::Undecodable
        };
    }
    let endpoints_from = match key {
        ApiKey::Produce => PRODUCE_NODE_ENDPOINTS,
        ApiKey::Fetch => FETCH_NODE_ENDPOINTS,
        _ => return Handling::Opaque,
    };
    if version < endpoints_from {
        Handling::Opaque
    } else if version <= key.valid_versions().max {
        Handling::Rewrite(key)
    } else {
        Handling::Undecodable
    }
}

/// What [`filter`] removed or cut, for the log and metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FilterReport {
    /// Keys removed: unknown, hidden, or undecodable at the broker's minimum.
    pub removed: Vec<i16>,
    /// Keys whose maximum was lowered.
    pub capped: Vec<i16>,
}

/// The range offered to clients for one key the broker reports, `None` to remove it.
pub fn offered(api_key: i16, broker: Versions) -> Option<Versions> {
    let key = ApiKey::try_from(api_key).ok()?;
    if HIDDEN.contains(&key) || broker.min > broker.max {
        return None;
    }
    let ceiling = if let Some((_, range)) = REWRITTEN.iter().find(|(k, _)| *k == key) {
        if broker.min < range.min {
            return None;
        }
        range.max
    } else if let Some((_, max)) = CLAMPED.iter().find(|(k, _)| *k == key) {
        *max
    } else {
        key.valid_versions().max
    };
    let max = broker.max.min(ceiling);
    (max >= broker.min).then_some(Versions {
        min: broker.min,
        max,
    })
}

/// Cuts an ApiVersions response down to what clients of the proxy may use.
pub fn filter(response: &mut ApiVersionsResponse) -> FilterReport {
    let mut report = FilterReport::default();
    response.api_keys.retain_mut(|entry| {
        let broker = v(entry.min_version, entry.max_version);
        match offered(entry.api_key, broker) {
            None => {
                report.removed.push(entry.api_key);
                false
            }
            Some(range) => {
                if range.max < entry.max_version {
                    report.capped.push(entry.api_key);
                }
                entry.max_version = range.max;
                true
            }
        }
    });
    report
}

/// The KIP-511 answer to an ApiVersions request above what the proxy decodes: error 35, at
/// v0, naming the versions the client may retry with.
pub fn unsupported_api_versions_response() -> ApiVersionsResponse {
    let range = REWRITTEN[0].1;
    ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(range.min)
                .with_max_version(range.max),
        ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message as _;

    /// Fails when the pinned crate changes a version range the proxy rewrites, or adds or
    /// removes an API key: review the new versions/keys for broker addresses, then update
    /// the tables (and this test).
    #[test]
    fn rewritten_versions_match_the_pinned_crate() {
        use kafka_protocol::messages::*;
        let crate_ranges = [
            (ApiKey::ApiVersions, ApiVersionsResponse::VERSIONS),
            (ApiKey::Metadata, MetadataResponse::VERSIONS),
            (ApiKey::FindCoordinator, FindCoordinatorResponse::VERSIONS),
            (ApiKey::DescribeCluster, DescribeClusterResponse::VERSIONS),
            (ApiKey::ShareFetch, ShareFetchResponse::VERSIONS),
            (ApiKey::ShareAcknowledge, ShareAcknowledgeResponse::VERSIONS),
        ];
        for ((key, ours), (crate_key, theirs)) in REWRITTEN.iter().zip(crate_ranges) {
            assert_eq!(*key, crate_key);
            assert_eq!(
                (ours.min, ours.max),
                (theirs.min, theirs.max),
                "{key:?}: the crate decodes {theirs}, the proxy reviewed {ours:?}"
            );
        }
        assert_eq!(
            ProduceResponse::VERSIONS.max,
            13,
            "Produce: review new versions"
        );
        assert_eq!(
            FetchResponse::VERSIONS.max,
            18,
            "Fetch: review new versions"
        );
        let keys: Vec<i16> = ApiKey::iter().map(|k| k as i16).collect();
        assert_eq!(
            keys.len(),
            87,
            "the crate knows a different set of API keys: {keys:?}"
        );
        assert_eq!(keys.last(), Some(&92));
    }

    #[test]
    fn offered_ranges_intersect_without_raising_a_minimum() {
        // Kafka 4.x Produce 3..=13: clamped below KIP-951.
        assert_eq!(offered(0, v(3, 13)), Some(v(3, 9)));
        // Kafka 3.x Produce 0..=11: the minimum stays 0.
        assert_eq!(offered(0, v(0, 11)), Some(v(0, 9)));
        // An old broker below the clamp keeps its own maximum.
        assert_eq!(offered(0, v(0, 8)), Some(v(0, 8)));
        assert_eq!(offered(1, v(4, 18)), Some(v(4, 15)));
        assert_eq!(offered(3, v(0, 13)), Some(v(0, 13)));
        assert_eq!(offered(3, v(0, 14)), Some(v(0, 13)), "future Metadata v14");
        assert_eq!(offered(18, v(0, 5)), Some(v(0, 4)));
        assert_eq!(offered(10, v(0, 6)), Some(v(0, 6)));
        assert_eq!(offered(60, v(0, 2)), Some(v(0, 2)));
        // ShareFetch v0 cannot be decoded: removed rather than raising the minimum.
        assert_eq!(offered(78, v(0, 1)), None);
        assert_eq!(offered(78, v(1, 1)), Some(v(1, 1)));
        // An opaque key keeps the broker's minimum, capped at the crate's reviewed maximum.
        assert_eq!(offered(19, v(2, 99)), Some(v(2, 7)), "CreateTopics");
        for hidden in [17, 36, 38, 39, 40, 41, 55] {
            assert_eq!(offered(hidden, v(0, 3)), None, "key {hidden}");
        }
        assert_eq!(offered(10_000, v(0, 1)), None, "proprietary");
        assert_eq!(offered(93, v(0, 0)), None, "unknown future key");
        assert_eq!(offered(3, v(5, 4)), None, "empty range");
    }

    #[test]
    fn filter_rewrites_a_broker_answer() {
        let entry = |key, min, max| {
            ApiVersion::default()
                .with_api_key(key)
                .with_min_version(min)
                .with_max_version(max)
        };
        let mut response = ApiVersionsResponse::default().with_api_keys(vec![
            entry(0, 3, 13),
            entry(1, 4, 18),
            entry(3, 0, 13),
            entry(17, 0, 1),
            entry(18, 0, 4),
            entry(36, 0, 2),
            entry(38, 0, 3),
            entry(10_001, 0, 0),
        ]);
        let report = filter(&mut response);
        let left: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|e| (e.api_key, e.min_version, e.max_version))
            .collect();
        assert_eq!(left, [(0, 3, 9), (1, 4, 15), (3, 0, 13), (18, 0, 4)]);
        assert_eq!(
            report,
            FilterReport {
                removed: vec![17, 36, 38, 10_001],
                capped: vec![0, 1]
            }
        );
    }

    #[test]
    fn handling_per_key_and_version() {
        assert_eq!(handling(0, 9), Handling::Opaque);
        assert_eq!(handling(0, 10), Handling::Rewrite(ApiKey::Produce));
        assert_eq!(handling(0, 14), Handling::Undecodable);
        assert_eq!(handling(1, 15), Handling::Opaque);
        assert_eq!(handling(1, 16), Handling::Rewrite(ApiKey::Fetch));
        assert_eq!(handling(3, 13), Handling::Rewrite(ApiKey::Metadata));
        assert_eq!(handling(3, 14), Handling::Undecodable);
        assert_eq!(handling(18, 5), Handling::Undecodable);
        assert_eq!(handling(19, 7), Handling::Opaque);
        assert_eq!(handling(10_000, 0), Handling::Opaque);
    }
}
