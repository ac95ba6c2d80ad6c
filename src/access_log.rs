//! The access log: one line per request, formatted by hand and written off the request path.
//!
//! An access line is the one piece of logging every request pays for, so it
//! does not go through `tracing`'s formatting machinery. Each worker thread
//! appends its lines to its own buffer (a mutex only that thread and the
//! writer ever take, so it is uncontended); a writer thread swaps the buffers
//! out every [`FLUSH_EVERY`] and writes them to stdout or to
//! `log.access_log_path`. nginx's `access_log ... buffer=64k` is the model.
//!
//! Under overload the writer may fall behind: a thread's buffer then stops
//! growing at [`MAX_PENDING_BYTES`] and further lines are dropped and counted
//! (`pollgate_access_log_dropped_total`), never blocking a request. Lines are
//! flushed on shutdown, and the file is reopened on request (SIGHUP, for
//! logrotate).
//!
//! Lines carry the path only, never the query (it may hold identifiers users
//! consider private) and never a header.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;

use crate::config::LogFormat;

/// How often the writer drains the threads' buffers: lines reach the file within this.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// A thread's unwritten lines are capped here; past it, lines are dropped (and counted).
pub const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;

/// The longest [`AccessLog::reopen`] waits for the writer.
pub const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// A buffer starts this large, so a busy thread's lines rarely reallocate.
const INITIAL_BUFFER: usize = 64 * 1024;

/// One request, as the access line tells it.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub peer: Option<SocketAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// How it was answered: the `result` label (`hit`, `miss`, `passthrough`, …).
    pub result: &'a str,
    /// The cacheable route's name, or `passthrough`.
    pub route: &'a str,
    pub latency: Duration,
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

/// A thread's pending lines.
type Pending = Arc<Mutex<Vec<u8>>>;

struct Shared {
    format: LogFormat,
    /// Every thread's buffer, for the writer to drain.
    buffers: Mutex<Vec<Pending>>,
    /// `pollgate_access_log_dropped_total`.
    dropped: Counter,
    /// Writer state the other threads ask for and wait on.
    control: Mutex<Control>,
    wake: Condvar,
    /// Signalled by the writer after each cycle (a reopen waits on it).
    cycled: Condvar,
}

#[derive(Default)]
struct Control {
    stop: bool,
    /// Reopens asked for, and done, so far.
    reopen_asked: u64,
    reopen_done: u64,
}

/// The access log of one gateway. Cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

thread_local! {
    /// This thread's buffer, registered with the log that created it.
    static LOCAL: RefCell<Option<(usize, Pending)>> = const { RefCell::new(None) };
    /// The timestamp text of the current second (`2026-11-30T10:28:30.`), made once a second.
    static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
}

impl AccessLog {
    /// Start the writer thread. Fails when the file cannot be opened.
    pub fn start(sink: Sink, format: LogFormat, dropped: Counter) -> io::Result<AccessLog> {
        let out = Output::open(&sink)?;
        let shared = Arc::new(Shared {
            format,
            buffers: Mutex::new(Vec::new()),
            dropped,
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
            cycled: Condvar::new(),
        });
        let for_writer = shared.clone();
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(&for_writer, out, sink))?;
        Ok(AccessLog {
            shared,
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// Append one line. Never blocks on I/O.
    pub fn log(&self, line: &Line<'_>) {
        let id = Arc::as_ptr(&self.shared) as usize;
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if !matches!(&*local, Some((owner, _)) if *owner == id) {
                let pending: Pending = Arc::new(Mutex::new(Vec::with_capacity(INITIAL_BUFFER)));
                lock(&self.shared.buffers).push(pending.clone());
                *local = Some((id, pending));
            }
            let Some((_, pending)) = &*local else {
                return;
            };
            let mut buf = lock(pending);
            if buf.len() >= MAX_PENDING_BYTES {
                drop(buf);
                self.shared.dropped.inc();
                return;
            }
            match self.shared.format {
                LogFormat::Text => write_text(&mut buf, line, SystemTime::now()),
                LogFormat::Json => write_json(&mut buf, line, SystemTime::now()),
            }
        });
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.get()
    }

