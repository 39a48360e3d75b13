//! The durable store behind the HTTP layer: one writer thread that
//! group-commits appends into the log file, and an in-memory index that
//! readers consult under a read lock.
//!
//! Invariants:
//! - Only the writer thread writes the file and mutates the index.
//! - The index (what readers see) only ever contains fsynced frames: an event
//!   is visible, and its append acknowledged, only after `fdatasync` returned.
//! - The writer decides expected-version and idempotency questions on its own
//!   state, which includes the frames of the group being written, so that two
//!   requests in one group are decided in order.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::log::{self, EventToWrite, Frame, TailDamage};
use crate::types::{AllPosition, ExpectedVersion};

/// Name of the log file inside the data directory.
pub const LOG_FILE_NAME: &str = "events.log";
/// Appends waiting for the writer; senders wait when it is full (back-pressure).
pub const MAX_QUEUED_WRITES: usize = 8192;
/// A group commit stops taking requests once its frames reach this size.
pub const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;
/// The most bytes one crash can leave unacknowledged at the end of the log:
/// one group plus one oversized request. Damage further from the end than
/// this cannot be a torn write; the store refuses to start rather than cut
/// acknowledged events.
pub const MAX_TORN_TAIL_BYTES: u64 = 3 * MAX_GROUP_BYTES as u64;
/// The log file is kept at least this far ahead of its last frame, filled
/// with zeros: an append then overwrites allocated blocks, and `fdatasync`
/// has no new file size to commit through the filesystem journal, which is
/// what makes it slow (and slower still while other processes write).
pub const PREALLOCATE_BYTES: u64 = 4 * 1024 * 1024;
/// Reads coalesce records closer than this into one `pread`.
const READ_COALESCE_GAP_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    #[error("cannot use the data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the data directory {0} is in use by another event store process")]
    Locked(PathBuf),
    #[error(
        "the event log {path} is damaged at offset {offset} ({damage:?}) with {after} bytes \
         after it: more than a crash can leave unacknowledged, so this is not a torn write; \
         refusing to start (restore from a backup, or truncate the file at {offset} by hand)"
    )]
    CorruptMiddle { path: PathBuf, offset: u64, after: u64, damage: TailDamage },
}

/// What a stream looks like to readers.
#[derive(Debug)]
struct StreamIndex {
    name: Arc<str>,
    /// Index into `Index::all` of each event, by event number.
    events: Vec<usize>,
    /// Soft delete: events below this number are hidden.
    truncate_before: u64,
    hard_deleted: bool,
}

impl StreamIndex {
    fn status(&self) -> StreamStatus {
        let len = self.events.len() as u64;
        if self.hard_deleted {
            StreamStatus::HardDeleted
        } else if len > self.truncate_before {
            StreamStatus::Live { first: self.truncate_before, last: len - 1 }
        } else if self.truncate_before > 0 {
            StreamStatus::SoftDeleted
        } else {
            StreamStatus::Missing
        }
    }
}

