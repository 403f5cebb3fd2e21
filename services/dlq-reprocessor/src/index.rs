//! The index of dead letters in Redis: what each one is (from its headers), its state (parked, replayed,
//! discarded), and sorted sets to list them by group, error class, source topic, key, state and time.
//! The records themselves stay on their DLQ topics; the index points at them.
//!
//! Keys, under the configured prefix `P`:
//! - `P:l:<id>`: a letter (hash); `<id>` is `<dlq topic>:<partition>:<offset>`.
//! - `P:all`, `P:group:<g>`, `P:class:<c>`, `P:topic:<t>`, `P:key:<k>`, `P:state:<s>`: letter ids by time
//!   dead-lettered (zsets, score in ms).
//! - `P:parked:<g>`: a group's parked letters (depth and the oldest); `P:groups`: every group;
//!   `P:parked-by-class`: parked letters per class (hash).
//! - `P:behind:<group>:<topic>:<partition>:<offset>`: a group's letters waiting behind the head at that
//!   source position (per-key order), by source offset; `P:src:<group>:<topic>:<partition>:<offset>`:
//!   a group's letters of a source position (a head's); `P:parked-class:<c>`, `P:parked-behind`: parked
//!   letters of a class, and those waiting behind a head (what redrive looks at).
//! - `P:lock:<id>`: an operator action in progress on a letter.

use std::collections::HashMap;

use rdkafka::Message;
use redis::aio::ConnectionManager;
use serde::Serialize;

use causeway_kafka::dead_letter::dlq_headers as h;
use causeway_kafka::parking::headers as parking;

/// The header a replay sets: how often the record has been replayed.
pub const REPLAY_COUNT: &str = "causeway.replay.count";
/// The header a replay sets: the dead letter it was replayed from.
pub const REPLAY_OF: &str = "causeway.replay.of";
/// The header a replay sets: when, in ms since the epoch.
pub const REPLAY_AT: &str = "causeway.replay.at";
/// Headers of this prefix are the reprocessor's and never replayed as they were.
pub const REPLAY_PREFIX: &str = "causeway.replay.";
/// Headers of this prefix are the dead letter's and never replayed.
pub const DLQ_PREFIX: &str = "causeway.dlq.";

/// Longest key kept in the index (the record keeps it whole).
const MAX_KEY_CHARS: usize = 512;

/// Where a record is (or was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// What became of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for an operator (or a redrive).
    Parked,
    /// Sent back to its source.
    Replayed,
    /// Given up on by an operator.
    Discarded,
}

impl State {
    /// Its name in the index and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Parked => "parked",
            State::Replayed => "replayed",
            State::Discarded => "discarded",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "parked" => Some(State::Parked),
            "replayed" => Some(State::Replayed),
            "discarded" => Some(State::Discarded),
            _ => None,
        }
    }
}

/// One dead letter as indexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Letter {
    /// `<dlq topic>:<partition>:<offset>`.
    pub id: String,
    /// Where the dead letter is.
    pub dlq: Position,
    /// The consumer group that gave up on the record.
    pub group: String,
    /// Its error class.
    pub class: String,
    /// Why.
    pub reason: String,
    /// Where the record was read from (absent when the dead letter does not say: not replayable).
    pub source: Option<Position>,
    /// The record's timestamp there, ms.
    pub source_timestamp: Option<i64>,
    /// The record's key (as text, cut to 512 characters).
    pub key: Option<String>,
    /// The record's key as it is (hex), for what needs its bytes (a per-key release).
    #[serde(skip)]
    pub key_hex: Option<String>,
    /// When it was dead-lettered, ms.
    pub at: i64,
    /// Tries before it was.
    pub attempts: u32,
    /// When it failed first, ms.
    pub first_failure: i64,
    /// How often the record had been replayed before this dead letter.
    pub replays: u32,
    /// The dead letter whose replay this one is.
    pub replay_of: Option<String>,
    /// The W3C trace id of the record's trace.
    pub trace_id: Option<String>,
    /// The value's size in bytes.
    pub value_bytes: usize,
    /// Set when the value was too large for the DLQ topic: it is read from the source.
    pub value_omitted: bool,
    /// Per-key order: its key's later records wait behind it (it is their head).
    pub parks_key: bool,
    /// Per-key order: it waits behind the head at this offset of its source partition.
    pub behind: Option<i64>,
    /// What became of it.
    pub state: State,
    /// Since when, ms.
    pub state_at: i64,
    /// By whom (an operator's token name, or `redrive`).
    pub state_by: Option<String>,
    /// What the last action said.
    pub note: Option<String>,
}

