//! The [`EventStore`] trait that services are generic over, and
//! [`HttpEventStore`], its implementation over the EventStoreDB/KurrentDB HTTP
//! (AtomPub) API with reqwest.
//!
//! The client follows the profile of reference §11: it sends the legacy `ES-*`
//! headers and `vnd.eventstore` media types (or the `Kurrent-*` ones when
//! configured), `Accept: application/json` on reads, pre-emptive Basic auth,
//! percent-encoded stream names; it reads both `ES-CurrentVersion` and
//! `Kurrent-CurrentVersion`, decides on status codes only and tolerates null
//! and unknown members.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use time::OffsetDateTime;

use crate::types::{
    AllFilter, AllPosition, AllSlice, AppendResult, DeleteMode, ExpectedVersion, NewEvent,
    RecordedEvent, ServerInfo, StoreError, StreamSlice, StreamStart,
};
use crate::wire::{self, FeedIn, escape_stream, header, media};

/// Page size of [`EventStore::load_stream`].
pub const LOAD_PAGE_EVENTS: usize = 1000;
/// Largest page the API serves (the real server fails above it, reference §4.1).
pub const MAX_PAGE_EVENTS: usize = 4096;

/// The event log as services see it. Implementations are cheap to clone and
/// share (`HttpEventStore` is an `Arc` inside).
pub trait EventStore: Send + Sync {
    /// Appends `events` atomically if `expected` holds. Re-appending events
    /// whose ids were already appended is an idempotent success that answers
    /// with the original numbers (reference §3.5).
    fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<AppendResult, StoreError>> + Send;

    /// Reads up to `max_count` events from `from` onward. With `long_poll`, a
    /// read at the end of the stream waits up to that long for new events.
    fn read_stream_forward(
        &self,
        stream: &str,
        from: u64,
        max_count: usize,
        long_poll: Option<Duration>,
    ) -> impl Future<Output = Result<StreamSlice, StoreError>> + Send;

    /// Reads up to `max_count` events from `from` backward (events still
    /// returned oldest first).
    fn read_stream_backward(
        &self,
        stream: &str,
        from: StreamStart,
        max_count: usize,
    ) -> impl Future<Output = Result<StreamSlice, StoreError>> + Send;

    /// Reads up to `max_count` events of `$all` from `from` (inclusive),
    /// optionally only those of some streams. With `long_poll`, a read at the
    /// end of the log waits up to that long for new events.
    fn read_all_forward(
        &self,
        from: AllPosition,
        max_count: usize,
        filter: &AllFilter,
        long_poll: Option<Duration>,
    ) -> impl Future<Output = Result<AllSlice, StoreError>> + Send;

    /// Soft- or hard-deletes a stream if `expected` holds.
    fn delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mode: DeleteMode,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a whole stream forward, page by page. A stream that does not exist
    /// (or is soft-deleted) loads as empty, so that its first append says
    /// `NoStream`.
    fn load_stream(
        &self,
        stream: &str,
    ) -> impl Future<Output = Result<LoadedStream, StoreError>> + Send {
        async move {
            let mut events = Vec::new();
            let mut from = 0;
            loop {
                let slice =
                    match self.read_stream_forward(stream, from, LOAD_PAGE_EVENTS, None).await {
                        Ok(slice) => slice,
                        Err(StoreError::StreamNotFound { .. }) => break,
                        Err(e) => return Err(e),
                    };
                let page_len = slice.events.len();
                events.extend(slice.events);
                match slice.next {
                    Some(next) if !slice.head_of_stream && page_len > 0 => from = next,
                    _ => break,
                }
            }
            Ok(LoadedStream { events })
        }
    }
}

/// A whole stream, as [`EventStore::load_stream`] read it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedStream {
    /// Oldest first.
    pub events: Vec<RecordedEvent>,
}

impl LoadedStream {
    /// Number of the last event read, `None` for an empty stream.
    pub fn version(&self) -> Option<u64> {
        self.events.last().map(|e| e.event_number)
    }

