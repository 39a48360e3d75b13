//! Names and encodings of the HTTP API that both sides share: header names of
//! both families, media types, stream-name escaping, timestamps and the feed
//! JSON documents (reference §2.3, §2.4, §2.6, §4.3).

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Legacy (`ES-*`) and current (`Kurrent-*`) header names. The server reads the
/// `Kurrent-` form first; the client sends the legacy form unless configured.
pub mod header {
    pub const ES_EXPECTED_VERSION: &str = "ES-ExpectedVersion";
    pub const KURRENT_EXPECTED_VERSION: &str = "Kurrent-ExpectedVersion";
    pub const ES_EVENT_ID: &str = "ES-EventId";
    pub const KURRENT_EVENT_ID: &str = "Kurrent-EventId";
    pub const ES_EVENT_TYPE: &str = "ES-EventType";
    pub const KURRENT_EVENT_TYPE: &str = "Kurrent-EventType";
    pub const ES_HARD_DELETE: &str = "ES-HardDelete";
    pub const KURRENT_HARD_DELETE: &str = "Kurrent-HardDelete";
    pub const ES_LONG_POLL: &str = "ES-LongPoll";
    pub const KURRENT_LONG_POLL: &str = "Kurrent-LongPoll";
    pub const ES_RESOLVE_LINK_TOS: &str = "ES-ResolveLinkTos";
    pub const KURRENT_RESOLVE_LINK_TOS: &str = "Kurrent-ResolveLinkTos";
    pub const ES_REQUIRE_LEADER: &str = "ES-RequireLeader";
    pub const ES_REQUIRE_MASTER: &str = "ES-RequireMaster";
    pub const KURRENT_REQUIRE_LEADER: &str = "Kurrent-RequireLeader";
    pub const ES_CURRENT_VERSION: &str = "ES-CurrentVersion";
    pub const KURRENT_CURRENT_VERSION: &str = "Kurrent-CurrentVersion";
}

/// Media types of both families (reference §2.4).
pub mod media {
    pub const ES_EVENTS_JSON: &str = "application/vnd.eventstore.events+json";
    pub const KURRENT_EVENTS_JSON: &str = "application/vnd.kurrent.events+json";
    pub const ES_EVENT_JSON: &str = "application/vnd.eventstore.event+json";
    pub const KURRENT_EVENT_JSON: &str = "application/vnd.kurrent.event+json";
    pub const ES_ATOM_JSON: &str = "application/vnd.eventstore.atom+json";
    pub const KURRENT_ATOM_JSON: &str = "application/vnd.kurrent.atom+json";
    pub const JSON: &str = "application/json";
    pub const OCTET_STREAM: &str = "application/octet-stream";
    pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
}

/// .NET `Uri.EscapeDataString`: everything but `A–Z a–z 0–9 - _ . ~` (§2.6).
const ESCAPE_DATA: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes a stream name for a URL path segment, as the real server does.
pub fn escape_stream(stream: &str) -> Cow<'_, str> {
    utf8_percent_encode(stream, ESCAPE_DATA).into()
}

/// Formats a commit time like the real server: `yyyy-MM-ddTHH:mm:ss.fffffffZ`
/// (100 ns ticks) with trailing zeros of the fraction trimmed.
pub fn format_timestamp(unix_nanos: i64, out: &mut String) {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nanos))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    // Hand-rolled: this runs for every entry of every feed page.
    let mut buf = [0u8; 28];
    let mut put = |at: usize, value: u32, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, t.year().clamp(0, 9999) as u32, 4);
    put(5, u32::from(u8::from(t.month())), 2);
    put(8, u32::from(t.day()), 2);
    put(11, u32::from(t.hour()), 2);
    put(14, u32::from(t.minute()), 2);
    put(17, u32::from(t.second()), 2);
    put(20, t.nanosecond() / 100, 7);
    buf[4] = b'-';
    buf[7] = b'-';
    buf[10] = b'T';
    buf[13] = b':';
    buf[16] = b':';
    buf[19] = b'.';
    // Trim trailing zeros of the fraction, and the dot with them.
    let mut end = 27;
    while end > 20 && buf[end - 1] == b'0' {
        end -= 1;
    }
    if end == 20 {
        end = 19;
    }
    buf[end] = b'Z';
    out.push_str(std::str::from_utf8(&buf[..=end]).unwrap_or("0001-01-01T00:00:00Z"));
}