/// A stream's state for reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    Missing,
    SoftDeleted,
    HardDeleted,
    /// `first` is the first visible event number, `last` the last.
    Live {
        first: u64,
        last: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct AllEntry {
    /// Offset of the record; also the `$all` position.
    offset: u64,
    len: u32,
    stream: u32,
}

#[derive(Debug, Default)]
struct Index {
    by_name: HashMap<Arc<str>, u32>,
    streams: Vec<StreamIndex>,
    all: Vec<AllEntry>,
    /// Offset past the last durable frame.
    end: u64,
}

impl Index {
    fn stream_id(&mut self, name: &Arc<str>) -> u32 {
        if let Some(id) = self.by_name.get(name) {
            return *id;
        }
        let id = self.streams.len() as u32;
        self.streams.push(StreamIndex {
            name: name.clone(),
            events: Vec::new(),
            truncate_before: 0,
            hard_deleted: false,
        });
        self.by_name.insert(name.clone(), id);
        id
    }

    fn apply(&mut self, change: &Change) {
        match change {
            Change::Append { stream, first, records } => {
                let id = self.stream_id(stream);
                let s = &mut self.streams[id as usize];
                assert_eq!(s.events.len() as u64, *first, "event numbers of {stream:?} not dense");
                for &(offset, len) in records {
                    s.events.push(self.all.len());
                    self.all.push(AllEntry { offset, len, stream: id });
                }
            }
            Change::SoftDelete { stream, truncate_before } => {
                let id = self.stream_id(stream);
                self.streams[id as usize].truncate_before = *truncate_before;
            }
            Change::HardDelete { stream } => {
                let id = self.stream_id(stream);
                self.streams[id as usize].hard_deleted = true;
            }
        }
    }
}

/// An index change, applied once its frame is durable.
#[derive(Debug)]
enum Change {
    Append { stream: Arc<str>, first: u64, records: Vec<(u64, u32)> },
    SoftDelete { stream: Arc<str>, truncate_before: u64 },
    HardDelete { stream: Arc<str> },
}

/// The writer's view of a stream: what it needs to decide expected versions
/// and idempotency.
#[derive(Debug, Default)]
struct WriterStream {
    /// Number of events ever appended (the next event number).
    len: u64,
    truncate_before: u64,
    hard_deleted: bool,
    ids: HashMap<Uuid, u64>,
    id_by_number: Vec<Uuid>,
}

impl WriterStream {
    fn last(&self) -> Option<u64> {
        self.len.checked_sub(1)
    }
    fn exists(&self) -> bool {
        !self.hard_deleted && self.len > self.truncate_before
    }
    fn soft_deleted(&self) -> bool {
        !self.hard_deleted && self.truncate_before > 0 && self.len == self.truncate_before
    }
    fn apply_append(&mut self, ids: impl IntoIterator<Item = Uuid>) {
        for id in ids {
            self.ids.insert(id, self.len);
            self.id_by_number.push(id);
            self.len += 1;
        }
    }
}

/// A write the HTTP layer asks for.
#[derive(Debug)]
pub enum WriteOp {
    Append { stream: String, expected: ExpectedVersion, events: Vec<EventToWrite> },
    Delete { stream: String, expected: ExpectedVersion, hard: bool },
}

/// The writer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written (or an idempotent replay of) events starting at `first`.
    Appended {
        first: u64,
    },
    Deleted,
    /// `current`: the last event number, `None` if the stream never had one.
    WrongExpectedVersion {
        current: Option<u64>,
    },
    StreamDeleted,
}

enum WriterMsg {
    Write(WriteOp, oneshot::Sender<WriteOutcome>),
    Stop,
}

/// An event as read back, sharing the buffer it was read into.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub stream: Arc<str>,
    pub event_number: u64,
    pub event_id: Uuid,
    pub created_unix_nanos: i64,
    pub is_json: bool,
    /// Data and metadata are valid UTF-8.
    pub utf8: bool,
    pub event_type: String,
    pub data: Bytes,
    pub metadata: Bytes,
    /// `$all` position (the record's offset).
    pub offset: u64,
}

/// A page of `$all`.
#[derive(Debug)]
pub struct AllPage {
    /// In log order (oldest first).
    pub events: Vec<StoredEvent>,
    /// Where the next forward read starts.
    pub next: AllPosition,
    /// The page reached the end of the log.
    pub at_end: bool,
    /// Backward reads: the oldest event read is the first of the log.
    pub reached_start: bool,
}

/// The store: shared by the HTTP handlers.
#[derive(Debug)]
pub struct Store {
    index: RwLock<Index>,
    reader: File,
    writes: mpsc::Sender<WriterMsg>,
    durable: watch::Receiver<u64>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
}

impl std::fmt::Debug for WriterMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriterMsg::Write(op, _) => f.debug_tuple("Write").field(op).finish(),
            WriterMsg::Stop => f.write_str("Stop"),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreOpenError + '_ {
    move |source| StoreOpenError::Io { path: path.to_owned(), source }
}

pub fn position_of(offset: u64) -> AllPosition {
    AllPosition { commit: offset, prepare: offset }
}

