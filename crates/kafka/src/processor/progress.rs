//! Readiness and health from progress: the loop marks when it last got somewhere (a committed batch, a
//! finished restore, or nothing to do) and whether work is waiting; a watchdog thread turns a stall
//! into `/readyz` 503 (after `stall_ready_ms`) and `/healthz` 503 (after `stall_health_ms`, when a
//! restart is the better cure). The loop itself may be stuck inside a call that librdkafka says to
//! retry (a broker away), which is why a separate thread watches.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use causeway_runtime::Shutdown;

use super::now_ms;

/// What the processor tells its host's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Processing: ready and healthy.
    Ready,
    /// Not ready (restoring, stalled for a while, stopping) but not stuck.
    NotReady,
    /// Stalled for so long that a restart is the better cure: neither ready nor healthy.
    Stuck,
}

/// Shared between the loop and the watchdog.
#[derive(Debug, Default)]
pub(super) struct Progress {
    last_ms: AtomicI64,
    busy: AtomicBool,
    restored: AtomicBool,
    done: AtomicBool,
    /// Wakes the watchdog before its next look (a change it should report at once).
    nudged: Mutex<bool>,
    wake: Condvar,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        let p = Arc::new(Self::default());
        p.last_ms.store(now_ms(), Ordering::Release);
        p
    }

    /// Something moved (a commit, a restore), or there is nothing to do.
    pub fn moved(&self) {
        self.last_ms.store(now_ms(), Ordering::Release);
    }

    /// Work is waiting (`true`), or not.
    pub fn busy(&self, busy: bool) {
        if !busy {
            self.moved();
        }
        self.busy.store(busy, Ordering::Release);
    }

    /// The group's first assignment is restored: the instance can be ready.
    pub fn restored(&self) {
        self.moved();
        self.restored.store(true, Ordering::Release);
        self.nudge();
    }

    /// The loop has ended.
    pub fn done(&self) {
        self.done.store(true, Ordering::Release);
        self.nudge();
    }

    fn nudge(&self) {
        *self.nudged.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Wait up to `timeout`, or less when nudged.
    fn wait(&self, timeout: Duration) {
        let nudged = self.nudged.lock().unwrap_or_else(|p| p.into_inner());
        let (mut nudged, _) = self
            .wake
            .wait_timeout_while(nudged, timeout, |n| !*n)
            .unwrap_or_else(|p| p.into_inner());
        *nudged = false;
    }

    fn probe(&self, ready_after: Duration, stuck_after: Duration) -> Probe {
        let stalled_ms = if self.busy.load(Ordering::Acquire) {
            now_ms().saturating_sub(self.last_ms.load(Ordering::Acquire))
        } else {
            0
        };
        let stalled = Duration::from_millis(u64::try_from(stalled_ms).unwrap_or(0));
        if stalled >= stuck_after {
            Probe::Stuck
        } else if stalled >= ready_after || !self.restored.load(Ordering::Acquire) {
            Probe::NotReady
        } else {
            Probe::Ready
        }
    }
}

/// Watch `progress` until the loop is done, telling `report` each change (and a last `NotReady`).
pub(super) fn watch(
    progress: Arc<Progress>,
    ready_after: Duration,
    stuck_after: Duration,
    shutdown: Shutdown,
    report: impl Fn(Probe) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last = Probe::NotReady;
        report(last);
        while !progress.done.load(Ordering::Acquire) && !shutdown.is_triggered() {
            let now = progress.probe(ready_after, stuck_after);
            if now != last {
                match now {
                    Probe::Ready => tracing::info!("processor ready"),
                    Probe::NotReady if last == Probe::Ready => tracing::warn!(
                        stalled_for_ms = u64::try_from(ready_after.as_millis()).unwrap_or(u64::MAX),
                        "no progress although work is waiting: not ready"
                    ),
                    Probe::Stuck => tracing::error!(
                        stalled_for_ms = u64::try_from(stuck_after.as_millis()).unwrap_or(u64::MAX),
                        "no progress for too long: reporting unhealthy so the process is restarted"
                    ),
                    Probe::NotReady => {}
                }
                report(now);
                last = now;
            }
            // Readiness is told as soon as the first assignment is restored (a rolling update waits
            // for it); stalls are looked for every 100 ms.
            progress.wait(Duration::from_millis(100));
        }
        report(Probe::NotReady);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_with_work_waiting_turns_not_ready_then_stuck() {
        let p = Progress::new();
        let (ready, stuck) = (Duration::from_millis(50), Duration::from_millis(150));
        assert_eq!(p.probe(ready, stuck), Probe::NotReady, "not restored yet");
        p.restored();
        assert_eq!(p.probe(ready, stuck), Probe::Ready);
        p.busy(true);
        p.last_ms.fetch_sub(100, Ordering::AcqRel);
        assert_eq!(p.probe(ready, stuck), Probe::NotReady);
        p.last_ms.fetch_sub(100, Ordering::AcqRel);
        assert_eq!(p.probe(ready, stuck), Probe::Stuck);
        p.moved();
        assert_eq!(p.probe(ready, stuck), Probe::Ready, "progress heals");
        p.last_ms.fetch_sub(1000, Ordering::AcqRel);
        p.busy(false);
        assert_eq!(p.probe(ready, stuck), Probe::Ready, "idle is not a stall");
    }
}
