//! Keeping storage secrets out of displays, errors and logs.
//!
//! Three layers, because secrets reach text by different roads:
//! - [`is_secret_key`] decides which storage options are shown as `***` by
//!   `StorageRoot`'s `Display`.
//! - Every secret value the process is configured with (options, the standard
//!   environment variables, a password in the root URL) is registered once;
//!   [`redact`] replaces each occurrence in a text, and signatures / SAS query
//!   parameters by pattern. The crate's storage, Delta and query errors display
//!   through it.
//! - [`RedactingStderr`] applies [`redact`] to every log line, so third-party
//!   crates (deltalake, object_store, reqwest) cannot leak them either.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{LazyLock, RwLock};

use regex::Regex;
use url::Url;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Environment variables whose values are secrets (object_store / deltalake
/// read them directly).
pub const SECRET_ENV_VARS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
];

/// Secrets shorter than this are not registered: replacing e.g. `"1"` in every
/// message would make them unreadable, and such values are not real secrets.
const MIN_SECRET_LEN: usize = 4;

static SECRETS: LazyLock<RwLock<BTreeSet<String>>> = LazyLock::new(|| RwLock::new(BTreeSet::new()));

/// Signatures and tokens that appear in request URLs and headers
/// (S3 presigned URLs, Azure SAS query strings, authorization headers).
static PATTERNS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"(?i)\b((?:sig|signature|x-amz-signature|x-amz-security-token|x-amz-credential)=)[^&\s'\x22<>]+",
        r"(?i)(authorization:\s*)[^\r\n]+",
        r"(?i)(sharedkey\s+[^:\s]+:)\S+",
        r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+",
    ]
    .iter()
    .map(|p| Regex::new(p).unwrap_or_else(|e| panic!("invalid redaction pattern {p}: {e}")))
    .collect()
});

/// Whether a storage option key names a secret (its value is never shown).
///
/// `aws_access_key_id` and `azure_storage_client_id` identify, they do not
/// authenticate, so they are shown.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    if key.ends_with("_id") || key.ends_with("_name") || key.ends_with("_file") {
        return false;
    }
    [
        "secret",
        "password",
        "token",
        "sas",
        "signature",
        "credential",
    ]
    .iter()
    .any(|word| key.contains(word))
        || key.ends_with("_key")
        || key == "key"
}

/// Registers a secret value so that [`redact`] hides it from now on.
pub fn register_secret(value: &str) {
    let value = value.trim();
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    secrets.insert(value.to_string());
    // Secrets also travel percent-encoded (SAS tokens, keys with `+` or `/`).
    let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    if encoded != value {
        secrets.insert(encoded);
    }
}

/// Registers the secret values of the standard environment variables.
pub fn register_env_secrets() {
    for name in SECRET_ENV_VARS {
        if let Ok(value) = std::env::var(name) {
            register_secret(&value);
        }
    }
}

/// `text` with every registered secret and every signature-like parameter
/// replaced by [`MASK`].
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    {
        let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
        // Longest first, so a secret containing another is masked whole.
        let mut ordered: Vec<&String> = secrets.iter().collect();
        ordered.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in ordered {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
    }
    for pattern in PATTERNS.iter() {
        if pattern.is_match(&out) {
            out = pattern
                .replace_all(&out, format!("${{1}}{MASK}"))
                .into_owned();
        }
    }
    out
}

/// `url` for display: a password becomes `***`, the query string (SAS tokens)
/// is dropped.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some(MASK));
    }
    if shown.query().is_some() {
        shown.set_query(Some(MASK));
    }
    shown.to_string()
}

/// A configured root (path or URL) for display, like [`redact_url`].
pub fn redact_root(root: &str) -> String {
    match Url::parse(root) {
        Ok(url) if root.contains("://") => redact_url(&url),
        _ => redact(root),
    }
}

/// A `tracing_subscriber` writer to stderr that passes every log line through
/// [`redact`]. The fmt layer writes one formatted event per `write` call into
/// this buffer, which is redacted and written out when dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedactingStderr;

/// One event being written by [`RedactingStderr`].
#[derive(Debug, Default)]
pub struct RedactingLine(Vec<u8>);

impl Write for RedactingLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingLine {
    fn drop(&mut self) {
        let text = redact(&String::from_utf8_lossy(&self.0));
        // Nowhere to report a failed log write to.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingLine;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingLine::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys() {
        for key in [
            "aws_secret_access_key",
            "AWS_SECRET_ACCESS_KEY",
            "aws_session_token",
            "azure_storage_account_key",
            "azure_storage_sas_key",
            "azure_client_secret",
            "azure_storage_token",
            "access_key",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "aws_access_key_id",
            "aws_endpoint_url",
            "aws_region",
            "azure_storage_account_name",
            "azure_storage_client_id",
            "azure_storage_use_emulator",
            "azure_federated_token_file",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn registered_secrets_and_signatures_are_masked() {
        register_secret("s3cr3t/with+chars");
        let text = "failed: key s3cr3t/with+chars, encoded s3cr3t%2Fwith%2Bchars, \
                    url https://a.blob.core.windows.net/c/x?sv=2022&sig=AbC%2Fd&se=2030 \
                    Authorization: SharedKey acct:Zm9vYmFy";
        let shown = redact(text);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("AbC"), "{shown}");
        assert!(!shown.contains("Zm9vYmFy"), "{shown}");
        assert!(shown.contains("failed: key ***"), "{shown}");
    }

    #[test]
    fn urls_lose_passwords_and_queries() {
        let url = Url::parse("s3://user:hunter22@bucket/prefix?token=abc").unwrap();
        let shown = redact_url(&url);
        assert!(
            !shown.contains("hunter22") && !shown.contains("abc"),
            "{shown}"
        );
        assert!(shown.starts_with("s3://user:***@bucket/prefix"), "{shown}");
    }
}