impl Store {
    /// Opens (or creates) the log in `data_dir`, recovers the index, cuts a
    /// torn tail, and starts the writer thread.
    pub fn open(data_dir: &Path) -> Result<Arc<Store>, StoreOpenError> {
        Self::open_with(data_dir, MAX_TORN_TAIL_BYTES)
    }

    /// [`Store::open`] with the largest damaged tail it may cut.
    fn open_with(data_dir: &Path, max_torn_tail: u64) -> Result<Arc<Store>, StoreOpenError> {
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let path = data_dir.join(LOG_FILE_NAME);
        log::create_if_missing(&path).map_err(io_err(&path))?;
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreOpenError::Locked(data_dir.to_owned()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }

        let mut index = Index::default();
        let mut writer_state: HashMap<Arc<str>, WriterStream> = HashMap::new();
        let mut events = 0u64;
        let (scan, damage) = log::scan(&file, |_, frame| {
            let change = match frame {
                Frame::Append { stream, records } => {
                    let stream: Arc<str> = Arc::from(stream);
                    let ws = writer_state.entry(stream.clone()).or_default();
                    let first = records.first().map_or(ws.len, |r| r.2.event_number);
                    ws.apply_append(records.iter().map(|r| r.2.event_id));
                    events += records.len() as u64;
                    Change::Append {
                        stream,
                        first,
                        records: records.iter().map(|r| (r.0, r.1)).collect(),
                    }
                }
                Frame::SoftDelete { stream, truncate_before } => {
                    let stream: Arc<str> = Arc::from(stream);
                    writer_state.entry(stream.clone()).or_default().truncate_before =
                        truncate_before;
                    Change::SoftDelete { stream, truncate_before }
                }
                Frame::HardDelete { stream } => {
                    let stream: Arc<str> = Arc::from(stream);
                    writer_state.entry(stream.clone()).or_default().hard_deleted = true;
                    Change::HardDelete { stream }
                }
            };
            index.apply(&change);
        })
        .map_err(io_err(&path))?;
        let mut allocated = scan.file_len;
        if let Some(damage) = damage {
            let after = scan.dirty_end - scan.end;
            if after > max_torn_tail {
                return Err(StoreOpenError::CorruptMiddle {
                    path,
                    offset: scan.end,
                    after,
                    damage,
                });
            }
            tracing::warn!(
                path = %path.display(),
                offset = scan.end,
                dropped_bytes = after,
                damage = ?damage,
                "event log has a torn or corrupted tail (an interrupted, unacknowledged write); \
                 truncating it"
            );
            file.set_len(scan.end).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
            allocated = scan.end;
        }
        index.end = scan.end;
        tracing::info!(
            path = %path.display(),
            events,
            streams = index.streams.len(),
            bytes = scan.end,
            "event log opened"
        );

        let reader = File::open(&path).map_err(io_err(&path))?;
        let (tx, rx) = mpsc::channel(MAX_QUEUED_WRITES);
        let (durable_tx, durable_rx) = watch::channel(scan.end);
        let store = Arc::new(Store {
            index: RwLock::new(index),
            reader,
            writes: tx,
            durable: durable_rx,
            writer: std::sync::Mutex::new(None),
            path: path.clone(),
        });
        let writer = Writer {
            file,
            end: scan.end,
            allocated,
            streams: writer_state,
            store: Arc::downgrade(&store),
            durable: durable_tx,
            path,
        };
        let handle = std::thread::Builder::new()
            .name("eventlog-writer".to_owned())
            .spawn(move || writer.run(rx))
            .map_err(io_err(data_dir))?;
        *store.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(store)
    }

    /// Queues a write and waits until it is durable (or refused).
    pub async fn write(&self, op: WriteOp) -> Result<WriteOutcome, StoreStopped> {
        let (tx, rx) = oneshot::channel();
        self.writes.send(WriterMsg::Write(op, tx)).await.map_err(|_| StoreStopped)?;
        rx.await.map_err(|_| StoreStopped)
    }

    /// Stops the writer after the queued writes and waits for it.
    pub async fn stop(&self) {
        let _ = self.writes.send(WriterMsg::Stop).await;
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// Changes whenever new frames become durable (long polls wait on it).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stream_status(&self, stream: &str) -> StreamStatus {
        let index = self.read_index();
        match index.by_name.get(stream) {
            Some(&id) => index.streams[id as usize].status(),
            None => StreamStatus::Missing,
        }
    }

