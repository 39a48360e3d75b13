//! The HTTP layer: routing, header and media-type rules, feed documents.
//! Everything here follows the reference document's sections as cited.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header as h};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::log::EventToWrite;
use super::store::{AllPage, Store, StoredEvent, StreamStatus, WriteOp, WriteOutcome};
use super::{
    Auth, DEFAULT_PAGE_EVENTS, MAX_EVENT_BYTES, MAX_EVENT_TYPE_BYTES, MAX_FILTER_SCAN_EVENTS,
    MAX_LONG_POLL_SECS, MAX_PAGE_BYTES, MAX_PAGE_EVENTS, MAX_REQUEST_BODY_BYTES,
    MAX_STREAM_NAME_BYTES,
};
use crate::types::{AllPosition, ExpectedVersion};
use crate::wire::{self, AUTHOR, EntryOut, FeedOut, LinkOut, escape_stream, header, media};

pub struct AppState {
    pub store: Arc<Store>,
    pub auth: AuthCheck,
    pub local_addr: SocketAddr,
    /// Turns true at shutdown: long polls end early.
    pub stopping: watch::Receiver<bool>,
}

/// The expected `user:password`, or `None` when insecure.
pub struct AuthCheck(Option<Vec<u8>>);

impl AuthCheck {
    pub fn new(auth: &Auth) -> Self {
        match auth {
            Auth::Basic { user, password } => {
                AuthCheck(Some(format!("{user}:{password}").into_bytes()))
            }
            Auth::Insecure => AuthCheck(None),
        }
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.0 else { return true };
        let Some(value) = headers.get(h::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else { return false };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .is_ok_and(|given| given == *expected)
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/info", get(info))
        .route("/streams/{*rest}", any(streams))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(axum::middleware::map_response(cors))
        .with_state(Arc::new(state))
}

/// CORS headers on every response, as the real server sends (§2.7).
async fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("Access-Control-Allow-Origin", HeaderValue::from_static("*"));
    headers.insert(
        "Access-Control-Allow-Methods",
        HeaderValue::from_static("POST, DELETE, GET, OPTIONS"),
    );
    headers.insert(
        "Access-Control-Allow-Headers",
        HeaderValue::from_static(
            "Content-Type, X-Requested-With, X-Forwarded-Host, X-Forwarded-Prefix, X-PINGOTHER, \
             Authorization, ES-LongPoll, ES-ExpectedVersion, ES-EventId, ES-EventType, \
             ES-RequireMaster, ES-RequireLeader, ES-HardDelete, ES-ResolveLinkTos, \
             Kurrent-LongPoll, Kurrent-ExpectedVersion, Kurrent-EventId, Kurrent-EventType, \
             Kurrent-RequireLeader, Kurrent-HardDelete, Kurrent-ResolveLinkTos",
        ),
    );
    headers.insert(
        "Access-Control-Expose-Headers",
        HeaderValue::from_static(
            "Location, ES-Position, ES-CurrentVersion, Kurrent-Position, Kurrent-CurrentVersion",
        ),
    );
    response
}

async fn ping() -> Response {
    json_response(
        StatusCode::OK,
        media::JSON,
        br#"{"text":"Ping request successfully handled"}"#.to_vec(),
    )
}

async fn info(State(st): State<Arc<AppState>>) -> Response {
    let auth = if st.auth.0.is_some() { "basic" } else { "insecure" };
    let body = serde_json::json!({
        "esVersion": concat!("switchboard-eventlog-", env!("CARGO_PKG_VERSION")),
        "state": "leader",
        "features": { "projections": false, "userManagement": false, "atomPub": true },
        "authentication": { "type": auth, "properties": {} },
    });
    json_response(StatusCode::OK, media::JSON, body.to_string().into_bytes())
}

// ---------------------------------------------------------------------------
// Small response helpers.

fn json_response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&format!("{content_type}; charset=utf-8")) {
        r.headers_mut().insert(h::CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, message: &str) -> Response {
    (status, [(h::CONTENT_TYPE, media::TEXT_PLAIN)], message.to_owned()).into_response()
}

fn empty(status: StatusCode) -> Response {
    (status, [(h::CONTENT_TYPE, media::TEXT_PLAIN)]).into_response()
}

fn bad_request(message: &str) -> Response {
    text(StatusCode::BAD_REQUEST, message)
}

/// A refused request: 400 with a text body (§2.5). Small, unlike a `Response`.
#[derive(Debug)]
struct Reject(Cow<'static, str>);

fn reject(message: impl Into<Cow<'static, str>>) -> Reject {
    Reject(message.into())
}

impl From<Reject> for Response {
    fn from(r: Reject) -> Response {
        bad_request(&r.0)
    }
}

/// 400 `Wrong expected EventNumber`, empty body, both CurrentVersion headers (§2.5).
fn wrong_expected_version(current: Option<u64>) -> Response {
    let current = current.map_or_else(|| "-1".to_owned(), |n| n.to_string());
    let mut r = empty(StatusCode::BAD_REQUEST);
    if let Ok(v) = HeaderValue::from_str(&current) {
        r.headers_mut().insert(header::ES_CURRENT_VERSION, v.clone());
        r.headers_mut().insert(header::KURRENT_CURRENT_VERSION, v);
    }
    r
}

fn unauthorized() -> Response {
    let mut r = empty(StatusCode::UNAUTHORIZED);
    r.headers_mut()
        .insert(h::WWW_AUTHENTICATE, HeaderValue::from_static("BasicCustom realm=\"ES\""));
    r
}

fn redirect(location: &str, body: &'static str) -> Response {
    let mut r = text(StatusCode::TEMPORARY_REDIRECT, body);
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(h::LOCATION, v);
    }
    r
}

fn unavailable() -> Response {
    text(StatusCode::SERVICE_UNAVAILABLE, "Server Is Not Ready")
}

fn io_failure(error: &std::io::Error) -> Response {
    tracing::error!(%error, "event log read failed");
    text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error reading the event log")
}

/// `Kurrent-X` first, then `ES-X` (§2.3).
fn hdr<'a>(headers: &'a HeaderMap, kurrent: &str, es: &str) -> Option<&'a str> {
    headers.get(kurrent).or_else(|| headers.get(es)).map(|v| v.to_str().unwrap_or("\u{0}"))
}

fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Validates the headers every stream route accepts; `Err` is the 400.
fn check_common_headers(headers: &HeaderMap) -> Result<(), Reject> {
    let leader = headers
        .get(header::KURRENT_REQUIRE_LEADER)
        .or_else(|| headers.get(header::ES_REQUIRE_LEADER))
        .or_else(|| headers.get(header::ES_REQUIRE_MASTER));
    if let Some(v) = leader
        && parse_bool(v.to_str().unwrap_or("")).is_none()
    {
        return Err(reject("ES-RequireLeader header in wrong format."));
    }
    if let Some(v) = hdr(headers, header::KURRENT_RESOLVE_LINK_TOS, header::ES_RESOLVE_LINK_TOS)
        && parse_bool(v).is_none()
    {
        return Err(reject("ES-ResolveLinkTos header in wrong format."));
    }
    Ok(())
}

fn expected_version(headers: &HeaderMap) -> Result<ExpectedVersion, Reject> {
    match hdr(headers, header::KURRENT_EXPECTED_VERSION, header::ES_EXPECTED_VERSION) {
        None => Ok(ExpectedVersion::Any),
        Some(v) => ExpectedVersion::from_header(v)
            .ok_or_else(|| reject("ES-ExpectedVersion header in wrong format.")),
    }
}

fn long_poll(headers: &HeaderMap) -> Result<Option<Duration>, Reject> {
    match hdr(headers, header::KURRENT_LONG_POLL, header::ES_LONG_POLL) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Some(Duration::from_secs(secs.min(MAX_LONG_POLL_SECS)))),
            _ => Err(reject("ES-LongPoll header in wrong format.")),
        },
    }
}

/// `http://{Host}` of the request, for absolute links (§3.4).
fn base_url(headers: &HeaderMap, local: SocketAddr) -> String {
    match headers.get(h::HOST).and_then(|v| v.to_str().ok()) {
        Some(host) if !host.is_empty() => format!("http://{host}"),
        _ => format!("http://{local}"),
    }
}

/// The query string as decoded pairs.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let decode =
        |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn query<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
}

/// `?embed=` levels (§4.4); `pretty` and `tryharder` alias `body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Embed {
    None,
    Content,
    Rich,
    Body,
}

fn embed(pairs: &[(String, String)]) -> Embed {
    match query(pairs, "embed").map(str::to_ascii_lowercase).as_deref() {
        Some("content") => Embed::Content,
        Some("rich") => Embed::Rich,
        Some("body" | "pretty" | "tryharder") => Embed::Body,
        _ => Embed::None,
    }
}

/// Picks the response media type from `?format=` or `Accept` (§2.4): the
/// highest-`q` supported type; `None` gives 406.
fn negotiate(
    headers: &HeaderMap,
    pairs: &[(String, String)],
    supported: &[&'static str],
) -> Option<&'static str> {
    if let Some(format) = query(pairs, "format") {
        let wanted = match format.to_ascii_lowercase().as_str() {
            "json" => media::JSON,
            "atom" | "atomxj" => media::ES_ATOM_JSON,
            _ => "",
        };
        return supported.iter().copied().find(|s| *s == wanted);
    }
    let accept = headers.get(h::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut best: Option<(f32, &'static str)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let mime = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if let Some(s) = supported.iter().copied().find(|s| s.eq_ignore_ascii_case(mime))
            && q > 0.0
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, s));
        }
    }
    best.map(|(_, s)| s)
}

const FEED_TYPES: &[&str] = &[media::ES_ATOM_JSON, media::KURRENT_ATOM_JSON, media::JSON];
const EVENT_TYPES: &[&str] = &[
    media::JSON,
    media::ES_EVENT_JSON,
    media::KURRENT_EVENT_JSON,
    media::ES_ATOM_JSON,
    media::KURRENT_ATOM_JSON,
    media::OCTET_STREAM,
];

fn not_acceptable() -> Response {
    json_response(
        StatusCode::NOT_ACCEPTABLE,
        media::JSON,
        br#"{"error":"Send Accept: application/json or application/vnd.eventstore.atom+json"}"#
            .to_vec(),
    )
}

// ---------------------------------------------------------------------------
// Routing of /streams/...

/// Everything under `/streams/`, routed by hand so that stream names may hold
/// any percent-encoded character and `$all` / `%24all` are one (§2.6).
async fn streams(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::OPTIONS {
        return empty(StatusCode::OK);
    }
    if !st.auth.allows(&headers) {
        return unauthorized();
    }
    let raw = uri.path().strip_prefix("/streams/").unwrap_or("");
    let raw_segments: Vec<&str> = raw.split('/').collect();
    if raw_segments.len() == 2 && raw_segments[1].is_empty() && !raw_segments[0].is_empty() {
        // `/streams/{s}/` → the same URL without the slash (§2.4).
        let base = base_url(&headers, st.local_addr);
        let q = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        return redirect(&format!("{base}/streams/{}{q}", raw_segments[0]), "");
    }
    let mut segments = Vec::with_capacity(raw_segments.len());
    for s in &raw_segments {
        match percent_decode_str(s).decode_utf8() {
            Ok(s) => segments.push(s.into_owned()),
            Err(_) => return bad_request("Stream name is not valid UTF-8."),
        }
    }
    if segments.is_empty() || segments[0].is_empty() {
        return empty(StatusCode::NOT_FOUND);
    }
    if let Err(r) = check_common_headers(&headers) {
        return r.into();
    }
    if segments[0].len() > MAX_STREAM_NAME_BYTES {
        return bad_request("Stream name too long.");
    }
    let req = Req { st: &st, headers: &headers, pairs: query_pairs(&uri) };
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    if segs[0] == "$all" {
        return req.all_routes(&method, &segs[1..]).await;
    }
    let stream = segs[0];
    match (&method, &segs[1..]) {
        (&Method::GET, []) => req.stream_feed(stream, "head", Dir::Backward, None).await,
        (&Method::POST, []) => req.append(stream, body, None, false).await,
        (&Method::DELETE, []) => req.delete(stream).await,
        (&Method::GET, ["metadata"]) => req.metadata(stream).await,
        (&Method::POST, ["metadata"]) => req.append(&format!("$${stream}"), body, None, true).await,
        (&Method::GET, ["metadata", rest @ ..]) => {
            let meta = format!("$${stream}");
            req.stream_get(&meta, rest).await
        }
        (&Method::POST, ["incoming", id]) => match Uuid::parse_str(id) {
            Ok(id) if !id.is_nil() => req.append(stream, body, Some(id), false).await,
            _ => bad_request("'incoming' needs a valid event id."),
        },
        (&Method::GET, rest) => req.stream_get(stream, rest).await,
        _ => empty(StatusCode::METHOD_NOT_ALLOWED),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Forward,
    Backward,
}

struct Req<'a> {
    st: &'a AppState,
    headers: &'a HeaderMap,
    pairs: Vec<(String, String)>,
}

