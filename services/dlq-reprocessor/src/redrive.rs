//! What the reprocessor does by itself: redrive the dead letters of transient classes with backoff
//! (until they are handled, or `redrive.max_attempts`: then they stay parked for an operator), and
//! release records parked behind a head that is done (they raced its release; per-key order).
//! Each pass is an action like an operator's, recorded on the audit topic as `REDRIVE` by `redrive`.

use std::time::Duration;

use causeway_runtime::ServiceContext;

use crate::actions::{Act, Desk};
use crate::audit::Kind;
use crate::config::RedriveConfig;
use crate::index::{Filter, Letter, State, now_ms};

/// Letters looked at per class and pass, at most.
const PER_PASS: usize = 1_000;

/// Run until shutdown.
pub async fn run(desk: Desk, config: RedriveConfig, ctx: ServiceContext) {
    loop {
        if let Err(e) = pass(&desk, &config).await {
            tracing::warn!(error = %e, "redrive pass failed; trying again");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(config.every_ms)) => {}
            () = ctx.shutdown.wait() => return,
        }
    }
}

async fn parked(desk: &Desk, class: &str) -> Result<Vec<Letter>, String> {
    let filter = Filter {
        class: Some(class.to_string()),
        state: Some(State::Parked.as_str().into()),
        ..Filter::default()
    };
    desk.index
        .list(&filter, None, PER_PASS)
        .await
        .map(|p| p.letters)
        .map_err(|e| e.to_string())
}

async fn pass(desk: &Desk, config: &RedriveConfig) -> Result<(), String> {
    let now = now_ms();
    let limit = config.max_attempts.min(desk.max_replays);
    let mut due = Vec::new();
    for class in &config.classes {
        for l in parked(desk, class).await? {
            let wait = i64::try_from(config.backoff_ms(l.replays)).unwrap_or(i64::MAX);
            if l.behind.is_none() && l.replays < limit && l.at.saturating_add(wait) <= now {
                due.push(l);
            }
        }
    }
    // Records behind a head that is done: released now.
    for l in parked(desk, "parked").await? {
        let heads = desk.index.heads_of(&l).await.map_err(|e| e.to_string())?;
        if !heads.is_empty() && heads.iter().all(|h| h.state != State::Parked) {
            due.push(l);
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    let report = desk
        .act(Act::Replay, due, "redrive", None, false, Kind::Redrive)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(counts = ?report.counts, "redrive pass");
    Ok(())
}
