//! Kafka framing and the fixed-offset header fields the proxy reads without decoding.
//!
//! A frame is a 4-byte big-endian size, then the message. Every request starts with
//! `api_key i16, api_version i16, correlation_id i32` and every response with
//! `correlation_id i32`, whatever the header version, so the proxy reads and rewrites those
//! in place and forwards the rest untouched.

use bytes::BytesMut;

/// Bytes of the size prefix.
pub const SIZE_LEN: usize = 4;

/// Kafka's own default for `socket.request.max.bytes` (100 MiB): no broker accepts a larger
/// request, so a larger size is a client speaking something other than Kafka.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Why the bytes on a connection are not a Kafka frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The client started a TLS handshake against the plaintext listener.
    #[error(
        "the client started a TLS handshake, but this listener is plaintext: use security.protocol=PLAINTEXT (the proxy itself speaks TLS to the brokers)"
    )]
    TlsClientHello,
    /// The client sent an HTTP request.
    #[error(
        "the client sent an HTTP request ({0}), but this is a Kafka listener: point HTTP clients at the token endpoint or the health port instead"
    )]
    Http(String),
    /// The size prefix is negative or above the limit.
    #[error(
        "a frame of {size} bytes was announced, more than the {limit}-byte limit (or negative): the peer is not speaking the Kafka protocol"
    )]
    TooLarge {
        /// The announced size, as read.
        size: i64,
        /// The limit in force.
        limit: usize,
    },
    /// A frame too short to hold the header it must start with.
    #[error("a {size}-byte frame is too short for a Kafka {what} header")]
    TooShort {
        /// The frame's size.
        size: usize,
        /// "request" or "response".
        what: &'static str,
    },
}

/// Looks at the first bytes a client sent and names the mistake if they are TLS or HTTP.
///
/// Checked on the first frame of a connection only: `0x16 0x03` (a TLS handshake record)
/// reads as a 369-MB frame, and `GET ` as a 1.2-GB one, so without this check the client
/// would get a frame-size complaint that says nothing useful.
pub fn classify_first_bytes(start: &[u8]) -> Option<FrameError> {
    if start.len() >= 2 && start[0] == 0x16 && start[1] == 0x03 {
        return Some(FrameError::TlsClientHello);
    }
    const METHODS: [&[u8]; 9] = [
        b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"PRI ",
    ];
    if start.len() >= 4 && METHODS.contains(&&start[..4]) {
        let line_end = start
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(start.len())
            .min(64);
        let line: String = String::from_utf8_lossy(&start[..line_end])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        return Some(FrameError::Http(line));
    }
    None
}

/// The length of the complete frame at the start of `buf` (prefix included), `None` while
/// more bytes are needed.
pub fn complete_frame_len(buf: &[u8], max_frame: usize) -> Result<Option<usize>, FrameError> {
    Ok(declared_len(buf, max_frame)?.filter(|&total| buf.len() >= total))
}

/// The total length (prefix included) a frame at the start of `buf` declares, as soon as its
/// size prefix is in; `None` while fewer than 4 bytes are. The body may still be arriving:
/// the proxy forwards request bodies as they come instead of holding them whole.
pub fn declared_len(buf: &[u8], max_frame: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < SIZE_LEN {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 || size as usize > max_frame {
        return Err(FrameError::TooLarge {
            size: i64::from(size),
            limit: max_frame,
        });
    }
    Ok(Some(SIZE_LEN + size as usize))
}

/// The fixed part of a request header, read from a whole frame (prefix included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPeek {
    /// The API key (any `i16`: unknown and proprietary keys are forwarded too).
    pub api_key: i16,
    /// The API version.
    pub api_version: i16,
    /// The client's correlation id.
    pub correlation_id: i32,
}

/// Reads api key, version and correlation id at their fixed offsets.
pub fn peek_request(frame: &[u8]) -> Result<RequestPeek, FrameError> {
    if frame.len() < SIZE_LEN + 8 {
        return Err(FrameError::TooShort {
            size: frame.len().saturating_sub(SIZE_LEN),
            what: "request",
        });
    }
    Ok(RequestPeek {
        api_key: i16::from_be_bytes([frame[4], frame[5]]),
        api_version: i16::from_be_bytes([frame[6], frame[7]]),
        correlation_id: i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]),
    })
}

/// Overwrites a request's correlation id in place.
pub fn set_request_correlation_id(frame: &mut [u8], id: i32) {
    frame[8..12].copy_from_slice(&id.to_be_bytes());
}

/// A response's correlation id, read from a whole frame (prefix included).
pub fn response_correlation_id(frame: &[u8]) -> Result<i32, FrameError> {
    if frame.len() < SIZE_LEN + 4 {
        return Err(FrameError::TooShort {
            size: frame.len().saturating_sub(SIZE_LEN),
            what: "response",
        });
    }
    Ok(i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]))
}

/// Overwrites a response's correlation id in place.
pub fn set_response_correlation_id(frame: &mut [u8], id: i32) {
    frame[4..8].copy_from_slice(&id.to_be_bytes());
}

/// Produce's API key.
pub const PRODUCE: i16 = 0;

