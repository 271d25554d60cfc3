//! Which workloads a pipeline runs follows from its storage backend.

use tailwarden_crds::RetailPipelineSpec;

/// The shape of a pipeline's workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One StatefulSet replica runs ingest and serve on the embedded store: it cannot scale out.
    Standalone,
    /// Separate ingest and serve Deployments on a distributed store, scaled independently.
    Distributed,
}

impl Topology {
    /// The topology a spec asks for.
    pub fn of(spec: &RetailPipelineSpec) -> Self {
        if spec.storage.cassandra.is_some() {
            Topology::Distributed
        } else {
            Topology::Standalone
        }
    }

    /// The name reported in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Standalone => "standalone",
            Topology::Distributed => "distributed",
        }
    }

    /// Why horizontal scaling is unavailable, if it is.
    pub fn scaling_limit(self) -> Option<&'static str> {
        match self {
            Topology::Standalone => Some(
                "horizontal scaling needs a distributed backend: the embedded store runs one \
                 standalone worker (set spec.storage.cassandra to scale ingest and serve)",
            ),
            Topology::Distributed => None,
        }
    }
}
