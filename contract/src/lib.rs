//! The contract between the operator and the data-plane workers: the config file the operator
//! renders into a ConfigMap and the workers read at start (with its validation), the roles, the
//! ports, the scopes of the bearer tokens, and the backend states the workers export. Small on purpose: the operator links this, not the
//! data plane.

pub mod auth;
pub mod backend;
pub mod config;
