//! Finding where a request ends, without waiting for the client to half-close.
//!
//! The first request on a connection is one JSON object, possibly spread over many reads and
//! followed by nothing: the reference Node.js client writes it and waits for the server's end
//! of stream. [`ObjectScanner`] follows strings, escapes and nesting byte by byte, resuming
//! where the last read stopped, and reports the end of the top-level object. After a request
//! with `"keep_alive": true`, requests are newline-delimited and [`next_line`] frames them.
//!
//! The scanner only frames; serde_json parses and validates what it frames.

/// Deepest nesting accepted while framing.
const MAX_DEPTH: u32 = 64;

/// What the scanner found so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// More bytes are needed.
    Partial,
    /// The object ends just before this offset.
    Complete(usize),
    /// Not a JSON object, or nested too deeply.
    Invalid(&'static str),
}

/// Incremental scanner for the end of one top-level JSON object.
#[derive(Debug, Default, Clone)]
pub struct ObjectScanner {
    pos: usize,
    depth: u32,
    started: bool,
    in_string: bool,
    escaped: bool,
}

impl ObjectScanner {
    /// Scans the bytes of `buf` not seen before.
    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        while self.pos < buf.len() {
            let b = buf[self.pos];
            self.pos += 1;
            if !self.started {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' => {
                        self.started = true;
                        self.depth = 1;
                        continue;
                    }
                    _ => return Scan::Invalid("a request must be a JSON object"),
                }
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Scan::Invalid("the request is nested too deeply");
                    }
                }
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Scan::Complete(self.pos);
                    }
                }
                _ => {}
            }
        }
        Scan::Partial
    }

    /// Whether any non-whitespace byte was seen.
    pub fn started(&self) -> bool {
        self.started
    }
}

/// The next newline-terminated line in `buf[from..]`: `(line_end, next_start)`.
pub fn next_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    buf[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| (from + i, from + i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_the_end_across_reads() {
        let req = br#"{"action":"set","name":"a","value":"x}{\"\\"}"#;
        for split in 0..req.len() {
            let mut s = ObjectScanner::default();
            let mut buf = req[..split].to_vec();
            let first = s.scan(&buf);
            if first == Scan::Complete(req.len()) {
                continue;
            }
            assert_eq!(first, Scan::Partial, "split at {split}");
            buf.extend_from_slice(&req[split..]);
            assert_eq!(s.scan(&buf), Scan::Complete(req.len()), "split at {split}");
        }
    }

    #[test]
    fn stops_at_the_first_object() {
        let mut s = ObjectScanner::default();
        assert_eq!(s.scan(b"  {\"a\":[1,{}]}\n{\"b\":1}"), Scan::Complete(14));
    }

    #[test]
    fn refuses_non_objects_and_deep_nesting() {
        assert!(matches!(
            ObjectScanner::default().scan(b"[1]"),
            Scan::Invalid(_)
        ));
        assert!(matches!(
            ObjectScanner::default().scan(b"hello"),
            Scan::Invalid(_)
        ));
        let deep = format!("{{\"a\":{}", "[".repeat(100));
        assert!(matches!(
            ObjectScanner::default().scan(deep.as_bytes()),
            Scan::Invalid(_)
        ));
    }

    #[test]
    fn lines() {
        assert_eq!(next_line(b"ab\ncd\n", 0), Some((2, 3)));
        assert_eq!(next_line(b"ab\ncd\n", 3), Some((5, 6)));
        assert_eq!(next_line(b"ab", 0), None);
    }

    proptest! {
        #[test]
        fn any_serialized_object_is_framed_exactly(
            keys in proptest::collection::vec("[a-z\"\\\\{}\\[\\] ]{0,8}", 0..6),
            vals in proptest::collection::vec("\\PC{0,12}", 0..6),
        ) {
            let map: serde_json::Map<String, serde_json::Value> = keys
                .into_iter()
                .zip(vals)
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let text = serde_json::to_vec(&serde_json::Value::Object(map)).unwrap();
            let mut with_tail = text.clone();
            with_tail.extend_from_slice(b"\n{\"next\":1}");
            prop_assert_eq!(ObjectScanner::default().scan(&with_tail), Scan::Complete(text.len()));
        }
    }
}
