//! The on-disk log: one append-only file of checksummed frames.
//!
//! ```text
//! file    := MAGIC frame*
//! frame   := len:u32le crc32:u32le payload[len]          (crc32 of payload)
//! payload := 1 stream count:u32le record*                (an append: one request, atomic)
//!          | 2 stream truncate_before:u64le              (soft delete)
//!          | 3 stream                                    (hard delete / tombstone)
//! stream  := len:u16le utf8[len]
//! record  := event_number:u64le event_id:[16] created_unix_nanos:i64le flags:u8
//!            type_len:u16le type[type_len] data_len:u32le data meta_len:u32le meta
//! ```
//!
//! The file is preallocated with zeros ahead of the last frame (see
//! `store::PREALLOCATE_BYTES`), so that `fdatasync` after an append only has
//! data to flush, not a new file size through the filesystem journal. A frame
//! header of zeros, followed by nothing but zeros, is the clean end of the log.
//!
//! A frame is the unit of atomicity: one append request, however many events,
//! is one frame, so a torn write can only ever lose whole requests, and only
//! unacknowledged ones (the writer acknowledges after `fdatasync`). An event's
//! `$all` position is the file offset of its record.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use uuid::Uuid;

/// First bytes of every log file; the last byte is the format version.
pub const MAGIC: &[u8; 8] = b"SBEVLOG\x01";
/// `len` + `crc32`.
pub const FRAME_HEADER_BYTES: u64 = 8;
/// Bytes of a record besides its type, data and metadata.
pub const RECORD_FIXED_BYTES: usize = 8 + 16 + 8 + 1 + 2 + 4 + 4;
/// No frame is larger: the request body limit keeps real frames far below.
pub const MAX_FRAME_BYTES: u64 = 256 * 1024 * 1024;

const KIND_APPEND: u8 = 1;
const KIND_SOFT_DELETE: u8 = 2;
const KIND_HARD_DELETE: u8 = 3;
const FLAG_JSON: u8 = 1;
/// Data and metadata are valid UTF-8 (checked once, at write time), so reads
/// can put them in JSON text without checking again.
const FLAG_UTF8: u8 = 2;

/// An event to encode.
#[derive(Debug, Clone)]
pub struct EventToWrite {
    pub event_id: Uuid,
    pub event_type: String,
    pub data: bytes::Bytes,
    pub metadata: bytes::Bytes,
    pub is_json: bool,
}

impl EventToWrite {
    pub fn encoded_len(&self) -> usize {
        RECORD_FIXED_BYTES + self.event_type.len() + self.data.len() + self.metadata.len()
    }
}

/// An event decoded from a record, borrowing the record bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub event_number: u64,
    pub event_id: Uuid,
    pub created_unix_nanos: i64,
    pub is_json: bool,
    /// Data and metadata are valid UTF-8.
    pub utf8: bool,
    pub event_type: &'a str,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
}

/// A decoded frame; appends list `(absolute record offset, record length)`.
#[derive(Debug)]
pub enum Frame<'a> {
    Append { stream: &'a str, records: Vec<(u64, u32, RecordRef<'a>)> },
    SoftDelete { stream: &'a str, truncate_before: u64 },
    HardDelete { stream: &'a str },
}

/// Appends one frame built by `fill` to `buf`; returns the frame's start.
fn frame(buf: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER_BYTES as usize]);
    fill(buf);
    let payload = &buf[start + FRAME_HEADER_BYTES as usize..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    start
}

fn put_stream(buf: &mut Vec<u8>, stream: &str) {
    // Stream names are limited far below u16::MAX by the HTTP layer.
    let len = u16::try_from(stream.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&stream.as_bytes()[..usize::from(len)]);
}

/// Encodes an append frame at the end of `buf`, which starts at file offset
/// `base` (a group commit holds several frames); returns each
/// record's absolute offset and length.
pub fn encode_append(
    buf: &mut Vec<u8>,
    base: u64,
    stream: &str,
    first_event_number: u64,
    created_unix_nanos: i64,
    events: &[EventToWrite],
) -> Vec<(u64, u32)> {
    let mut records = Vec::with_capacity(events.len());
    frame(buf, |buf| {
        buf.push(KIND_APPEND);
        put_stream(buf, stream);
        buf.extend_from_slice(&(events.len() as u32).to_le_bytes());
        for (i, e) in events.iter().enumerate() {
            let start = buf.len();
            buf.extend_from_slice(&(first_event_number + i as u64).to_le_bytes());
            buf.extend_from_slice(e.event_id.as_bytes());
            buf.extend_from_slice(&created_unix_nanos.to_le_bytes());
            let utf8 =
                std::str::from_utf8(&e.data).is_ok() && std::str::from_utf8(&e.metadata).is_ok();
            buf.push(if e.is_json { FLAG_JSON } else { 0 } | if utf8 { FLAG_UTF8 } else { 0 });
            buf.extend_from_slice(&(e.event_type.len() as u16).to_le_bytes());
            buf.extend_from_slice(e.event_type.as_bytes());
            buf.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
            buf.extend_from_slice(&e.data);
            buf.extend_from_slice(&(e.metadata.len() as u32).to_le_bytes());
            buf.extend_from_slice(&e.metadata);
            records.push((base + start as u64, (buf.len() - start) as u32));
        }
    });
    records
}

