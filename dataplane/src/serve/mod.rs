//! The read path.

pub mod http;
pub mod reader;