fn parse_count(s: &str) -> Result<u64, Reject> {
    match s.parse::<u64>() {
        Ok(0) | Err(_) => {
            Err(reject(format!("'{s}' is not valid count. Should be positive integer")))
        }
        Ok(n) if n > MAX_PAGE_EVENTS => {
            Err(reject(format!("'{s}' is too large a count; the limit is {MAX_PAGE_EVENTS}")))
        }
        Ok(n) => Ok(n),
    }
}

fn valid_event(s: &str) -> bool {
    s == "head" || s.parse::<u64>().is_ok()
}

impl Req<'_> {
    fn base(&self) -> String {
        base_url(self.headers, self.st.local_addr)
    }

    /// GET of `/streams/{s}/…` after the stream name.
    async fn stream_get(&self, stream: &str, rest: &[&str]) -> Response {
        match rest {
            [] => self.stream_feed(stream, "head", Dir::Backward, None).await,
            [event] => self.single_event(stream, event),
            [event, count] => self.stream_feed(stream, event, Dir::Backward, Some(count)).await,
            [event, "backward", count] => {
                self.stream_feed(stream, event, Dir::Backward, Some(count)).await
            }
            [event, "forward", count] => {
                self.stream_feed(stream, event, Dir::Forward, Some(count)).await
            }
            _ => empty(StatusCode::NOT_FOUND),
        }
    }

    // ---- append (§3) ------------------------------------------------------

    async fn append(
        &self,
        stream: &str,
        body: Bytes,
        incoming: Option<Uuid>,
        metadata: bool,
    ) -> Response {
        let expected = match expected_version(self.headers) {
            Ok(e) => e,
            Err(r) => return r.into(),
        };
        let content_type = self
            .headers
            .get(h::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        let events = match content_type {
            media::ES_EVENTS_JSON | media::KURRENT_EVENTS_JSON if incoming.is_none() => {
                match parse_batch(&body) {
                    Ok(events) => events,
                    Err(r) => return r.into(),
                }
            }
            media::ES_EVENT_JSON | media::KURRENT_EVENT_JSON => {
                match parse_single_envelope(&body) {
                    Ok(event) => vec![event],
                    Err(r) => return r.into(),
                }
            }
            media::JSON | media::OCTET_STREAM => {
                let given_type =
                    hdr(self.headers, header::KURRENT_EVENT_TYPE, header::ES_EVENT_TYPE)
                        .filter(|t| !t.is_empty());
                let event_type = if metadata {
                    match given_type {
                        Some(t) if t != "$metadata" => {
                            return bad_request(
                                "You should not include an event type for metadata.",
                            );
                        }
                        _ => "$metadata".to_owned(),
                    }
                } else {
                    match given_type {
                        Some(t) => t.to_owned(),
                        None => {
                            return bad_request(
                                "Must include an event type with the request either in body or as ES-EventType header.",
                            );
                        }
                    }
                };
                let event_id = match (
                    incoming,
                    hdr(self.headers, header::KURRENT_EVENT_ID, header::ES_EVENT_ID),
                ) {
                    (Some(id), _) => id,
                    (None, Some(v)) => match Uuid::parse_str(v.trim()) {
                        Ok(id) if !id.is_nil() => id,
                        _ => return bad_request("ES-EventId header in wrong format."),
                    },
                    (None, None) if metadata => Uuid::new_v4(),
                    (None, None) => {
                        // §3.2: send the client to an idempotent URI.
                        let location = format!(
                            "{}/streams/{}/incoming/{}",
                            self.base(),
                            escape_stream(stream),
                            Uuid::new_v4()
                        );
                        return redirect(&location, "Forwarding to idempotent URI");
                    }
                };
                vec![EventToWrite {
                    event_id,
                    event_type,
                    data: body,
                    metadata: Bytes::new(),
                    is_json: content_type == media::JSON,
                }]
            }
            _ => {
                return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Invalid or missing Content-Type");
            }
        };
        for e in &events {
            if e.data.len() + e.metadata.len() > MAX_EVENT_BYTES {
                return text(StatusCode::PAYLOAD_TOO_LARGE, "Event too large.");
            }
            if e.event_type.len() > MAX_EVENT_TYPE_BYTES {
                return bad_request("Event type too long.");
            }
        }
        let op = WriteOp::Append { stream: stream.to_owned(), expected, events };
        match self.st.store.write(op).await {
            Ok(WriteOutcome::Appended { first }) => {
                let location = format!("{}/streams/{}/{first}", self.base(), escape_stream(stream));
                let mut r = empty(StatusCode::CREATED);
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(h::LOCATION, v);
                }
                r
            }
            Ok(WriteOutcome::WrongExpectedVersion { current }) => wrong_expected_version(current),
            Ok(WriteOutcome::StreamDeleted) => empty(StatusCode::GONE),
            Ok(WriteOutcome::Deleted) => empty(StatusCode::INTERNAL_SERVER_ERROR),
            Err(_) => unavailable(),
        }
    }

    // ---- delete (§5) ------------------------------------------------------

    async fn delete(&self, stream: &str) -> Response {
        let expected = match expected_version(self.headers) {
            Ok(e) => e,
            Err(r) => return r.into(),
        };
        let hard = match hdr(self.headers, header::KURRENT_HARD_DELETE, header::ES_HARD_DELETE) {
            None => false,
            Some(v) => match parse_bool(v.trim()) {
                Some(b) => b,
                None => return bad_request("ES-HardDelete header in wrong format."),
            },
        };
        match self
            .st
            .store
            .write(WriteOp::Delete { stream: stream.to_owned(), expected, hard })
            .await
        {
            Ok(WriteOutcome::Deleted) => empty(StatusCode::NO_CONTENT),
            Ok(WriteOutcome::WrongExpectedVersion { current }) => wrong_expected_version(current),
            Ok(WriteOutcome::StreamDeleted) => empty(StatusCode::GONE),
            Ok(WriteOutcome::Appended { .. }) => empty(StatusCode::INTERNAL_SERVER_ERROR),
            Err(_) => unavailable(),
        }
    }

    // ---- stream metadata (§6) ---------------------------------------------

    async fn metadata(&self, stream: &str) -> Response {
        let meta = format!("$${stream}");
        let latest = match self.st.store.stream_status(&meta) {
            StreamStatus::Live { last, .. } => {
                match self.st.store.read_stream_range(&meta, last, last, MAX_PAGE_BYTES, false) {
                    Ok(events) => events.into_iter().next(),
                    Err(e) => return io_failure(&e),
                }
            }
            _ => None,
        };
        let body = match latest {
            Some(e) if e.is_json && !e.data.is_empty() => e.data.to_vec(),
            _ => b"{}".to_vec(),
        };
        json_response(StatusCode::OK, media::JSON, body)
    }

    // ---- single event (§4.7) ----------------------------------------------

    fn single_event(&self, stream: &str, event: &str) -> Response {
        if !valid_event(event) {
            return bad_request(&format!("'{event}' is not valid event number"));
        }
        let Some(media_type) = negotiate(self.headers, &self.pairs, EVENT_TYPES) else {
            return not_acceptable();
        };
        let (first, last) = match self.st.store.stream_status(stream) {
            StreamStatus::Live { first, last } => (first, last),
            StreamStatus::HardDeleted => return empty(StatusCode::GONE),
            _ => return json_response(StatusCode::NOT_FOUND, media::JSON, b"{}".to_vec()),
        };
        let n = if event == "head" { last } else { event.parse().unwrap_or(u64::MAX) };
        if n < first || n > last {
            return json_response(StatusCode::NOT_FOUND, media::JSON, b"{}".to_vec());
        }
        let ev = match self.st.store.read_stream_range(stream, n, n, MAX_PAGE_BYTES, false) {
            Ok(mut events) if !events.is_empty() => events.swap_remove(0),
            Ok(_) => return json_response(StatusCode::NOT_FOUND, media::JSON, b"{}".to_vec()),
            Err(e) => return io_failure(&e),
        };
        let mut r = match media_type {
            media::JSON => json_response(StatusCode::OK, media::JSON, ev.data.to_vec()),
            media::OCTET_STREAM => {
                let mut r = Response::new(Body::from(ev.data.clone()));
                r.headers_mut()
                    .insert(h::CONTENT_TYPE, HeaderValue::from_static(media::OCTET_STREAM));
                r
            }
            media::ES_EVENT_JSON | media::KURRENT_EVENT_JSON => {
                let body = serde_json::to_vec(&content_object(&ev)).unwrap_or_default();
                json_response(StatusCode::OK, media_type, body)
            }
            _ => {
                let base = self.base();
                let (id, updated) = entry_id_and_time(&base, &ev);
                let mut entry = entry_out(&ev, Embed::Content, &id, &updated);
                entry.content = Some(content_object(&ev));
                json_response(
                    StatusCode::OK,
                    media_type,
                    serde_json::to_vec(&entry).unwrap_or_default(),
                )
            }
        };
        let cache = if event == "head" {
            "max-age=0, no-cache, must-revalidate"
        } else {
            "max-age=31536000, public"
        };
        r.headers_mut().insert(h::CACHE_CONTROL, HeaderValue::from_static(cache));
        r.headers_mut().insert(h::VARY, HeaderValue::from_static("Accept"));
        r
    }

    // ---- stream feeds (§4.1–§4.5, §4.8, §4.9) ---------------------------------

    async fn stream_feed(
        &self,
        stream: &str,
        event: &str,
        dir: Dir,
        count: Option<&str>,
    ) -> Response {
        let count = match count.map(parse_count).transpose() {
            Ok(c) => c.unwrap_or(DEFAULT_PAGE_EVENTS),
            Err(r) => return r.into(),
        };
        if !valid_event(event) || (dir == Dir::Forward && event == "head") {
            return bad_request(&format!("'{event}' is not valid event number"));
        }
        let long_poll = match long_poll(self.headers) {
            Ok(lp) => lp.filter(|_| dir == Dir::Forward),
            Err(r) => return r.into(),
        };
        let Some(media_type) = negotiate(self.headers, &self.pairs, FEED_TYPES) else {
            return not_acceptable();
        };
        let embed = embed(&self.pairs);
        let from_head = event == "head";
        let from: u64 = if from_head { u64::MAX } else { event.parse().unwrap_or(0) };

        // Long poll (§4.8): wait while `from` is beyond the last event.
        let mut durable = self.st.store.subscribe();
        let deadline = long_poll.map(|d| Instant::now() + d);
        let mut status = self.st.store.stream_status(stream);
        if let Some(deadline) = deadline {
            loop {
                let beyond = match status {
                    StreamStatus::Live { last, .. } => from > last,
                    StreamStatus::Missing | StreamStatus::SoftDeleted => true,
                    StreamStatus::HardDeleted => false,
                };
                if !beyond || !self.wait(&mut durable, deadline).await {
                    break;
                }
                status = self.st.store.stream_status(stream);
            }
        }
        let (first_visible, last) = match status {
            StreamStatus::Live { first, last } => (first, last),
            StreamStatus::HardDeleted => return empty(StatusCode::GONE),
            StreamStatus::Missing | StreamStatus::SoftDeleted => {
                return empty(StatusCode::NOT_FOUND);
            }
        };

        let base = self.base();
        let s = format!("{base}/streams/{}", escape_stream(stream));
        let (events, head_of_stream, links, complete) = match dir {
            Dir::Backward => {
                let top = from.min(last);
                let bottom = (top + 1).saturating_sub(count);
                let events = match self.st.store.read_stream_range(
                    stream,
                    bottom,
                    top,
                    MAX_PAGE_BYTES,
                    true,
                ) {
                    Ok(e) => e,
                    Err(e) => return io_failure(&e),
                };
                let mut links = vec![
                    link(s.clone(), "self"),
                    link(format!("{s}/head/backward/{count}"), "first"),
                ];
                // The page may stop early at MAX_PAGE_BYTES: continue below
                // what it holds, down to the first event not soft-deleted.
                let lowest = events.first().map_or(bottom, |e| e.event_number);
                if lowest > first_visible {
                    links.push(link(format!("{s}/0/forward/{count}"), "last"));
                    links.push(link(format!("{s}/{}/backward/{count}", lowest - 1), "next"));
                }
                links.push(link(format!("{s}/{}/forward/{count}", top + 1), "previous"));
                links.push(link(format!("{s}/metadata"), "metadata"));
                (events, from_head, links, !from_head && bottom > 0)
            }
            Dir::Forward => {
                let to = from.saturating_add(count - 1);
                let events = match self.st.store.read_stream_range(
                    stream,
                    from,
                    to,
                    MAX_PAGE_BYTES,
                    false,
                ) {
                    Ok(e) => e,
                    Err(e) => return io_failure(&e),
                };
                // A page cut short by MAX_PAGE_BYTES ends at its last event.
                let page_to = match events.last() {
                    Some(e) if e.event_number < to.min(last) => e.event_number,
                    _ => to,
                };
                let head = page_to >= last;
                let mut links = vec![
                    link(s.clone(), "self"),
                    link(format!("{s}/head/backward/{count}"), "first"),
                ];
                if from >= 1 {
                    links.push(link(format!("{s}/0/forward/{count}"), "last"));
                    links.push(link(format!("{s}/{}/backward/{count}", from - 1), "next"));
                }
                if !head || !events.is_empty() {
                    links.push(link(
                        format!("{s}/{}/forward/{count}", page_to.min(last) + 1),
                        "previous",
                    ));
                }
                if !stream.starts_with("$$") {
                    links.push(link(format!("{s}/metadata"), "metadata"));
                }
                (events, head, links, !head)
            }
        };

        let is_head_feed = dir == Dir::Backward && from_head;
        let etag = is_head_feed.then(|| format!("{last};{}", media_hash(media_type)));
        if let (Some(tag), Some(inm)) = (&etag, self.headers.get(h::IF_NONE_MATCH))
            && inm.to_str().is_ok_and(|v| v.trim().trim_matches('"') == tag)
        {
            {
                let mut r = empty(StatusCode::NOT_MODIFIED);
                if let Ok(v) = HeaderValue::from_str(&format!("\"{tag}\"")) {
                    r.headers_mut().insert(h::ETAG, v);
                }
                return r;
            }
        }
        let feed = FeedOut {
            title: format!("Event stream '{stream}'"),
            id: s.clone(),
            updated: String::new(),
            stream_id: Some(stream),
            author: AUTHOR,
            head_of_stream,
            self_url: (dir == Dir::Backward).then(|| s.clone()),
            e_tag: etag.clone(),
            links,
        };
        let mut r = feed_response(feed, &base, &events, embed, media_type);
        let cache = if complete && !is_head_feed {
            "max-age=31536000, public"
        } else {
            "max-age=0, no-cache, must-revalidate"
        };
        r.headers_mut().insert(h::CACHE_CONTROL, HeaderValue::from_static(cache));
        if let Some(tag) = etag
            && let Ok(v) = HeaderValue::from_str(&format!("\"{tag}\""))
        {
            r.headers_mut().insert(h::ETAG, v);
        }
        r
    }

    /// Waits for new durable frames; `false` at the deadline or at shutdown.
    async fn wait(&self, durable: &mut watch::Receiver<u64>, deadline: Instant) -> bool {
        let mut stopping = self.st.stopping.clone();
        if *stopping.borrow() {
            return false;
        }
        tokio::select! {
            changed = durable.changed() => changed.is_ok(),
            () = tokio::time::sleep_until(deadline) => false,
            _ = stopping.changed() => false,
        }
    }

    // ---- $all (§4.10) -----------------------------------------------------

    async fn all_routes(&self, method: &Method, rest: &[&str]) -> Response {
        if method != Method::GET {
            return empty(StatusCode::METHOD_NOT_ALLOWED);
        }
        let (filtered, rest) = match rest {
            ["filtered", rest @ ..] => (true, rest),
            rest => (false, rest),
        };
        match rest {
            [] => self.all_feed(filtered, "head", Dir::Backward, None).await,
            ["metadata"] => json_response(StatusCode::OK, media::JSON, b"{}".to_vec()),
            [pos, count] => self.all_feed(filtered, pos, Dir::Backward, Some(count)).await,
            [pos, "backward", count] => {
                self.all_feed(filtered, pos, Dir::Backward, Some(count)).await
            }
            [pos, "forward", count] => {
                self.all_feed(filtered, pos, Dir::Forward, Some(count)).await
            }
            _ => empty(StatusCode::NOT_FOUND),
        }
    }

    /// The filter of `$all/filtered` (`context=streamid&type=prefix&data=a,b`).
    fn all_filter(&self, filtered: bool) -> Result<(Vec<String>, bool, String), Reject> {
        let exclude_system = match query(&self.pairs, "exclude-system-events") {
            None => false,
            Some(v) => parse_bool(v)
                .ok_or_else(|| reject("exclude-system-events must be true or false."))?,
        };
        if !filtered {
            return Ok((Vec::new(), false, String::new()));
        }
        let context = query(&self.pairs, "context").unwrap_or("").to_ascii_lowercase();
        let kind = query(&self.pairs, "type").unwrap_or("").to_ascii_lowercase();
        if context != "streamid" || kind != "prefix" {
            return Err(reject(
                "This server filters $all by stream-name prefix only: context=streamid&type=prefix&data=p1,p2",
            ));
        }
        let data = query(&self.pairs, "data").unwrap_or("");
        let prefixes: Vec<String> =
            data.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect();
        if prefixes.is_empty() {
            return Err(reject("A $all filter needs data=prefix[,prefix…]."));
        }
        let escaped: Vec<_> = prefixes.iter().map(|p| escape_stream(p).into_owned()).collect();
        let q = format!(
            "?context=streamid&type=prefix&data={}{}",
            escaped.join(","),
            if exclude_system { "&exclude-system-events=true" } else { "" }
        );
        Ok((prefixes, exclude_system, q))
    }

    async fn all_feed(&self, filtered: bool, pos: &str, dir: Dir, count: Option<&str>) -> Response {
        let count = match count.map(parse_count).transpose() {
            Ok(c) => c.unwrap_or(DEFAULT_PAGE_EVENTS),
            Err(r) => return r.into(),
        };
        let from = if pos == "head" && dir == Dir::Backward {
            None
        } else {
            match pos.parse::<AllPosition>() {
                Ok(p) => Some(p),
                Err(_) => return bad_request(&format!("'{pos}' is not a valid $all position")),
            }
        };
        let long_poll = match long_poll(self.headers) {
            Ok(lp) => lp.filter(|_| dir == Dir::Forward),
            Err(r) => return r.into(),
        };
        let Some(media_type) = negotiate(self.headers, &self.pairs, FEED_TYPES) else {
            return not_acceptable();
        };
        let (prefixes, exclude_system, q) = match self.all_filter(filtered) {
            Ok(f) => f,
            Err(r) => return r.into(),
        };
        let embed = embed(&self.pairs);
        let keep = |stream: &str| {
            (!exclude_system || !stream.starts_with('$'))
                && (prefixes.is_empty() || prefixes.iter().any(|p| stream.starts_with(p.as_str())))
        };
        let count_usize = count as usize;
        let store = &self.st.store;

        let page: AllPage = match (dir, from) {
            (Dir::Forward, Some(from)) => {
                let mut durable = store.subscribe();
                let deadline = long_poll.map(|d| Instant::now() + d);
                let mut at = from;
                loop {
                    let page = match store.read_all_forward(
                        at,
                        count_usize,
                        MAX_PAGE_BYTES,
                        MAX_FILTER_SCAN_EVENTS,
                        &keep,
                    ) {
                        Ok(p) => p,
                        Err(e) => return io_failure(&e),
                    };
                    // Nothing yet at the end: wait for more (§4.8), resuming
                    // the filter scan where it stopped.
                    match deadline {
                        Some(deadline) if page.events.is_empty() && page.at_end => {
                            at = page.next;
                            if !self.wait(&mut durable, deadline).await {
                                break page;
                            }
                        }
                        _ => break page,
                    }
                }
            }
            (_, from) => match store.read_all_backward(
                from,
                count_usize,
                MAX_PAGE_BYTES,
                MAX_FILTER_SCAN_EVENTS,
                &keep,
            ) {
                Ok(p) => p,
                Err(e) => return io_failure(&e),
            },
        };

        let base = self.base();
        let all = if filtered {
            format!("{base}/streams/%24all/filtered")
        } else {
            format!("{base}/streams/%24all")
        };
        let mut links = vec![
            link(format!("{all}{q}"), "self"),
            link(format!("{all}/head/backward/{count}{q}"), "first"),
        ];
        let head_of_stream = match dir {
            Dir::Forward => {
                let from = from.unwrap_or_default();
                if from > AllPosition::START {
                    links.push(link(
                        format!("{all}/{}/forward/{count}{q}", AllPosition::START),
                        "last",
                    ));
                    links.push(link(format!("{all}/{from}/backward/{count}{q}"), "next"));
                }
                links.push(link(format!("{all}/{}/forward/{count}{q}", page.next), "previous"));
                page.at_end
            }
            Dir::Backward => {
                if let Some(oldest) = page.events.first().filter(|_| !page.reached_start) {
                    links.push(link(
                        format!("{all}/{}/forward/{count}{q}", AllPosition::START),
                        "last",
                    ));
                    links.push(link(
                        format!(
                            "{all}/{}/backward/{count}{q}",
                            super::store::position_of(oldest.offset)
                        ),
                        "next",
                    ));
                }
                links.push(link(format!("{all}/{}/forward/{count}{q}", page.next), "previous"));
                from.is_none()
            }
        };
        links.push(link(format!("{base}/streams/%24all/metadata"), "metadata"));
        let feed = FeedOut {
            title: "All events".to_owned(),
            id: all.clone(),
            updated: String::new(),
            stream_id: None,
            author: AUTHOR,
            head_of_stream,
            self_url: (dir == Dir::Backward).then(|| all.clone()),
            e_tag: None,
            links,
        };
        let mut r = feed_response(feed, &base, &page.events, embed, media_type);
        r.headers_mut().insert(
            h::CACHE_CONTROL,
            HeaderValue::from_static("max-age=0, no-cache, must-revalidate"),
        );
        r
    }
}

