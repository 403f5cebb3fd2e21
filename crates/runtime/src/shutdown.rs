//! The shutdown signal. One [`Shutdown`] per process, cloned into every task: it fires on SIGTERM or
//! SIGINT (or [`Shutdown::trigger`]), and each task finishes its current unit of work and returns.

use tokio::sync::watch;

/// A cloneable handle on the process's shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Self { tx, rx }
    }
}

impl Shutdown {
    /// A handle that fires when the process receives SIGTERM or SIGINT. Call inside a Tokio runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let shutdown = Self::default();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutdown requested");
            trigger.trigger();
        });
        Ok(shutdown)
    }

    /// Fire the signal (idempotent).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once the signal has fired (at once if it already has).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone, which cannot happen while `self` holds one.
        let _ = rx.wait_for(|fired| *fired).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let a = Shutdown::default();
        let b = a.clone();
        assert!(!b.is_triggered());
        let waiter = tokio::spawn(async move { b.wait().await });
        a.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .map(|joined| assert!(joined.is_ok()))
            .unwrap_or_else(|_| panic!("the waiter never saw the trigger"));
        assert!(a.is_triggered());
    }
}
