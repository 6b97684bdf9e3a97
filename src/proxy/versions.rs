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
//! - The SASL keys (SaslHandshake 17, SaslAuthenticate 36) are offered at the versions the
//!   proxy answers itself ([`ANSWERED_LOCALLY`]), as a Kafka broker offers them on every
//!   listener, PLAINTEXT ones included. They are never forwarded ([`Admission::Sasl`]): the
//!   proxy authenticates for the client, and a client that kept its SASL settings is told so
//!   in its own error ([`SASL_HINT_MECHANISMS`]).
//! - Every other key known to the pinned `kafka-protocol` crate is offered up to the crate's
//!   maximum (later versions have not been reviewed for addresses); its minimum is the
//!   broker's.
//! - Unknown keys (future or proprietary, e.g. ≥ 10000) and the delegation-token keys (38–41:
//!   tokens would be issued to the proxy's identity) are removed, and so is DescribeQuorum
//!   (55): from v2 (KIP-853) it lists the controllers' listener addresses, which the proxy
//!   does not front.

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterResponse, DescribeConfigsResponse, FetchResponse,
    FindCoordinatorResponse, MetadataResponse, ProduceResponse, ShareAcknowledgeResponse,
    ShareFetchResponse,
};
use kafka_protocol::protocol::{Decodable as _, Encodable as _, Message as _};

pub use super::addresses::FilterReport;
use super::addresses::{PortMap, RewriteBody, RewriteError, Rewritten, through};

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

/// One key whose responses the proxy decodes and re-encodes: everything the proxy knows
/// about it. A new rewritten key is one row here (and its `Addresses` impl in `addresses`, or
/// its own function); the offered ranges, [`handling`], [`admit`], [`REWRITTEN`], [`CLAMPED`],
/// [`MIN_MAY_RISE`], the `responses_rewritten` metric and the fuzz hooks are derived from it,
/// and `tests::every_row_is_whole` fails on a row half filled in.
#[derive(Debug, Clone, Copy)]
pub struct RewrittenKey {
    /// The key.
    pub key: ApiKey,
    /// The versions whose responses are decoded (reviewed against kafka-protocol 0.18.0;
    /// `tests::rewritten_versions_match_the_pinned_crate` fails when the crate changes one).
    pub decoded: Versions,
    /// Which versions clients are offered.
    pub offer: Offer,
    /// The `api` label of `gcp_kafka_auth_proxy_responses_rewritten_total`.
    pub label: &'static str,
    /// Decodes, rewrites and re-encodes a response body.
    pub rewrite: RewriteBody,
}

/// Which versions of a rewritten key clients are offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Only the decoded versions; if that would raise the broker's minimum the key is
    /// dropped instead.
    Decoded,
    /// The decoded versions, and the broker's minimum may rise to the first of them rather
    /// than the key being dropped (see [`MIN_MAY_RISE`]).
    DecodedMinMayRise,
    /// Forwarded opaquely below the decoded versions, and offered only below them (the
    /// KIP-951 clamp: [`CLAMPED`]); the decoded versions are rewritten should a client send
    /// one anyway.
    BelowDecoded,
}