    /// What the next append should expect: `NoStream` or `Exact(version)`.
    pub fn expected_version(&self) -> ExpectedVersion {
        ExpectedVersion::after(self.version())
    }
}

/// Follows `$all` (or part of it) from a saved position, long-polling at the
/// end. Save [`AllSubscription::position`] after processing each page.
#[derive(Debug, Clone)]
pub struct AllSubscription<S> {
    store: S,
    position: AllPosition,
    filter: AllFilter,
    page_events: usize,
    long_poll: Duration,
}

impl<S: EventStore> AllSubscription<S> {
    /// Default long poll of [`AllSubscription::next_page`].
    pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(10);
    /// Default page size.
    pub const DEFAULT_PAGE_EVENTS: usize = 1000;

    pub fn new(store: S, from: AllPosition, filter: AllFilter) -> Self {
        AllSubscription {
            store,
            position: from,
            filter,
            page_events: Self::DEFAULT_PAGE_EVENTS,
            long_poll: Self::DEFAULT_LONG_POLL,
        }
    }

    pub fn with_long_poll(mut self, long_poll: Duration) -> Self {
        self.long_poll = long_poll;
        self
    }

    pub fn with_page_events(mut self, page_events: usize) -> Self {
        self.page_events = page_events.clamp(1, MAX_PAGE_EVENTS);
        self
    }

    /// Where the next page starts: the checkpoint to save.
    pub fn position(&self) -> AllPosition {
        self.position
    }

    /// The next page: at once when events are waiting, else after the first
    /// new event or the long-poll time (then empty).
    pub async fn next_page(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let slice = self
            .store
            .read_all_forward(self.position, self.page_events, &self.filter, Some(self.long_poll))
            .await?;
        self.position = slice.next_position;
        Ok(slice.events)
    }
}

/// Which header and media-type names the client sends (reference §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderFamily {
    /// `ES-*` and `vnd.eventstore.*`: understood by every version up to K26.
    #[default]
    Legacy,
    /// `Kurrent-*` and `vnd.kurrent.*`: KurrentDB 25+ only.
    Kurrent,
}

/// How to reach the store.
#[derive(Debug, Clone)]
pub struct HttpEventStoreConfig {
    /// Base URL, e.g. `http://127.0.0.1:2113`. Credentials in the URL
    /// (`http://admin:changeit@host:2113`) are used when `credentials` is `None`.
    pub url: String,
    /// Basic auth user and password; `None` for an insecure server.
    pub credentials: Option<(String, String)>,
    pub headers: HeaderFamily,
    /// Time limit of one request (a long poll adds its own wait to it).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl HttpEventStoreConfig {
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    pub fn new(url: impl Into<String>) -> Self {
        HttpEventStoreConfig {
            url: url.into(),
            credentials: None,
            headers: HeaderFamily::Legacy,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }
}

/// [`EventStore`] over the EventStoreDB/KurrentDB HTTP API.
#[derive(Debug, Clone)]
pub struct HttpEventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    /// Base URL without a trailing slash.
    base: String,
    auth: Option<HeaderValue>,
    family: HeaderFamily,
    request_timeout: Duration,
    /// `$all` pages fetched ahead (see [`HttpEventStore::read_all_forward`]).
    prefetched: std::sync::Mutex<std::collections::VecDeque<Prefetch>>,
}

/// Pages of `$all` fetched ahead, at most this many (one per concurrent follower).
pub const MAX_PREFETCHED_PAGES: usize = 4;

type PageKey = (AllPosition, usize, AllFilter);

/// The body of a `$all` page being fetched ahead of its request.
#[derive(Debug)]
struct Prefetch {
    key: PageKey,
    task: tokio::task::JoinHandle<Result<Bytes, StoreError>>,
}

impl HttpEventStore {
    /// Builds the client; no request is sent (see [`HttpEventStore::check`]).
    pub fn new(config: HttpEventStoreConfig) -> Result<Self, StoreError> {
        let (base, url_credentials) = split_userinfo(&config.url)?;
        let credentials = config.credentials.or(url_credentials);
        let auth = match credentials {
            Some((user, password)) => {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let mut value = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|e| StoreError::Protocol(format!("bad credentials: {e}")))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()
            .map_err(|e| StoreError::Protocol(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpEventStore {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                family: config.headers,
                request_timeout: config.request_timeout,
                prefetched: std::sync::Mutex::default(),
            }),
        })
    }

