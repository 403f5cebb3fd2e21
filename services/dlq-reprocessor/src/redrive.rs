//! What the reprocessor does by itself: redrive the dead letters of transient classes with backoff
//! (until they are handled, or `redrive.max_attempts`: then they stay parked for an operator), and
//! release records parked behind a head that is done (they raced its release; per-key order).
//! Each pass is an action like an operator's, recorded on the audit topic as `REDRIVE` by `redrive`.
//! Each pass also clears letters done longer ago than `dlq.keep_done_hours` from the index.

use std::time::Duration;

use causeway_runtime::ServiceContext;

use crate::actions::{Act, Desk};
use crate::audit::Kind;
use crate::config::RedriveConfig;
use crate::index::{Letter, State, now_ms};

/// Letters read from the index at a time.
const PAGE: usize = 500;

/// Letters acted on per pass, at most (the rest next pass).
const PER_PASS: usize = 5_000;

/// Run until shutdown; letters done more than `keep_done_ms` ago leave the index on the way.
pub async fn run(desk: Desk, config: RedriveConfig, keep_done_ms: i64, ctx: ServiceContext) {
    loop {
        if let Err(e) = pass(&desk, &config).await {
            tracing::warn!(error = %e, "redrive pass failed; trying again");
        }
        match desk
            .index
            .forget_done(now_ms().saturating_sub(keep_done_ms))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(letters = n, "done letters left the index"),
            Err(e) => tracing::warn!(error = %e, "cannot clear done letters from the index"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(config.every_ms)) => {}
            () = ctx.shutdown.wait() => return,
        }
    }
}

/// Every parked letter of `class` (`None`: those waiting behind a head), oldest first, that `due`
/// picks, up to [`PER_PASS`].
async fn collect(
    desk: &Desk,
    class: Option<&str>,
    due: &mut Vec<Letter>,
    pick: impl Fn(&Letter) -> bool,
) -> Result<(), String> {
    let mut start = 0;
    loop {
        let page = desk
            .index
            .parked_in(class, start, PAGE)
            .await
            .map_err(|e| e.to_string())?;
        if page.is_empty() {
            return Ok(());
        }
        start += page.len();
        for l in page {
            if due.len() >= PER_PASS {
                return Ok(());
            }
            if pick(&l) {
                due.push(l);
            }
        }
    }
}

async fn pass(desk: &Desk, config: &RedriveConfig) -> Result<(), String> {
    let now = now_ms();
    let limit = config.max_attempts.min(desk.max_replays);
    let mut due = Vec::new();
    for class in &config.classes {
        collect(desk, Some(class), &mut due, |l| {
            let wait = i64::try_from(config.backoff_ms(l.replays)).unwrap_or(i64::MAX);
            l.behind.is_none() && l.replays < limit && l.at.saturating_add(wait) <= now
        })
        .await?;
    }
    // Records behind a head that is done (they raced its release): released now. Only those count
    // towards the pass's limit, so that a head with many records waiting hides none of them.
    let mut start = 0;
    'pages: loop {
        let page = desk
            .index
            .parked_in(None, start, PAGE)
            .await
            .map_err(|e| e.to_string())?;
        if page.is_empty() {
            break;
        }
        start += page.len();
        for l in page {
            if due.len() >= PER_PASS {
                break 'pages;
            }
            let heads = desk.index.heads_of(&l).await.map_err(|e| e.to_string())?;
            if !heads.is_empty() && heads.iter().all(|h| h.state != State::Parked) {
                due.push(l);
            }
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