/// Every key whose responses the proxy decodes, one row each. The rows offered at their
/// decoded versions come first, in [`REWRITTEN`]'s order, then the clamped ones.
pub const TABLE: &[RewrittenKey] = &[
    RewrittenKey {
        key: ApiKey::ApiVersions,
        decoded: v(0, 4),
        offer: Offer::Decoded,
        label: "api_versions",
        rewrite: rewrite_api_versions,
    },
    RewrittenKey {
        key: ApiKey::Metadata,
        decoded: v(0, 13),
        offer: Offer::Decoded,
        label: "metadata",
        rewrite: through::<MetadataResponse>,
    },
    RewrittenKey {
        key: ApiKey::FindCoordinator,
        decoded: v(0, 6),
        offer: Offer::Decoded,
        label: "find_coordinator",
        rewrite: through::<FindCoordinatorResponse>,
    },
    RewrittenKey {
        key: ApiKey::DescribeCluster,
        decoded: v(0, 2),
        offer: Offer::Decoded,
        label: "describe_cluster",
        rewrite: through::<DescribeClusterResponse>,
    },
    RewrittenKey {
        key: ApiKey::ShareFetch,
        decoded: v(1, 1),
        offer: Offer::Decoded,
        label: "share_fetch",
        rewrite: through::<ShareFetchResponse>,
    },
    RewrittenKey {
        key: ApiKey::ShareAcknowledge,
        decoded: v(1, 1),
        offer: Offer::Decoded,
        label: "share_acknowledge",
        rewrite: through::<ShareAcknowledgeResponse>,
    },
    // Names no node: its address-valued configurations are hidden
    // (`addresses::redact_address_configs`). Every client asks DescribeConfigs at the highest
    // common version, and a Kafka 3.x broker's v0 would otherwise hide the key altogether.
    RewrittenKey {
        key: ApiKey::DescribeConfigs,
        decoded: v(1, 4),
        offer: Offer::DecodedMinMayRise,
        label: "describe_configs",
        rewrite: through::<DescribeConfigsResponse>,
    },
    RewrittenKey {
        key: ApiKey::Produce,
        decoded: v(PRODUCE_NODE_ENDPOINTS, ProduceResponse::VERSIONS.max),
        offer: Offer::BelowDecoded,
        label: "produce",
        rewrite: through::<ProduceResponse>,
    },
    RewrittenKey {
        key: ApiKey::Fetch,
        decoded: v(FETCH_NODE_ENDPOINTS, FetchResponse::VERSIONS.max),
        offer: Offer::BelowDecoded,
        label: "fetch",
        rewrite: through::<FetchResponse>,
    },
];

/// The row of `key`, if the proxy rewrites its responses.
pub fn row(key: ApiKey) -> Option<&'static RewrittenKey> {
    TABLE.iter().find(|row| row.key == key)
}

/// How many rows have `offer == BelowDecoded` (`clamped`) or not.
const fn count(clamped: bool) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < TABLE.len() {
        if matches!(TABLE[i].offer, Offer::BelowDecoded) == clamped {
            n += 1;
        }
        i += 1;
    }
    n
}

const REWRITTEN_ROWS: [(ApiKey, Versions); count(false)] = {
    let mut out = [(ApiKey::ApiVersions, v(0, 0)); count(false)];
    let (mut i, mut j) = (0, 0);
    while i < TABLE.len() {
        if !matches!(TABLE[i].offer, Offer::BelowDecoded) {
            out[j] = (TABLE[i].key, TABLE[i].decoded);
            j += 1;
        }
        i += 1;
    }
    out
};

/// The keys offered at the versions the proxy decodes, and those versions (from [`TABLE`]).
pub const REWRITTEN: &[(ApiKey, Versions)] = &REWRITTEN_ROWS;

#[cfg(test)] // a view of the table for its tests; nothing else reads it
const CLAMPED_ROWS: [(ApiKey, i16); count(true)] = {
    let mut out = [(ApiKey::ApiVersions, 0); count(true)];
    let (mut i, mut j) = (0, 0);
    while i < TABLE.len() {
        if matches!(TABLE[i].offer, Offer::BelowDecoded) {
            out[j] = (TABLE[i].key, TABLE[i].decoded.min - 1);
            j += 1;
        }
        i += 1;
    }
    out
};

#[cfg(test)] // a view of the table for its tests; nothing else reads it
/// Opaque keys offered below the versions that added KIP-951 `node_endpoints` (from
/// [`TABLE`]).
pub const CLAMPED: &[(ApiKey, i16)] = &CLAMPED_ROWS;

#[cfg(test)] // a view of the table for its tests; nothing else reads it
const fn count_min_may_rise() -> usize {
    let (mut n, mut i) = (0, 0);
    while i < TABLE.len() {
        if matches!(TABLE[i].offer, Offer::DecodedMinMayRise) {
            n += 1;
        }
        i += 1;
    }
    n
}

