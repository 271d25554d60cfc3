//! Bearer-token authentication of the HTTP APIs.
//!
//! Each route belongs to one [`Scope`]; a scope whose token file is configured needs
//! `Authorization: Bearer <token>`, a scope without one is open (the behaviour before tokens
//! existed). Tokens are read from files mounted from Secrets, never from the config (a
//! ConfigMap), and are never logged or echoed in a response.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::{Auth, ConfigError, Role};
pub use tailwarden_contract::auth::Scope;

/// A token as read from its file. `Debug` never shows it.
pub struct Token(Box<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Reads a token file; surrounding whitespace (the trailing newline of most Secret files)
    /// is not part of the token. Errors name the key and the file, never the content.
    pub fn load(scope: Scope, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |why: String| ConfigError::Invalid {
            key: scope.config_key().into(),
            why,
        };
        let bytes = std::fs::read(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        let token = bytes.trim_ascii();
        if token.is_empty() {
            return Err(invalid(format!("{} is empty", path.display())));
        }
        // Anything else could not be sent in an Authorization header.
        if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(invalid(format!(
                "{} must hold printable ASCII without spaces",
                path.display()
            )));
        }
        Ok(Self(token.into()))
    }

    /// Compares in time that depends only on the expected token's length, so response times
    /// do not reveal how many leading bytes a guess got right.
    fn matches(&self, given: &[u8]) -> bool {
        let mut diff = u8::from(given.len() != self.0.len());
        for (i, expected) in self.0.iter().enumerate() {
            diff |= expected ^ given.get(i).copied().unwrap_or(0);
        }
        std::hint::black_box(diff) == 0
    }
}

/// The guard of one scope's routes: its token, or open when none is configured.
#[derive(Clone, Debug)]
pub struct Guard {
    scope: Scope,
    token: Option<Arc<Token>>,
}

/// Why a request was not let through.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer credentials at all (no header, or another scheme).
    #[error("this route needs a bearer token of the {} scope (Authorization: Bearer <token>)", .0.as_str())]
    Missing(Scope),
    /// Bearer credentials that are not this scope's token.
    #[error("the bearer token is not valid for the {} scope", .0.as_str())]
    Invalid(Scope),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            AuthError::Missing(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AuthError::Invalid(_) => (StatusCode::FORBIDDEN, "forbidden"),
        };
        let mut r = (
            status,
            Json(json!({"error": self.to_string(), "code": code})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tailwarden\""),
            );
        }
        r
    }
}

impl Guard {
    /// A guard that lets every request through.
    pub fn open(scope: Scope) -> Self {
        Self { scope, token: None }
    }

    /// A guard that needs `token`.
    pub fn with_token(scope: Scope, token: Token) -> Self {
        Self {
            scope,
            token: Some(Arc::new(token)),
        }
    }

    /// The scope this guard protects.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Whether requests need no token.
    pub fn is_open(&self) -> bool {
        self.token.is_none()
    }

    /// Checks a request's `Authorization` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
            .ok_or(AuthError::Missing(self.scope))?;
        if token.matches(given) {
            Ok(())
        } else {
            Err(AuthError::Invalid(self.scope))
        }
    }
}

/// The credentials of `Bearer <credentials>` (scheme case-insensitive, RFC 6750).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let credentials = value[7..].trim_ascii();
    (!credentials.is_empty()).then_some(credentials)
}

/// Middleware: answers 401/403 unless the request carries the guard's token.
pub async fn require(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    match guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            tracing::debug!(scope = guard.scope.as_str(), reason = %e, path = request.uri().path(), "request refused");
            e.into_response()
        }
    }
}

/// The guards of every scope.
#[derive(Clone, Debug)]
pub struct Guards {
    /// `POST /v1/updates`.
    pub ingest: Guard,
    /// Dead letters, snapshots, degradation.
    pub admin: Guard,
    /// The read API.
    pub read: Guard,
}