    /// Reopen the file at its path (after logrotate moved it). Returns once the
    /// writer has reopened it (at most [`REOPEN_WAIT`]): lines logged after this go
    /// to the new file. Blocks, so call it off the async workers.
    pub fn reopen(&self) {
        let mut control = lock(&self.shared.control);
        control.reopen_asked += 1;
        let asked = control.reopen_asked;
        self.shared.wake.notify_one();
        let _ = self
            .shared
            .cycled
            .wait_timeout_while(control, REOPEN_WAIT, |c| c.reopen_done < asked && !c.stop);
    }

    /// Write every pending line and stop the writer. Idempotent.
    pub fn close(&self) {
        lock(&self.shared.control).stop = true;
        self.shared.wake.notify_one();
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Output {
    Stdout,
    File(File),
}

impl Output {
    fn open(sink: &Sink) -> io::Result<Output> {
        match sink {
            Sink::Stdout => Ok(Output::Stdout),
            Sink::File(path) => OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Output::File),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Output::File(f) => f.write_all(bytes),
        }
    }
}

/// The writer: every [`FLUSH_EVERY`] (or when woken), swap out each thread's
/// lines and write them. Runs until [`AccessLog::close`], then writes what is left.
fn write_loop(shared: &Shared, mut out: Output, sink: Sink) {
    let mut batch: Vec<u8> = Vec::with_capacity(INITIAL_BUFFER);
    let mut spare: Vec<u8> = Vec::with_capacity(INITIAL_BUFFER);
    loop {
        let (stopping, reopen) = {
            let control = lock(&shared.control);
            let (control, _) = shared
                .wake
                .wait_timeout_while(control, FLUSH_EVERY, |c| {
                    !c.stop && c.reopen_asked == c.reopen_done
                })
                .unwrap_or_else(PoisonError::into_inner);
            (
                control.stop,
                (control.reopen_asked > control.reopen_done).then_some(control.reopen_asked),
            )
        };
        if let Some(asked) = reopen {
            match Output::open(&sink) {
                Ok(reopened) => out = reopened,
                Err(e) => eprintln!("pollgate: cannot reopen the access log: {e}"),
            }
            lock(&shared.control).reopen_done = asked;
            shared.cycled.notify_all();
        }
        let buffers: Vec<Pending> = lock(&shared.buffers).clone();
        for pending in &buffers {
            {
                let mut buf = lock(pending);
                if buf.is_empty() {
                    continue;
                }
                // Swap in an empty buffer with capacity, so the thread never reallocates.
                std::mem::swap(&mut *buf, &mut spare);
            }
            batch.extend_from_slice(&spare);
            spare.clear();
        }
        if !batch.is_empty() {
            if let Err(e) = out.write_all(&batch) {
                eprintln!("pollgate: access log write failed: {e}");
            }
            batch.clear();
        }
        if stopping {
            return;
        }
    }
}

/// `2026-11-30T10:28:30.123Z 127.0.0.1 "GET /path" 200 hit items 345us`
fn write_text(buf: &mut Vec<u8>, line: &Line<'_>, now: SystemTime) {
    write_timestamp(buf, now);
    buf.push(b' ');
    write_peer(buf, line.peer);
    buf.extend_from_slice(b" \"");
    buf.extend_from_slice(line.method.as_bytes());
    buf.push(b' ');
    write_escaped(buf, line.path);
    buf.extend_from_slice(b"\" ");
    buf.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(line.result.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(line.route.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(
        itoa::Buffer::new()
            .format(line.latency.as_micros() as u64)
            .as_bytes(),
    );
    buf.extend_from_slice(b"us\n");
}

/// One JSON object per line, with the same fields.
fn write_json(buf: &mut Vec<u8>, line: &Line<'_>, now: SystemTime) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    write_timestamp(buf, now);
    buf.extend_from_slice(b"\",\"target\":\"pollgate::access\",\"peer\":\"");
    write_peer(buf, line.peer);
    buf.extend_from_slice(b"\",\"method\":\"");
    write_escaped(buf, line.method);
    buf.extend_from_slice(b"\",\"path\":\"");
    write_escaped(buf, line.path);
    buf.extend_from_slice(b"\",\"status\":");
    buf.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    buf.extend_from_slice(b",\"result\":\"");
    buf.extend_from_slice(line.result.as_bytes());
    buf.extend_from_slice(b"\",\"route\":\"");
    buf.extend_from_slice(line.route.as_bytes());
    buf.extend_from_slice(b"\",\"latency_us\":");
    buf.extend_from_slice(
        itoa::Buffer::new()
            .format(line.latency.as_micros() as u64)
            .as_bytes(),
    );
    buf.extend_from_slice(b"}\n");
}

fn write_peer(buf: &mut Vec<u8>, peer: Option<SocketAddr>) {
    match peer {
        Some(SocketAddr::V4(v4)) => {
            for (i, &octet) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                write_octet(buf, octet);
            }
        }
        // An IPv6 address has no byte that needs escaping; `write!` into a Vec cannot fail.
        Some(SocketAddr::V6(v6)) => {
            let _ = write!(buf, "{}", v6.ip());
        }
        None => buf.push(b'-'),
    }
}

/// Bytes a path may carry that would break a line or a JSON string are escaped as `\xNN`
/// (text) or `\u00NN` (JSON alike): quotes, backslashes and control bytes.
fn write_escaped(buf: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    // Paths almost never need escaping: find the first byte that does, 8 at a time, and
    // copy everything before it in one go.
    let mut start = 0;
    while let Some(at) = first_to_escape(bytes, start) {
        buf.extend_from_slice(&bytes[start..at]);
        let b = bytes[at];
        buf.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]);
        start = at + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

fn needs_escape(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f
}

/// The position of the first byte at or after `from` that [`needs_escape`].
fn first_to_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Bytes of `x` equal to `b` (or below 0x20) get their high bit set, then any byte at
    // or above 0x80 is cleared (it can carry no ASCII special).
    let eq = |x: u64, b: u8| {
        let y = x ^ (ONES * u64::from(b));
        y.wrapping_sub(ONES) & !y
    };
    let mut i = from;
    let tail = bytes.get(from..)?;
    let mut chunks = tail.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        let hit =
            (eq(x, b'"') | eq(x, b'\\') | eq(x, 0x7f) | x.wrapping_sub(ONES * 0x20)) & !x & HIGHS;
        if hit != 0 {
            // A candidate in this word (the borrow trick can flag a neighbour): check exactly.
            if let Some(j) = chunk.iter().position(|&b| needs_escape(b)) {
                return Some(i + j);
            }
        }
        i += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| needs_escape(b))
        .map(|j| i + j)
}