#[cfg(test)] // a view of the table for its tests; nothing else reads it
const MIN_MAY_RISE_ROWS: [ApiKey; count_min_may_rise()] = {
    let mut out = [ApiKey::ApiVersions; count_min_may_rise()];
    let (mut i, mut j) = (0, 0);
    while i < TABLE.len() {
        if matches!(TABLE[i].offer, Offer::DecodedMinMayRise) {
            out[j] = TABLE[i].key;
            j += 1;
        }
        i += 1;
    }
    out
};

#[cfg(test)] // a view of the table for its tests; nothing else reads it
/// Rewritten keys whose broker minimum may be raised to the first version the proxy decodes
/// rather than the key being dropped (the rows with [`Offer::DecodedMinMayRise`]).
pub const MIN_MAY_RISE: &[ApiKey] = &MIN_MAY_RISE_ROWS;

/// First version of Produce whose response may carry `node_endpoints`.
pub const PRODUCE_NODE_ENDPOINTS: i16 = 10;
/// First version of Fetch whose response may carry `node_endpoints`.
pub const FETCH_NODE_ENDPOINTS: i16 = 16;

/// The range of ApiVersions the proxy decodes.
fn api_versions_range() -> Versions {
    row(ApiKey::ApiVersions)
        .expect("ApiVersions is in the table")
        .decoded
}

/// The keys the proxy always answers itself, never forwarding them, and the versions it
/// answers: offered at exactly these, whatever the broker's range (which no client request
/// of these keys reaches). SaslHandshake and SaslAuthenticate: the proxy authenticates for the
/// client, and a client's own credentials must never reach a broker. A Kafka broker offers
/// both on every listener, PLAINTEXT ones included (asked on the interop cluster's PLAINTEXT
/// listener, Kafka 4.x: SaslHandshake 0–1, SaslAuthenticate 0–2; a SaslHandshake there is
/// answered ILLEGAL_SASL_STATE); hidden, librdkafka with `security.protocol=SASL_PLAINTEXT`
/// stopped before sending anything SASL ("SASL Handshake not supported by broker (required by
/// mechanism OAUTHBEARER)"), so the proxy's answer, and its hint, never reached the user.
pub const ANSWERED_LOCALLY: &[(ApiKey, Versions)] = &[
    (ApiKey::SaslHandshake, v(0, 1)),
    (ApiKey::SaslAuthenticate, v(0, 2)),
];

/// The range offered for a key in [`ANSWERED_LOCALLY`].
fn answered_locally(key: ApiKey) -> Option<Versions> {
    ANSWERED_LOCALLY
        .iter()
        .find(|(k, _)| *k == key)
        .map(|&(_, range)| range)
}

/// The "mechanisms" of the proxy's SaslHandshake answer (UNSUPPORTED_SASL_MECHANISM): the fix,
/// in three parts. SaslHandshake has no error message, but clients print the broker's
/// mechanisms: kafka-clients joins them with ", " ("enabled mechanisms are [the proxy
/// authenticates for you, remove the SASL settings, use security.protocol=PLAINTEXT]"),
/// librdkafka with "," ("broker's supported mechanisms: the proxy authenticates for
/// you,remove the SASL settings,use security.protocol=PLAINTEXT"). In parts because librdkafka
/// (2.12–2.16, `rd_kafka_broker_handle_SaslHandshake`) prints at most 32 bytes per mechanism
/// in all (a buffer of 1 + 32 × count, NUL included): the whole sentence as one mechanism
/// was cut to "the proxy authenticates for you:". `tests::sasl_hint_fits_librdkafka` holds
/// the parts to that budget and to the words of the proxy's log line.
pub const SASL_HINT_MECHANISMS: [&str; 3] = [
    "the proxy authenticates for you",
    "remove the SASL settings",
    "use security.protocol=PLAINTEXT",
];

