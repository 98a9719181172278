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

#[cfg(test)]
mod tests {
    use super::*;

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