impl Letter {
    /// The letter of a record read from a DLQ topic, from its headers. A record without the suite's
    /// headers (another writer) is indexed too, with class `unknown` and no source.
    pub fn of<M: Message>(m: &M) -> Self {
        let mut headers: HashMap<&str, String> = HashMap::new();
        // Headers whose names cannot be read (not UTF-8) are as good as none.
        if let Some(hs) = m.headers().and_then(causeway_kafka::headers::readable) {
            for header in hs {
                if header.key.starts_with(DLQ_PREFIX)
                    || header.key.starts_with(REPLAY_PREFIX)
                    || header.key == "traceparent"
                {
                    let value = String::from_utf8_lossy(header.value.unwrap_or_default());
                    // The suite's headers come after the original ones: the last one is the dead
                    // letter's; the first traceparent is the record's.
                    if header.key != "traceparent" || !headers.contains_key("traceparent") {
                        headers.insert(header.key, value.into_owned());
                    }
                }
            }
        }
        let text = |k: &str| headers.get(k).cloned();
        let number = |k: &str| headers.get(k).and_then(|v| v.trim().parse::<i64>().ok());
        let now = now_ms();
        let at = number(h::AT)
            .or_else(|| m.timestamp().to_millis())
            .unwrap_or(now);
        let source = match (text(h::TOPIC), number(h::PARTITION), number(h::OFFSET)) {
            (Some(topic), Some(partition), Some(offset))
                if !topic.is_empty() && i32::try_from(partition).is_ok() && offset >= 0 =>
            {
                Some(Position {
                    topic,
                    partition: partition as i32,
                    offset,
                })
            }
            _ => None,
        };
        let group = text(h::GROUP).unwrap_or_else(|| {
            m.topic()
                .strip_suffix(".dlq")
                .unwrap_or(m.topic())
                .to_string()
        });
        let omitted = number(h::VALUE_OMITTED);
        Letter {
            id: format!("{}:{}:{}", m.topic(), m.partition(), m.offset()),
            dlq: Position {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
            },
            group,
            class: text(h::CLASS)
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "unknown".into()),
            reason: text(h::REASON).unwrap_or_default(),
            source,
            source_timestamp: number(h::TIMESTAMP),
            key: m.key().map(|k| {
                String::from_utf8_lossy(k)
                    .chars()
                    .take(MAX_KEY_CHARS)
                    .collect()
            }),
            key_hex: m.key().map(hex),
            at,
            attempts: number(h::ATTEMPTS)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
            first_failure: number(h::FIRST_FAILURE).unwrap_or(at),
            replays: number(REPLAY_COUNT)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            replay_of: text(REPLAY_OF),
            trace_id: text("traceparent")
                .and_then(|t| t.split('-').nth(1).map(str::to_string))
                .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())),
            value_bytes: omitted
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or_else(|| m.payload().map_or(0, <[u8]>::len)),
            value_omitted: omitted.is_some(),
            parks_key: text(parking::PARKS_KEY).as_deref() == Some("true"),
            behind: number(parking::BEHIND),
            state: State::Parked,
            state_at: at,
            state_by: None,
            note: None,
        }
    }

    /// Its fields as stored (state fields excepted: the index script sets them).
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("id", self.id.clone()),
            ("dlq_topic", self.dlq.topic.clone()),
            ("dlq_partition", self.dlq.partition.to_string()),
            ("dlq_offset", self.dlq.offset.to_string()),
            ("group", self.group.clone()),
            ("class", self.class.clone()),
            ("reason", self.reason.clone()),
            ("at", self.at.to_string()),
            ("attempts", self.attempts.to_string()),
            ("first_failure", self.first_failure.to_string()),
            ("replays", self.replays.to_string()),
            ("value_bytes", self.value_bytes.to_string()),
            ("value_omitted", u8::from(self.value_omitted).to_string()),
            ("parks_key", u8::from(self.parks_key).to_string()),
        ];
        if let Some(s) = &self.source {
            out.push(("topic", s.topic.clone()));
            out.push(("partition", s.partition.to_string()));
            out.push(("offset", s.offset.to_string()));
        }
        for (name, value) in [
            (
                "source_timestamp",
                self.source_timestamp.map(|t| t.to_string()),
            ),
            ("key", self.key.clone()),
            ("key_hex", self.key_hex.clone()),
            ("replay_of", self.replay_of.clone()),
            ("trace_id", self.trace_id.clone()),
            ("behind", self.behind.map(|b| b.to_string())),
        ] {
            if let Some(v) = value {
                out.push((name, v));
            }
        }
        out
    }

    /// The letter stored as `fields`; `None` when they are not one (a key of another writer).
    fn from_fields(f: &HashMap<String, String>) -> Option<Self> {
        let text = |k: &str| f.get(k).cloned();
        let number = |k: &str| f.get(k).and_then(|v| v.parse::<i64>().ok());
        let source = match (text("topic"), number("partition"), number("offset")) {
            (Some(topic), Some(partition), Some(offset)) => Some(Position {
                topic,
                partition: i32::try_from(partition).ok()?,
                offset,
            }),
            _ => None,
        };
        Some(Letter {
            id: text("id")?,
            dlq: Position {
                topic: text("dlq_topic")?,
                partition: i32::try_from(number("dlq_partition")?).ok()?,
                offset: number("dlq_offset")?,
            },
            group: text("group")?,
            class: text("class")?,
            reason: text("reason").unwrap_or_default(),
            source,
            source_timestamp: number("source_timestamp"),
            key: text("key"),
            key_hex: text("key_hex"),
            at: number("at")?,
            attempts: u32::try_from(number("attempts").unwrap_or(1)).unwrap_or(1),
            first_failure: number("first_failure").unwrap_or(0),
            replays: u32::try_from(number("replays").unwrap_or(0)).unwrap_or(0),
            replay_of: text("replay_of"),
            trace_id: text("trace_id"),
            value_bytes: usize::try_from(number("value_bytes").unwrap_or(0)).unwrap_or(0),
            value_omitted: text("value_omitted").as_deref() == Some("1"),
            parks_key: text("parks_key").as_deref() == Some("1"),
            behind: number("behind"),
            state: State::parse(&text("state")?)?,
            state_at: number("state_at").unwrap_or(0),
            state_by: text("state_by"),
            note: text("note").filter(|n| !n.is_empty()),
        })
    }
}