/// Keys never offered to clients.
pub const HIDDEN: &[ApiKey] = &[
    ApiKey::CreateDelegationToken,
    ApiKey::RenewDelegationToken,
    ApiKey::ExpireDelegationToken,
    ApiKey::DescribeDelegationToken,
    ApiKey::DescribeQuorum,
];

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
    let Some(row) = row(key) else {
        return Handling::Opaque;
    };
    if (row.decoded.min..=row.decoded.max).contains(&version) {
        Handling::Rewrite(key)
    } else if row.offer == Offer::BelowDecoded && version < row.decoded.min {
        Handling::Opaque
    } else {
        Handling::Undecodable
    }
}

/// What the proxy does with a request, decided from its header alone before any of it
/// reaches a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Forward it.
    Forward,
    /// ApiVersions above what the proxy decodes: KIP-511's answer at v0, made locally.
    ApiVersionsTooNew,
    /// SaslHandshake or SaslAuthenticate ([`ANSWERED_LOCALLY`]): the proxy authenticates for
    /// the client, and a client's own credentials are never forwarded. Answered with an error
    /// that names the fix, then the connection is closed.
    Sasl,
    /// A key [`HIDDEN`] from ApiVersions (delegation tokens, DescribeQuorum): answered
    /// locally with an error, since a broker would issue a token to the proxy's identity or
    /// name the controllers' addresses.
    Hidden(ApiKey),
    /// An unknown key, or a version the proxy never offers: not forwarded; the connection
    /// is closed once the requests before it are answered, as a broker does.
    NotOffered,
}

/// Decides what to do with a request `(api_key, version)`.
pub fn admit(api_key: i16, version: i16) -> Admission {
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Admission::NotOffered;
    };
    match key {
        ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => Admission::Sasl,
        ApiKey::ApiVersions if version > api_versions_range().max => Admission::ApiVersionsTooNew,
        _ if version < 0
            || version > key.valid_versions().max
            || handling(api_key, version) == Handling::Undecodable =>
        {
            Admission::NotOffered
        }
        // Answered with the key's own response, which exists only at the crate's versions.
        _ if HIDDEN.contains(&key) && version < key.valid_versions().min => Admission::NotOffered,
        _ if HIDDEN.contains(&key) => Admission::Hidden(key),
        _ => Admission::Forward,
    }
}

/// The range offered to clients for one key the broker reports, `None` to remove it.
pub fn offered(api_key: i16, broker: Versions) -> Option<Versions> {
    let key = ApiKey::try_from(api_key).ok()?;
    if HIDDEN.contains(&key) || broker.min > broker.max {
        return None;
    }
    if let Some(local) = answered_locally(key) {
        return Some(local);
    }
    let ceiling = match row(key) {
        Some(row) if row.offer == Offer::BelowDecoded => row.decoded.min - 1,
        Some(row) => {
            let range = row.decoded;
            if broker.min < range.min {
                if row.offer != Offer::DecodedMinMayRise || broker.max < range.min {
                    return None;
                }
                let max = broker.max.min(range.max);
                return Some(Versions {
                    min: range.min,
                    max,
                });
            }
            range.max
        }
        None => key.valid_versions().max,
    };
    let max = broker.max.min(ceiling);
    (max >= broker.min).then_some(Versions {
        min: broker.min,
        max,
    })
}

/// The finalized feature that switches kafka-clients 4.x to transactions V2 (KIP-890).
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
/// First Produce version of transactions V2: a transactional producer that sees
/// `transaction.version` 2 stops sending AddPartitionsToTxn and relies on Produce v12+ to add
/// the partition, so offered a lower Produce its batches are refused ("Partition was not
/// added to the transaction", `InvalidTxnStateException`).
pub const PRODUCE_TRANSACTIONS_V2: i16 = 12;

