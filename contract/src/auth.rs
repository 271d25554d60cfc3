//! The scopes of the data plane's bearer tokens: which token a route needs, which role serves it,
//! and the config key naming its token file. The operator mounts a scope's token where the worker
//! of that role reads it.

use crate::config::Role;

/// Which token a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Bulk update writes (`POST /v1/updates`).
    Ingest,
    /// Operations: dead letters, snapshots, the degradation switch.
    Admin,
    /// The read API.
    Read,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Admin, Scope::Read];

    /// Whether a process of `role` serves this scope's routes (and so needs its token).
    pub fn served_by(self, role: Role) -> bool {
        match self {
            Scope::Ingest | Scope::Admin => matches!(role, Role::Ingest | Role::Standalone),
            Scope::Read => matches!(role, Role::Serve | Role::Standalone),
        }
    }

    /// The name used in logs and error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Admin => "admin",
            Scope::Read => "read",
        }
    }

    /// The config key naming this scope's token file.
    pub fn config_key(self) -> &'static str {
        match self {
            Scope::Ingest => "auth.ingestTokenFile",
            Scope::Admin => "auth.adminTokenFile",
            Scope::Read => "auth.readTokenFile",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_serves_its_scopes() {
        let served = |role| {
            Scope::ALL
                .into_iter()
                .filter(|s| s.served_by(role))
                .map(Scope::as_str)
                .collect::<Vec<_>>()
        };
        assert_eq!(served(Role::Ingest), ["ingest", "admin"]);
        assert_eq!(served(Role::Serve), ["read"]);
        assert_eq!(served(Role::Standalone), ["ingest", "admin", "read"]);
    }
}