fn link(uri: String, relation: &'static str) -> LinkOut<'static> {
    LinkOut { uri: Cow::Owned(uri), relation }
}

/// A stable stand-in for the real server's per-process media-type hash (§4.9).
fn media_hash(media_type: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in media_type.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    hash as i32
}

/// Serializes a feed whose entries are `events` (given oldest first) newest
/// first (§4.5).
fn feed_response(
    mut feed: FeedOut<'_>,
    base: &str,
    events: &[StoredEvent],
    embed: Embed,
    media_type: &str,
) -> Response {
    feed.updated = match events.last() {
        Some(e) => entry_id_and_time(base, e).1,
        None => "0001-01-01T00:00:00Z".to_owned(),
    };
    // Pages are big: start with room for them.
    let mut body = Vec::with_capacity(1024 + events.len() * 768);
    if let Err(e) = serde_json::to_writer(&mut body, &feed) {
        return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    // `entries` goes last, written by hand: it is nearly all of a page, and
    // most of it (keys, URLs, ids, numbers) needs no escaping.
    body.pop(); // the closing brace
    body.extend_from_slice(b",\"entries\":[");
    let mut base_json = Vec::with_capacity(base.len() + 2);
    wire::push_json_str(&mut base_json, base.as_bytes());
    let base_json = &base_json[1..base_json.len() - 1];
    for (i, e) in events.iter().rev().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        write_entry(&mut body, base_json, e, embed);
    }
    body.extend_from_slice(b"]}");
    let mut r = json_response(StatusCode::OK, media_type, body);
    r.headers_mut().insert(h::VARY, HeaderValue::from_static("Accept"));
    r
}

/// Writes one entry (§4.3) like [`entry_out`] serialized with serde, faster.
/// `base_json` is the base URL already escaped for a JSON string.
fn write_entry(out: &mut Vec<u8>, base_json: &[u8], e: &StoredEvent, embed: Embed) {
    // Bodies were checked for UTF-8 once, when written (`StoredEvent::utf8`).
    let push_text = |out: &mut Vec<u8>, bytes: &[u8]| {
        if e.utf8 {
            wire::push_json_str(out, bytes);
        } else {
            wire::push_json_str(out, String::from_utf8_lossy(bytes).as_bytes());
        }
    };
    let stream = e.stream.as_bytes();
    let mut id = Vec::with_capacity(base_json.len() + stream.len() + 32);
    id.push(b'"');
    id.extend_from_slice(base_json);
    id.extend_from_slice(b"/streams/");
    id.extend_from_slice(escape_stream(&e.stream).as_bytes());
    id.push(b'/');
    wire::push_u64(&mut id, e.event_number);
    id.push(b'"');
    out.push(b'{');
    if embed >= Embed::Rich {
        out.extend_from_slice(b"\"eventId\":\"");
        out.extend_from_slice(
            e.event_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes(),
        );
        out.extend_from_slice(b"\",\"eventType\":");
        wire::push_json_str(out, e.event_type.as_bytes());
        out.extend_from_slice(b",\"eventNumber\":");
        wire::push_u64(out, e.event_number);
        if embed >= Embed::Body {
            if e.is_json {
                out.extend_from_slice(b",\"data\":");
                push_text(out, &e.data);
            }
            if !e.metadata.is_empty() {
                out.extend_from_slice(b",\"metaData\":");
                push_text(out, &e.metadata);
            }
        }
        out.extend_from_slice(b",\"streamId\":");
        wire::push_json_str(out, stream);
        out.extend_from_slice(if e.is_json { b",\"isJson\":true" } else { b",\"isJson\":false" });
        out.extend_from_slice(if e.metadata.is_empty() {
            b",\"isMetaData\":false"
        } else {
            b",\"isMetaData\":true"
        });
        out.extend_from_slice(b",\"isLinkMetaData\":false,\"positionEventNumber\":");
        wire::push_u64(out, e.event_number);
        out.extend_from_slice(b",\"positionStreamId\":");
        wire::push_json_str(out, stream);
        out.push(b',');
    }
    out.extend_from_slice(b"\"title\":");
    let mut title = Vec::with_capacity(stream.len() + 21);
    wire::push_u64(&mut title, e.event_number);
    title.push(b'@');
    title.extend_from_slice(stream);
    wire::push_json_str(out, &title);
    out.extend_from_slice(b",\"id\":");
    out.extend_from_slice(&id);
    out.extend_from_slice(b",\"updated\":\"");
    let mut updated = String::with_capacity(28);
    wire::format_timestamp(e.created_unix_nanos, &mut updated);
    out.extend_from_slice(updated.as_bytes());
    out.extend_from_slice(b"\",\"author\":{\"name\":");
    wire::push_json_str(out, AUTHOR.name.as_bytes());
    out.extend_from_slice(b"},\"summary\":");
    wire::push_json_str(out, e.event_type.as_bytes());
    if embed == Embed::Content && e.is_json {
        out.extend_from_slice(b",\"content\":");
        let _ = serde_json::to_writer(&mut *out, &content_object(e));
    }
    out.extend_from_slice(b",\"links\":[{\"uri\":");
    out.extend_from_slice(&id);
    out.extend_from_slice(b",\"relation\":\"edit\"},{\"uri\":");
    out.extend_from_slice(&id);
    out.extend_from_slice(b",\"relation\":\"alternate\"}]}");
}

/// An entry's `id` URL and `updated` time.
fn entry_id_and_time(base: &str, e: &StoredEvent) -> (String, String) {
    let id = format!("{base}/streams/{}/{}", escape_stream(&e.stream), e.event_number);
    let mut updated = String::with_capacity(28);
    wire::format_timestamp(e.created_unix_nanos, &mut updated);
    (id, updated)
}

/// The `content` object of `embed=content` and single-event reads.
fn content_object(e: &StoredEvent) -> serde_json::Value {
    let parse = |b: &[u8]| -> serde_json::Value {
        if b.is_empty() {
            serde_json::Value::String(String::new())
        } else {
            serde_json::from_slice(b).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(b).into_owned())
            })
        }
    };
    serde_json::json!({
        "eventStreamId": &*e.stream,
        "eventNumber": e.event_number,
        "eventType": e.event_type,
        "eventId": e.event_id,
        "data": if e.is_json { parse(&e.data) } else { serde_json::Value::String(String::from_utf8_lossy(&e.data).into_owned()) },
        "metadata": parse(&e.metadata),
    })
}