/// Caps the `transaction.version` feature at 1 (KIP-890's transactions V1) when Produce is
/// offered below v12, so transactional clients keep sending AddPartitionsToTxn.
fn cap_transaction_version(response: &mut ApiVersionsResponse) {
    let produce_max = response
        .api_keys
        .iter()
        .find(|e| e.api_key == ApiKey::Produce as i16)
        .map(|e| e.max_version);
    if produce_max.is_some_and(|max| max >= PRODUCE_TRANSACTIONS_V2) {
        return;
    }
    for f in &mut response.finalized_features {
        if f.name.as_str() == TRANSACTION_VERSION_FEATURE {
            f.max_version_level = f.max_version_level.min(1);
            f.min_version_level = f.min_version_level.min(f.max_version_level);
        }
    }
    for f in &mut response.supported_features {
        if f.name.as_str() == TRANSACTION_VERSION_FEATURE {
            f.max_version = f.max_version.min(1);
            f.min_version = f.min_version.min(f.max_version);
        }
    }
}

/// Cuts an ApiVersions response down to what clients of the proxy may use.
pub fn filter(response: &mut ApiVersionsResponse) -> FilterReport {
    let report = filter_keys(response);
    cap_transaction_version(response);
    report
}

fn filter_keys(response: &mut ApiVersionsResponse) -> FilterReport {
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
                entry.min_version = range.min;
                entry.max_version = range.max;
                true
            }
        }
    });
    report
}

/// The KIP-511 answer to an ApiVersions request above what the proxy decodes: UNSUPPORTED_VERSION, at
/// v0, naming the versions the client may retry with.
pub fn unsupported_api_versions_response() -> ApiVersionsResponse {
    let range = api_versions_range();
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(range.min)
                .with_max_version(range.max),
        ])
}

