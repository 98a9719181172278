//! yescrypt password hashes exactly as libxcrypt's crypt(3) writes them (`$y$j9T$salt$hash`,
//! what `mkpasswd -m yescrypt` prints and PAM checks): the `yescrypt` computed value.
//!
//! A [`Setting`] is the part before the hash (`$y$params$salt`): either fresh (libxcrypt's
//! default cost, 16 bytes from the OS CSPRNG) or parsed from a caller's earlier hash, strictly:
//! only the default flags, canonical encodings, and a cost no heavier than
//! [`MAX_COST_BLOCKS`] so a caller cannot make the daemon allocate much memory.

use core::str::FromStr;

use mcf::Base64;
use yescrypt::{CustomizedPasswordHasher, Mode, Params, Yescrypt};

use crate::{CryptoError, SecretBytes};

/// libxcrypt's default parameters (`crypt_gensalt("$y$", 0, ...)`, `mkpasswd -m yescrypt`):
/// N = 4096, r = 32, p = 1; about 16 MiB and tens of milliseconds per hash.
pub const DEFAULT_PARAMS: &str = "j9T";
/// Salt bytes of a fresh setting (libxcrypt's, written as 22 characters).
pub const SALT_LEN: usize = 16;
/// The longest setting (or whole hash) accepted, in bytes.
pub const MAX_SETTING_LEN: usize = 200;
/// The longest salt accepted, in bytes (libxcrypt writes 16).
pub const MAX_SALT_LEN: usize = 64;
/// The heaviest cost accepted: N * r * p at most four times libxcrypt's default (4096 * 32);
/// memory is 128 * N * r bytes, so at most 64 MiB per hash.
pub const MAX_COST_BLOCKS: u64 = 4096 * 32 * 4;
/// yescrypt's output (32 bytes) in characters.
const HASH_CHARS: usize = 43;
/// The alphabet of crypt(3)'s base64.
const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a caller's setting is refused. The messages never quote the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingError {
    /// Longer than [`MAX_SETTING_LEN`].
    #[error("the setting is longer than {MAX_SETTING_LEN} bytes")]
    TooLong,
    /// Not `$y$params$salt` or `$y$params$salt$hash`.
    #[error(
        "the setting must be a yescrypt string `$y$PARAMS$SALT` or a whole hash `$y$PARAMS$SALT$HASH`"
    )]
    Format,
    /// Parameters yescrypt cannot read, or flags other than libxcrypt's default (`j`), or a
    /// non-zero `t`/`g`, or an encoding libxcrypt would write differently.
    #[error(
        "the setting's parameters are not ones coffer computes (only libxcrypt's default flags `j`, p, t = 0, g = 0, canonical encoding)"
    )]
    Params,
    /// N * r * p above [`MAX_COST_BLOCKS`].
    #[error(
        "the setting's cost is too heavy: N*r*p may be at most {MAX_COST_BLOCKS} (4 times libxcrypt's default `j9T`)"
    )]
    TooHeavy,
    /// A salt that is empty, too long, or not canonical crypt base64.
    #[error("the setting's salt must be 1 to {MAX_SALT_LEN} bytes in crypt(3)'s base64")]
    Salt,
}

/// The parameters and salt of a yescrypt hash (everything but the hash itself).
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    params: Params,
    salt: Vec<u8>,
}

impl core::fmt::Debug for Setting {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Setting(")?;
        f.write_str(&self.to_string())?;
        f.write_str(")")
    }
}

impl core::fmt::Display for Setting {
    /// `$y$params$salt`, as crypt(3) writes it.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "$y${}${}",
            self.params,
            Base64::Crypt.encode_string(&self.salt)
        )
    }
}

impl Setting {
    /// libxcrypt's default cost ([`DEFAULT_PARAMS`]) and a fresh salt of [`SALT_LEN`] bytes
    /// from the operating system's CSPRNG.
    pub fn fresh() -> Result<Self, CryptoError> {
        let mut salt = vec![0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|_| CryptoError::Random)?;
        Ok(Self {
            params: Params::default(),
            salt,
        })
    }