/// Text of a stored body: borrowed when valid UTF-8 (the fast, usual case).
fn utf8(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

fn entry_out<'a>(e: &'a StoredEvent, embed: Embed, id: &'a str, updated: &'a str) -> EntryOut<'a> {
    let rich = embed >= Embed::Rich;
    let body = embed >= Embed::Body;
    EntryOut {
        event_id: rich.then_some(e.event_id),
        event_type: rich.then_some(e.event_type.as_str()),
        event_number: rich.then_some(e.event_number),
        data: (body && e.is_json).then(|| utf8(&e.data)),
        meta_data: (body && !e.metadata.is_empty()).then(|| utf8(&e.metadata)),
        stream_id: rich.then_some(&*e.stream),
        is_json: rich.then_some(e.is_json),
        is_meta_data: rich.then_some(!e.metadata.is_empty()),
        is_link_meta_data: rich.then_some(false),
        position_event_number: rich.then_some(e.event_number),
        position_stream_id: rich.then_some(&*e.stream),
        title: format!("{}@{}", e.event_number, e.stream),
        id,
        updated,
        author: AUTHOR,
        summary: &e.event_type,
        content: (embed == Embed::Content && e.is_json).then(|| content_object(e)),
        links: [
            LinkOut { uri: Cow::Borrowed(id), relation: "edit" },
            LinkOut { uri: Cow::Borrowed(id), relation: "alternate" },
        ],
    }
}

