//! SLO math and the operator's decisions, as pure functions over plain data.
//!
//! Nothing here performs I/O: the operator observes (Kubernetes, Prometheus), calls these
//! functions to decide, then acts and reports. That keeps every decision unit- and property-testable.

pub mod budget;
pub mod burn;
pub mod gate;
pub mod objective;
pub mod promql;
pub mod rules;
pub mod scaling;
pub mod window;