pub fn encode_soft_delete(buf: &mut Vec<u8>, stream: &str, truncate_before: u64) {
    frame(buf, |buf| {
        buf.push(KIND_SOFT_DELETE);
        put_stream(buf, stream);
        buf.extend_from_slice(&truncate_before.to_le_bytes());
    });
}

pub fn encode_hard_delete(buf: &mut Vec<u8>, stream: &str) {
    frame(buf, |buf| {
        buf.push(KIND_HARD_DELETE);
        put_stream(buf, stream);
    });
}

/// A cursor over a byte slice that fails instead of panicking.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).and_then(|b| b.try_into().ok()).map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }
    fn str(&mut self, n: usize) -> Option<&'a str> {
        std::str::from_utf8(self.take(n)?).ok()
    }
}

fn record_at<'a>(c: &mut Cursor<'a>) -> Option<RecordRef<'a>> {
    let event_number = c.u64()?;
    let event_id = Uuid::from_slice(c.take(16)?).ok()?;
    let created_unix_nanos = i64::from_le_bytes(c.take(8)?.try_into().ok()?);
    let flags = c.u8()?;
    let is_json = flags & FLAG_JSON != 0;
    let utf8 = flags & FLAG_UTF8 != 0;
    let type_len = usize::from(c.u16()?);
    let event_type = c.str(type_len)?;
    let data_len = c.u32()? as usize;
    let data = c.take(data_len)?;
    let meta_len = c.u32()? as usize;
    let metadata = c.take(meta_len)?;
    Some(RecordRef {
        event_number,
        event_id,
        created_unix_nanos,
        is_json,
        utf8,
        event_type,
        data,
        metadata,
    })
}

/// Decodes one record (as read back at its offset).
pub fn decode_record(bytes: &[u8]) -> Option<RecordRef<'_>> {
    record_at(&mut Cursor { bytes, at: 0 })
}

/// Decodes a frame payload that starts at file offset `payload_offset`.
pub fn decode_payload(payload: &[u8], payload_offset: u64) -> Option<Frame<'_>> {
    let mut c = Cursor { bytes: payload, at: 0 };
    let kind = c.u8()?;
    let stream_len = usize::from(c.u16()?);
    let stream = c.str(stream_len)?;
    let frame = match kind {
        KIND_APPEND => {
            let count = c.u32()? as usize;
            let mut records = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let start = c.at;
                let record = record_at(&mut c)?;
                records.push((payload_offset + start as u64, (c.at - start) as u32, record));
            }
            Frame::Append { stream, records }
        }
        KIND_SOFT_DELETE => Frame::SoftDelete { stream, truncate_before: c.u64()? },
        KIND_HARD_DELETE => Frame::HardDelete { stream },
        _ => return None,
    };
    // Trailing bytes inside a checksummed frame would be a bug of ours.
    (c.at == payload.len()).then_some(frame)
}

/// What a scan of the log found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// Offset just past the last intact frame: where the next frame goes.
    pub end: u64,
    /// Length of the file as found (preallocated zeros included).
    pub file_len: u64,
    /// Offset past the last non-zero byte after `end`: with damage, what a
    /// cut at `end` would drop (`end` when only zeros follow).
    pub dirty_end: u64,
}

/// Why the scan stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailDamage {
    ShortHeader,
    LengthBeyondEnd { len: u64 },
    ChecksumMismatch,
    Undecodable,
}

