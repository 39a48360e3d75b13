//! Names and encodings of the HTTP API that both sides share: header names of
//! both families, media types, stream-name escaping, timestamps and the feed
//! JSON documents (reference §2.3, §2.4, §2.6, §4.3).

use std::borrow::Cow;
use std::fmt::Write as _;

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
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let ticks = t.nanosecond() / 100;
    if ticks != 0 {
        let mut digits = format!("{ticks:07}");
        while digits.ends_with('0') {
            digits.pop();
        }
        out.push('.');
        out.push_str(&digits);
    }
    out.push('Z');
}

/// Parses a feed timestamp; `None` when it is not RFC 3339.
pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// `{"name": …}` of feeds and entries.
#[derive(Debug, Serialize)]
pub struct AuthorOut {
    pub name: &'static str,
}

/// The author name we report: the ES-24 one, since our client profile is ES-24.
pub const AUTHOR: AuthorOut = AuthorOut { name: "EventStore" };

#[derive(Debug, Serialize)]
pub struct LinkOut {
    pub uri: String,
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
    pub links: Vec<LinkOut>,
    pub entries: Vec<EntryOut<'a>>,
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
    pub id: String,
    pub updated: String,
    pub author: AuthorOut,
    pub summary: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Value>,
    pub links: [LinkOut; 2],
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
    }
}
