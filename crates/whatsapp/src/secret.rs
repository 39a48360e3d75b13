//! Credentials that must never reach a log line.

use std::fmt;

/// An access token, app secret or verify token. Its `Debug` is redacted and
/// it has no `Display`, so `?config` in a `tracing` field or a `{:?}` in an
/// error message never prints it; [`Secret::expose`] is the one way out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself: only for signing, verifying, or an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret file (Docker/Kubernetes secrets), without the trailing
    /// newline editors add. The error names the path, never the content.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path.as_ref())?;
        Ok(Secret(text.trim_end_matches(['\r', '\n']).to_owned()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-token");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(s.expose(), "hunter2-token");
    }
}