/// Which letters a list, a replay or a discard is about. Every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    /// Consumer group.
    pub group: Option<String>,
    /// Error class.
    pub class: Option<String>,
    /// Source topic.
    pub topic: Option<String>,
    /// Record key.
    pub key: Option<String>,
    /// State (`parked`, `replayed`, `discarded`).
    pub state: Option<String>,
    /// Dead-lettered at or after, ms.
    pub since: Option<i64>,
    /// Dead-lettered at or before, ms.
    pub until: Option<i64>,
}

impl Filter {
    /// Why the filter cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if let Some(s) = &self.state
            && State::parse(s).is_none()
        {
            return Err(format!(
                "state must be parked, replayed or discarded, not {s:?}"
            ));
        }
        if let (Some(a), Some(b)) = (self.since, self.until)
            && a > b
        {
            return Err("since is after until".into());
        }
        Ok(())
    }

    fn matches(&self, l: &Letter) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == have)
        };
        eq(&self.group, Some(&l.group))
            && eq(&self.class, Some(&l.class))
            && eq(&self.topic, l.source.as_ref().map(|s| s.topic.as_str()))
            && eq(&self.key, l.key.as_deref())
            && eq(&self.state, Some(l.state.as_str()))
            && self.since.is_none_or(|s| l.at >= s)
            && self.until.is_none_or(|u| l.at <= u)
    }
}