/// Reads every intact frame of `file` in order, calling `visit(frame_offset, frame)`.
/// Stops at the first damaged frame (returned with the scan end).
pub fn scan(
    file: &File,
    mut visit: impl FnMut(u64, Frame<'_>),
) -> io::Result<(ScanEnd, Option<TailDamage>)> {
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a Switchboard event log"));
    }
    let mut at = MAGIC.len() as u64;
    let mut payload = Vec::new();
    // Stops the scan at `at`: a clean end when only zeros follow.
    let stop = |at: u64, damage: TailDamage| -> io::Result<(ScanEnd, Option<TailDamage>)> {
        let dirty_end = last_nonzero(file, at, file_len)?.map_or(at, |last| last + 1);
        let damage = (dirty_end > at).then_some(damage);
        Ok((ScanEnd { end: at, file_len, dirty_end }, damage))
    };
    loop {
        if at == file_len {
            return Ok((ScanEnd { end: at, file_len, dirty_end: at }, None));
        }
        if file_len - at < FRAME_HEADER_BYTES {
            return stop(at, TailDamage::ShortHeader);
        }
        let mut header = [0u8; FRAME_HEADER_BYTES as usize];
        reader.read_exact(&mut header)?;
        let len = u64::from(u32::from_le_bytes([header[0], header[1], header[2], header[3]]));
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let payload_at = at + FRAME_HEADER_BYTES;
        if len == 0 || len > MAX_FRAME_BYTES || len > file_len - payload_at {
            return stop(at, TailDamage::LengthBeyondEnd { len });
        }
        payload.resize(len as usize, 0);
        reader.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            return stop(at, TailDamage::ChecksumMismatch);
        }
        match decode_payload(&payload, payload_at) {
            Some(frame) => visit(at, frame),
            None => return stop(at, TailDamage::Undecodable),
        }
        at = payload_at + len;
    }
}

/// The offset of the last non-zero byte in `from..len`, reading backwards.
fn last_nonzero(file: &File, from: u64, len: u64) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = vec![0u8; 1 << 20];
    let mut end = len;
    while end > from {
        let start = end.saturating_sub(buf.len() as u64).max(from);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
            return Ok(Some(start + i as u64));
        }
        end = start;
    }
    Ok(None)
}

/// Writes zeros over `from..to` (preallocation).
pub fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Creates the log file with its magic if it does not exist (or is shorter
/// than the magic, i.e. its creation was cut short), and syncs the directory.
pub fn create_if_missing(path: &Path) -> io::Result<()> {
    let len = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    if len >= MAGIC.len() as u64 {
        return Ok(());
    }
    let file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(path)?;
    std::os::unix::fs::FileExt::write_all_at(&file, MAGIC, 0)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u8) -> EventToWrite {
        EventToWrite {
            event_id: Uuid::from_u128(u128::from(n) + 1),
            event_type: format!("Type{n}"),
            data: bytes::Bytes::from(format!("{{\"n\":{n}}}")),
            metadata: bytes::Bytes::new(),
            is_json: true,
        }
    }

    fn log_file(frames: &[u8], tail: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(frames);
        bytes.extend_from_slice(tail);
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        (dir, file)
    }

    #[test]
    fn scan_treats_a_zero_tail_as_the_clean_end_and_anything_else_as_damage() {
        let mut frames = Vec::new();
        encode_append(&mut frames, 8, "s", 0, 1, &[event(0)]);
        let end = 8 + frames.len() as u64;
        let count = |file: &File| {
            let mut n = 0;
            let r = scan(file, |_, _| n += 1).unwrap();
            (n, r)
        };
        let (_d, file) = log_file(&frames, &[0; 4096]);
        assert_eq!(
            count(&file),
            (1, (ScanEnd { end, file_len: end + 4096, dirty_end: end }, None))
        );
        let (_d, file) = log_file(&frames, &[0, 0, 0]);
        assert_eq!(count(&file).1.1, None, "a short run of zeros is a clean end too");
        let mut tail = vec![0; 4096];
        tail[100] = 9;
        let (_d, file) = log_file(&frames, &tail);
        let (n, (scan_end, damage)) = count(&file);
        assert_eq!(n, 1);
        assert_eq!(scan_end.dirty_end, end + 101);
        assert_eq!(damage, Some(TailDamage::LengthBeyondEnd { len: 0 }));
        let mut torn = frames.clone();
        let last = torn.len() - 1;
        torn[last - 3] ^= 0xFF;
        let (_d, file) = log_file(&torn, &[0; 64]);
        assert_eq!(count(&file).1.1, Some(TailDamage::ChecksumMismatch));
    }

    #[test]
    fn frames_round_trip_with_record_offsets() {
        let mut buf = Vec::new();
        let records = encode_append(&mut buf, 8, "s-1", 5, 42, &[event(0), event(1)]);
        encode_soft_delete(&mut buf, "s-1", 7);
        encode_hard_delete(&mut buf, "s-2");
        let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
        let Some(Frame::Append { stream, records: decoded }) = decode_payload(&buf[8..8 + len], 16)
        else {
            panic!("not an append");
        };
        assert_eq!(stream, "s-1");
        assert_eq!(decoded.len(), 2);
        for ((offset, rlen), (doffset, dlen, rec)) in records.iter().zip(&decoded) {
            assert_eq!((offset, rlen), (doffset, dlen));
            let start = (*offset - 8) as usize;
            let again = decode_record(&buf[start..start + *rlen as usize]).unwrap();
            assert_eq!(again.event_number, rec.event_number);
            assert_eq!(again.data, rec.data);
        }
        assert_eq!(decoded[1].2.event_number, 6);
        assert_eq!(decoded[1].2.event_type, "Type1");
    }
}
