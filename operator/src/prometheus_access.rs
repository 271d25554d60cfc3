//! How the SLO engine reaches Prometheus: TLS trust (a CA file), an optional client certificate
//! (mTLS), and a bearer token or HTTP basic auth, each read from a file that the chart mounts from
//! a Secret or ConfigMap. The operator never reads Secrets through the API.
//!
//! The files are read again on every evaluation pass: a rotated token or password is used from the
//! next pass on, and a changed CA or client certificate rebuilds the HTTP client. Credentials are
//! sent as a sensitive `Authorization` header and never written to logs, Events or the status:
//! errors name the flag and the file, never the content.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::HeaderValue;

/// The operator flags, for error messages.
pub mod flags {
    /// PEM file of the CA(s) that sign Prometheus's serving certificate.
    pub const CA_FILE: &str = "--prometheus-ca-file";
    /// PEM file of the client certificate (mTLS).
    pub const CERT_FILE: &str = "--prometheus-cert-file";
    /// PEM file of the client certificate's private key (mTLS).
    pub const KEY_FILE: &str = "--prometheus-key-file";
    /// File holding a bearer token.
    pub const BEARER_TOKEN_FILE: &str = "--prometheus-bearer-token-file";
    /// File holding the basic-auth user name.
    pub const BASIC_AUTH_USERNAME_FILE: &str = "--prometheus-basic-auth-username-file";
    /// File holding the basic-auth password.
    pub const BASIC_AUTH_PASSWORD_FILE: &str = "--prometheus-basic-auth-password-file";
}

/// The files the engine reads to reach Prometheus. All optional; none set is plain HTTP(S) with the
/// system's trust roots and no credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrometheusAccess {
    /// CA bundle (PEM) trusted for Prometheus's serving certificate, instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM, PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Bearer token, sent as `Authorization: Bearer …`; surrounding whitespace is trimmed.
    pub bearer_token_file: Option<PathBuf>,
    /// Basic-auth user name; needs `basic_auth_password_file`.
    pub basic_auth_username_file: Option<PathBuf>,
    /// Basic-auth password; needs `basic_auth_username_file`.
    pub basic_auth_password_file: Option<PathBuf>,
}

