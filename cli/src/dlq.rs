//! `causeway dlq`: dead letters through the dlq-reprocessor's operator API: list, show, replay,
//! discard, counts. Tables for people, `--json` for scripts (the API's answer as it came).
//!
//! The token is read from CAUSEWAY_DLQ_TOKEN, never from the command line (where other users of the
//! machine could see it). Exit codes: 0 done; 1 the API failed or refused (401, 409, 5xx, unreachable);
//! 2 bad usage or input (the API's 400 and 404 too).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::when::{parse_time, utc};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters, newest first, filtered.
    List(ListArgs),
    /// One dead letter: where it came from, why, its headers and its payload decoded.
    Show(OneArgs),
    /// Send dead letters back to their source topic and partition (one by id, or every parked one
    /// matching a filter); `--dry-run` says what would happen and changes nothing.
    Replay(ActArgs),
    /// Give up on dead letters (one by id, or every parked one matching a filter); recorded on the
    /// audit topic like a replay.
    Discard(ActArgs),
    /// Parked dead letters by error class and by group.
    Counts(ApiArgs),
}

/// Where the API is.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The dlq-reprocessor's API. The default is the local stack of `make demo`.
    #[arg(
        long,
        env = "CAUSEWAY_DLQ_URL",
        default_value = "http://127.0.0.1:18086"
    )]
    api: String,
    /// Print the API's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