/// A page of letters, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// The letters.
    pub letters: Vec<Letter>,
    /// Where the next page starts; absent at the end.
    pub next: Option<String>,
}

/// How many letters one list request reads at most before it answers (with a cursor to go on).
const MAX_SCAN: usize = 5_000;

/// The index, over one Redis connection.
#[derive(Clone)]
pub struct Index {
    connection: ConnectionManager,
    prefix: String,
    transition: redis::Script,
}

/// Deletes a lock only when it is still the caller's.
const UNLOCK_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// Forgets a letter that is done (`forget.lua`).
const FORGET_SCRIPT: &str = include_str!("forget.lua");

/// Indexes one letter once (`index.lua`).
const INDEX_SCRIPT: &str = include_str!("index.lua");

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Index {
    /// The index under `prefix`.
    pub fn new(connection: ConnectionManager, prefix: &str) -> Self {
        Self {
            connection,
            prefix: prefix.to_string(),
            transition: redis::Script::new(include_str!("transition.lua")),
        }
    }

    /// Its Redis connection (shared).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    /// Index `letters` (each once, however often it is given). How many were new.
    pub async fn add(&self, letters: &[Letter]) -> Result<Vec<bool>, redis::RedisError> {
        if letters.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for l in letters {
            // EVAL, not EVALSHA: dead letters are few, and a Redis restarted meanwhile (its script
            // cache empty) needs no second round.
            let call = pipe
                .cmd("EVAL")
                .arg(INDEX_SCRIPT)
                .arg(15)
                .arg(self.key(&["l", &l.id]))
                .arg(self.key(&["all"]))
                .arg(self.key(&["group", &l.group]))
                .arg(self.key(&["class", &l.class]))
                .arg(self.key(&["topic", l.source.as_ref().map_or("", |s| s.topic.as_str())]))
                .arg(self.key(&["key", l.key.as_deref().unwrap_or("")]))
                .arg(self.key(&["state", "parked"]))
                .arg(self.key(&["parked", &l.group]))
                .arg(self.key(&["groups"]))
                .arg(self.key(&["parked-by-class"]))
                .arg(match (&l.source, l.behind) {
                    (Some(s), Some(head)) => self.behind_key(&l.group, s, head),
                    _ => self.key(&["behind"]),
                })
                .arg(match &l.source {
                    Some(s) => self.source_key(&l.group, s),
                    None => self.key(&["src"]),
                })
                .arg(self.key(&["parked-class", &l.class]))
                .arg(self.key(&["parked-behind"]))
                .arg(self.key(&["state", "discarded"]))
                .arg(l.at)
                .arg(&l.id)
                .arg(&l.group)
                .arg(&l.class)
                .arg(u8::from(l.key.is_some()))
                .arg(l.source.as_ref().map_or(0, |s| s.offset))
                .arg(u8::from(l.behind.is_some() && l.source.is_some()))
                .arg(u8::from(l.source.is_some()));
            for (name, value) in l.fields() {
                call.arg(name).arg(value);
            }
        }
        let mut c = self.connection.clone();
        let added: Vec<i64> = pipe.query_async(&mut c).await?;
        Ok(added.into_iter().map(|a| a >= 1).collect())
    }

    fn behind_key(&self, group: &str, source: &Position, head: i64) -> String {
        self.key(&[
            "behind",
            group,
            &source.topic,
            &source.partition.to_string(),
            &head.to_string(),
        ])
    }

    fn source_key(&self, group: &str, p: &Position) -> String {
        self.key(&[
            "src",
            group,
            &p.topic,
            &p.partition.to_string(),
            &p.offset.to_string(),
        ])
    }

    /// The letters of `group` behind the head at `head` (per-key order), in source order, with the last
    /// source offset ever parked behind it (the head's own when none).
    pub async fn followers(
        &self,
        group: &str,
        head: &Position,
    ) -> Result<(Vec<Letter>, i64), redis::RedisError> {
        let mut c = self.connection.clone();
        let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.behind_key(group, head, head.offset))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut c)
            .await?;
        let through = members
            .iter()
            .map(|(_, s)| *s as i64)
            .fold(head.offset, i64::max);
        let mut out = Vec::with_capacity(members.len());
        for (id, _) in members {
            if let Some(l) = self.get(&id).await? {
                out.push(l);
            }
        }
        Ok((out, through))
    }

    /// The head position `follower` waits behind.
    pub fn head_position(follower: &Letter) -> Option<Position> {
        let (source, head) = (follower.source.as_ref()?, follower.behind?);
        Some(Position {
            topic: source.topic.clone(),
            partition: source.partition,
            offset: head,
        })
    }

    /// The letters of the head `follower` waits behind (none indexed yet: empty; itself never).
    pub async fn heads_of(&self, follower: &Letter) -> Result<Vec<Letter>, redis::RedisError> {
        let Some(head) = Self::head_position(follower) else {
            return Ok(Vec::new());
        };
        let mut c = self.connection.clone();
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.source_key(&follower.group, &head))
            .query_async(&mut c)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids.into_iter().filter(|id| *id != follower.id) {
            if let Some(l) = self.get(&id).await? {
                out.push(l);
            }
        }
        Ok(out)
    }

    /// Parked letters of `class` (or, with `None`, those waiting behind a head), oldest first, from
    /// rank `start`, `limit` at most.
    pub async fn parked_in(
        &self,
        class: Option<&str>,
        start: usize,
        limit: usize,
    ) -> Result<Vec<Letter>, redis::RedisError> {
        let set = match class {
            Some(c) => self.key(&["parked-class", c]),
            None => self.key(&["parked-behind"]),
        };
        let mut c = self.connection.clone();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&set)
            .arg(start)
            .arg(start + limit.max(1) - 1)
            .query_async(&mut c)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(self.key(&["l", id]));
        }
        let stored: Vec<HashMap<String, String>> = pipe.query_async(&mut c).await?;
        Ok(stored.iter().filter_map(Letter::from_fields).collect())
    }

    /// The letter `id`, if indexed.
    pub async fn get(&self, id: &str) -> Result<Option<Letter>, redis::RedisError> {
        let mut c = self.connection.clone();
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key(&["l", id]))
            .query_async(&mut c)
            .await?;
        Ok(Letter::from_fields(&fields))
    }

    /// Move each of `moves` (letter, from, to, by whom, note) to its new state, only when it is in its
    /// `from` state (`transition.lua`), in pipelines of a thousand.
    pub async fn transition_many(
        &self,
        moves: &[(&Letter, State, State, &str, &str)],
    ) -> Result<(), redis::RedisError> {
        if moves.is_empty() {
            return Ok(());
        }
        let mut c = self.connection.clone();
        let hash = self.transition.load_async(&mut c).await?;
        let now = now_ms();
        for chunk in moves.chunks(1000) {
            let mut pipe = redis::pipe();
            for (letter, from, to, by, note) in chunk {
                pipe.cmd("EVALSHA")
                    .arg(&hash)
                    .arg(7)
                    .arg(self.key(&["l", &letter.id]))
                    .arg(self.key(&["state", from.as_str()]))
                    .arg(self.key(&["state", to.as_str()]))
                    .arg(self.key(&["parked", &letter.group]))
                    .arg(self.key(&["parked-by-class"]))
                    .arg(self.key(&["parked-class", &letter.class]))
                    .arg(self.key(&["parked-behind"]))
                    .arg(from.as_str())
                    .arg(to.as_str())
                    .arg(now)
                    .arg(*by)
                    .arg(*note)
                    .arg(&letter.class)
                    .ignore();
            }
            pipe.query_async::<()>(&mut c).await?;
        }
        Ok(())
    }

    /// Forget the letters replayed or discarded before `before` (ms), a thousand at most per state;
    /// how many. Their records may still be on the DLQ topics; the audit topic keeps what was done.
    pub async fn forget_done(&self, before: i64) -> Result<usize, redis::RedisError> {
        let mut c = self.connection.clone();
        let mut forgotten = 0;
        for state in [State::Replayed, State::Discarded] {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(self.key(&["state", state.as_str()]))
                .arg("-inf")
                .arg(format!("({before}"))
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(1000)
                .query_async(&mut c)
                .await?;
            if ids.is_empty() {
                continue;
            }
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let letters = self.get_many(&refs).await?;
            let mut pipe = redis::pipe();
            for (id, letter) in ids.iter().zip(letters) {
                let Some(l) = letter else {
                    // Only its place in the state set is left.
                    pipe.cmd("ZREM")
                        .arg(self.key(&["state", state.as_str()]))
                        .arg(id)
                        .ignore();
                    continue;
                };
                let source = l.source.clone();
                pipe.cmd("EVAL")
                    .arg(FORGET_SCRIPT)
                    .arg(9)
                    .arg(self.key(&["l", &l.id]))
                    .arg(self.key(&["all"]))
                    .arg(self.key(&["group", &l.group]))
                    .arg(self.key(&["class", &l.class]))
                    .arg(self.key(&["topic", source.as_ref().map_or("", |s| s.topic.as_str())]))
                    .arg(self.key(&["key", l.key.as_deref().unwrap_or("")]))
                    .arg(self.key(&["state", l.state.as_str()]))
                    .arg(match (&source, l.behind) {
                        (Some(s), Some(head)) => self.behind_key(&l.group, s, head),
                        _ => self.key(&["behind"]),
                    })
                    .arg(match &source {
                        Some(s) => self.source_key(&l.group, s),
                        None => self.key(&["src"]),
                    })
                    .arg(&l.id);
                forgotten += 1;
            }
            let _: Vec<redis::Value> = pipe.query_async(&mut c).await?;
        }
        Ok(forgotten)
    }

    /// Hold each of `ids` for one action (`ms` at most): per id, false when another holds it.
    pub async fn lock_many(
        &self,
        ids: &[&str],
        token: &str,
        ms: u64,
    ) -> Result<Vec<bool>, redis::RedisError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut c = self.connection.clone();
        for chunk in ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("SET")
                    .arg(self.key(&["lock", id]))
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms);
            }
            let set: Vec<Option<String>> = pipe.query_async(&mut c).await?;
            out.extend(set.into_iter().map(|s| s.is_some()));
        }
        Ok(out)
    }

    /// The letters `ids` (None where not indexed).
    pub async fn get_many(&self, ids: &[&str]) -> Result<Vec<Option<Letter>>, redis::RedisError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut c = self.connection.clone();
        for chunk in ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HGETALL").arg(self.key(&["l", id]));
            }
            let stored: Vec<HashMap<String, String>> = pipe.query_async(&mut c).await?;
            out.extend(stored.iter().map(Letter::from_fields));
        }
        Ok(out)
    }

    /// Let go of each of `ids` (only those `token` still holds).
    pub async fn unlock_many(&self, ids: &[&str], token: &str) -> Result<(), redis::RedisError> {
        let mut c = self.connection.clone();
        for chunk in ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("EVAL")
                    .arg(UNLOCK_SCRIPT)
                    .arg(1)
                    .arg(self.key(&["lock", id]))
                    .arg(token)
                    .ignore();
            }
            pipe.query_async::<()>(&mut c).await?;
        }
        Ok(())
    }

    /// Hold letter `id` for one operator action (`ms` at most): false when another holds it.
    pub async fn lock(&self, id: &str, token: &str, ms: u64) -> Result<bool, redis::RedisError> {
        let mut c = self.connection.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&["lock", id]))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }

    /// Let go of letter `id` (only if `token` still holds it).
    pub async fn unlock(&self, id: &str, token: &str) -> Result<(), redis::RedisError> {
        let mut c = self.connection.clone();
        let script = redis::Script::new(UNLOCK_SCRIPT);
        let _: i64 = script
            .key(self.key(&["lock", id]))
            .arg(token)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// The letters matching `filter`, newest first, `limit` at most, from `cursor` (a page's `next`).
    /// A page may hold fewer than `limit` and still have a `next` (a filter that matches few of many).
    pub async fn list(
        &self,
        filter: &Filter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, ListError> {
        // The narrowest set the filter names.
        let set = match filter {
            Filter { key: Some(k), .. } => self.key(&["key", k]),
            Filter { topic: Some(t), .. } => self.key(&["topic", t]),
            Filter { group: Some(g), .. } => self.key(&["group", g]),
            Filter { class: Some(c), .. } => self.key(&["class", c]),
            Filter { state: Some(s), .. } => self.key(&["state", s]),
            _ => self.key(&["all"]),
        };
        let mut c = self.connection.clone();
        // Newest first by rank; a cursor is the last letter given (its rank is read again: newer
        // letters shift ranks). A cursor's letter gone from the set (its state changed) goes on from
        // its time.
        let above = |score: i64| -> redis::Cmd {
            let mut cmd = redis::cmd("ZCOUNT");
            cmd.arg(&set).arg(format!("({score}")).arg("+inf");
            cmd
        };
        let mut start: i64 = match cursor {
            None => match filter.until {
                Some(u) => above(u).query_async(&mut c).await?,
                None => 0,
            },
            Some(cursor) => {
                let (score, id) = cursor.split_once('/').ok_or(ListError::Cursor)?;
                let score: i64 = score.parse().map_err(|_| ListError::Cursor)?;
                let rank: Option<i64> = redis::cmd("ZREVRANK")
                    .arg(&set)
                    .arg(id)
                    .query_async(&mut c)
                    .await?;
                match rank {
                    Some(r) => r + 1,
                    None => above(score).query_async(&mut c).await?,
                }
            }
        };
        let mut letters = Vec::new();
        let mut scanned = 0usize;
        let chunk = i64::try_from((limit * 2).clamp(50, 1000)).unwrap_or(1000);
        loop {
            let found: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&set)
                .arg(start)
                .arg(start + chunk - 1)
                .arg("REV")
                .arg("WITHSCORES")
                .query_async(&mut c)
                .await?;
            if found.is_empty() {
                return Ok(Page {
                    letters,
                    next: None,
                });
            }
            let mut pipe = redis::pipe();
            for (id, _) in &found {
                pipe.cmd("HGETALL").arg(self.key(&["l", id]));
            }
            let stored: Vec<HashMap<String, String>> = pipe.query_async(&mut c).await?;
            let exhausted = i64::try_from(found.len()).unwrap_or(0) < chunk;
            for ((id, score), fields) in found.into_iter().zip(stored) {
                let score = score as i64;
                scanned += 1;
                start += 1;
                if filter.since.is_some_and(|s| score < s) {
                    // Older than the window, and so is everything after it.
                    return Ok(Page {
                        letters,
                        next: None,
                    });
                }
                if let Some(l) = Letter::from_fields(&fields)
                    && filter.matches(&l)
                {
                    letters.push(l);
                }
                if letters.len() >= limit || scanned >= MAX_SCAN {
                    return Ok(Page {
                        letters,
                        next: Some(format!("{score}/{id}")),
                    });
                }
            }
            if exhausted {
                return Ok(Page {
                    letters,
                    next: None,
                });
            }
        }
    }

    /// Parked letters per error class.
    pub async fn parked_by_class(&self) -> Result<HashMap<String, i64>, redis::RedisError> {
        let mut c = self.connection.clone();
        let counts: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(self.key(&["parked-by-class"]))
            .query_async(&mut c)
            .await?;
        Ok(counts.into_iter().filter(|(_, n)| *n > 0).collect())
    }

    /// Parked letters waiting behind a head (per-key order), every group.
    pub async fn parked_behind(&self) -> Result<i64, redis::RedisError> {
        let mut c = self.connection.clone();
        redis::cmd("ZCARD")
            .arg(self.key(&["parked-behind"]))
            .query_async(&mut c)
            .await
    }

    /// Per group: parked letters and when the oldest of them was dead-lettered (ms).
    pub async fn depth(&self) -> Result<Vec<(String, i64, Option<i64>)>, redis::RedisError> {
        let mut c = self.connection.clone();
        let mut groups: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key(&["groups"]))
            .query_async(&mut c)
            .await?;
        groups.sort();
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for g in &groups {
            let k = self.key(&["parked", g]);
            pipe.cmd("ZCARD").arg(&k);
            pipe.cmd("ZRANGE").arg(&k).arg(0).arg(0).arg("WITHSCORES");
        }
        let answers: Vec<redis::Value> = pipe.query_async(&mut c).await?;
        let mut out = Vec::with_capacity(groups.len());
        for (g, pair) in groups.into_iter().zip(answers.chunks(2)) {
            let n: i64 = redis::from_redis_value(pair[0].clone()).unwrap_or(0);
            let oldest: Vec<(String, f64)> =
                redis::from_redis_value(pair[1].clone()).unwrap_or_default();
            out.push((g, n, oldest.first().map(|(_, s)| *s as i64)));
        }
        Ok(out)
    }
}