/// The ApiVersions row's rewrite: [`filter`]. KIP-511: an UNSUPPORTED_VERSION answer is
/// always encoded at v0.
fn rewrite_api_versions(
    version: i16,
    body: Bytes,
    _map: &PortMap,
) -> Result<Rewritten, RewriteError> {
    let key = ApiKey::ApiVersions;
    let peek = body.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
    let at = if peek == Some(ResponseError::UnsupportedVersion.code()) {
        0
    } else {
        version
    };
    let mut buf = body;
    let mut msg = ApiVersionsResponse::decode(&mut buf, at).map_err(|e| RewriteError::Decode {
        key,
        version,
        detail: format!("{e:#}"),
    })?;
    let report = filter(&mut msg);
    let mut out = BytesMut::new();
    msg.encode(&mut out, at).map_err(|e| RewriteError::Encode {
        key,
        version,
        detail: format!("{e:#}"),
    })?;
    Ok(Rewritten {
        body: out,
        brokers: Vec::new(),
        api_versions: Some(report),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            (ApiKey::DescribeConfigs, DescribeConfigsResponse::VERSIONS),
        ];
        assert_eq!(REWRITTEN.len(), crate_ranges.len());
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

    /// A row is whole: its key once in the table, a label that is the key's name in
    /// snake case (so a copied row's label shows), a rewrite that decodes that key's
    /// response (its error names the row's key), a non-empty decoded range, and the derived
    /// lists agree with the rows.
    #[test]
    fn every_row_is_whole() {
        let map = PortMap::new("127.0.0.1", 9093, 9092);
        for (i, row) in TABLE.iter().enumerate() {
            assert!(
                TABLE[..i].iter().all(|r| r.key != row.key),
                "{:?} has two rows",
                row.key
            );
            let name = format!("{:?}", row.key);
            let mut snake = String::new();
            for c in name.chars() {
                if c.is_ascii_uppercase() && !snake.is_empty() {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            assert_eq!(row.label, snake, "{:?}: metric label", row.key);
            assert!(row.decoded.min <= row.decoded.max, "{:?}", row.key);
            match (row.rewrite)(row.decoded.max, Bytes::new(), &map) {
                Err(RewriteError::Decode { key, .. }) => {
                    assert_eq!(key, row.key, "{:?}: its rewrite decodes {key:?}", row.key)
                }
                other => panic!("{:?}: an empty body gave {other:?}", row.key),
            }
            for version in row.decoded.min..=row.decoded.max {
                assert_eq!(
                    handling(row.key as i16, version),
                    Handling::Rewrite(row.key),
                    "{:?} v{version}",
                    row.key
                );
            }
        }
        assert_eq!(REWRITTEN.len() + CLAMPED.len(), TABLE.len());
        assert_eq!(MIN_MAY_RISE, [ApiKey::DescribeConfigs]);
        assert_eq!(CLAMPED, [(ApiKey::Produce, 9), (ApiKey::Fetch, 15)]);
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
        for hidden in [38, 39, 40, 41, 55] {
            assert_eq!(offered(hidden, v(0, 3)), None, "key {hidden}");
        }
        // The SASL keys: the versions the proxy answers itself, whatever the broker's.
        assert_eq!(offered(17, v(0, 1)), Some(v(0, 1)), "SaslHandshake");
        assert_eq!(offered(17, v(1, 3)), Some(v(0, 1)), "SaslHandshake");
        assert_eq!(offered(36, v(0, 2)), Some(v(0, 2)), "SaslAuthenticate");
        assert_eq!(offered(36, v(1, 5)), Some(v(0, 2)), "SaslAuthenticate");
        assert_eq!(offered(10_000, v(0, 1)), None, "proprietary");
        assert_eq!(offered(93, v(0, 0)), None, "unknown future key");
        assert_eq!(offered(3, v(5, 4)), None, "empty range");
    }

    #[test]
    fn transaction_version_is_capped_while_produce_is_below_v12() {
        use kafka_protocol::messages::api_versions_response::{
            FinalizedFeatureKey, SupportedFeatureKey,
        };
        use kafka_protocol::protocol::StrBytes;
        let answer = |produce_max| {
            ApiVersionsResponse::default()
                .with_api_keys(vec![
                    ApiVersion::default()
                        .with_api_key(ApiKey::Produce as i16)
                        .with_min_version(3)
                        .with_max_version(produce_max),
                ])
                .with_supported_features(vec![
                    SupportedFeatureKey::default()
                        .with_name(StrBytes::from_static_str("transaction.version"))
                        .with_min_version(0)
                        .with_max_version(2),
                    SupportedFeatureKey::default()
                        .with_name(StrBytes::from_static_str("group.version"))
                        .with_min_version(0)
                        .with_max_version(1),
                ])
                .with_finalized_features(vec![
                    FinalizedFeatureKey::default()
                        .with_name(StrBytes::from_static_str("transaction.version"))
                        .with_min_version_level(2)
                        .with_max_version_level(2),
                    FinalizedFeatureKey::default()
                        .with_name(StrBytes::from_static_str("group.version"))
                        .with_min_version_level(1)
                        .with_max_version_level(1),
                ])
        };
        let levels = |r: &ApiVersionsResponse| {
            let finalized: Vec<(String, i16, i16)> = r
                .finalized_features
                .iter()
                .map(|f| (f.name.to_string(), f.min_version_level, f.max_version_level))
                .collect();
            let supported: Vec<(String, i16, i16)> = r
                .supported_features
                .iter()
                .map(|f| (f.name.to_string(), f.min_version, f.max_version))
                .collect();
            (finalized, supported)
        };
        // A Kafka 4.x broker's answer: Produce clamped to v9, so transactions V1 only.
        let mut r = answer(13);
        filter(&mut r);
        assert_eq!(r.api_keys[0].max_version, 9);
        assert_eq!(
            levels(&r),
            (
                vec![
                    ("transaction.version".to_owned(), 1, 1),
                    ("group.version".to_owned(), 1, 1)
                ],
                vec![
                    ("transaction.version".to_owned(), 0, 1),
                    ("group.version".to_owned(), 0, 1)
                ]
            )
        );
        // Untouched when Produce v12 is offered (cap_transaction_version alone, since
        // filter clamps Produce to v9 today).
        let mut r = answer(13);
        cap_transaction_version(&mut r);
        assert_eq!(levels(&r), levels(&answer(13)));
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
        assert_eq!(
            left,
            [
                (0, 3, 9),
                (1, 4, 15),
                (3, 0, 13),
                (17, 0, 1),
                (18, 0, 4),
                (36, 0, 2)
            ]
        );
        assert_eq!(
            report,
            FilterReport {
                removed: vec![38, 10_001],
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
        assert_eq!(handling(32, 4), Handling::Rewrite(ApiKey::DescribeConfigs));
        assert_eq!(handling(32, 0), Handling::Undecodable);
    }

    #[test]
    fn describe_configs_minimum_rises_instead_of_the_key_vanishing() {
        assert_eq!(offered(32, v(0, 4)), Some(v(1, 4)), "Kafka 3.x");
        assert_eq!(offered(32, v(1, 4)), Some(v(1, 4)), "Kafka 4.x");
        assert_eq!(offered(32, v(0, 0)), None, "v0 only: nothing decodable");
    }

    #[test]
    fn admission_is_decided_from_the_header() {
        assert_eq!(admit(0, 9), Admission::Forward);
        assert_eq!(
            admit(0, 10),
            Admission::Forward,
            "KIP-951 versions are rewritten"
        );
        assert_eq!(admit(0, 14), Admission::NotOffered, "past the crate");
        assert_eq!(admit(3, 13), Admission::Forward);
        assert_eq!(admit(3, 14), Admission::NotOffered);
        assert_eq!(admit(18, 4), Admission::Forward);
        assert_eq!(admit(18, 5), Admission::ApiVersionsTooNew);
        assert_eq!(admit(17, 1), Admission::Sasl);
        assert_eq!(admit(36, 2), Admission::Sasl);
        for (key, api) in [
            (38, ApiKey::CreateDelegationToken),
            (39, ApiKey::RenewDelegationToken),
            (40, ApiKey::ExpireDelegationToken),
            (41, ApiKey::DescribeDelegationToken),
            (55, ApiKey::DescribeQuorum),
        ] {
            assert_eq!(admit(key, 1), Admission::Hidden(api), "key {key}");
        }
        assert_eq!(
            admit(55, 99),
            Admission::NotOffered,
            "no answer encodes at v99"
        );
        assert_eq!(
            admit(38, 0),
            Admission::NotOffered,
            "nor below the crate's minimum"
        );
        assert_eq!(admit(999, 0), Admission::NotOffered);
        assert_eq!(admit(10_000, 0), Admission::NotOffered);
        assert_eq!(admit(19, -1), Admission::NotOffered);
        assert_eq!(
            admit(32, 0),
            Admission::NotOffered,
            "DescribeConfigs v0 is undecodable"
        );
        assert_eq!(admit(32, 4), Admission::Forward);
    }

    /// The SASL keys are offered at exactly the versions of the proxy's own answers: each
    /// offered version is admitted as SASL (never forwarded) and answered at that version with
    /// the error and the hint, decodable by the crate.
    #[test]
    fn sasl_keys_are_offered_at_the_versions_the_proxy_answers() {
        use super::super::connection::{SASL_REFUSAL, local_answer};
        use super::super::frame::RequestPeek;
        use kafka_protocol::messages::{
            ResponseHeader, SaslAuthenticateResponse, SaslHandshakeResponse,
        };
        assert_eq!(
            ANSWERED_LOCALLY,
            [
                (ApiKey::SaslHandshake, v(0, 1)),
                (ApiKey::SaslAuthenticate, v(0, 2))
            ]
        );
        let crate_range = |r: kafka_protocol::protocol::VersionRange| v(r.min, r.max);
        assert_eq!(
            answered_locally(ApiKey::SaslHandshake),
            Some(crate_range(SaslHandshakeResponse::VERSIONS))
        );
        assert_eq!(
            answered_locally(ApiKey::SaslAuthenticate),
            Some(crate_range(SaslAuthenticateResponse::VERSIONS))
        );
        for (key, range) in ANSWERED_LOCALLY {
            assert!(!HIDDEN.contains(key), "{key:?}");
            for version in range.min..=range.max {
                let admission = admit(*key as i16, version);
                assert_eq!(admission, Admission::Sasl, "{key:?} v{version}");
                let peek = RequestPeek {
                    api_key: *key as i16,
                    api_version: version,
                    correlation_id: 41,
                };
                let frame = local_answer(admission, peek).expect("an answer");
                let size = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
                assert_eq!(size, frame.len() - 4, "{key:?} v{version}");
                let mut body = frame.slice(4..);
                let header =
                    ResponseHeader::decode(&mut body, key.response_header_version(version))
                        .unwrap();
                assert_eq!(header.correlation_id, 41, "{key:?} v{version}");
                if *key == ApiKey::SaslHandshake {
                    let r = SaslHandshakeResponse::decode(&mut body, version).unwrap();
                    assert_eq!(
                        r.error_code,
                        ResponseError::UnsupportedSaslMechanism.code(),
                        "v{version}"
                    );
                    let mechanisms: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
                    assert_eq!(mechanisms, SASL_HINT_MECHANISMS, "v{version}");
                } else {
                    let r = SaslAuthenticateResponse::decode(&mut body, version).unwrap();
                    assert_eq!(
                        r.error_code,
                        ResponseError::SaslAuthenticationFailed.code(),
                        "v{version}"
                    );
                    assert_eq!(r.error_message.as_deref(), Some(SASL_REFUSAL), "v{version}");
                }
                assert!(
                    body.is_empty(),
                    "{key:?} v{version}: {} bytes left",
                    body.len()
                );
            }
        }
    }

    /// The SaslHandshake answer's mechanisms, as librdkafka and kafka-clients print them: the
    /// whole fix, within librdkafka's 32 bytes per mechanism, in the proxy's own words.
    #[test]
    fn sasl_hint_fits_librdkafka() {
        use super::super::connection::SASL_REFUSAL;
        // rd_kafka_broker_handle_SaslHandshake: a buffer of min(511, 1 + 32 × count) bytes,
        // the mechanisms joined by ",", cut at the buffer (NUL included).
        let count = SASL_HINT_MECHANISMS.len();
        let room = (1 + 32 * count).min(511) - 1;
        let librdkafka = SASL_HINT_MECHANISMS.join(",");
        assert!(
            librdkafka.len() <= room,
            "librdkafka prints {} of {} bytes: {:?}",
            room,
            librdkafka.len(),
            &librdkafka[..room.min(librdkafka.len())]
        );
        assert_eq!(
            librdkafka,
            "the proxy authenticates for you,remove the SASL settings,use security.protocol=PLAINTEXT"
        );
        // kafka-clients: List.toString.
        assert_eq!(
            format!("[{}]", SASL_HINT_MECHANISMS.join(", ")),
            "[the proxy authenticates for you, remove the SASL settings, use security.protocol=PLAINTEXT]"
        );
        // The words of the proxy's log line and SaslAuthenticate error message.
        assert_eq!(
            SASL_HINT_MECHANISMS.join(", "),
            SASL_REFUSAL.replacen(": ", ", ", 1)
        );
    }

    /// A raised minimum reaches the answer: offered DescribeConfigs v1–4 from a Kafka 3.x
    /// broker's v0–4 is sent as v1–4, so no client picks v0, which the proxy cannot decode.
    #[test]
    fn filter_writes_the_offered_minimum() {
        let mut response = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::DescribeConfigs as i16)
                .with_min_version(0)
                .with_max_version(4),
        ]);
        let report = filter(&mut response);
        let left: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|e| (e.api_key, e.min_version, e.max_version))
            .collect();
        assert_eq!(left, [(32, 1, 4)]);
        assert_eq!(report, FilterReport::default());
    }
}