    /// Reads a caller's `$y$params$salt` or whole `$y$params$salt$hash`, strictly (see
    /// [`SettingError`]). Never panics.
    pub fn parse(s: &str) -> Result<Self, SettingError> {
        if s.len() > MAX_SETTING_LEN {
            return Err(SettingError::TooLong);
        }
        let rest = s.strip_prefix("$y$").ok_or(SettingError::Format)?;
        let mut fields = rest.split('$');
        let (Some(params), Some(salt)) = (fields.next(), fields.next()) else {
            return Err(SettingError::Format);
        };
        match fields.next() {
            None => {}
            Some(hash)
                if hash.len() == HASH_CHARS && hash.bytes().all(|b| ALPHABET.contains(&b)) => {}
            Some(_) => return Err(SettingError::Format),
        }
        if fields.next().is_some() || params.is_empty() || !params.is_ascii() {
            return Err(SettingError::Format);
        }
        Ok(Self {
            params: parse_params(params)?,
            salt: parse_salt(salt)?,
        })
    }

    /// The salt's bytes.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }
}

/// The parameters of a setting, refused unless they are libxcrypt's kind (default flags,
/// p, t = 0, g = 0), canonically written, and no heavier than [`MAX_COST_BLOCKS`].
fn parse_params(s: &str) -> Result<Params, SettingError> {
    let parsed = Params::from_str(s).map_err(|_| SettingError::Params)?;
    let (n, r, p) = (parsed.n(), parsed.r(), parsed.p());
    // Equal to the same N, r, p with default flags and t = g = 0: nothing else was set.
    match Params::new(Mode::default(), n, r, p) {
        Ok(plain) if plain == parsed => {}
        _ => return Err(SettingError::Params),
    }
    let blocks = u128::from(n) * u128::from(r) * u128::from(p);
    if blocks > u128::from(MAX_COST_BLOCKS) {
        return Err(SettingError::TooHeavy);
    }
    // Written as yescrypt writes it (the output repeats the parameters in this form).
    if parsed.to_string() != s {
        return Err(SettingError::Params);
    }
    Ok(parsed)
}

/// A salt in crypt base64, canonical (re-encoding gives the same characters).
fn parse_salt(s: &str) -> Result<Vec<u8>, SettingError> {
    if s.is_empty()
        || s.len() > MAX_SALT_LEN * 4 / 3 + 1
        || !s.bytes().all(|b| ALPHABET.contains(&b))
    {
        return Err(SettingError::Salt);
    }
    let salt = Base64::Crypt
        .decode_vec(s)
        .map_err(|_| SettingError::Salt)?;
    if salt.is_empty() || salt.len() > MAX_SALT_LEN || Base64::Crypt.encode_string(&salt) != s {
        return Err(SettingError::Salt);
    }
    Ok(salt)
}