impl Guards {
    /// Guards that let everything through.
    pub fn open() -> Self {
        Self {
            ingest: Guard::open(Scope::Ingest),
            admin: Guard::open(Scope::Admin),
            read: Guard::open(Scope::Read),
        }
    }

    /// Reads the token files of the scopes `role` serves (a serve pod need not mount the write
    /// API's tokens).
    pub fn load(auth: &Auth, role: Role) -> Result<Self, ConfigError> {
        let guard = |scope: Scope, file: &Option<std::path::PathBuf>| match file {
            Some(path) if scope.served_by(role) => {
                Ok(Guard::with_token(scope, Token::load(scope, path)?))
            }
            _ => Ok::<_, ConfigError>(Guard::open(scope)),
        };
        Ok(Self {
            ingest: guard(Scope::Ingest, &auth.ingest_token_file)?,
            admin: guard(Scope::Admin, &auth.admin_token_file)?,
            read: guard(Scope::Read, &auth.read_token_file)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Token {
        Token(s.as_bytes().into())
    }

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        h
    }

    #[test]
    fn tokens_match_only_exactly() {
        let t = token("s3cret-token");
        assert!(t.matches(b"s3cret-token"));
        assert!(!t.matches(b"s3cret-toke"));
        assert!(!t.matches(b"s3cret-token!"));
        assert!(!t.matches(b"S3cret-token"));
        assert!(!t.matches(b""));
        // A guess padded with the zero bytes the comparison substitutes is still wrong.
        assert!(!token("ab").matches(b"ab\0"));
    }

    #[test]
    fn guard_answers_missing_and_invalid() {
        let g = Guard::with_token(Scope::Admin, token("adm"));
        assert_eq!(
            g.check(&HeaderMap::new()),
            Err(AuthError::Missing(Scope::Admin))
        );
        assert_eq!(
            g.check(&headers("Basic YWRtOmFkbQ==")),
            Err(AuthError::Missing(Scope::Admin))
        );
        assert_eq!(
            g.check(&headers("Bearer nope")),
            Err(AuthError::Invalid(Scope::Admin))
        );
        assert_eq!(g.check(&headers("Bearer adm")), Ok(()));
        assert_eq!(g.check(&headers("bearer  adm ")), Ok(()));
        assert_eq!(Guard::open(Scope::Admin).check(&HeaderMap::new()), Ok(()));
    }

    #[test]
    fn token_files_are_trimmed_and_errors_never_show_the_content() {
        let dir = std::env::temp_dir().join(format!("tw-auth-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "abc123\n").unwrap();
        assert!(
            Token::load(Scope::Ingest, &good)
                .unwrap()
                .matches(b"abc123")
        );
        assert_eq!(
            format!("{:?}", Token::load(Scope::Ingest, &good).unwrap()),
            "Token(<redacted>)"
        );
        let bad = dir.join("bad");
        std::fs::write(&bad, "has space-secretvalue").unwrap();
        let err = Token::load(Scope::Read, &bad).unwrap_err().to_string();
        assert!(err.contains("auth.readTokenFile"), "{err}");
        assert!(!err.contains("secretvalue"), "{err}");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = Token::load(Scope::Admin, &empty).unwrap_err().to_string();
        assert!(
            err.contains("auth.adminTokenFile") && err.contains("empty"),
            "{err}"
        );
        let err = Token::load(Scope::Admin, &dir.join("absent"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn roles_load_only_the_tokens_they_use() {
        let auth = Auth {
            ingest_token_file: Some("/nonexistent/ingest".into()),
            admin_token_file: Some("/nonexistent/admin".into()),
            read_token_file: None,
        };
        // A serve pod does not mount the write API's tokens.
        let guards = Guards::load(&auth, Role::Serve).unwrap();
        assert!(guards.ingest.is_open() && guards.admin.is_open() && guards.read.is_open());
        let err = Guards::load(&auth, Role::Ingest).unwrap_err().to_string();
        assert!(err.contains("auth.ingestTokenFile"), "{err}");
    }
}