// ---------------------------------------------------------------------------
// Batch bodies (§3.1).

/// One element of a batch, members matched case-insensitively.
struct BatchItem<'a> {
    event_id: Option<String>,
    event_type: Option<String>,
    data: Option<&'a RawValue>,
    metadata: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for BatchItem<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BatchItem<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut item =
                    BatchItem { event_id: None, event_type: None, data: None, metadata: None };
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key.eq_ignore_ascii_case("eventId") {
                        item.event_id = map.next_value::<Option<String>>()?;
                    } else if key.eq_ignore_ascii_case("eventType") {
                        item.event_type = map.next_value::<Option<String>>()?;
                    } else if key.eq_ignore_ascii_case("data") {
                        item.data = Some(map.next_value::<&'de RawValue>()?);
                    } else if key.eq_ignore_ascii_case("metadata") {
                        item.metadata = Some(map.next_value::<&'de RawValue>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(item)
            }
        }
        d.deserialize_map(V)
    }
}

/// §3.1's storage rules for `data`/`metadata`: an object or array is JSON; a
/// string holding an object or array is that JSON; another string is stored
/// verbatim as non-JSON; anything else is empty.
fn stored_member(body: &Bytes, raw: Option<&RawValue>) -> (Bytes, bool) {
    let Some(raw) = raw else { return (Bytes::new(), false) };
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'{' | b'[') => (body.slice_ref(text.as_bytes()), true),
        Some(b'"') => {
            let s: String = serde_json::from_str(text).unwrap_or_default();
            let inner = s.trim();
            let is_json = matches!(inner.as_bytes().first(), Some(b'{' | b'['))
                && serde_json::from_str::<IgnoredAny>(inner).is_ok();
            (Bytes::from(s), is_json)
        }
        _ => (Bytes::new(), false),
    }
}