/// Why a list failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The cursor is not one a page gave.
    #[error("the cursor is not one a page gave")]
    Cursor,
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The bytes of lowercase or uppercase hex `s`.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Now, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    fn message(headers: &[(&str, &str)]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        OwnedMessage::new(
            Some(b"value".to_vec()),
            Some(b"order-1".to_vec()),
            "projector-redis.dlq".into(),
            Timestamp::CreateTime(1_000),
            2,
            7,
            Some(h),
        )
    }

    #[test]
    fn a_letter_is_read_from_its_headers_and_stored_back_the_same() {
        let m = message(&[
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (REPLAY_COUNT, "2"),
            (h::REASON, "undecodable"),
            (h::CLASS, "poison"),
            (h::TOPIC, "orders.order.events"),
            (h::PARTITION, "3"),
            (h::OFFSET, "41"),
            (h::GROUP, "projector-redis"),
            (h::AT, "5000"),
            (h::ATTEMPTS, "1"),
            (h::FIRST_FAILURE, "4999"),
        ]);
        let l = Letter::of(&m);
        assert_eq!(l.id, "projector-redis.dlq:2:7");
        assert_eq!(
            l.source,
            Some(Position {
                topic: "orders.order.events".into(),
                partition: 3,
                offset: 41
            })
        );
        assert_eq!(l.replays, 2);
        assert_eq!(
            l.trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!((l.at, l.first_failure), (5000, 4999));
        let mut stored: HashMap<String, String> = l
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        stored.insert("state".into(), "parked".into());
        stored.insert("state_at".into(), "5000".into());
        assert_eq!(Letter::from_fields(&stored), Some(l));
    }

    #[test]
    fn a_record_without_the_headers_is_still_indexed_but_has_no_source() {
        let l = Letter::of(&message(&[(h::PARTITION, "x")]));
        assert_eq!(l.class, "unknown");
        assert_eq!(l.group, "projector-redis");
        assert_eq!(l.source, None);
        assert_eq!(l.at, 1_000);
    }

    #[test]
    fn filters() {
        let l = Letter::of(&message(&[(h::CLASS, "poison"), (h::AT, "10")]));
        let f = |json: &str| -> Filter { serde_json::from_str(json).unwrap_or_default() };
        assert!(f(r#"{"class":"poison","since":10,"until":10}"#).matches(&l));
        assert!(!f(r#"{"class":"transient"}"#).matches(&l));
        assert!(!f(r#"{"since":11}"#).matches(&l));
        assert!(f(r#"{"state":"nope"}"#).check().is_err());
        assert!(f(r#"{"since":2,"until":1}"#).check().is_err());
    }
}
