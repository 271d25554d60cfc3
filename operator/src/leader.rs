//! Leader election on a `coordination.k8s.io` Lease, so two replicas can run and only one acts.
//!
//! Whether to acquire, renew or wait is a pure function of the Lease and the clock; the I/O around
//! it uses optimistic concurrency (`resourceVersion`), so two candidates never both win.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::info;

use crate::error::Error;

/// Where the Lease lives, who we are, and the timings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// A holder that has not renewed for this long has lost the Lease.
    pub lease_duration: Duration,
    /// How often the holder renews, and how often a candidate retries.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Timings that hand over within 15 s of a leader dying: 10 s expiry plus a 2 s retry.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate should do with the Lease as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nobody holds it, or the holder's term expired: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it until then.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// Decides the next step from the Lease spec (None when the Lease does not exist).
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Step {
    let Some(spec) = lease else {
        return Step::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Step::Acquire;
    }
    if holder == identity {
        return Step::Renew;
    }
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(renewed), Some(secs)) => renewed.0 + SignedDuration::from_secs(secs.into()) < now,
        _ => true,
    };
    if expired {
        Step::Acquire
    } else {
        Step::Wait {
            holder: holder.to_owned(),
        }
    }
}

/// Takes part in the election for one Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl Elector {
    /// An elector for `config`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// The timings.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Makes one attempt to acquire or renew. Returns whether we hold the Lease afterwards.
    pub async fn try_lead(&self) -> Result<bool, Error> {
        let c = &self.config;
        let action = || format!("lease {}/{}", c.namespace, c.name);
        let now = Timestamp::now();
        let current = self
            .api
            .get_opt(&c.name)
            .await
            .map_err(Error::kube(action()))?;
        let step = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &c.identity,
            now,
        );
        let previous = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let spec = match &step {
            Step::Wait { .. } => return Ok(false),
            Step::Renew => LeaseSpec {
                renew_time: Some(MicroTime(now)),
                ..previous
            },
            Step::Acquire => LeaseSpec {
                holder_identity: Some(c.identity.clone()),
                lease_duration_seconds: Some(c.lease_duration.as_secs() as i32),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(
                    previous.lease_transitions.unwrap_or(0) + i32::from(current.is_some()),
                ),
                ..Default::default()
            },
        };
        let result = match current {
            Some(mut lease) => {
                // resourceVersion is kept, so a concurrent writer makes this fail with 409.
                lease.spec = Some(spec);
                self.api
                    .replace(&c.name, &PostParams::default(), &lease)
                    .await
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(c.name.clone()),
                        namespace: Some(c.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => {
                if step == Step::Acquire {
                    info!(identity = %c.identity, lease = %c.name, "acquired leadership");
                }
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(Error::kube(action())(e)),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_lead().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews until a renewal fails for longer than the lease duration, then returns: leadership
    /// is lost and the caller must stop acting.
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_lead().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "lease renewal failed");
                    // Give up before the Lease expires, so two leaders never act at once.
                    if last_renewal.elapsed() + self.config.retry_period
                        >= self.config.lease_duration
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up so a standby takes over at once (on graceful shutdown).
    pub async fn release(&self) -> Result<(), Error> {
        let c = &self.config;
        let Some(mut lease) = self
            .api
            .get_opt(&c.name)
            .await
            .map_err(Error::kube(format!("lease {}", c.name)))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(c.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.api
            .replace(&c.name, &PostParams::default(), &lease)
            .await
            .map_err(Error::kube(format!("release lease {}", c.name)))?;
        info!(identity = %c.identity, "released leadership");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(10),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_or_empty_lease_is_acquired() {
        let now = Timestamp::now();
        assert_eq!(decide(None, "a", now), Step::Acquire);
        assert_eq!(decide(Some(&LeaseSpec::default()), "a", now), Step::Acquire);
    }

    #[test]
    fn the_holder_renews_and_others_wait_until_expiry() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let lease = held_by("a", t0);
        assert_eq!(decide(Some(&lease), "a", t0), Step::Renew);
        let later = |s| t0 + SignedDuration::from_secs(s);
        assert_eq!(
            decide(Some(&lease), "b", later(9)),
            Step::Wait { holder: "a".into() }
        );
        assert_eq!(decide(Some(&lease), "b", later(11)), Step::Acquire);
    }

    #[test]
    fn a_lease_without_timing_counts_as_expired() {
        let lease = LeaseSpec {
            holder_identity: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(decide(Some(&lease), "b", Timestamp::now()), Step::Acquire);
    }
}