    /// Convenience: [`HttpEventStore::new`] with defaults for `url`.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::new(HttpEventStoreConfig::new(url))
    }

    /// The base URL (without credentials).
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// Probes the server: `/info` must say AtomPub is on (a real server with it
    /// off answers every stream request with 404, which would look like "no
    /// such stream"), and the credentials must be accepted. Call at start.
    pub async fn check(&self) -> Result<ServerInfo, StoreError> {
        let url = format!("{}/info", self.inner.base);
        let resp = self.send(self.get(&url).header(ACCEPT, media::JSON), None).await?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(transport)?;
        if status == StatusCode::NOT_FOUND {
            return Err(StoreError::Protocol(format!(
                "{url} answered 404: not an EventStoreDB/KurrentDB 20+ server"
            )));
        }
        check_common(status, &body, "")?;
        if !status.is_success() {
            return Err(StoreError::Protocol(format!("{url} answered HTTP {status}")));
        }
        let info: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| StoreError::Protocol(format!("{url}: not JSON: {e}")))?;
        let atom_pub = info.pointer("/features/atomPub").and_then(serde_json::Value::as_bool);
        let version = info
            .get("dbVersion")
            .or_else(|| info.get("esVersion"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let state = info.get("state").and_then(|s| s.as_str()).unwrap_or("unknown").to_owned();
        if atom_pub != Some(true) {
            return Err(StoreError::AtomPubDisabled { url: self.inner.base.clone() });
        }
        // A read of an ordinary missing stream: 404 proves the credentials work.
        match self.read_stream_backward("switchboard-connection-check", StreamStart::Head, 1).await
        {
            Ok(_) | Err(StoreError::StreamNotFound { .. } | StoreError::StreamDeleted { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(ServerInfo { version, state, atom_pub: true })
    }

    fn h(&self, legacy: &'static str, kurrent: &'static str) -> &'static str {
        match self.inner.family {
            HeaderFamily::Legacy => legacy,
            HeaderFamily::Kurrent => kurrent,
        }
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.inner.http.get(url)
    }

    /// Adds auth and the time limit, sends, and maps transport failures.
    async fn send(
        &self,
        mut req: reqwest::RequestBuilder,
        long_poll: Option<Duration>,
    ) -> Result<reqwest::Response, StoreError> {
        if let Some(auth) = &self.inner.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let timeout = self.inner.request_timeout + long_poll.unwrap_or_default();
        req.timeout(timeout).send().await.map_err(transport)
    }

    fn stream_url(&self, stream: &str) -> String {
        format!("{}/streams/{}", self.inner.base, escape_stream(stream))
    }

    async fn read_feed(
        &self,
        url: String,
        stream: &str,
        long_poll: Option<Duration>,
    ) -> Result<(Bytes, HeaderMap), StoreError> {
        let mut req = self.get(&url).header(ACCEPT, media::JSON);
        if let Some(wait) = long_poll {
            let secs = wait.as_secs_f64().ceil().max(1.0);
            req = req.header(self.h(header::ES_LONG_POLL, header::KURRENT_LONG_POLL), secs as u64);
        }
        let resp = self.send(req, long_poll).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(transport)?;
        check_common(status, &body, stream)?;
        if status != StatusCode::OK {
            return Err(StoreError::Protocol(format!("GET {url} answered HTTP {status}")));
        }
        Ok((body, headers))
    }
}

impl HttpEventStore {
    /// The body of one `$all` page.
    async fn fetch_all_body(
        &self,
        from: AllPosition,
        count: usize,
        filter: &AllFilter,
        long_poll: Option<Duration>,
    ) -> Result<Bytes, StoreError> {
        let url = match filter {
            AllFilter::None => {
                format!("{}/streams/%24all/{from}/forward/{count}?embed=body", self.inner.base)
            }
            AllFilter::StreamPrefixes(prefixes) => {
                let data: Vec<_> = prefixes.iter().map(|p| escape_stream(p)).collect();
                format!(
                    "{}/streams/%24all/filtered/{from}/forward/{count}?embed=body&context=streamid&type=prefix&data={}",
                    self.inner.base,
                    data.join(",")
                )
            }
        };
        Ok(self.read_feed(url, "$all", long_poll).await?.0)
    }

    /// Starts fetching the page at `key` unless it is already on its way.
    fn prefetch(&self, key: PageKey) {
        let mut prefetched = self.inner.prefetched.lock().unwrap_or_else(|p| p.into_inner());
        if prefetched.iter().any(|p| p.key == key) {
            return;
        }
        let store = self.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let (from, count, filter) = task_key;
            store.fetch_all_body(from, count, &filter, None).await
        });
        prefetched.push_back(Prefetch { key, task });
        while prefetched.len() > MAX_PREFETCHED_PAGES {
            if let Some(old) = prefetched.pop_front() {
                old.task.abort();
            }
        }
    }
}