/// One IPv4 octet in decimal.
fn write_octet(buf: &mut Vec<u8>, o: u8) {
    if o >= 100 {
        buf.extend_from_slice(&[b'0' + o / 100, b'0' + (o / 10) % 10, b'0' + o % 10]);
    } else if o >= 10 {
        buf.extend_from_slice(&[b'0' + o / 10, b'0' + o % 10]);
    } else {
        buf.push(b'0' + o);
    }
}

/// RFC 3339 in UTC with milliseconds, without formatting machinery: the date
/// and time of the second are made once a second per thread, the milliseconds per line.
fn write_timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != secs {
            *second = (secs, second_text(secs));
        }
        buf.extend_from_slice(&second.1);
    });
    buf.push(b'0' + (millis / 100) as u8);
    buf.push(b'0' + ((millis / 10) % 10) as u8);
    buf.push(b'0' + (millis % 10) as u8);
    buf.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` of a Unix second (years 0..=9999; later ones print as 9999).
fn second_text(secs: u64) -> [u8; 20] {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut out = [0u8; 20];
    let year = year.clamp(0, 9999) as u64;
    let digits = |n: u64, at: usize, width: usize, out: &mut [u8; 20]| {
        let mut n = n;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    digits(year, 0, 4, &mut out);
    out[4] = b'-';
    digits(month as u64, 5, 2, &mut out);
    out[7] = b'-';
    digits(day as u64, 8, 2, &mut out);
    out[10] = b'T';
    digits(rem / 3600, 11, 2, &mut out);
    out[13] = b':';
    digits((rem / 60) % 60, 14, 2, &mut out);
    out[16] = b':';
    digits(rem % 60, 17, 2, &mut out);
    out[19] = b'.';
    out
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Line<'static> {
        Line {
            peer: Some("127.0.0.1:5555".parse().expect("addr")),
            method: "GET",
            path: "/api/v2/batches/b\"1",
            status: 200,
            result: "hit",
            route: "batch",
            latency: Duration::from_micros(345),
        }
    }

    #[test]
    fn escaping_finds_every_special_byte_wherever_it_is() {
        let naive = |text: &str| {
            let mut out = Vec::new();
            for &b in text.as_bytes() {
                if needs_escape(b) {
                    out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                } else {
                    out.push(b);
                }
            }
            out
        };
        let specials = ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{7f}'];
        let plain = ['a', '/', '~', ' ', '!', 'é', '€', '\u{80}', '\u{ff}'];
        for len in 0..20 {
            for at in 0..=len {
                for &special in specials.iter().chain(&plain) {
                    let mut text: String = (0..len).map(|i| plain[i % plain.len()]).collect();
                    if at < len {
                        let cut = text.char_indices().nth(at).map_or(text.len(), |(i, _)| i);
                        text.insert(cut, special);
                    }
                    let mut out = Vec::new();
                    write_escaped(&mut out, &text);
                    assert_eq!(out, naive(&text), "{text:?}");
                }
            }
        }
        let mut out = Vec::new();
        for o in [0, 9, 10, 99, 100, 255] {
            write_octet(&mut out, o);
            out.push(b' ');
        }
        assert_eq!(out, b"0 9 10 99 100 255 ");
    }

    #[test]
    fn text_and_json_lines() {
        let at = UNIX_EPOCH + Duration::from_millis(1_748_764_800_005);
        let mut text = Vec::new();
        write_text(&mut text, &line(), at);
        assert_eq!(
            String::from_utf8(text).expect("utf8"),
            "2025-06-01T08:00:00.005Z 127.0.0.1 \"GET /api/v2/batches/b\\u00221\" 200 hit batch 345us\n"
        );
        let mut json = Vec::new();
        write_json(&mut json, &line(), at);
        let v: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
        assert_eq!(v["path"], "/api/v2/batches/b\"1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["latency_us"], 345);
        assert_eq!(v["timestamp"], "2025-06-01T08:00:00.005Z");
        assert!(json.ends_with(b"}\n"));
    }

    #[test]
    fn lines_reach_the_file_and_are_flushed_on_close() {
        let dir = std::env::temp_dir().join(format!("pollgate-al-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("access.log");
        let log = AccessLog::start(
            Sink::File(path.clone()),
            LogFormat::Text,
            Counter::default(),
        )
        .expect("start");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        log.log(&line());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        log.close();
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1000, "every line, whole");
        assert!(text.lines().all(|l| l.ends_with("345us")));
        assert_eq!(log.dropped(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reopen_moves_new_lines_to_a_new_file() {
        let dir = std::env::temp_dir().join(format!("pollgate-al-rot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("access.log");
        let log = AccessLog::start(
            Sink::File(path.clone()),
            LogFormat::Json,
            Counter::default(),
        )
        .expect("start");
        log.log(&line());
        // The first line reaches the file within a flush period.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).map_or(0, |t| t.lines().count()) < 1 {
            assert!(std::time::Instant::now() < deadline, "line not flushed");
            std::thread::sleep(Duration::from_millis(10));
        }
        // logrotate: move the file away, then ask for a reopen.
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).expect("rotate");
        log.reopen();
        log.log(&line());
        log.log(&line());
        log.close();
        let old = std::fs::read_to_string(&rotated).expect("old file");
        let new = std::fs::read_to_string(&path).expect("new file");
        assert_eq!(old.lines().count(), 1, "the line before the rotation");
        assert_eq!(
            new.lines().count(),
            2,
            "lines after the reopen are in the new file"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