/// The `acks` of a Produce request (whole frame, prefix included), or `None` if the frame is
/// cut short. `acks = 0` means the broker sends no response at all.
///
/// Layout: request header (v1 up to Produce v8, v2 with tagged fields from v9), then
/// `transactional_id` (a nullable string; compact from v9) and `acks i16`.
pub fn produce_acks(frame: &[u8]) -> Option<i16> {
    let version = i16::from_be_bytes([*frame.get(6)?, *frame.get(7)?]);
    let flexible = version >= 9;
    let mut at = SIZE_LEN + 8;
    // client_id: a nullable *non-compact* string in every request header version.
    let client_id_len = i16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    at += 2 + usize::try_from(client_id_len).unwrap_or(0);
    if flexible {
        at = skip_tagged_fields(frame, at)?;
        let (len_plus_one, next) = read_uvarint(frame, at)?;
        at = next + usize::try_from(len_plus_one.saturating_sub(1)).ok()?;
    } else {
        let len = i16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        at += 2 + usize::try_from(len).unwrap_or(0);
    }
    Some(i16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
}

/// Skips a tagged-field section starting at `at`; returns the offset after it.
fn skip_tagged_fields(buf: &[u8], at: usize) -> Option<usize> {
    let (count, mut at) = read_uvarint(buf, at)?;
    for _ in 0..count {
        let (_tag, next) = read_uvarint(buf, at)?;
        let (size, next) = read_uvarint(buf, next)?;
        at = next.checked_add(usize::try_from(size).ok()?)?;
    }
    (at <= buf.len()).then_some(at)
}

/// An unsigned LEB128 varint (at most 5 bytes for a `u32`).
fn read_uvarint(buf: &[u8], mut at: usize) -> Option<(u32, usize)> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *buf.get(at)?;
        at += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
    }
    None
}

/// Prefixes `body` (a response header and body) with its size, into one buffer.
pub fn framed(body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(SIZE_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_client_hello_and_http_are_named() {
        // The first bytes of a TLS 1.2/1.3 ClientHello record.
        assert_eq!(
            classify_first_bytes(&[0x16, 0x03, 0x01, 0x02, 0x00]),
            Some(FrameError::TlsClientHello)
        );
        assert_eq!(
            classify_first_bytes(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(FrameError::Http("GET /metrics HTTP/1.1".to_owned()))
        );
        assert_eq!(
            classify_first_bytes(&[0, 0, 0, 20, 0, 18]),
            None,
            "an ApiVersions request"
        );
        assert!(
            FrameError::TlsClientHello
                .to_string()
                .contains("this listener is plaintext: use security.protocol=PLAINTEXT")
        );
    }

    #[test]
    fn frame_length_needs_the_whole_frame_and_enforces_the_limit() {
        assert_eq!(complete_frame_len(&[0, 0, 0], 100), Ok(None));
        assert_eq!(complete_frame_len(&[0, 0, 0, 2, 9], 100), Ok(None));
        assert_eq!(complete_frame_len(&[0, 0, 0, 2, 9, 9, 7], 100), Ok(Some(6)));
        assert_eq!(
            complete_frame_len(&[0, 0, 0, 101], 100),
            Err(FrameError::TooLarge {
                size: 101,
                limit: 100
            })
        );
        assert_eq!(
            complete_frame_len(&[0xff, 0xff, 0xff, 0xff], 100),
            Err(FrameError::TooLarge {
                size: -1,
                limit: 100
            })
        );
    }

    #[test]
    fn request_header_is_read_and_rewritten_in_place() {
        // Metadata v12, correlation id 7, client id "c".
        let mut frame = vec![0, 0, 0, 11, 0, 3, 0, 12, 0, 0, 0, 7, 0, 1, b'c'];
        assert_eq!(
            peek_request(&frame),
            Ok(RequestPeek {
                api_key: 3,
                api_version: 12,
                correlation_id: 7
            })
        );
        set_request_correlation_id(&mut frame, -2_000_000_000);
        assert_eq!(
            frame,
            [0, 0, 0, 11, 0, 3, 0, 12, 0x88, 0xca, 0x6c, 0x00, 0, 1, b'c']
        );
        assert_eq!(
            peek_request(&frame[..10]),
            Err(FrameError::TooShort {
                size: 6,
                what: "request"
            })
        );
    }

    #[test]
    fn response_correlation_id_is_read_and_rewritten_in_place() {
        let mut frame = vec![0, 0, 0, 6, 0, 0, 1, 0, 0xaa, 0xbb];
        assert_eq!(response_correlation_id(&frame), Ok(256));
        set_response_correlation_id(&mut frame, 5);
        assert_eq!(frame, [0, 0, 0, 6, 0, 0, 0, 5, 0xaa, 0xbb]);
    }

    #[test]
    fn produce_acks_in_classic_and_flexible_versions() {
        // v8: header v1 (client id "ab"), transactional_id null (-1), acks -1.
        let v8 = [
            0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(produce_acks(&v8), Some(-1));
        // v8 with transactional_id "tx" and acks 0.
        let v8_tx = [
            0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 2, b't', b'x', 0, 0,
        ];
        assert_eq!(produce_acks(&v8_tx), Some(0));
        // v9: header v2: client id "c", one tagged field (tag 5, 2 bytes), then a compact
        // transactional_id "tx" (length + 1 = 3) and acks 0.
        let v9 = [
            0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 1, b'c', 1, 5, 2, 0xee, 0xee, 3, b't', b'x', 0,
            0,
        ];
        assert_eq!(produce_acks(&v9), Some(0));
        // v11, null compact transactional_id (0), acks 1.
        let v11 = [0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 1];
        assert_eq!(produce_acks(&v11), Some(1));
        // Cut short: unknown, so the caller expects a response.
        assert_eq!(produce_acks(&v11[..16]), None);
    }

    #[test]
    fn varints_decode_and_overlong_ones_fail() {
        assert_eq!(read_uvarint(&[0x00], 0), Some((0, 1)));
        assert_eq!(read_uvarint(&[0x96, 0x01], 0), Some((150, 2)));
        assert_eq!(read_uvarint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 0), None);
        assert_eq!(read_uvarint(&[0x80], 0), None);
    }
}