/// `http://user:pass@host:port/` → (`http://host:port`, credentials).
fn split_userinfo(url: &str) -> Result<(String, Option<(String, String)>), StoreError> {
    let url = url.trim().trim_end_matches('/');
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(StoreError::Protocol(format!("event store URL {url:?} has no scheme")));
    };
    if scheme != "http" && scheme != "https" {
        return Err(StoreError::Protocol(format!("event store URL {url:?} is not http(s)")));
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let decode =
                |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            Ok((format!("{scheme}://{host}{path}"), Some((decode(user), decode(password)))))
        }
        None => Ok((url.to_owned(), None)),
    }
}

fn transport(e: reqwest::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The statuses that mean the same on every route.
fn check_common(status: StatusCode, body: &[u8], stream: &str) -> Result<(), StoreError> {
    match status.as_u16() {
        401 | 403 => Err(StoreError::Unauthorized { status: status.as_u16() }),
        404 => Err(StoreError::StreamNotFound { stream: stream.to_owned() }),
        410 => Err(StoreError::StreamDeleted { stream: stream.to_owned() }),
        400 | 406 | 413 | 415 => Err(StoreError::Rejected {
            status: status.as_u16(),
            message: String::from_utf8_lossy(body).trim().to_owned(),
        }),
        s if s >= 500 => Err(StoreError::Unavailable(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(body).trim()
        ))),
        _ => Ok(()),
    }
}

/// `ES-CurrentVersion` or `Kurrent-CurrentVersion` as a last event number.
fn current_version(headers: &HeaderMap) -> Option<Option<u64>> {
    let value = headers
        .get(header::KURRENT_CURRENT_VERSION)
        .or_else(|| headers.get(header::ES_CURRENT_VERSION))?;
    let n: i64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(u64::try_from(n).ok())
}

fn location_number(headers: &HeaderMap) -> Result<u64, StoreError> {
    let location = headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| StoreError::Protocol("201 without a Location header".to_owned()))?;
    location
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Protocol(format!("Location {location:?} has no event number")))
}

/// Writes one JSON text member (`data`/`metadata`) verbatim, or `null` when empty.
fn push_raw_json(body: &mut Vec<u8>, json: &[u8]) {
    if json.iter().all(u8::is_ascii_whitespace) {
        body.extend_from_slice(b"null");
    } else {
        body.extend_from_slice(json);
    }
}

fn batch_body(events: &[NewEvent]) -> Result<Vec<u8>, StoreError> {
    let size: usize = events
        .iter()
        .map(|e| e.data.len() + e.metadata.as_ref().map_or(0, Bytes::len) + e.event_type.len() + 96)
        .sum();
    let mut body = Vec::with_capacity(size + 2);
    body.push(b'[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"eventId\":\"");
        body.extend_from_slice(
            event.event_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes(),
        );
        body.extend_from_slice(b"\",\"eventType\":");
        serde_json::to_writer(&mut body, &event.event_type)
            .map_err(|e| StoreError::Protocol(e.to_string()))?;
        body.extend_from_slice(b",\"data\":");
        push_raw_json(&mut body, &event.data);
        if let Some(metadata) = &event.metadata {
            body.extend_from_slice(b",\"metadata\":");
            push_raw_json(&mut body, metadata);
        }
        body.push(b'}');
    }
    body.push(b']');
    Ok(body)
}

