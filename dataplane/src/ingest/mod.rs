//! The write path: admission (bounded, 429 when full), a source of jobs, and writers that
//! group-commit them. The in-process channel (HTTP, snapshots, replay) is one source; without
//! Kafka it feeds several writer threads, split by key (`router`). In Kafka mode one writer takes
//! the consumer group (`stream::consumer::KafkaSource`) merged beside the in-process channel.

pub mod admission;
pub mod body;
pub mod deferral;
pub mod http;
pub mod router;
pub mod writer;

use std::time::Duration;

use crate::model::Update;
use crate::store::DeadLetter;

/// One record of a job, already parsed at the boundary.
#[derive(Debug)]
pub enum Item {
    /// A valid update.
    Update(Update),
    /// A rejected record, to be dead-lettered durably with the batch.
    Rejected(DeadLetter),
}

/// What happened to one record. Every outcome except a failed commit is durable when reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied: at least one field took its value.
    Accepted,
    /// Its event id was already applied.
    Deduplicated,
    /// Applied but every field it sets already held a newer write.
    Stale,
    /// Non-critical and paused: stored durably, applied when the pause ends.
    Deferred,
    /// Invalid: stored in the dead-letter store.
    Rejected,
}

impl Outcome {
    /// The metric label and response key.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Deduplicated => "deduplicated",
            Outcome::Stale => "stale",
            Outcome::Deferred => "deferred",
            Outcome::Rejected => "rejected",
        }
    }
}

/// The writer's answer to a job: per-record outcomes, or why nothing was committed.
pub type JobResult = Result<Vec<Outcome>, String>;

/// A unit of work for the writer, acknowledged once its batch is durable.
pub struct Job {
    /// Records, in arrival order.
    pub items: Vec<Item>,
    /// Deferred updates this job applies (deleted in the same commit). A caller gives none or
    /// one per item, in item order, so that each follows its item to its writer (`router`).
    pub deferred_ids: Vec<u64>,
    /// Dead letters this job replays (deleted in the same commit); given as `deferred_ids`.
    pub dead_letter_ids: Vec<u64>,
    /// Called exactly once, after the commit succeeded or failed.
    pub ack: Box<dyn FnOnce(JobResult) + Send>,
}

impl Job {
    /// A job whose result is delivered on a channel.
    pub fn new(items: Vec<Item>) -> (Self, tokio::sync::oneshot::Receiver<JobResult>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Self {
            items,
            deferred_ids: Vec::new(),
            dead_letter_ids: Vec::new(),
            ack: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        };
        (job, rx)
    }
}

/// What a source yields.
pub enum Next {
    /// A job.
    Job(Job),
    /// Nothing arrived within the timeout.
    Idle,
    /// The source is finished (shutdown): the writer drains and stops.
    Closed,
}

/// A source of jobs for the writer. Implementations acknowledge upstream (HTTP response, Kafka
/// offset commit) in the job's `ack`, which the writer calls only after a durable commit.
pub trait UpdateSource: Send {
    /// Waits up to `timeout` for the next job.
    fn next(&mut self, timeout: Duration) -> Next;
}

/// The in-process source fed by the HTTP handlers and background tasks. It closes once
/// shutdown is signalled and nothing is left to take.
pub struct ChannelSource {
    /// Jobs from the handlers.
    pub jobs: std::sync::mpsc::Receiver<Job>,
    /// Turns true at shutdown.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

impl UpdateSource for ChannelSource {
    fn next(&mut self, timeout: Duration) -> Next {
        let timeout = if *self.closing.borrow() {
            Duration::ZERO
        } else {
            timeout
        };
        match self.jobs.recv_timeout(timeout) {
            Ok(job) => Next::Job(job),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if *self.closing.borrow() => {
                Next::Closed
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Next::Idle,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }
}

/// How long the merged source waits on its second source before looking at the first again: the
/// most an in-process job (a replay, a deferred chunk) waits behind an idle Kafka poll.
const MERGED_SLICE: Duration = Duration::from_millis(20);

/// Two sources feeding one writer: `first` (the in-process channel of replays, deferred updates
/// and, without Kafka, the HTTP API) is taken without waiting whenever it has a job; `second` (the
/// Kafka consumer) is waited on in short slices. Closed once both are.
pub struct MergedSource<A, B> {
    first: Option<A>,
    second: Option<B>,
}

impl<A: UpdateSource, B: UpdateSource> MergedSource<A, B> {
    /// Both sources, neither closed yet.
    pub fn new(first: A, second: B) -> Self {
        Self {
            first: Some(first),
            second: Some(second),
        }
    }
}

impl<A: UpdateSource, B: UpdateSource> UpdateSource for MergedSource<A, B> {
    fn next(&mut self, timeout: Duration) -> Next {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(first) = &mut self.first {
                match first.next(Duration::ZERO) {
                    Next::Job(job) => return Next::Job(job),
                    Next::Closed => self.first = None,
                    Next::Idle => {}
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let slice = if self.first.is_some() {
                left.min(MERGED_SLICE)
            } else {
                left
            };
            match &mut self.second {
                Some(second) => match second.next(slice) {
                    Next::Job(job) => return Next::Job(job),
                    Next::Closed => self.second = None,
                    Next::Idle => {}
                },
                None if self.first.is_none() => return Next::Closed,
                None => {
                    if let Some(first) = &mut self.first {
                        return first.next(left);
                    }
                }
            }
            if std::time::Instant::now() >= deadline {
                return Next::Idle;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted source: yields its answers in order, then `Closed`.
    struct Script(std::collections::VecDeque<Option<&'static str>>);

    impl UpdateSource for Script {
        fn next(&mut self, _timeout: Duration) -> Next {
            match self.0.pop_front() {
                Some(Some(_)) => Next::Job(Job::new(Vec::new()).0),
                Some(None) => Next::Idle,
                None => Next::Closed,
            }
        }
    }

    fn script(answers: &[Option<&'static str>]) -> Script {
        Script(answers.iter().copied().collect())
    }

    fn drain(mut source: impl UpdateSource) -> (usize, usize) {
        let (mut jobs, mut idles) = (0, 0);
        for _ in 0..100 {
            match source.next(Duration::from_millis(1)) {
                Next::Job(_) => jobs += 1,
                Next::Idle => idles += 1,
                Next::Closed => return (jobs, idles),
            }
        }
        panic!("the merged source never closed");
    }

    #[test]
    fn every_job_of_both_sources_comes_through_and_it_closes_after_both() {
        let first = script(&[Some("a"), None, Some("b"), None]);
        let second = script(&[None, Some("x"), None, Some("y"), Some("z")]);
        let (jobs, _) = drain(MergedSource::new(first, second));
        assert_eq!(jobs, 5);
    }

    #[test]
    fn a_closed_first_source_leaves_the_second_running() {
        let (jobs, _) = drain(MergedSource::new(
            script(&[]),
            script(&[None, Some("x"), Some("y")]),
        ));
        assert_eq!(jobs, 2);
        let (jobs, _) = drain(MergedSource::new(
            script(&[Some("a"), None, Some("b")]),
            script(&[]),
        ));
        assert_eq!(jobs, 2);
    }
}