/// The yescrypt hash of `password` under `setting`: the string crypt(3) returns for
/// `crypt(password, setting)`. It takes 128 * N * r bytes (16 MiB at the default) and tens of
/// milliseconds: call it on a blocking thread. The hash is not secret; the password stays in
/// `password` (yescrypt's own working buffers are not zeroized by the crate).
pub fn yescrypt(password: &SecretBytes, setting: &Setting) -> Result<String, CryptoError> {
    let hash = Yescrypt::default()
        .hash_password_customized(
            password.expose_secret(),
            &setting.salt,
            None,
            None,
            setting.params,
        )
        .map_err(|_| CryptoError::Malformed("yescrypt parameters"))?;
    Ok(hash.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produced on Debian with libxcrypt's crypt(3), through Perl
    /// (`perl -e 'print crypt($pw, $setting)'`, libcrypt1 4.4.x), from settings that
    /// `mkpasswd -m yescrypt` (`-R 3`, `-R 7` for the other costs) printed.
    const LIBXCRYPT: &[(&[u8], &str, &str)] = &[
        (
            b"",
            "$y$j9T$5HunIKE36Q.GDh9fWbgnk/",
            "$y$j9T$5HunIKE36Q.GDh9fWbgnk/$pHUAoC2ju0GhXzLaE7pwhRdiAqwzwQAyrk3TZg7pkxD",
        ),
        (
            b"pleaseletmein",
            "$y$j9T$N/.49Z186psfuX0HwOEyv1",
            "$y$j9T$N/.49Z186psfuX0HwOEyv1$6JqOabjR2kkTdtwzqd09twu6y4HFx9UiShXl1X05WO.",
        ),
        (
            b"p\xc3\xa4ss w\xc3\xb6rd\n\xff",
            "$y$j9T$LNRUqpKBG9TA3Ref",
            "$y$j9T$LNRUqpKBG9TA3Ref$VTqtdvIZ4bMKLhbFjLB3f7Rj5rurFRZcWTn/wnl0Ny4",
        ),
        (
            b"correct horse battery staple",
            "$y$jBT$FReuq46QgP0Fxoe86b4yC0",
            "$y$jBT$FReuq46QgP0Fxoe86b4yC0$kubOJoJInd72vypPyRslmM6Oxy5UFE47ruJj9YrgNX7",
        ),
        (
            b"x",
            "$y$j7T$Q/9To.NqC6aq5QtoaWZez/",
            "$y$j7T$Q/9To.NqC6aq5QtoaWZez/$GVfTyGE08LniOOczkgnXlhVvmOAyH8G7LBzfALeFQt3",
        ),
    ];

    #[test]
    fn matches_libxcrypt() {
        for (pw, setting, expected) in LIBXCRYPT {
            let pw = SecretBytes::copy_from(pw);
            let s = Setting::parse(setting).unwrap();
            assert_eq!(s.to_string(), *setting);
            assert_eq!(yescrypt(&pw, &s).unwrap(), *expected);
            // The whole hash as the setting gives the same hash back.
            let again = Setting::parse(expected).unwrap();
            assert_eq!(yescrypt(&pw, &again).unwrap(), *expected);
        }
    }

    #[test]
    fn fresh_is_libxcrypt_default_form() {
        let a = Setting::fresh().unwrap();
        let b = Setting::fresh().unwrap();
        assert_ne!(a.salt(), b.salt());
        let h = yescrypt(&SecretBytes::copy_from(b"pw"), &a).unwrap();
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(parts.len(), 5, "{h}");
        assert_eq!((parts[0], parts[1], parts[2]), ("", "y", DEFAULT_PARAMS));
        assert_eq!((parts[3].len(), parts[4].len()), (22, 43));
        assert_eq!(Setting::parse(&h).unwrap(), a);
    }

    #[test]
    fn refuses_bad_settings() {
        let salt = "5HunIKE36Q.GDh9fWbgnk/";
        let cases: &[(String, SettingError)] = &[
            ("$6$abc$def".into(), SettingError::Format),
            ("$y$".into(), SettingError::Format),
            ("$y$j9T".into(), SettingError::Format),
            (format!("$y$j9T${salt}$short"), SettingError::Format),
            (format!("$y$j9T${salt}$x$y"), SettingError::Format),
            (format!("$y$${salt}"), SettingError::Format),
            (
                format!("$y$j9T${salt}{}", "a".repeat(300)),
                SettingError::TooLong,
            ),
            // jFT: N = 2^18, 16 times the default's memory.
            (format!("$y$jFT${salt}"), SettingError::TooHeavy),
            (format!("$y$jzT${salt}"), SettingError::Params),
            // Other flags (classic scrypt, WORM).
            (format!("$y$.9T${salt}"), SettingError::Params),
            (format!("$y$/9T${salt}"), SettingError::Params),
            // t = 1 (the "have" field, then t).
            (format!("$y$j9T1.${salt}"), SettingError::Params),
            (
                format!("$y$j9T${}", "abcdefghijklmnopqrstuv"),
                SettingError::Salt,
            ),
            (format!("$y$j9T$!{}", &salt[1..]), SettingError::Salt),
            (format!("$y$j9T${}", "a".repeat(120)), SettingError::Salt),
        ];
        for (s, want) in cases {
            assert_eq!(Setting::parse(s).as_ref().err(), Some(want), "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\$y\\$[./0-9A-Za-z]{0,12}(\\$[./0-9A-Za-z]{0,30}){0,3}") {
            if let Ok(setting) = Setting::parse(&s) {
                proptest::prop_assert!(setting.to_string().len() <= s.len());
            }
        }
    }
}
