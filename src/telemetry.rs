//! tracing setup: JSON for machines, pretty for people; pingora's `log` records are bridged in.
//!
//! No line carries a build-machine path: the bridge's `log.file` field (a cargo registry path for
//! every pingora line) is left out of JSON, and panics are logged with the location inside its
//! crate, not where the crate sat on the machine that built the binary.

use crate::config::{LogConfig, LogFormat};
use crate::log_output::LineBuffer;
use std::fmt;
use std::io::{IsTerminal, Write as _};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// The filter: `RUST_LOG` when set, else the configured level.
/// Lines of one kind, at most so many a second (governor's GCRA, with a burst of as many): the
/// rest are counted, and the flood report says how many in one line. Under a flood, one line per
/// event would be a flood of its own.
pub struct LogBudget {
    limiter: governor::DefaultDirectRateLimiter,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogBudget {
    pub fn per_second(lines: std::num::NonZeroU32) -> LogBudget {
        LogBudget {
            limiter: governor::RateLimiter::direct(governor::Quota::per_second(lines)),
            suppressed: Default::default(),
        }
    }

    /// Whether one more line may be written now; if not, it is counted as suppressed.
    pub fn allow(&self) -> bool {
        let allowed = self.limiter.check().is_ok();
        if !allowed {
            self.suppressed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        allowed
    }

    /// The lines suppressed since the last call.
    pub fn take_suppressed(&self) -> u64 {
        self.suppressed
            .swap(0, std::sync::atomic::Ordering::Relaxed)
    }
}

pub fn filter(config: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level))
}

/// pingora prints whole request headers (credentials included) at debug and trace: whatever the
/// configured level, nothing below `info` from pingora is ever written.
pub fn below_secret_ceiling(meta: &Metadata<'_>) -> bool {
    !(meta.target().starts_with("pingora") && *meta.level() > Level::INFO)
}

/// Where lines go, once installed; `flush` writes them out.
static OUTPUT: std::sync::OnceLock<LineBuffer> = std::sync::OnceLock::new();

/// Install the global subscriber (once per process; later calls are ignored).
///
/// Lines go to stdout through a buffer that a thread of its own writes out (`log_output`): a
/// request never waits for a `write`, a line after a quiet spell leaves at once, busy lines many
/// per `write`, and logging waits rather than drop a line. `flush` writes out what is buffered
/// (every exit calls it).
pub fn init(config: &LogConfig) {
    let writer = match OUTPUT.get() {
        Some(output) => output.clone(),
        None => match LineBuffer::start(std::io::stdout()) {
            Ok(output) => OUTPUT.get_or_init(|| output).clone(),
            Err(e) => {
                eprintln!("authgate: cannot start the log writer thread: {e}");
                return;
            }
        },
    };
    let output = match config.format {
        LogFormat::Json => JsonLines::new(writer).boxed(),
        // Colour only for a person at a terminal, never into a file or a collector.
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(writer)
            .boxed(),
    };
    let filter = filter(config);
    let hint = filter.max_level_hint();
    // The ceiling keeps the filter's level hint, so that callsites above it stay off statically.
    let ceiling =
        filter_fn(below_secret_ceiling).with_max_level_hint(hint.unwrap_or(LevelFilter::TRACE));
    let subscriber =
        tracing_subscriber::registry().with(output.with_filter(filter).with_filter(ceiling));
    if tracing::subscriber::set_global_default(subscriber).is_ok()
        && log::set_boxed_logger(Box::new(PingoraRecords(tracing_log::LogTracer::new()))).is_ok()
    {
        log::set_max_level(log_crate_ceiling(hint));
    }
}

/// Write out every queued log line and wait for it (before the process exits; lines logged
/// afterwards are lost, so this is the last thing done).
pub fn flush() {
    if let Some(output) = OUTPUT.get() {
        output.finish();
    }
}

/// The bridge for pingora's `log` records into tracing, which first demotes what is no failure
/// of ours from ERROR to DEBUG: a client going away (a reset, a request never finished), and
/// pingora's own upstream pool race. Under a flood, one ERROR line each would be a log flood of
/// its own. What goes wrong on this side stays an ERROR.
struct PingoraRecords(tracing_log::LogTracer);

/// pingora's message when its connection pool loses a race with itself: the idle connection's
/// watcher releases the connection's lock before its reference, so a request on another thread,
/// woken by that release, finds the connection still shared and drops it. pingora then opens a
/// new connection; no request fails. Counted (`authgate_upstream_pool_races_total`), logged at
/// DEBUG.
const POOL_RACE: &str = "failed to acquire reusable stream";