/// Why the Prometheus access settings cannot be used. Names the flag, never a file's content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    /// A file cannot be read.
    #[error("{flag} {path}: cannot read: {reason}")]
    Unreadable {
        /// The flag that names the file.
        flag: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A credential file is empty (or only whitespace).
    #[error("{flag} {path}: the file is empty")]
    Empty {
        /// The flag that names the file.
        flag: &'static str,
        /// The file.
        path: String,
    },
    /// Two settings that exclude each other.
    #[error("{0} and {1} exclude each other: set a bearer token or basic auth, not both")]
    Conflict(&'static str, &'static str),
    /// A setting that needs another.
    #[error("{0} needs {1}")]
    Incomplete(&'static str, &'static str),
    /// A file's content is not usable.
    #[error("{flag} {path}: {reason}")]
    Invalid {
        /// The flag that names the file.
        flag: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The TLS material as read from the files: the HTTP client is rebuilt when it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsMaterial {
    /// The CA file and its content.
    ca: Option<(String, Vec<u8>)>,
    /// The client certificate file, its content and the key's content.
    identity: Option<(String, Vec<u8>, Vec<u8>)>,
}

impl PrometheusAccess {
    /// Checks the combination of settings and reads and parses every file once: the operator
    /// refuses to start on settings it could never use.
    pub fn validate(&self) -> Result<(), AccessError> {
        let tls = self.tls_material()?;
        self.authorization()?;
        client(&tls, Duration::from_secs(1))?;
        Ok(())
    }

    /// Whether any setting is given.
    pub fn is_configured(&self) -> bool {
        self != &Self::default()
    }

    /// Reads the CA and client certificate files.
    pub fn tls_material(&self) -> Result<TlsMaterial, AccessError> {
        let ca = self
            .ca_file
            .as_deref()
            .map(|p| Ok::<_, AccessError>((p.display().to_string(), read(flags::CA_FILE, p)?)))
            .transpose()?;
        let identity = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(AccessError::Incomplete(flags::CERT_FILE, flags::KEY_FILE));
            }
            (None, Some(_)) => {
                return Err(AccessError::Incomplete(flags::KEY_FILE, flags::CERT_FILE));
            }
            (Some(cert), Some(key)) => Some((
                cert.display().to_string(),
                read(flags::CERT_FILE, cert)?,
                read(flags::KEY_FILE, key)?,
            )),
        };
        Ok(TlsMaterial { ca, identity })
    }

    /// The `Authorization` header to send, read from the token or basic-auth files now (so a
    /// rotated credential is used at once). Marked sensitive.
    pub fn authorization(&self) -> Result<Option<HeaderValue>, AccessError> {
        let basic =
            self.basic_auth_username_file.is_some() || self.basic_auth_password_file.is_some();
        if self.bearer_token_file.is_some() && basic {
            let other = if self.basic_auth_username_file.is_some() {
                flags::BASIC_AUTH_USERNAME_FILE
            } else {
                flags::BASIC_AUTH_PASSWORD_FILE
            };
            return Err(AccessError::Conflict(flags::BEARER_TOKEN_FILE, other));
        }
        let value = if let Some(path) = &self.bearer_token_file {
            let token = secret(flags::BEARER_TOKEN_FILE, path)?;
            format!("Bearer {token}")
        } else if basic {
            let (Some(user), Some(password)) = (
                &self.basic_auth_username_file,
                &self.basic_auth_password_file,
            ) else {
                return Err(if self.basic_auth_username_file.is_some() {
                    AccessError::Incomplete(
                        flags::BASIC_AUTH_USERNAME_FILE,
                        flags::BASIC_AUTH_PASSWORD_FILE,
                    )
                } else {
                    AccessError::Incomplete(
                        flags::BASIC_AUTH_PASSWORD_FILE,
                        flags::BASIC_AUTH_USERNAME_FILE,
                    )
                });
            };
            let user = secret(flags::BASIC_AUTH_USERNAME_FILE, user)?;
            if user.contains(':') {
                return Err(AccessError::Invalid {
                    flag: flags::BASIC_AUTH_USERNAME_FILE,
                    path: display(self.basic_auth_username_file.as_deref()),
                    reason: "a basic-auth user name cannot contain ':'".into(),
                });
            }
            let password = secret(flags::BASIC_AUTH_PASSWORD_FILE, password)?;
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {encoded}")
        } else {
            return Ok(None);
        };
        let flag = if self.bearer_token_file.is_some() {
            flags::BEARER_TOKEN_FILE
        } else {
            flags::BASIC_AUTH_PASSWORD_FILE
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| AccessError::Invalid {
            flag,
            path: display(
                self.bearer_token_file
                    .as_deref()
                    .or(self.basic_auth_password_file.as_deref()),
            ),
            reason: "the credential holds characters an HTTP header cannot carry".into(),
        })?;
        header.set_sensitive(true);
        Ok(Some(header))
    }
}

/// An HTTP client for Prometheus that trusts `tls.ca` (only it, when set) and presents
/// `tls.identity`, with `timeout` per request.
pub fn client(tls: &TlsMaterial, timeout: Duration) -> Result<reqwest::Client, AccessError> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some((path, ca)) = &tls.ca {
        let certs = reqwest::Certificate::from_pem_bundle(ca)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| AccessError::Invalid {
                flag: flags::CA_FILE,
                path: path.clone(),
                reason: "no PEM certificate in the file".into(),
            })?;
        builder = builder.tls_certs_only(certs);
    }
    if let Some((path, cert, key)) = &tls.identity {
        let mut pem = cert.clone();
        pem.push(b'\n');
        pem.extend_from_slice(key);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| AccessError::Invalid {
            flag: flags::CERT_FILE,
            path: path.clone(),
            reason: format!(
                "with {}: not a usable certificate and key: {e}",
                flags::KEY_FILE
            ),
        })?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|e| {
        let (flag, path) = match (&tls.identity, &tls.ca) {
            (Some((path, ..)), _) => (flags::CERT_FILE, path.clone()),
            (None, Some((path, _))) => (flags::CA_FILE, path.clone()),
            (None, None) => ("--prometheus-url", String::new()),
        };
        AccessError::Invalid {
            flag,
            path,
            reason: format!("the TLS settings are unusable: {e}"),
        }
    })
}