use uuid::Uuid;

/// Turns a feed body into events, oldest first, plus its `headOfStream` and
/// `previous` link.
struct ParsedFeed {
    events: Vec<RecordedEvent>,
    head_of_stream: bool,
    previous: Option<String>,
}

fn parse_feed(body: &[u8]) -> Result<ParsedFeed, StoreError> {
    let feed: FeedIn<'_> = serde_json::from_slice(body)
        .map_err(|e| StoreError::Protocol(format!("feed is not valid JSON: {e}")))?;
    let previous = feed
        .links
        .unwrap_or_default()
        .into_iter()
        .find(|l| l.relation == "previous")
        .map(|l| l.uri.into_owned());
    let entries = feed.entries.unwrap_or_default();
    let mut events = Vec::with_capacity(entries.len());
    // Entries come newest first, even on forward reads (reference §4.5).
    for entry in entries.into_iter().rev() {
        let missing = |what: &str| {
            StoreError::Protocol(format!("feed entry without {what} (embed=body not honoured?)"))
        };
        let created = entry
            .updated
            .as_deref()
            .and_then(wire::parse_timestamp)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        events.push(RecordedEvent {
            stream: entry.stream_id.ok_or_else(|| missing("streamId"))?.into_owned(),
            event_number: entry.event_number.ok_or_else(|| missing("eventNumber"))?,
            event_id: entry.event_id.ok_or_else(|| missing("eventId"))?,
            event_type: entry.event_type.ok_or_else(|| missing("eventType"))?.into_owned(),
            data: entry.data.map(|d| Bytes::from(d.into_owned())).unwrap_or_default(),
            metadata: entry.meta_data.map(|d| Bytes::from(d.into_owned())).unwrap_or_default(),
            is_json: entry.is_json.unwrap_or(false),
            created,
        });
    }
    Ok(ParsedFeed { events, head_of_stream: feed.head_of_stream.unwrap_or(false), previous })
}

/// The next position of a `$all` page that is not the last one, read from
/// the feed members before `entries` without parsing the entries (the real
/// server and ours both write `entries` last). `None` when the page is the
/// last one, or when the links come after the entries.
fn peek_next_position(body: &[u8]) -> Option<AllPosition> {
    use serde::de::{DeserializeSeed, Error as _, MapAccess, Visitor};

    #[derive(Default)]
    struct Head {
        head_of_stream: Option<bool>,
        previous: Option<String>,
    }
    struct Seed<'h>(&'h mut Head);
    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a feed")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match &*key {
                    "headOfStream" => self.0.head_of_stream = map.next_value()?,
                    "links" => {
                        let links: Vec<wire::LinkIn<'de>> = map.next_value()?;
                        self.0.previous = links
                            .into_iter()
                            .find(|l| l.relation == "previous")
                            .map(|l| l.uri.into_owned());
                    }
                    // Stop here: the rest is what the full parse is for.
                    "entries" => return Err(A::Error::custom("stop before entries")),
                    _ => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }
    let mut head = Head::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Seed(&mut head).deserialize(&mut de);
    if head.head_of_stream != Some(false) {
        return None;
    }
    head.previous.as_deref().and_then(link_position).and_then(|p| p.parse().ok())
}

/// The `{pos}` of a `…/{pos}/forward/{count}` link.
fn link_position(uri: &str) -> Option<&str> {
    let path = uri.split('?').next()?;
    let mut segments = path.rsplit('/');
    let _count = segments.next()?;
    let direction = segments.next()?;
    if direction != "forward" {
        return None;
    }
    segments.next()
}