    /// Events `from..=to` of a live stream (clamped to what is visible), in
    /// ascending order, with the total read kept under `max_bytes` (at least
    /// one event): the oldest ones are kept, or the newest with `keep_newest`
    /// (backward pages).
    pub fn read_stream_range(
        &self,
        stream: &str,
        from: u64,
        to: u64,
        max_bytes: usize,
        keep_newest: bool,
    ) -> std::io::Result<Vec<StoredEvent>> {
        let (name, entries) = {
            let index = self.read_index();
            let Some(&id) = index.by_name.get(stream) else { return Ok(Vec::new()) };
            let s = &index.streams[id as usize];
            let StreamStatus::Live { first, last } = s.status() else { return Ok(Vec::new()) };
            let (from, to) = (from.max(first), to.min(last));
            if from > to {
                return Ok(Vec::new());
            }
            let mut entries = Vec::with_capacity((to - from + 1) as usize);
            let mut bytes = 0usize;
            let numbers: Box<dyn Iterator<Item = u64>> =
                if keep_newest { Box::new((from..=to).rev()) } else { Box::new(from..=to) };
            for n in numbers {
                let e = index.all[s.events[n as usize]];
                bytes += e.len as usize;
                if bytes > max_bytes && !entries.is_empty() {
                    break;
                }
                entries.push(e);
            }
            if keep_newest {
                entries.reverse();
            }
            (s.name.clone(), entries)
        };
        let names = [name];
        self.read_entries(&entries, |_| &names[0])
    }

    /// `$all` forward from `from` (inclusive): up to `count` events whose
    /// stream matches `filter`, scanning at most `max_scan` entries.
    pub fn read_all_forward(
        &self,
        from: AllPosition,
        count: usize,
        max_bytes: usize,
        max_scan: usize,
        filter: &dyn Fn(&str) -> bool,
    ) -> std::io::Result<AllPage> {
        let (entries, names, next, at_end) = {
            let index = self.read_index();
            let start = index.all.partition_point(|e| position_of(e.offset) < from);
            let mut entries = Vec::new();
            let mut bytes = 0usize;
            let mut i = start;
            while i < index.all.len() && entries.len() < count && i - start < max_scan {
                let e = index.all[i];
                if filter(&index.streams[e.stream as usize].name) {
                    if bytes + e.len as usize > max_bytes && !entries.is_empty() {
                        break;
                    }
                    bytes += e.len as usize;
                    entries.push(e);
                }
                i += 1;
            }
            let at_end = i == index.all.len();
            let next = match index.all.get(i) {
                Some(e) => position_of(e.offset),
                None => position_of(index.end).max(from),
            };
            let names: Vec<Arc<str>> =
                entries.iter().map(|e| index.streams[e.stream as usize].name.clone()).collect();
            (entries, names, next, at_end)
        };
        let events = self.read_entries(&entries, |i| &names[i])?;
        Ok(AllPage { events, next, at_end, reached_start: false })
    }

    /// `$all` backward from `from` (exclusive; `None` = the end).
    pub fn read_all_backward(
        &self,
        from: Option<AllPosition>,
        count: usize,
        max_bytes: usize,
        max_scan: usize,
        filter: &dyn Fn(&str) -> bool,
    ) -> std::io::Result<AllPage> {
        let (entries, names, next, reached_start) = {
            let index = self.read_index();
            let end = match from {
                Some(from) => index.all.partition_point(|e| position_of(e.offset) < from),
                None => index.all.len(),
            };
            let mut entries = Vec::new();
            let mut bytes = 0usize;
            let mut i = end;
            while i > 0 && entries.len() < count && end - i < max_scan {
                let e = index.all[i - 1];
                if filter(&index.streams[e.stream as usize].name) {
                    if bytes + e.len as usize > max_bytes && !entries.is_empty() {
                        break;
                    }
                    bytes += e.len as usize;
                    entries.push(e);
                }
                i -= 1;
            }
            entries.reverse();
            let next = match index.all.get(end) {
                Some(e) => position_of(e.offset),
                None => position_of(index.end),
            };
            let names: Vec<Arc<str>> =
                entries.iter().map(|e| index.streams[e.stream as usize].name.clone()).collect();
            (entries, names, next, i == 0)
        };
        let events = self.read_entries(&entries, |i| &names[i])?;
        Ok(AllPage { events, next, at_end: from.is_none(), reached_start })
    }

