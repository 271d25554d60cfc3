//! The contract between the operator and the data-plane workers: the config file the operator
//! renders into a ConfigMap and the workers read at start (with its validation), the roles, the
//! ports, and the scopes of the bearer tokens. Small on purpose: the operator links this, not the
//! data plane.

pub mod auth;
pub mod config;
