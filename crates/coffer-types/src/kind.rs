//! Secret kinds (DESIGN.md, Data model; reference 002's secret types).

string_enum! {
    /// What shape a secret's value has. The kind is bound into each version's ciphertext.
    #[derive(Default)]
    pub enum Kind {
        /// One line of text, no newline.
        Line = "line",
        /// Multi-line text, such as a PEM key.
        #[default]
        Text = "text",
        /// `KEY=VALUE` lines.
        Env = "env",
        /// Any bytes.
        File = "file",
        /// A JSON object, as written through the Vault-compatible API.
        Kv = "kv",
    }
    /// A string that is not a kind.
    error UnknownKind = "unknown kind; expected one of line, text, env, file, kv";
}

/// The deepest nesting of objects and arrays a `kv` value may have. Checked on every write,
/// so every stored value reads back (serde_json's own limit when reading is 128).
pub const MAX_KV_DEPTH: usize = 64;

/// The deepest nesting of objects and arrays in JSON text, counted without recursion (so
/// any depth is measured safely). Brackets inside strings do not count.
pub fn json_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A value that does not fit its kind. The message says why without quoting the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KindError(String);

impl Kind {
    /// Checks that `value` has this kind's shape.
    pub fn check(self, value: &[u8]) -> Result<(), KindError> {
        let text = || {
            std::str::from_utf8(value).map_err(|e| {
                KindError(format!(
                    "a `{self}` secret is UTF-8 text, but byte {} is not; send binary values \
                     as kind `file` (value_b64)",
                    e.valid_up_to()
                ))
            })
        };
        match self {
            Self::File => Ok(()),
            Self::Text => text().map(drop),
            Self::Line => {
                let s = text()?;
                match s.find(['\n', '\r']) {
                    Some(at) => Err(KindError(format!(
                        "a `line` secret holds no newline, but there is one at byte {at}; \
                         use kind `text` for multi-line values"
                    ))),
                    None => Ok(()),
                }
            }
            Self::Env => {
                for (n, line) in text()?.lines().enumerate() {
                    let line = line.strip_suffix('\r').unwrap_or(line);
                    if line.trim().is_empty() || line.trim_start().starts_with('#') {
                        continue;
                    }
                    let key = line.split_once('=').map(|(k, _)| k);
                    let valid = key.is_some_and(|k| {
                        let mut chars = k.chars();
                        chars
                            .next()
                            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                    if !valid {
                        return Err(KindError(format!(
                            "line {} of an `env` secret is not KEY=VALUE (a KEY is letters, \
                             digits and _, not starting with a digit; blank lines and # \
                             comments are allowed)",
                            n + 1
                        )));
                    }
                }
                Ok(())
            }
            Self::Kv => {
                let depth = json_depth(value);
                if depth > MAX_KV_DEPTH {
                    return Err(KindError(format!(
                        "a `kv` secret nests objects and arrays at most {MAX_KV_DEPTH} deep; \
                         this one is {depth} deep"
                    )));
                }
                let starts_object = value
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|&b| b == b'{');
                let parsed = serde_json::from_slice::<serde::de::IgnoredAny>(value);
                match (starts_object, parsed) {
                    (true, Ok(_)) => Ok(()),
                    (_, Err(e)) if e.is_syntax() || e.is_eof() => Err(KindError(format!(
                        "a `kv` secret is a JSON object, but this is not valid JSON (line {}, \
                         column {})",
                        e.line(),
                        e.column()
                    ))),
                    _ => Err(KindError(
                        "a `kv` secret is a JSON object (`{...}`), not another JSON value"
                            .to_owned(),
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_checks_its_shape_without_quoting_the_value() {
        let ok: &[(Kind, &[u8])] = &[
            (Kind::Line, b"sk_live_abc"),
            (Kind::Text, b"-----BEGIN KEY-----\nabc\n-----END KEY-----\n"),
            (Kind::Env, b"# comment\nDB_USER=app\n\nDB_PASS=p=q\r\n_X="),
            (Kind::File, &[0, 159, 255]),
            (Kind::Kv, br#" {"user":"app","n":[1,2]} "#),
        ];
        for (kind, value) in ok {
            assert!(kind.check(value).is_ok(), "{kind}");
        }
        let bad: &[(Kind, &[u8], &str)] = &[
            (Kind::Line, b"secret-one\nsecret-two", "no newline"),
            (Kind::Text, &[b's', 0xff], "byte 1"),
            (Kind::Env, b"GOOD=1\nsecret-value-without-equals", "line 2"),
            (Kind::Env, b"1BAD=secret-value", "line 1"),
            (Kind::Kv, b"[\"secret-value\"]", "not another JSON value"),
            (Kind::Kv, b"{\"secret-value\": }", "not valid JSON"),
        ];
        for (kind, value, why) in bad {
            let err = kind.check(value).unwrap_err().to_string();
            assert!(err.contains(why), "{kind}: {err}");
            assert!(!err.contains("secret-"), "{kind}: quotes the value: {err}");
        }
    }

    #[test]
    fn kv_depth_is_bounded_on_write() {
        let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert_eq!(json_depth(deep(MAX_KV_DEPTH).as_bytes()), MAX_KV_DEPTH);
        assert!(Kind::Kv.check(deep(MAX_KV_DEPTH).as_bytes()).is_ok());
        let err = Kind::Kv
            .check(deep(100_000).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 64 deep"), "{err}");
        assert_eq!(
            json_depth(br#"{"a":"[[[[{{{{"}"#),
            1,
            "brackets in strings do not count"
        );
        assert_eq!(json_depth(br#"{"a":"\"[["}"#), 1);
    }

    #[test]
    fn round_trip() {
        for &k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert!("blob".parse::<Kind>().is_err());
        assert_eq!(Kind::default(), Kind::Text);
    }
}
