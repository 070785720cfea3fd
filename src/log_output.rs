//! Where log lines go: a shared buffer that a thread of its own writes out.
//!
//! A line is appended under a lock, and nothing else happens on the logging thread (no
//! allocation, no hand-off, no syscall) unless the writer is idle, which the first line after a
//! quiet spell wakes. The writer then gathers lines for 5 ms (or until 64 KiB) and writes them in
//! one `write`: a quiet gateway's line appears at once, a busy one writes many lines at a time.
//! (tracing-appender, used before, copied each line into a message of its own and woke its thread
//! for it: with requests one at a time, a `write` per line.) When output cannot keep up, logging
//! waits rather than drop a line. [`LineBuffer::finish`] writes out everything and stops the
//! thread; every exit calls it.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Written out as soon as this much is buffered.
const WRITE_AT: usize = 64 * 1024;
/// Lines wait for the output beyond this much.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;
/// How long the writer gathers lines once one has come.
const GATHER: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    finishing: bool,
    /// The writer waits for a first line.
    idle: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// The writer: enough to write, or finishing.
    wake: Condvar,
    /// Loggers waiting for room.
    drained: Condvar,
    /// The writer thread, until `finish` takes it.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while appending leaves at worst a partial line: keep logging.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// For the writer: wait for a line, gather what follows it for `GATHER` (or until 64 KiB),
    /// and swap it all into `out` (which is empty). Whether the buffer is finishing.
    fn take_batch(&self, out: &mut Vec<u8>) -> bool {
        let mut pending = self.lock();
        while pending.lines.is_empty() && !pending.finishing {
            pending.idle = true;
            pending = self
                .wake
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        pending.idle = false;
        let until = Instant::now() + GATHER;
        while pending.lines.len() < WRITE_AT && !pending.finishing {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            pending = self
                .wake
                .wait_timeout(pending, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::swap(&mut pending.lines, out);
        pending.finishing
    }
}

/// The buffer and its writer thread. Cheap to clone: every clone appends to the same buffer.
#[derive(Clone)]
pub struct LineBuffer {
    shared: Arc<Shared>,
}

impl LineBuffer {
    /// Start the thread that writes to `output`.
    pub fn start(mut output: impl Write + Send + 'static) -> std::io::Result<LineBuffer> {
        let shared = Arc::new(Shared::default());
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("authgate-log".into())
            .spawn(move || {
                let mut out = Vec::with_capacity(WRITE_AT);
                loop {
                    let finishing = writer.take_batch(&mut out);
                    writer.drained.notify_all();
                    if !out.is_empty() {
                        // Nowhere to report a failed write to: the lines are dropped, and the
                        // next ones tried.
                        let _ = output.write_all(&out).and_then(|()| output.flush());
                        out.clear();
                    }
                    if finishing && writer.lock().lines.is_empty() {
                        return;
                    }
                }
            })?;
        *shared.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(LineBuffer { shared })
    }

    /// Append whole lines. Once `finish` has been called they are dropped: nothing would write
    /// them, and they must not pile up.
    pub fn append(&self, lines: &[u8]) {
        let mut pending = self.shared.lock();
        while pending.lines.len() >= MAX_BUFFERED && !pending.finishing {
            self.shared.wake.notify_one();
            pending = self
                .shared
                .drained
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if pending.finishing {
            return;
        }
        pending.lines.extend_from_slice(lines);
        if pending.idle || pending.lines.len() >= WRITE_AT {
            pending.idle = false;
            self.shared.wake.notify_one();
        }
    }

    /// Write out everything buffered and stop the thread; lines appended from now on are dropped.
    pub fn finish(&self) {
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            self.shared.lock().finishing = true;
            self.shared.wake.notify_one();
            let _ = thread.join();
        }
    }
}

impl Write for &LineBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineBuffer {
    type Writer = &'a LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that records every `write_all` it gets.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_lone_line_is_written_at_once_and_many_lines_share_a_write() {
        let out = Recorder::default();
        let lines = LineBuffer::start(out.clone()).unwrap();
        lines.append(b"first\n");
        let deadline = Instant::now() + Duration::from_millis(500);
        while out.0.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "a lone line not written at once");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(out.0.lock().unwrap().concat(), b"first\n");

        let writes_before = out.0.lock().unwrap().len();
        for i in 0..10_000 {
            lines.append(format!("line {i}\n").as_bytes());
        }
        lines.finish();
        let writes = out.0.lock().unwrap();
        let text = String::from_utf8(writes.concat()).unwrap();
        let expected: String = std::iter::once("first\n".to_string())
            .chain((0..10_000).map(|i| format!("line {i}\n")))
            .collect();
        assert_eq!(text, expected, "every line, in order, once");
        assert!(
            writes.len() - writes_before < 100,
            "{} writes for 10 000 lines",
            writes.len() - writes_before
        );
        drop(writes);
        lines.append(b"late\n");
        assert_eq!(
            lines.shared.lock().lines.len(),
            0,
            "a line after finish is dropped"
        );
    }

    #[test]
    fn loggers_wait_for_a_slow_output_instead_of_dropping_lines() {
        struct Slow(Recorder);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_millis(20));
                self.0.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Recorder::default();
        let lines = LineBuffer::start(Slow(out.clone())).unwrap();
        let line = [b'x'; 1023]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        // Three times the bound: the loggers must wait for the output twice at least.
        let count = 3 * MAX_BUFFERED / line.len();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..count / 2 {
                        lines.append(&line);
                    }
                });
            }
        });
        lines.finish();
        let writes = out.0.lock().unwrap();
        let written: usize = writes.iter().map(Vec::len).sum();
        assert_eq!(written, count / 2 * 2 * line.len());
        // Each write is one batch: the buffer never held more than the bound and a line.
        let largest = writes.iter().map(Vec::len).max().unwrap_or(0);
        assert!(
            largest < MAX_BUFFERED + line.len(),
            "a batch of {largest} bytes"
        );
    }
}