/// Where pool races are counted, once the metrics exist.
static POOL_RACES: std::sync::OnceLock<prometheus::IntCounter> = std::sync::OnceLock::new();

/// Count pingora's pool races in `counter` from now on.
pub fn count_pool_races(counter: prometheus::IntCounter) {
    let _ = POOL_RACES.set(counter);
}

/// A pingora message about the client leaving, or about its pool's race (pingora then opens a
/// new connection: nothing is lost).
fn reports_no_failure(target: &str, message: &str) -> bool {
    target.starts_with("pingora")
        && (message.starts_with("Fail to proxy: Downstream")
            || message.starts_with("Downstream handshake")
            || message == POOL_RACE)
}

impl log::Log for PingoraRecords {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        // Only warnings and errors are looked at (and formatted): they are rare.
        let message = (record.level() <= log::Level::Warn).then(|| record.args().to_string());
        if let Some(message) = message.filter(|m| reports_no_failure(record.target(), m)) {
            if message == POOL_RACE {
                if let Some(races) = POOL_RACES.get() {
                    races.inc();
                }
            }
            let demoted = log::Record::builder()
                .args(*record.args())
                .level(log::Level::Debug)
                .target(record.target())
                .module_path(record.module_path())
                .build();
            if self.0.enabled(demoted.metadata()) {
                self.0.log(&demoted);
            }
            return;
        }
        self.0.log(record);
    }

    fn flush(&self) {}
}

/// One JSON object per line: `timestamp`, `level`, the event's fields (`message` among them) and
/// `target`. tracing-subscriber's own JSON writer copies the `log.*` fields of bridged records,
/// `log.file` (a build-machine path) included; this one leaves them out.
///
/// It is a layer of its own rather than a format for tracing-subscriber's `fmt` layer, because
/// the access log writes a line per request and that layer's generality costs there: it formats
/// into a `String` of its own, checks it as text, then copies it to the writer, and formats the
/// whole timestamp every time. Here the object is serialised field by field as the event is
/// visited, into a buffer of the thread's own, and handed to the writer once; the timestamp's
/// date and time are formatted once a second.
pub struct JsonLines<W> {
    writer: W,
}

impl<W> JsonLines<W> {
    pub fn new(writer: W) -> JsonLines<W> {
        JsonLines { writer }
    }
}

/// Writes an event's fields into a JSON object, without the bridge's `log.*` metadata. Keys and
/// text values are copied as they are when they need no escape (escaping them through serde_json
/// cost a third of a line); numbers and the rest go through serde_json.
struct JsonFields<'b> {
    line: &'b mut Vec<u8>,
    failed: Option<serde_json::Error>,
}

impl JsonFields<'_> {
    fn key(&mut self, key: &str) {
        self.line.push(b',');
        self.string(key);
        self.line.push(b':');
    }

    /// A JSON string. Text that needs no escape (nearly every key and value) is copied in one
    /// piece; the rest goes through serde_json.
    fn string(&mut self, text: &str) {
        if !needs_escape(text.as_bytes()) {
            self.line.reserve(text.len() + 2);
            self.line.push(b'"');
            self.line.extend_from_slice(text.as_bytes());
            self.line.push(b'"');
        } else {
            self.value(&text);
        }
    }

    fn value(&mut self, value: &impl serde::Serialize) {
        if let Err(e) = serde_json::to_writer(&mut *self.line, value) {
            self.failed.get_or_insert(e);
        }
    }

    fn put(&mut self, field: &Field, value: FieldValue<'_>) {
        let name = field.name();
        if !name.starts_with("log.") {
            self.key(name.strip_prefix("r#").unwrap_or(name));
            match value {
                FieldValue::Str(text) => self.string(text),
                other => self.value(&other),
            }
        }
    }
}

/// Whether JSON needs any byte of `text` escaped (a control character, `"` or `\`). Eight bytes
/// at a time: a line's keys and values are checked on every request, and byte by byte this was
/// a fifth of the line's cost.
fn needs_escape(text: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `word` is below `n` (n ≤ 128): exact, whichever byte it is.
    let has_less = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0;
    let any_special = |word: u64| {
        has_less(word, 0x20)
            || has_less(word ^ (ONES * u64::from(b'"')), 1)
            || has_less(word ^ (ONES * u64::from(b'\\')), 1)
    };
    let mut chunks = text.chunks_exact(8);
    if chunks.any(|chunk| any_special(u64::from_ne_bytes(chunk.try_into().unwrap_or_default()))) {
        return true;
    }
    // The tail, padded with a letter.
    let tail = chunks.remainder();
    let mut last = [b'a'; 8];
    last[..tail.len()].copy_from_slice(tail);
    any_special(u64::from_ne_bytes(last))
}

