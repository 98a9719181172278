//! [`tail`]: prints the last records and, when following, new ones as they are written,
//! across rotation, for `coffer audit tail`: one JSON object per line whatever the file
//! format, format-3 lines [`expand`]ed to full field names.
//!
//! Only complete lines are printed: a line still being written (or one a crash left
//! half-written, which the next open cuts off) waits until its `\n` arrives.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::AuditError;
use crate::chain::{self, AuditFile};
pub use crate::expand::expand;

/// How often a followed log is looked at again.
const POLL: Duration = Duration::from_millis(200);
/// The most bytes read from a followed file per step.
const STEP: u64 = 1 << 20;

/// Prints the last `from_end` lines of the log in `dir` to `out`; with `follow`, keeps
/// printing new lines as they are written (following rotation into new files) until `stop`
/// is set, looking every 200 ms.
pub fn tail(
    dir: &Path,
    from_end: usize,
    follow: bool,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<(), AuditError> {
    let files = chain::list(dir)?;
    let mut chunks = Vec::new();
    let mut need = from_end;
    let mut at = None;
    for (i, f) in files.iter().enumerate().rev() {
        let file = File::open(&f.path).map_err(read_err(f))?;
        let len = file.metadata().map_err(read_err(f))?.len();
        let lines = chain::last_lines(&file, len, need).map_err(read_err(f))?;
        if i + 1 == files.len() {
            at = Some((f.clone(), lines.end));
        }
        need -= lines.lines().count().min(need);
        chunks.push(lines.bytes);
        if need == 0 {
            break;
        }
    }
    for chunk in chunks.iter().rev() {
        print_lines(chunk, out)?;
    }
    out.flush().map_err(output_err)?;
    if follow {
        Follow { at }.run(dir, out, stop)?;
    }
    Ok(())
}

/// The file being followed and the offset just past its last printed line.
struct Follow {
    at: Option<(AuditFile, u64)>,
}

impl Follow {
    fn run(
        &mut self,
        dir: &Path,
        out: &mut dyn Write,
        stop: &AtomicBool,
    ) -> Result<(), AuditError> {
        while !stop.load(Ordering::Relaxed) {
            if self.drain(out)? {
                continue;
            }
            let newer = chain::list(dir)?.into_iter().find(|f| match &self.at {
                Some((cur, _)) => f.first_seq > cur.first_seq,
                None => true,
            });
            if let Some(next) = newer {
                // The old file's last batch was written before the new file existed: read
                // it once more so nothing between the last look and the rotation is lost.
                while self.drain(out)? {}
                self.at = Some((next, 0));
                continue;
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Prints complete lines added to the current file; returns whether there were any.
    fn drain(&mut self, out: &mut dyn Write) -> Result<bool, AuditError> {
        let Some((cur, offset)) = &mut self.at else {
            return Ok(false);
        };
        let file = match File::open(&cur.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(read_err(cur)(e)),
        };
        let len = file.metadata().map_err(read_err(cur))?.len();
        // A cut-off partial line can leave the file shorter than where we were.
        *offset = (*offset).min(len);
        if len == *offset {
            return Ok(false);
        }
        let size = (len - *offset).min(STEP);
        // `size` is at most STEP (1 MiB), which fits in usize.
        let mut buf = vec![0u8; size as usize];
        file.read_exact_at(&mut buf, *offset)
            .map_err(read_err(cur))?;
        let Some(last_newline) = buf.iter().rposition(|&b| b == b'\n') else {
            return Ok(false);
        };
        print_lines(&buf[..=last_newline], out)?;
        out.flush().map_err(output_err)?;
        *offset += last_newline as u64 + 1;
        Ok(true)
    }
}

/// Prints whole lines (each ending in `\n`) in their readable form (see [`expand`]).
fn print_lines(lines: &[u8], out: &mut dyn Write) -> Result<(), AuditError> {
    let mut text = Vec::with_capacity(lines.len() * 2);
    for line in lines.split_inclusive(|&b| b == b'\n') {
        expand(line.strip_suffix(b"\n").unwrap_or(line), &mut text);
    }
    out.write_all(&text).map_err(output_err)
}

fn read_err(f: &AuditFile) -> impl Fn(io::Error) -> AuditError + '_ {
    move |source| AuditError::Read {
        path: f.path.clone(),
        source,
    }
}

fn output_err(source: io::Error) -> AuditError {
    AuditError::Output { source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn write(dir: &Path, seq: u64, content: &str) {
        std::fs::write(dir.join(chain::file_name(seq)), content).unwrap();
    }

    fn append(dir: &Path, seq: u64, content: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join(chain::file_name(seq)))
            .unwrap();
        f.write_all(content.as_bytes()).unwrap();
    }

    fn run(dir: &Path, n: usize) -> String {
        let mut out = Vec::new();
        tail(dir, n, false, &mut out, &AtomicBool::new(false)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_last_lines_span_files_and_skip_a_partial_line() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), 1, "1\n2\n");
        write(tmp.path(), 3, "3\n4\n5");
        assert_eq!(run(tmp.path(), 0), "");
        assert_eq!(run(tmp.path(), 1), "4\n");
        assert_eq!(run(tmp.path(), 3), "2\n3\n4\n");
        assert_eq!(run(tmp.path(), 10), "1\n2\n3\n4\n");
    }

    #[test]
    fn following_prints_new_lines_across_rotation_until_stopped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        write(&dir, 1, "1\n");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        struct Chan(std::sync::mpsc::Sender<Vec<u8>>);
        impl Write for Chan {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                let _ = self.0.send(b.to_vec());
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let thread = {
            let (dir, stop) = (dir.clone(), Arc::clone(&stop));
            std::thread::spawn(move || tail(&dir, 5, true, &mut Chan(tx), &stop))
        };
        let mut seen = String::new();
        let mut expect = |want: &str| {
            while seen != want {
                let chunk = rx.recv_timeout(Duration::from_secs(10)).unwrap();
                seen.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        };
        expect("1\n");
        append(&dir, 1, "2\n3");
        expect("1\n2\n");
        append(&dir, 1, "\n");
        append(&dir, 4, "4\n");
        expect("1\n2\n3\n4\n");
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap().unwrap();
    }
}