    /// Reads and decodes records, coalescing neighbours into one `pread`.
    /// `entries` must be in ascending offset order.
    fn read_entries<'n>(
        &self,
        entries: &[AllEntry],
        name: impl Fn(usize) -> &'n Arc<str>,
    ) -> std::io::Result<Vec<StoredEvent>> {
        let mut events = Vec::with_capacity(entries.len());
        let mut i = 0;
        while i < entries.len() {
            // One run: records whose gaps are small.
            let start = entries[i].offset;
            let mut j = i + 1;
            let mut end = start + u64::from(entries[i].len);
            while j < entries.len()
                && entries[j].offset >= end
                && entries[j].offset - end <= READ_COALESCE_GAP_BYTES
                && entries[j].offset + u64::from(entries[j].len) - start <= 16 * 1024 * 1024
            {
                end = entries[j].offset + u64::from(entries[j].len);
                j += 1;
            }
            let mut buf = BytesMut::zeroed((end - start) as usize);
            self.reader.read_exact_at(&mut buf, start)?;
            let buf = buf.freeze();
            for (k, e) in entries[i..j].iter().enumerate() {
                let at = (e.offset - start) as usize;
                let raw = buf.slice(at..at + e.len as usize);
                let r = log::decode_record(&raw).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "undecodable record at offset {} of {}",
                            e.offset,
                            self.path.display()
                        ),
                    )
                })?;
                events.push(StoredEvent {
                    stream: name(i + k).clone(),
                    event_number: r.event_number,
                    event_id: r.event_id,
                    created_unix_nanos: r.created_unix_nanos,
                    is_json: r.is_json,
                    utf8: r.utf8,
                    event_type: r.event_type.to_owned(),
                    data: raw.slice_ref(r.data),
                    metadata: raw.slice_ref(r.metadata),
                    offset: e.offset,
                });
            }
            i = j;
        }
        Ok(events)
    }
}

/// The writer thread has stopped (the server is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the event store is shutting down")]
pub struct StoreStopped;

struct Writer {
    file: File,
    /// Offset past the last frame.
    end: u64,
    /// Length of the file: zeros from `end` to here.
    allocated: u64,
    streams: HashMap<Arc<str>, WriterStream>,
    store: std::sync::Weak<Store>,
    durable: watch::Sender<u64>,
    path: PathBuf,
}