fn display(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, AccessError> {
    std::fs::read(path).map_err(|e| AccessError::Unreadable {
        flag,
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    })
}

/// A credential file's content without surrounding whitespace (a trailing newline is common).
fn secret(flag: &'static str, path: &Path) -> Result<String, AccessError> {
    let bytes = read(flag, path)?;
    let text = String::from_utf8(bytes).map_err(|_| AccessError::Invalid {
        flag,
        path: path.display().to_string(),
        reason: "not UTF-8 text".into(),
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(AccessError::Empty {
            flag,
            path: path.display().to_string(),
        });
    }
    Ok(trimmed.to_owned())
}

/// A readable description of a failed Prometheus request: the client's message and its causes
/// (HTTP status, TLS or connection error), without the request URL (it holds the whole PromQL).
pub fn describe(err: &prometheus_http_query::Error) -> String {
    use std::error::Error as _;
    match err {
        prometheus_http_query::Error::Client(e) => {
            let mut text = e.to_string();
            if let Some(inner) = e.inner() {
                if let Some(status) = inner.status() {
                    text.push_str(&format!(": HTTP {status}"));
                } else {
                    let mut source = inner.source();
                    while let Some(s) = source {
                        text.push_str(&format!(": {s}"));
                        source = s.source();
                    }
                    if inner.is_timeout() && !text.contains("timed out") {
                        text.push_str(": timed out");
                    }
                }
            }
            text
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "tailwarden-access-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn file(dir: &Path, name: &str, content: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn nothing_set_is_valid_and_sends_no_credentials() {
        let access = PrometheusAccess::default();
        assert!(!access.is_configured());
        access.validate().unwrap();
        assert_eq!(access.authorization().unwrap(), None);
    }

    #[test]
    fn bearer_token_is_trimmed_sensitive_and_reread_on_each_call() {
        let d = dir();
        let token = file(&d, "token", "first-token\n");
        let access = PrometheusAccess {
            bearer_token_file: Some(token.clone()),
            ..Default::default()
        };
        access.validate().unwrap();
        let h = access.authorization().unwrap().unwrap();
        assert_eq!(h.to_str().unwrap(), "Bearer first-token");
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("first-token"), "Debug hides it");
        std::fs::write(&token, "second-token").unwrap();
        assert_eq!(
            access.authorization().unwrap().unwrap().to_str().unwrap(),
            "Bearer second-token"
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn basic_auth_is_base64_of_user_colon_password() {
        let d = dir();
        let access = PrometheusAccess {
            basic_auth_username_file: Some(file(&d, "user", "alice\n")),
            basic_auth_password_file: Some(file(&d, "password", "open sesame\n")),
            ..Default::default()
        };
        access.validate().unwrap();
        // base64("alice:open sesame")
        assert_eq!(
            access.authorization().unwrap().unwrap().to_str().unwrap(),
            "Basic YWxpY2U6b3BlbiBzZXNhbWU="
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn bad_settings_name_the_flag_and_never_the_secret() {
        let d = dir();
        let token = file(&d, "token", "tok-123");
        let user = file(&d, "user", "alice");
        let password = file(&d, "password", "pw-456");
        let both = PrometheusAccess {
            bearer_token_file: Some(token.clone()),
            basic_auth_username_file: Some(user.clone()),
            basic_auth_password_file: Some(password.clone()),
            ..Default::default()
        };
        let err = both.validate().unwrap_err().to_string();
        assert!(
            err.contains(flags::BEARER_TOKEN_FILE) && err.contains(flags::BASIC_AUTH_USERNAME_FILE),
            "{err}"
        );

        let missing = PrometheusAccess {
            bearer_token_file: Some(d.join("absent")),
            ..Default::default()
        };
        let err = missing.validate().unwrap_err().to_string();
        assert!(
            err.starts_with(flags::BEARER_TOKEN_FILE) && err.contains("absent"),
            "{err}"
        );

        let half = PrometheusAccess {
            basic_auth_password_file: Some(password.clone()),
            ..Default::default()
        };
        assert_eq!(
            half.validate().unwrap_err(),
            AccessError::Incomplete(
                flags::BASIC_AUTH_PASSWORD_FILE,
                flags::BASIC_AUTH_USERNAME_FILE
            )
        );
        let empty = PrometheusAccess {
            bearer_token_file: Some(file(&d, "empty", " \n")),
            ..Default::default()
        };
        assert!(matches!(empty.validate(), Err(AccessError::Empty { .. })));
        let no_key = PrometheusAccess {
            cert_file: Some(file(&d, "cert", "x")),
            ..Default::default()
        };
        assert_eq!(
            no_key.validate().unwrap_err(),
            AccessError::Incomplete(flags::CERT_FILE, flags::KEY_FILE)
        );
        let bad_ca = PrometheusAccess {
            ca_file: Some(file(&d, "ca", "not a certificate")),
            ..Default::default()
        };
        let err = bad_ca.validate().unwrap_err().to_string();
        assert!(err.starts_with(flags::CA_FILE), "{err}");
        for e in [both.validate(), half.validate(), missing.validate()] {
            let text = e.unwrap_err().to_string();
            assert!(
                !text.contains("tok-123") && !text.contains("pw-456"),
                "{text}"
            );
        }
        let _ = std::fs::remove_dir_all(d);
    }
}