/// Parses a feed timestamp; `None` when it is not RFC 3339.
pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    fast_timestamp(s).or_else(|| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// `yyyy-MM-ddTHH:mm:ss[.f{1,9}]Z`, the only shape servers send, without
/// the general parser's cost (this runs for every event read).
fn fast_timestamp(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?
            .iter()
            .try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut nanos = 0u32;
    let rest = &b[19..];
    let rest = match rest.first() {
        Some(b'.') => {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            nanos = num(20..20 + digits)? * 10u32.pow((9 - digits) as u32);
            &rest[1 + digits..]
        }
        _ => rest,
    };
    if rest != b"Z" {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
            .ok()?;
    let time = time::Time::from_hms_nano(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, time).assume_utc())
}

/// `{"name": …}` of feeds and entries.
#[derive(Debug, Serialize)]
pub struct AuthorOut {
    pub name: &'static str,
}

/// The author name we report: the ES-24 one, since our client profile is ES-24.
pub const AUTHOR: AuthorOut = AuthorOut { name: "EventStore" };

#[derive(Debug, Serialize)]
pub struct LinkOut<'a> {
    pub uri: Cow<'a, str>,
    pub relation: &'static str,
}

/// A feed as the server writes it. Feed-level nulls are emitted like ES ≥ 21.10.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedOut<'a> {
    pub title: String,
    pub id: String,
    pub updated: String,
    pub stream_id: Option<&'a str>,
    pub author: AuthorOut,
    pub head_of_stream: bool,
    pub self_url: Option<String>,
    pub e_tag: Option<String>,
    pub links: Vec<LinkOut<'static>>,
    // `entries` is written by hand after these members (see the server).
}

/// Appends `bytes` as a JSON string. `bytes` must be UTF-8; only `"`, `\\`
/// and control characters are escaped, as serde_json does.
pub fn push_json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a number in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// A feed entry as the server writes it. Members that are null are left out
/// (as ES ≤ 21.6 did) to keep big `$all` pages small; clients accept both.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_json: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_meta_data: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_link_meta_data: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_event_number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_stream_id: Option<&'a str>,
    pub title: String,
    pub id: &'a str,
    pub updated: &'a str,
    pub author: AuthorOut,
    pub summary: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Value>,
    pub links: [LinkOut<'a>; 2],
}

/// A feed as the client reads it: unknown members are ignored, nulls accepted.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedIn<'a> {
    #[serde(default)]
    pub head_of_stream: Option<bool>,
    #[serde(default, borrow)]
    pub links: Option<Vec<LinkIn<'a>>>,
    #[serde(default, borrow)]
    pub entries: Option<Vec<EntryIn<'a>>>,
}

#[derive(Debug, Deserialize)]
pub struct LinkIn<'a> {
    #[serde(borrow)]
    pub uri: Cow<'a, str>,
    #[serde(borrow)]
    pub relation: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryIn<'a> {
    #[serde(default)]
    pub event_id: Option<Uuid>,
    #[serde(default, borrow)]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(default)]
    pub event_number: Option<u64>,
    #[serde(default, borrow)]
    pub stream_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub data: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub meta_data: Option<Cow<'a, str>>,
    #[serde(default)]
    pub is_json: Option<bool>,
    #[serde(default, borrow)]
    pub updated: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_stream_encodes_like_dotnet_escape_data_string() {
        assert_eq!(escape_stream("$all"), "%24all");
        assert_eq!(escape_stream("a@b c/d-e_f.g~h"), "a%40b%20c%2Fd-e_f.g~h");
    }

    #[test]
    fn timestamps_use_seven_fraction_digits_trimmed() {
        let mut s = String::new();
        format_timestamp(1_772_359_201_123_456_700, &mut s);
        assert_eq!(s, "2026-03-01T10:00:01.1234567Z");
        s.clear();
        format_timestamp(1_772_359_201_100_000_000, &mut s);
        assert_eq!(s, "2026-03-01T10:00:01.1Z");
        s.clear();
        format_timestamp(1_772_359_201_000_000_000, &mut s);
        assert_eq!(s, "2026-03-01T10:00:01Z");
        assert_eq!(
            parse_timestamp("2026-03-01T10:00:01.1234567Z").map(|t| t.unix_timestamp_nanos()),
            Some(1_772_359_201_123_456_700)
        );
        assert_eq!(
            parse_timestamp("2026-03-01T10:00:01Z").map(|t| t.unix_timestamp_nanos()),
            Some(1_772_359_201_000_000_000)
        );
        // Other RFC 3339 shapes go through the general parser.
        assert_eq!(
            parse_timestamp("2026-03-01T11:00:01.5+01:00").map(|t| t.unix_timestamp_nanos()),
            Some(1_772_359_201_500_000_000)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn push_json_str_escapes_like_serde_json() {
        for s in ["plain", "{\"a\":\"b\\\\c\"}\n\t\r", "\u{1}\u{1f}\u{8}\u{c} é ✓", ""] {
            let mut out = Vec::new();
            push_json_str(&mut out, s.as_bytes());
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap());
        }
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, format!("0 {}", u64::MAX).as_bytes());
    }
}