/// What the writer decided for one request of a group.
enum Decision {
    Write { first: u64 },
    Reply(WriteOutcome),
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriterMsg>) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut group = Vec::new();
        let mut stopping = false;
        while !stopping {
            let Some(first) = rx.blocking_recv() else { break };
            let mut next = Some(first);
            buf.clear();
            let mut changes = Vec::new();
            // Take whatever is queued: that is the group commit.
            while let Some(msg) = next.take() {
                match msg {
                    WriterMsg::Stop => stopping = true,
                    WriterMsg::Write(op, reply) => {
                        let outcome = self.prepare(op, &mut buf, &mut changes);
                        group.push((reply, outcome));
                    }
                }
                if !stopping && buf.len() < MAX_GROUP_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if !buf.is_empty() {
                let written = self
                    .file
                    .write_all_at(&buf, self.end)
                    .and_then(|()| self.preallocate(self.end + buf.len() as u64))
                    .and_then(|()| self.file.sync_data());
                if let Err(error) = written {
                    // After a failed fsync the page cache cannot be trusted
                    // (the kernel may have dropped the dirty pages): stop hard
                    // rather than acknowledge or serve anything more.
                    tracing::error!(%error, path = %self.path.display(),
                        "event log write or fsync failed; aborting");
                    std::process::abort();
                }
                self.end += buf.len() as u64;
                if let Some(store) = self.store.upgrade() {
                    let mut index = store.index.write().unwrap_or_else(|p| p.into_inner());
                    for change in &changes {
                        index.apply(change);
                    }
                    index.end = self.end;
                }
                self.durable.send_replace(self.end);
            }
            for (reply, outcome) in group.drain(..) {
                let _ = reply.send(outcome);
            }
        }
    }

    /// Keeps zeros at least [`PREALLOCATE_BYTES`] beyond `need`, in whole
    /// chunks; made durable by the `fdatasync` that follows.
    fn preallocate(&mut self, need: u64) -> std::io::Result<()> {
        if need + PREALLOCATE_BYTES / 2 <= self.allocated {
            return Ok(());
        }
        let to = (need + PREALLOCATE_BYTES).next_multiple_of(PREALLOCATE_BYTES);
        log::write_zeros(&self.file, need.max(self.allocated), to)?;
        self.allocated = to;
        Ok(())
    }

    /// Decides one request against the writer state (which already includes
    /// the earlier requests of this group), encodes its frame into `buf` and
    /// records the index change.
    fn prepare(
        &mut self,
        op: WriteOp,
        buf: &mut Vec<u8>,
        changes: &mut Vec<Change>,
    ) -> WriteOutcome {
        match op {
            WriteOp::Append { stream, expected, events } => {
                let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                let decision = match self.streams.get(stream.as_str()) {
                    Some(s) => decide_append(s, expected, &ids),
                    None => decide_append(&WriterStream::default(), expected, &ids),
                };
                match decision {
                    Decision::Reply(outcome) => outcome,
                    Decision::Write { first } => {
                        let name = self.name(&stream);
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                        let records = log::encode_append(buf, self.end, &name, first, now, &events);
                        let s = self.streams.entry(name.clone()).or_default();
                        s.apply_append(ids);
                        changes.push(Change::Append { stream: name, first, records });
                        WriteOutcome::Appended { first }
                    }
                }
            }
            WriteOp::Delete { stream, expected, hard } => {
                let default = WriterStream::default();
                let s = self.streams.get(stream.as_str()).unwrap_or(&default);
                if s.hard_deleted {
                    return WriteOutcome::StreamDeleted;
                }
                let ok = match expected {
                    ExpectedVersion::Any => true,
                    ExpectedVersion::NoStream => !s.exists(),
                    ExpectedVersion::StreamExists => s.exists(),
                    ExpectedVersion::Exact(n) => s.last() == Some(n),
                };
                if !ok {
                    if expected == ExpectedVersion::StreamExists && s.soft_deleted() {
                        return WriteOutcome::StreamDeleted;
                    }
                    return WriteOutcome::WrongExpectedVersion { current: s.last() };
                }
                let name = self.name(&stream);
                if hard {
                    log::encode_hard_delete(buf, &name);
                    self.streams.entry(name.clone()).or_default().hard_deleted = true;
                    changes.push(Change::HardDelete { stream: name });
                    WriteOutcome::Deleted
                } else if s.soft_deleted() {
                    WriteOutcome::Deleted
                } else if !s.exists() {
                    // Soft delete of a stream that never existed (reference §5).
                    WriteOutcome::WrongExpectedVersion { current: None }
                } else {
                    let truncate_before = s.len;
                    log::encode_soft_delete(buf, &name, truncate_before);
                    self.streams.entry(name.clone()).or_default().truncate_before = truncate_before;
                    changes.push(Change::SoftDelete { stream: name, truncate_before });
                    WriteOutcome::Deleted
                }
            }
        }
    }

    /// The shared name of a stream (one allocation per stream, not per event).
    fn name(&self, stream: &str) -> Arc<str> {
        match self.streams.get_key_value(stream) {
            Some((name, _)) => name.clone(),
            None => Arc::from(stream),
        }
    }
}