/// Which dead letters.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// The consumer group that dead-lettered them.
    #[arg(long)]
    group: Option<String>,
    /// Their error class (e.g. poison).
    #[arg(long)]
    class: Option<String>,
    /// Their source topic.
    #[arg(long)]
    topic: Option<String>,
    /// Their record key.
    #[arg(long)]
    key: Option<String>,
    /// Dead-lettered since: ms since the epoch, or an age such as 30m, 2h, 7d.
    #[arg(long, value_parser = parse_time)]
    since: Option<i64>,
    /// Dead-lettered until: ms since the epoch, or an age such as 30m, 2h, 7d.
    #[arg(long, value_parser = parse_time)]
    until: Option<i64>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Their state: parked, replayed or discarded (default: all).
    #[arg(long)]
    state: Option<String>,
    /// At most this many (1..=500).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Go on from a previous page (the `next` it printed).
    #[arg(long)]
    cursor: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct OneArgs {
    /// The dead letter's id (`<dlq topic>:<partition>:<offset>`, as `list` prints it).
    id: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct ActArgs {
    /// One dead letter's id; or none, and a filter.
    id: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Say what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// The API's answer: status and JSON body.
struct Answer {
    status: u16,
    body: Value,
}

/// Why a call failed before an answer: exit 1.
fn call_failed(what: &str, e: &reqwest::Error) -> ExitCode {
    eprintln!("causeway dlq {what}: the API did not answer: {e}");
    ExitCode::FAILURE
}

async fn call(
    api: &ApiArgs,
    what: &str,
    method: reqwest::Method,
    segments: &[&str],
    query: &[(&str, String)],
    body: Option<Value>,
) -> Result<Answer, ExitCode> {
    let token = match std::env::var("CAUSEWAY_DLQ_TOKEN") {
        Ok(t) if !t.trim().is_empty() => t,
        _ => {
            eprintln!(
                "causeway dlq {what}: set CAUSEWAY_DLQ_TOKEN to a token of the reprocessor's [access] tokens (make demo: export CAUSEWAY_DLQ_TOKEN=$(cat .stack/dlq-token))"
            );
            return Err(ExitCode::from(2));
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| call_failed(what, &e))?;
    // Each segment encoded (an id with `#`, `?` or `/` is one segment, not a fragment or a path).
    let mut url = match reqwest::Url::parse(&api.api) {
        Ok(u) if !u.cannot_be_a_base() => u,
        _ => {
            eprintln!(
                "causeway dlq {what}: --api {:?} is not an http(s) URL",
                api.api
            );
            return Err(ExitCode::from(2));
        }
    };
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    let mut request = client
        .request(method, url)
        .bearer_auth(token.trim())
        .query(query);
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().await.map_err(|e| call_failed(what, &e))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| call_failed(what, &e))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Answer { status, body })
}

/// A GET's JSON body (200), `None` once printed as it came (`--json`), or the exit code of a refusal
/// (said on stderr).
async fn read(
    api: &ApiArgs,
    what: &str,
    segments: &[&str],
    query: &[(&str, String)],
) -> Result<Option<Value>, ExitCode> {
    let a = call(api, what, reqwest::Method::GET, segments, query, None).await?;
    if a.status != 200 {
        return Err(refused(what, &a));
    }
    if api.json {
        say!("{}", a.body);
        return Ok(None);
    }
    Ok(Some(a.body))
}

/// The exit code of an answer that is not a success, after saying why.
fn refused(what: &str, a: &Answer) -> ExitCode {
    let message = a
        .body
        .get("error")
        .and_then(Value::as_str)
        .map_or_else(|| a.body.to_string(), str::to_string);
    eprintln!("causeway dlq {what}: {} {message}", a.status);
    if matches!(a.status, 400 | 404) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

fn filter_query(f: &FilterArgs) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    for (k, v) in [
        ("group", &f.group),
        ("class", &f.class),
        ("topic", &f.topic),
        ("key", &f.key),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    if let Some(s) = f.since {
        q.push(("since", s.to_string()));
    }
    if let Some(u) = f.until {
        q.push(("until", u.to_string()));
    }
    q
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_str().unwrap_or("")
}

fn number(v: &Value, path: &[&str]) -> Option<i64> {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_i64()
}

fn source(l: &Value) -> String {
    match (
        l["source"]["topic"].as_str(),
        l["source"]["partition"].as_i64(),
        l["source"]["offset"].as_i64(),
    ) {
        (Some(t), Some(p), Some(o)) => format!("{t}/{p}@{o}"),
        _ => "-".into(),
    }
}

pub async fn run(cmd: DlqCommand) -> ExitCode {
    match cmd {
        DlqCommand::List(args) => list(args).await,
        DlqCommand::Show(args) => show(args).await,
        DlqCommand::Replay(args) => act("replay", args).await,
        DlqCommand::Discard(args) => act("discard", args).await,
        DlqCommand::Counts(args) => counts(args).await,
    }
}

async fn list(args: ListArgs) -> ExitCode {
    let mut q = filter_query(&args.filter);
    if let Some(s) = &args.state {
        q.push(("state", s.clone()));
    }
    q.push(("limit", args.limit.to_string()));
    if let Some(c) = &args.cursor {
        q.push(("cursor", c.clone()));
    }
    let body = match read(&args.api, "list", &["v1", "dead-letters"], &q).await {
        Ok(Some(body)) => body,
        Ok(None) => return ExitCode::SUCCESS,
        Err(code) => return code,
    };
    let letters = body["letters"].as_array().cloned().unwrap_or_default();
    say!(
        "{:<34} {:<9} {:<22} {:<9} {:<30} {:<20} {:<19} REASON",
        "ID",
        "STATE",
        "GROUP",
        "CLASS",
        "SOURCE",
        "KEY",
        "AT (UTC)"
    );
    for l in &letters {
        say!(
            "{:<34} {:<9} {:<22} {:<9} {:<30} {:<20} {:<19} {}",
            text(l, &["id"]),
            text(l, &["state"]),
            cut(text(l, &["group"]), 22),
            cut(text(l, &["class"]), 9),
            cut(&source(l), 30),
            cut(l["key"].as_str().unwrap_or("-"), 20),
            number(l, &["at"]).map(utc).unwrap_or_default(),
            cut(text(l, &["reason"]), 80),
        );
    }
    match body["next"].as_str() {
        Some(next) => say!("{} shown; more: --cursor '{next}'", letters.len()),
        None => say!("{} shown", letters.len()),
    }
    ExitCode::SUCCESS
}

async fn show(args: OneArgs) -> ExitCode {
    let body = match read(&args.api, "show", &["v1", "dead-letters", &args.id], &[]).await {
        Ok(Some(body)) => body,
        Ok(None) => return ExitCode::SUCCESS,
        Err(code) => return code,
    };
    let l = &body["letter"];
    let r = &body["record"];
    say!("id           {}", text(l, &["id"]));
    say!(
        "state        {}{}",
        text(l, &["state"]),
        l["state_by"]
            .as_str()
            .map(|b| format!(
                " (by {b} at {}{})",
                number(l, &["state_at"]).map(utc).unwrap_or_default(),
                l["note"]
                    .as_str()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            ))
            .unwrap_or_default()
    );
    say!("group        {}", text(l, &["group"]));
    say!("class        {}", text(l, &["class"]));
    say!("reason       {}", text(l, &["reason"]));
    say!("source       {}", source(l));
    say!("key          {}", l["key"].as_str().unwrap_or("-"));
    say!(
        "at           {} (attempts {}, first failure {})",
        number(l, &["at"]).map(utc).unwrap_or_default(),
        number(l, &["attempts"]).unwrap_or(0),
        number(l, &["first_failure"]).map(utc).unwrap_or_default()
    );
    say!(
        "replays      {}{}",
        number(l, &["replays"]).unwrap_or(0),
        l["replay_of"]
            .as_str()
            .map(|o| format!(" (a replay of {o})"))
            .unwrap_or_default()
    );
    say!("trace id     {}", l["trace_id"].as_str().unwrap_or("-"));
    if let Some(e) = r["error"].as_str() {
        say!("record       cannot be read: {e}");
        return ExitCode::SUCCESS;
    }
    say!("headers");
    for h in r["headers"].as_array().into_iter().flatten() {
        say!("  {} = {}", text(h, &["name"]), text(h, &["value"]));
    }
    let v = &r["value"];
    match (&v["decoded"], v["error"].as_str()) {
        (Value::Null, Some(e)) => {
            say!(
                "value        {} bytes, not decodable: {e}",
                number(v, &["bytes"]).unwrap_or(0)
            );
            if let Some(hex) = v["hex"].as_str() {
                say!("  hex {}", cut(hex, 200));
            }
        }
        (decoded, _) => {
            say!(
                "value        {} ({} bytes)",
                text(v, &["schema"]),
                number(v, &["bytes"]).unwrap_or(0)
            );
            let pretty = serde_json::to_string_pretty(decoded).unwrap_or_default();
            for line in pretty.lines() {
                say!("  {line}");
            }
        }
    }
    ExitCode::SUCCESS
}

async fn act(what: &'static str, args: ActArgs) -> ExitCode {
    let filtered = filter_query(&args.filter);
    let answer = match (&args.id, filtered.is_empty()) {
        (Some(_), false) => {
            eprintln!("causeway dlq {what}: give one id or a filter, not both");
            return ExitCode::from(2);
        }
        (None, true) => {
            eprintln!(
                "causeway dlq {what}: give a dead letter's id, or a filter (--group, --class, --topic, --key, --since, --until)"
            );
            return ExitCode::from(2);
        }
        (Some(id), true) => {
            let q = if args.dry_run {
                vec![("dry_run", "true".to_string())]
            } else {
                Vec::new()
            };
            call(
                &args.api,
                what,
                reqwest::Method::POST,
                &["v1", "dead-letters", id, what],
                &q,
                None,
            )
            .await
        }
        (None, false) => {
            let filter: serde_json::Map<String, Value> = filtered
                .into_iter()
                .map(|(k, v)| {
                    let value = match k {
                        "since" | "until" => v.parse::<i64>().map_or(json!(v), |n| json!(n)),
                        _ => json!(v),
                    };
                    (k.to_string(), value)
                })
                .collect();
            call(
                &args.api,
                what,
                reqwest::Method::POST,
                &["v1", "dead-letters", what],
                &[],
                Some(json!({ "filter": filter, "dry_run": args.dry_run })),
            )
            .await
        }
    };
    let a = match answer {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.api.json {
        say!("{}", a.body);
    } else if a.body["letters"].is_array() {
        for d in a.body["letters"].as_array().into_iter().flatten() {
            say!(
                "{:<34} {:<14} {}",
                text(d, &["letter_id"]),
                text(d, &["outcome"]),
                text(d, &["detail"])
            );
        }
        let mut counts: Vec<(String, i64)> = a.body["counts"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        counts.sort();
        let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        say!(
            "{}{}",
            if summary.is_empty() {
                "nothing matched".to_string()
            } else {
                summary.join(", ")
            },
            a.body["action_id"]
                .as_str()
                .map(|id| format!(" (audit action {id})"))
                .unwrap_or_default()
        );
    }
    match a.status {
        200 => ExitCode::SUCCESS,
        409 if !args.api.json => {
            eprintln!("causeway dlq {what}: refused (see above)");
            ExitCode::FAILURE
        }
        409 => ExitCode::FAILURE,
        _ => refused(what, &a),
    }
}

async fn counts(api: ApiArgs) -> ExitCode {
    let body = match read(&api, "counts", &["v1", "dead-letters", "counts"], &[]).await {
        Ok(Some(body)) => body,
        Ok(None) => return ExitCode::SUCCESS,
        Err(code) => return code,
    };
    say!("{:<30} {:>8}", "CLASS", "PARKED");
    let mut classes: Vec<(&String, &Value)> = body["by_class"]
        .as_object()
        .map(|o| o.iter().collect())
        .unwrap_or_default();
    classes.sort_by_key(|(k, _)| k.as_str());
    for (class, n) in classes {
        say!("{:<30} {:>8}", class, n.as_i64().unwrap_or(0));
    }
    say!("");
    say!("{:<30} {:>8} OLDEST (UTC)", "GROUP", "PARKED");
    for g in body["by_group"].as_array().into_iter().flatten() {
        say!(
            "{:<30} {:>8} {}",
            text(g, &["group"]),
            number(g, &["parked"]).unwrap_or(0),
            number(g, &["oldest_at"]).map(utc).unwrap_or_default()
        );
    }
    ExitCode::SUCCESS
}

/// `causeway events`: what happened to one aggregate, or to one flow.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The aggregate type (e.g. order).
    #[arg(required_unless_present = "correlation")]
    aggregate: Option<String>,
    /// The aggregate id.
    #[arg(required_unless_present = "correlation")]
    id: Option<String>,
    /// Instead: the commands and dead letters of this correlation id, side by side.
    #[arg(long, conflicts_with_all = ["aggregate", "id"])]
    correlation: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// The last segment of a record's full name (`causeway.orders.order.OrderPlaced` → `OrderPlaced`).
fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn result_text(c: &Value) -> String {
    match c["outcome"].as_str() {
        Some("accepted") => format!("accepted v{}", number(c, &["new_version"]).unwrap_or(0)),
        Some(o) => format!(
            "{o} {} {}",
            c["rejection_code"].as_str().unwrap_or(""),
            cut(c["reason"].as_str().unwrap_or(""), 60)
        ),
        None => "-".into(),
    }
}

pub async fn events(args: EventsArgs) -> ExitCode {
    let segments: Vec<&str> = match (&args.correlation, &args.aggregate, &args.id) {
        (Some(c), _, _) => vec!["v1", "correlations", c],
        (None, Some(a), Some(id)) => vec!["v1", "history", a, id],
        _ => {
            eprintln!("causeway events: give <aggregate> <id>, or --correlation <id>");
            return ExitCode::from(2);
        }
    };
    let body = match read(&args.api, "events", &segments, &[]).await {
        Ok(Some(body)) => body,
        Ok(None) => return ExitCode::SUCCESS,
        Err(code) => return code,
    };
    if args.correlation.is_none() {
        say!(
            "{:>7} {:<24} {:<19} {:<36} {:<26} TRACE",
            "VERSION",
            "EVENT",
            "OCCURRED (UTC)",
            "COMMAND",
            "RESULT"
        );
        let events = body["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            let command = &e["command"];
            say!(
                "{:>7} {:<24} {:<19} {:<36} {:<26} {}",
                number(e, &["version"]).map_or("-".into(), |v| v.to_string()),
                cut(short(e["type"].as_str().unwrap_or("(undecodable)")), 24),
                number(e, &["occurred_at"]).map(utc).unwrap_or_default(),
                cut(
                    &format!(
                        "{} {}",
                        short(command["type"].as_str().unwrap_or("")),
                        e["command_id"].as_str().unwrap_or("-")
                    ),
                    36
                ),
                cut(&result_text(command), 26),
                e["trace_id"].as_str().unwrap_or("-"),
            );
        }
        if body["truncated"].as_bool() == Some(true) {
            say!("(the latest {} events shown)", events.len());
        }
        let refused: Vec<&Value> = body["commands"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["outcome"] != "accepted")
            .collect();
        if !refused.is_empty() {
            say!("");
            say!("commands without events:");
            for c in refused {
                say!(
                    "  {:<19} {:<36} {}",
                    number(c, &["processed_at"]).map(utc).unwrap_or_default(),
                    cut(
                        &format!(
                            "{} {}",
                            short(c["type"].as_str().unwrap_or("")),
                            c["command_id"].as_str().unwrap_or("-")
                        ),
                        36
                    ),
                    result_text(c)
                );
            }
        }
    } else {
        say!(
            "{:<19} {:<10} {:<14} {:<24} {:<36} RESULT",
            "AT (UTC)",
            "KIND",
            "AGGREGATE",
            "ID",
            "COMMAND"
        );
        for c in body["commands"].as_array().into_iter().flatten() {
            say!(
                "{:<19} {:<10} {:<14} {:<24} {:<36} {}",
                number(c, &["processed_at"]).map(utc).unwrap_or_default(),
                "command",
                cut(c["aggregate_type"].as_str().unwrap_or("-"), 14),
                cut(c["aggregate_id"].as_str().unwrap_or("-"), 24),
                cut(
                    &format!(
                        "{} {}",
                        short(c["type"].as_str().unwrap_or("")),
                        c["command_id"].as_str().unwrap_or("-")
                    ),
                    36
                ),
                result_text(c)
            );
        }
    }
    let letters = body["dead_letters"].as_array().cloned().unwrap_or_default();
    if !letters.is_empty() {
        say!("");
        say!("dead letters:");
        for l in &letters {
            say!(
                "  {:<19} {:<34} {:<9} {:<9} {}",
                number(l, &["at"]).map(utc).unwrap_or_default(),
                text(l, &["id"]),
                text(l, &["state"]),
                text(l, &["class"]),
                cut(text(l, &["reason"]), 80)
            );
        }
    }
    ExitCode::SUCCESS
}