fn to_event(body: &Bytes, item: BatchItem<'_>) -> Result<EventToWrite, Reject> {
    let event_id = item
        .event_id
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
        .filter(|id| !id.is_nil())
        .ok_or_else(|| reject("Empty eventId provided."))?;
    let event_type = item
        .event_type
        .filter(|t| !t.is_empty())
        .ok_or_else(|| reject("Empty eventType provided."))?;
    let (data, data_json) = stored_member(body, item.data);
    let (metadata, meta_json) = stored_member(body, item.metadata);
    Ok(EventToWrite { event_id, event_type, data, metadata, is_json: data_json || meta_json })
}

fn parse_batch(body: &Bytes) -> Result<Vec<EventToWrite>, Reject> {
    let items: Vec<BatchItem<'_>> =
        serde_json::from_slice(body).map_err(|_| reject("Write request body invalid."))?;
    if items.is_empty() {
        return Err(reject("Write request body invalid."));
    }
    items.into_iter().map(|item| to_event(body, item)).collect()
}

fn parse_single_envelope(body: &Bytes) -> Result<EventToWrite, Reject> {
    let item: BatchItem<'_> =
        serde_json::from_slice(body).map_err(|_| reject("Write request body invalid."))?;
    to_event(body, item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(stream: &str, data: &[u8], metadata: &[u8], is_json: bool) -> StoredEvent {
        StoredEvent {
            stream: Arc::from(stream),
            event_number: 42,
            event_id: Uuid::from_u128(7),
            created_unix_nanos: 1_772_359_201_123_456_700,
            is_json,
            utf8: std::str::from_utf8(data).is_ok() && std::str::from_utf8(metadata).is_ok(),
            event_type: "Type \"quoted\"".to_owned(),
            data: Bytes::copy_from_slice(data),
            metadata: Bytes::copy_from_slice(metadata),
            offset: 8,
        }
    }

    #[test]
    fn hand_written_entries_equal_the_serde_shape_for_every_embed_level() {
        let base = "http://127.0.0.1:2113";
        let events = [
            stored("order-42", br#"{"a":"x\"y","b":[1,2]}"#, br#"{"m":1}"#, true),
            stored("we\"ird/name $x", b"not json \n", b"", false),
            stored("bad-utf8", b"\xff\xfe{", b"", true),
        ];
        for embed in [Embed::None, Embed::Content, Embed::Rich, Embed::Body] {
            for e in &events {
                let mut ours = Vec::new();
                let mut escaped_base = Vec::new();
                wire::push_json_str(&mut escaped_base, base.as_bytes());
                write_entry(&mut ours, &escaped_base[1..escaped_base.len() - 1], e, embed);
                let ours: serde_json::Value = serde_json::from_slice(&ours).unwrap();
                let (id, updated) = entry_id_and_time(base, e);
                let theirs = serde_json::to_value(entry_out(e, embed, &id, &updated)).unwrap();
                assert_eq!(ours, theirs, "{embed:?} {}", e.stream);
            }
        }
    }
}