/// The expected-version table (reference §3.3) and the idempotency table (§3.5).
fn decide_append(s: &WriterStream, expected: ExpectedVersion, ids: &[Uuid]) -> Decision {
    let wev = Decision::Reply(WriteOutcome::WrongExpectedVersion { current: s.last() });
    if s.hard_deleted {
        return Decision::Reply(WriteOutcome::StreamDeleted);
    }
    match expected {
        ExpectedVersion::Any => weak(s, ids),
        ExpectedVersion::StreamExists => {
            if s.soft_deleted() {
                Decision::Reply(WriteOutcome::StreamDeleted)
            } else if !s.exists() {
                wev
            } else {
                weak(s, ids)
            }
        }
        ExpectedVersion::NoStream => {
            if s.len == 0 || s.soft_deleted() {
                Decision::Write { first: s.len }
            } else {
                // "Before the first event": for a recreated stream that is its
                // first visible event.
                strong(s, s.truncate_before, ids)
            }
        }
        ExpectedVersion::Exact(n) => match s.last() {
            Some(last) if n == last => Decision::Write { first: s.len },
            Some(last) if n < last => strong(s, n + 1, ids),
            _ => wev,
        },
    }
}

/// Weak idempotency (`-2`, `-4`): by event id, anywhere in the stream.
fn weak(s: &WriterStream, ids: &[Uuid]) -> Decision {
    let Some(&first) = ids.first().and_then(|id| s.ids.get(id)) else {
        return Decision::Write { first: s.len };
    };
    if ids.iter().all(|id| s.ids.contains_key(id)) {
        Decision::Reply(WriteOutcome::Appended { first })
    } else {
        Decision::Reply(WriteOutcome::WrongExpectedVersion { current: s.last() })
    }
}

/// Strong idempotency (`N` below the current version): the batch must match
/// the events from `start` on, id by id.
fn strong(s: &WriterStream, start: u64, ids: &[Uuid]) -> Decision {
    let matches = ids
        .iter()
        .enumerate()
        .all(|(i, id)| s.id_by_number.get((start + i as u64) as usize) == Some(id));
    if matches {
        Decision::Reply(WriteOutcome::Appended { first: start })
    } else {
        Decision::Reply(WriteOutcome::WrongExpectedVersion { current: s.last() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u8) -> EventToWrite {
        EventToWrite {
            event_id: Uuid::from_u128(u128::from(n) + 1),
            event_type: "E".to_owned(),
            data: Bytes::from(format!("{{\"n\":{n}}}")),
            metadata: Bytes::new(),
            is_json: true,
        }
    }

    /// A log of three one-event frames whose middle frame has a bad checksum.
    fn damaged_in_the_middle(dir: &Path) {
        let mut bytes = log::MAGIC.to_vec();
        for n in 0..3u8 {
            let base = bytes.len() as u64;
            let mut frame = Vec::new();
            log::encode_append(&mut frame, base, "s", u64::from(n), 0, &[event(n)]);
            if n == 1 {
                let last = frame.len() - 6;
                frame[last] ^= 0xFF;
            }
            bytes.extend_from_slice(&frame);
        }
        std::fs::write(dir.join(LOG_FILE_NAME), bytes).unwrap();
    }

    #[test]
    fn damage_farther_from_the_end_than_a_torn_write_can_be_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        damaged_in_the_middle(dir.path());
        let err = Store::open_with(dir.path(), 16).unwrap_err();
        assert!(matches!(err, StoreOpenError::CorruptMiddle { .. }), "{err}");
        assert!(err.to_string().contains("refusing to start"));
        // The file is left as it was for the operator.
        let len = std::fs::metadata(dir.path().join(LOG_FILE_NAME)).unwrap().len();
        assert!(len > 100);
    }

    #[test]
    fn damage_within_the_last_group_is_cut_and_the_rest_served() {
        let dir = tempfile::tempdir().unwrap();
        damaged_in_the_middle(dir.path());
        let store = Store::open_with(dir.path(), MAX_TORN_TAIL_BYTES).unwrap();
        assert_eq!(store.stream_status("s"), StreamStatus::Live { first: 0, last: 0 });
        let events = store.read_stream_range("s", 0, 10, MAX_GROUP_BYTES, false).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data.as_ref(), b"{\"n\":0}");
    }
}