/// A field's value as tracing records it.
enum FieldValue<'v> {
    Str(&'v str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Debug(&'v dyn fmt::Debug),
}

impl serde::Serialize for FieldValue<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            FieldValue::Str(v) => s.serialize_str(v),
            FieldValue::I64(v) => s.serialize_i64(v),
            FieldValue::U64(v) => s.serialize_u64(v),
            FieldValue::F64(v) => s.serialize_f64(v),
            FieldValue::Bool(v) => s.serialize_bool(v),
            // Escaped as it is written: no string of its own.
            FieldValue::Debug(v) => s.collect_str(&format_args!("{v:?}")),
        }
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, FieldValue::Str(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, FieldValue::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, FieldValue::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, FieldValue::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, FieldValue::Debug(value));
    }
}

thread_local! {
    /// Each thread's line buffer, kept between lines.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The second last formatted by this thread, and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// `now` as RFC 3339 in UTC with microseconds (`2026-12-02T21:19:05.123456Z`), the form
/// tracing-subscriber writes. The date and time of day are formatted once a second per thread.
fn timestamp(now: std::time::SystemTime) -> [u8; 27] {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut whole) = SECOND.get();
    if cached != secs {
        let text = humantime::format_rfc3339_seconds(now).to_string();
        whole.copy_from_slice(&text.as_bytes()[..19]);
        SECOND.set((secs, whole));
    }
    let mut stamp = [0u8; 27];
    stamp[..19].copy_from_slice(&whole);
    stamp[19] = b'.';
    let mut micros = since.subsec_micros();
    for digit in stamp[20..26].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    stamp[26] = b'Z';
    stamp
}

/// One event as a JSON object, appended to `line`.
fn encode(line: &mut Vec<u8>, event: &Event<'_>) -> Result<(), serde_json::Error> {
    let normalized = event.normalized_metadata();
    let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
    // Digits and punctuation, and a level name: nothing to escape.
    line.extend_from_slice(b"{\"timestamp\":\"");
    line.extend_from_slice(&timestamp(std::time::SystemTime::now()));
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(meta.level().as_str().as_bytes());
    line.push(b'"');
    let mut fields = JsonFields { line, failed: None };
    event.record(&mut fields);
    fields.key("target");
    fields.string(meta.target());
    match fields.failed {
        Some(e) => Err(e),
        None => {
            fields.line.push(b'}');
            Ok(())
        }
    }
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let write = |line: &mut Vec<u8>| {
            line.clear();
            if encode(line, event).is_ok() {
                line.push(b'\n');
                // The writer is a queue to the log thread, which never fails but to exit.
                let _ = self.writer.make_writer().write_all(line);
            }
        };
        // A value whose formatting logs an event of its own gets a buffer of its own.
        LINE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => write(&mut line),
            Err(_) => write(&mut Vec::new()),
        })
    }
}

/// A source location as logged: inside its crate (`pingora-core-0.9.1/src/server/mod.rs`), never
/// the absolute path it had on the machine that built the binary.
pub fn crate_relative(file: &str) -> &str {
    if !file.starts_with('/') {
        return file;
    }
    match file.rfind("/src/") {
        Some(src) => {
            let crate_dir = file[..src].rfind('/').map_or(0, |slash| slash + 1);
            &file[crate_dir..]
        }
        None => file.rsplit('/').next().unwrap_or(file),
    }
}

/// Log panics as one ERROR event (JSON-safe, location made crate-relative) instead of the default
/// hook's stderr text with an absolute path.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("panic");
        let location = info
            .location()
            .map(|l| format!("{}:{}", crate_relative(l.file()), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            location,
            "panic: {message}"
        );
    }));
}