fn count_param(max_count: usize) -> usize {
    max_count.clamp(1, MAX_PAGE_EVENTS)
}

impl EventStore for HttpEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, StoreError> {
        if events.is_empty() {
            return Err(StoreError::Rejected {
                status: 400,
                message: "an append needs at least one event".to_owned(),
            });
        }
        let body = batch_body(events)?;
        let content_type = self.h(media::ES_EVENTS_JSON, media::KURRENT_EVENTS_JSON);
        let req = self
            .inner
            .http
            .post(self.stream_url(stream))
            .header(CONTENT_TYPE, content_type)
            .header(
                self.h(header::ES_EXPECTED_VERSION, header::KURRENT_EXPECTED_VERSION),
                expected.to_header(),
            )
            .body(body);
        let resp = self.send(req, None).await?;
        let status = resp.status();
        if status == StatusCode::BAD_REQUEST
            && let Some(current) = current_version(resp.headers())
        {
            return Err(StoreError::WrongExpectedVersion {
                stream: stream.to_owned(),
                expected,
                current,
            });
        }
        if status == StatusCode::CREATED {
            let first = location_number(resp.headers())?;
            let last = first + events.len() as u64 - 1;
            return Ok(AppendResult {
                first_event_number: first,
                next_expected_version: ExpectedVersion::Exact(last),
            });
        }
        let body = resp.bytes().await.map_err(transport)?;
        if status == StatusCode::NOT_FOUND {
            return Err(StoreError::Protocol(format!(
                "append to {stream:?} answered 404: is the AtomPub HTTP API enabled? (see check())"
            )));
        }
        check_common(status, &body, stream)?;
        Err(StoreError::Protocol(format!("append to {stream:?} answered HTTP {status}")))
    }

    async fn read_stream_forward(
        &self,
        stream: &str,
        from: u64,
        max_count: usize,
        long_poll: Option<Duration>,
    ) -> Result<StreamSlice, StoreError> {
        let count = count_param(max_count);
        let url = format!("{}/{from}/forward/{count}?embed=body", self.stream_url(stream));
        let (body, _) = self.read_feed(url, stream, long_poll).await?;
        let feed = parse_feed(&body)?;
        let next = feed.events.last().map_or(from, |e| e.event_number + 1);
        Ok(StreamSlice {
            events: feed.events,
            head_of_stream: feed.head_of_stream,
            next: Some(next),
        })
    }

    async fn read_stream_backward(
        &self,
        stream: &str,
        from: StreamStart,
        max_count: usize,
    ) -> Result<StreamSlice, StoreError> {
        let count = count_param(max_count);
        let start = match from {
            StreamStart::Head => "head".to_owned(),
            StreamStart::Number(n) => n.to_string(),
        };
        let url = format!("{}/{start}/backward/{count}?embed=body", self.stream_url(stream));
        let (body, _) = self.read_feed(url, stream, None).await?;
        let feed = parse_feed(&body)?;
        let next = match feed.events.first() {
            Some(e) if e.event_number > 0 => Some(e.event_number - 1),
            Some(_) => None,
            None => match from {
                StreamStart::Number(n) if n as usize >= count => Some(n - count as u64),
                _ => None,
            },
        };
        Ok(StreamSlice { events: feed.events, head_of_stream: feed.head_of_stream, next })
    }

    /// Catching up on a long log is a loop of page reads, so as soon as a
    /// page's links show it is not the last one, the next page is requested
    /// in the background, and the server writes it while this one is parsed
    /// and used; asking for it then takes the answer already on its way.
    /// Pages are immutable apart from growing at the end, so a prefetched page
    /// is always a correct answer.
    async fn read_all_forward(
        &self,
        from: AllPosition,
        max_count: usize,
        filter: &AllFilter,
        long_poll: Option<Duration>,
    ) -> Result<AllSlice, StoreError> {
        let count = count_param(max_count);
        let key: PageKey = (from, count, filter.clone());
        let ahead = {
            let mut prefetched = self.inner.prefetched.lock().unwrap_or_else(|p| p.into_inner());
            prefetched.iter().position(|p| p.key == key).and_then(|i| prefetched.remove(i))
        };
        let body = match ahead {
            Some(p) => match p.task.await {
                Ok(Ok(body)) => body,
                // A failed prefetch is retried as an ordinary read.
                _ => self.fetch_all_body(from, count, filter, long_poll).await?,
            },
            None => self.fetch_all_body(from, count, filter, long_poll).await?,
        };
        if let Some(next) = peek_next_position(&body)
            && next != from
        {
            self.prefetch((next, count, filter.clone()));
        }
        let feed = parse_feed(&body)?;
        let next_position = match feed.previous.as_deref().and_then(link_position) {
            Some(pos) => pos.parse()?,
            None => from,
        };
        Ok(AllSlice { events: feed.events, next_position, head_of_stream: feed.head_of_stream })
    }

    async fn delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mode: DeleteMode,
    ) -> Result<(), StoreError> {
        let mut req = self.inner.http.delete(self.stream_url(stream)).header(
            self.h(header::ES_EXPECTED_VERSION, header::KURRENT_EXPECTED_VERSION),
            expected.to_header(),
        );
        if mode == DeleteMode::Hard {
            req = req.header(self.h(header::ES_HARD_DELETE, header::KURRENT_HARD_DELETE), "true");
        }
        let resp = self.send(req, None).await?;
        let status = resp.status();
        if status == StatusCode::BAD_REQUEST
            && let Some(current) = current_version(resp.headers())
        {
            return Err(StoreError::WrongExpectedVersion {
                stream: stream.to_owned(),
                expected,
                current,
            });
        }
        let body = resp.bytes().await.map_err(transport)?;
        check_common(status, &body, stream)?;
        if status.is_success() {
            Ok(())
        } else {
            Err(StoreError::Protocol(format!("delete of {stream:?} answered HTTP {status}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_are_split_off() {
        let (base, creds) = split_userinfo("http://admin:chan%40geit@127.0.0.1:2113/").unwrap();
        assert_eq!(base, "http://127.0.0.1:2113");
        assert_eq!(creds, Some(("admin".to_owned(), "chan@geit".to_owned())));
        let (base, creds) = split_userinfo("http://127.0.0.1:2113").unwrap();
        assert_eq!(base, "http://127.0.0.1:2113");
        assert_eq!(creds, None);
    }

    #[test]
    fn link_position_reads_forward_links_only() {
        let pos = "0000000000000AB00000000000000AB0";
        assert_eq!(
            link_position(&format!("http://h/streams/%24all/{pos}/forward/20?embed=body")),
            Some(pos)
        );
        assert_eq!(link_position("http://h/streams/%24all/head/backward/20"), None);
    }

    #[test]
    fn peek_next_position_reads_links_before_entries_only() {
        let pos = "000000000000001F000000000000001F";
        let feed = |head: bool| {
            format!(
                r#"{{"title":"All events","headOfStream":{head},"links":[{{"uri":"http://h/streams/%24all/{pos}/forward/20","relation":"previous"}}],"entries":[{{"broken":"#
            )
        };
        assert_eq!(peek_next_position(feed(false).as_bytes()), Some(pos.parse().unwrap()));
        assert_eq!(peek_next_position(feed(true).as_bytes()), None);
        let entries_first = format!(
            r#"{{"entries":[],"headOfStream":false,"links":[{{"uri":"http://h/streams/%24all/{pos}/forward/20","relation":"previous"}}]}}"#
        );
        assert_eq!(peek_next_position(entries_first.as_bytes()), None);
    }

    #[test]
    fn batch_body_is_the_documented_array() {
        let id = Uuid::from_u128(1);
        let events = [NewEvent::json(id, "Created", &serde_json::json!({"a": 1}))
            .unwrap()
            .with_metadata(&serde_json::json!({"m": true}))
            .unwrap()];
        let body: serde_json::Value =
            serde_json::from_slice(&batch_body(&events).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!([{"eventId": id.to_string(), "eventType": "Created",
                "data": {"a": 1}, "metadata": {"m": true}}])
        );
    }
}