/// The most verbose `log` record worth producing. Records of the `log` crate (pingora's) pass
/// through the bridge before any filter sees them; a low max level lets the `debug!` calls on
/// pingora's request path return at once instead (≈1.5 % of a proxied request's CPU in `perf`).
pub fn log_crate_ceiling(hint: Option<LevelFilter>) -> log::LevelFilter {
    match hint.unwrap_or(LevelFilter::TRACE).min(LevelFilter::INFO) {
        LevelFilter::OFF => log::LevelFilter::Off,
        LevelFilter::ERROR => log::LevelFilter::Error,
        LevelFilter::WARN => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_found_in_any_position_of_any_length() {
        let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut text = vec![b'x'; len];
                    text[at] = b;
                    assert_eq!(needs_escape(&text), special(b), "{b:#x} at {at} of {len}");
                }
            }
        }
        assert!(!needs_escape("é \u{7f} ~ 0123456789".as_bytes()));
    }

    /// What a JSON line holds, and a value whose formatting logs a line of its own.
    #[test]
    fn json_lines_hold_the_fields_typed_and_escaped() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;
        #[derive(Clone, Default)]
        struct Out(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Out {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        struct Loud;
        impl fmt::Debug for Loud {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                tracing::info!("inner");
                write!(f, "loud")
            }
        }
        let out = Out::default();
        let writer = out.clone();
        let layer = JsonLines::new(move || writer.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info!(
                target: "authgate::access",
                path = "/a\"b\n",
                status = 200u16,
                ok = true,
                ms = 1.5,
                delta = -3i64,
                client = ?Some(1),
                "done"
            );
            tracing::info!(value = ?Loud, "outer");
            tracing::info!("odd\"key" = 1, "quoted key");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let done = &lines[0];
        assert_eq!(done["message"], "done");
        assert_eq!(done["path"], "/a\"b\n");
        assert_eq!(done["status"], 200);
        assert_eq!(done["ok"], true);
        assert_eq!(done["ms"], 1.5);
        assert_eq!(done["delta"], -3);
        assert_eq!(done["client"], "Some(1)");
        assert_eq!(done["level"], "INFO");
        assert_eq!(done["target"], "authgate::access");
        assert!(done["timestamp"].as_str().unwrap().ends_with('Z'));
        // tracing drops an event made while another is being written; the outer line is whole.
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[2]["odd\"key"], 1);
        assert_eq!(lines[1]["message"], "outer");
        assert_eq!(lines[1]["value"], "loud");
    }

    /// The once-a-second date and time, and the microseconds, against humantime's whole format,
    /// on one thread across seconds (and back: a clock stepped backwards).
    #[test]
    fn timestamps_are_rfc3339_with_microseconds_across_seconds() {
        use std::time::{Duration, UNIX_EPOCH};
        for micros in [
            1_764_710_345_000_000u64,
            1_764_710_345_000_001,
            1_764_710_345_999_999,
            1_764_710_346_120_034,
            1_764_710_345_500_000,
            951_782_400_000_000, // 2000-02-29
            0,
        ] {
            let t = UNIX_EPOCH + Duration::from_micros(micros);
            let expected = humantime::format_rfc3339_micros(t).to_string();
            assert_eq!(std::str::from_utf8(&timestamp(t)).unwrap(), expected);
        }
    }

    #[test]
    fn a_log_budget_counts_what_it_holds_back() {
        let budget = LogBudget::per_second(std::num::NonZeroU32::new(3).unwrap());
        let written = (0..10).filter(|_| budget.allow()).count();
        assert_eq!(written, 3);
        assert_eq!(budget.take_suppressed(), 7);
        assert_eq!(budget.take_suppressed(), 0);
    }

    #[test]
    fn only_a_client_going_away_and_the_pool_race_are_demoted() {
        let gone = "Fail to proxy: Downstream ReadError context: while reading request headers";
        assert!(reports_no_failure("pingora_proxy", gone));
        assert!(reports_no_failure(
            "pingora_core::connectors",
            "failed to acquire reusable stream"
        ));
        assert!(reports_no_failure(
            "pingora_core::services::listening",
            "Downstream handshake error from 1.2.3.4: reset"
        ));
        assert!(!reports_no_failure(
            "pingora_proxy",
            "Fail to proxy: Upstream ConnectRefused"
        ));
        assert!(!reports_no_failure("authgate::api", gone));
    }

    #[test]
    fn locations_are_logged_inside_their_crate() {
        assert_eq!(
            crate_relative("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pingora-core-0.9.1/src/server/mod.rs"),
            "pingora-core-0.9.1/src/server/mod.rs"
        );
        assert_eq!(
            crate_relative("/rustc/59807616e1fa/library/core/src/option.rs"),
            "core/src/option.rs"
        );
        assert_eq!(crate_relative("src/store/redb.rs"), "src/store/redb.rs");
        assert_eq!(crate_relative("/build/main.rs"), "main.rs");
    }

    #[test]
    fn log_records_never_go_below_info_nor_above_the_filter() {
        assert_eq!(log_crate_ceiling(None), log::LevelFilter::Info);
        assert_eq!(
            log_crate_ceiling(Some(LevelFilter::TRACE)),
            log::LevelFilter::Info
        );
        assert_eq!(
            log_crate_ceiling(Some(LevelFilter::WARN)),
            log::LevelFilter::Warn
        );
        assert_eq!(
            log_crate_ceiling(Some(LevelFilter::OFF)),
            log::LevelFilter::Off
        );
    }
}
