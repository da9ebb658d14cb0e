//! Webhook sink: notifications POSTed to an HTTP(S) endpoint, at least once, in order, with a
//! durable outbox.
//!
//! Owns: a route's webhook files under the output dir — `<route>.outbox.jsonl` (every
//! notification handed to the sink), `<route>.cursor` (how far delivery has settled) and the
//! dead letter (`<route>.dead-letter.jsonl` by default) — and the route's delivery thread, the
//! only place that touches the network. It may not touch other sinks' files, and the dataflow
//! thread that calls it may never wait on the network.
//!
//! # Design
//!
//! - **Outbox.** [`WebhookSink::send`] appends `{"id": …, "body": <the notification>}` to the
//!   outbox through a buffer and returns: the dataflow never blocks on the endpoint.
//!   [`flush`](WebhookSink::flush) (once per completed batch) makes the lines visible to the
//!   delivery thread; [`sync`](WebhookSink::sync) fsyncs and returns the outbox length for a
//!   commit snapshot. Reopening with that length (`outbox_len`) cuts off what was written after
//!   the commit, which the replay appends again — as `jsonl::JsonlWriter::open_at` does.
//! - **Cursor.** The delivery thread tails the outbox from the cursor, the byte offset of the
//!   first line not yet *settled* (delivered or dead-lettered). It holds at most
//!   `queue_capacity` lines in memory; whatever the endpoint does, the rest waits on disk, so
//!   memory stays bounded and nothing is lost. The cursor is written atomically (temp file +
//!   rename) at most once a second while delivering, and exactly at shutdown
//!   ([`drain`](WebhookSink::drain) or drop).
//! - **Delivery.** One request at a time, in outbox order: a driver must not get "available"
//!   before the "out of order" that preceded it, so a failing notification holds back the ones
//!   after it until it is delivered or dead-lettered. Each body is the notification's JSON
//!   exactly as sent, `Content-Type: application/json`, with `X-Evflow-Notification-Id` and
//!   `Idempotency-Key` (the notification id) and, when a secret is configured,
//!   `X-Evflow-Signature: sha256=<hex HMAC-SHA256 of the body>`. A 2xx is delivered; anything
//!   else — refused, timed out, any other status — is a failed attempt, retried after
//!   `backoff_initial × 2^(n−1)` capped at `backoff_max`, with a ±20 % jitter that is a hash of
//!   (id, attempt) so that runs are reproducible. Permanent-looking statuses (a 4xx other than
//!   408/429) are retried like the rest: they usually mean a receiver that is misconfigured
//!   (a rotated secret, a route not deployed yet) and gets fixed, and `max_attempts` bounds
//!   the cost. Redirects are not followed (a 3xx is a failure).
//! - **Dead letter.** After `max_attempts` failed attempts the notification is appended (and
//!   fsynced) to the dead letter as `{"id", "route", "url", "attempts", "last_error",
//!   "first_attempt", "last_attempt", "record"}` and delivery moves on.
//! - **At least once.** A notification is delivered at least once; it is delivered again only
//!   as a retry of the same id: a 2xx lost in transit, a restart re-sending what the cursor had
//!   not yet recorded as settled (at most ~1 s of deliveries after a crash; none after a clean
//!   shutdown), or a restore from a commit re-appending lines that were already delivered.
//!   **Receivers deduplicate by `X-Evflow-Notification-Id`** (ids are deterministic).
//! - **Restart.** Reopening the same dir and route resumes from the cursor. A fresh open
//!   (`outbox_len` = `None`) of an outbox that is entirely settled starts it anew (empty), so
//!   the outbox does not grow for ever across runs.
//!
//! Metrics (`sink="webhook"`, `route`): `delivery_attempts{outcome}`, `delivered`,
//! `delivery_dead_letters`, `delivery_backlog` (lines appended and not yet settled).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::http;
use super::SinkError;
use crate::config::Duration as ConfigDuration;
use crate::metrics::{labels2, Metrics};
use crate::model::Millis;

const SINK: &str = "webhook";
/// How often, at most, the cursor is written while delivering.
const CURSOR_EVERY: Duration = Duration::from_secs(1);
/// How often `drain` reports what it is waiting for.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// When the dead letter cannot be written, how long before trying again.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);

/// A route's `webhook` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where notifications are POSTed: an `http://` or `https://` URL.
    pub url: String,
    /// Key of the HMAC-SHA256 signature of every body (`X-Evflow-Signature`). With neither
    /// this nor `secret_env`, bodies are not signed.
    #[serde(default)]
    pub secret: Option<String>,
    /// Read the key from this environment variable (at start) instead, so that the config
    /// file need not hold it. Exclusive with `secret`; the variable must be set and non-empty.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Bound on one request: connect, send and response (default `10s`).
    #[serde(default = "defaults::timeout")]
    pub timeout: ConfigDuration,
    /// Failed attempts after which a notification goes to the dead letter (default 10).
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubles at each further one (default `500ms`).
    #[serde(default = "defaults::backoff_initial")]
    pub backoff_initial: ConfigDuration,
    /// Longest wait between two attempts (default `60s`).
    #[serde(default = "defaults::backoff_max")]
    pub backoff_max: ConfigDuration,
    /// Notifications the delivery thread holds in memory (default 10000); the rest wait in
    /// the outbox on disk.
    #[serde(default = "defaults::queue_capacity")]
    pub queue_capacity: usize,
    /// The dead-letter file (relative paths are under the route's directory,
    /// `<output.dir>/delivery/`). Default: `<output.dir>/delivery/<route>.dead-letter.jsonl`.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
}

mod defaults {
    use crate::config::Duration;

    pub fn timeout() -> Duration {
        Duration(10_000)
    }
    pub fn max_attempts() -> u32 {
        10
    }
    pub fn backoff_initial() -> Duration {
        Duration(500)
    }
    pub fn backoff_max() -> Duration {
        Duration(60_000)
    }
    pub fn queue_capacity() -> usize {
        10_000
    }
}

impl WebhookConfig {
    /// The defaults, posting to `url`.
    pub fn new(url: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            secret: None,
            secret_env: None,
            timeout: defaults::timeout(),
            max_attempts: defaults::max_attempts(),
            backoff_initial: defaults::backoff_initial(),
            backoff_max: defaults::backoff_max(),
            queue_capacity: defaults::queue_capacity(),
            dead_letter: None,
        }
    }

    /// Checks the values and resolves the signing key.
    fn validate(&self, route: &str) -> Result<Option<Vec<u8>>, SinkError> {
        let bad = |m: String| SinkError::Http(format!("webhook route {route}: {m}"));
        http::check_url(&self.url).map_err(bad)?;
        if self.max_attempts == 0 {
            return Err(bad("max_attempts must be at least 1".into()));
        }
        if self.queue_capacity == 0 {
            return Err(bad("queue_capacity must be at least 1".into()));
        }
        if self.timeout.0 <= 0 {
            return Err(bad("timeout must be positive".into()));
        }
        if self.backoff_initial.0 < 0 || self.backoff_max.0 < self.backoff_initial.0 {
            return Err(bad("need 0 <= backoff_initial <= backoff_max".into()));
        }
        let key = match (&self.secret, &self.secret_env) {
            (Some(_), Some(_)) => return Err(bad("set secret or secret_env, not both".into())),
            (Some(s), None) => Some(s.clone()),
            (None, Some(var)) => Some(
                std::env::var(var)
                    .map_err(|e| bad(format!("secret_env: environment variable {var}: {e}")))?,
            ),
            (None, None) => None,
        };
        if key.as_deref() == Some("") {
            return Err(bad("the secret is empty".into()));
        }
        Ok(key.map(String::into_bytes))
    }
}

/// What [`WebhookSink::drain`] came to, counted since the sink was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub delivered: u64,
    pub dead_lettered: u64,
    /// Not settled when the wait ended: still in the outbox, sent by the next run.
    pub pending: u64,
}

/// An outbox line.
#[derive(Serialize, Deserialize)]
struct OutboxLine<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// What the sink and its delivery thread share.
type Shared = http::Shared<State>;

#[derive(Default)]
struct State {
    /// Outbox bytes the delivery thread may read (flushed, whole lines).
    visible: u64,
    /// Lines not settled at open plus lines sent since.
    appended: u64,
    settled: u64,
    delivered: u64,
    dead_lettered: u64,
    last_error: Option<String>,
    stop: bool,
}

/// One route's webhook: see the module doc.
pub struct WebhookSink {
    route: String,
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the outbox, buffered ones included.
    len: u64,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    metrics: Metrics,
}

impl WebhookSink {
    /// Opens route `route`'s outbox under `dir` and starts its delivery thread. `outbox_len`:
    /// the length a commit recorded ([`sync`](Self::sync)); the outbox is cut back to it and
    /// the cursor clamped to it. `None`: a fresh run, continuing whatever is unsettled.
    pub fn open(
        route: &str,
        cfg: &WebhookConfig,
        dir: &Path,
        outbox_len: Option<u64>,
        metrics: Metrics,
    ) -> Result<WebhookSink, SinkError> {
        if route.is_empty()
            || !route
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(SinkError::Http(format!(
                "webhook route name {route:?}: use [a-z0-9_-]"
            )));
        }
        let key = cfg.validate(route)?;
        std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(format!("{route}.outbox.jsonl"));
        let cursor_path = dir.join(format!("{route}.cursor"));
        let dead_letter = match &cfg.dead_letter {
            Some(p) => dir.join(p),
            None => dir.join(format!("{route}.dead-letter.jsonl")),
        };
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| SinkError::Io { path: p, source }
        };

        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut len = file.metadata().map_err(io(&path))?.len();
        match outbox_len {
            Some(l) if len > l => {
                tracing::info!(
                    "{}: dropping {} byte(s) written after the last commit",
                    path.display(),
                    len - l
                );
                file.set_len(l).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
                len = l;
            }
            Some(l) if len < l => tracing::warn!(
                "{}: {len} bytes, shorter than the {l} the last commit recorded",
                path.display()
            ),
            Some(_) => {}
            None => {
                // A crash in the middle of a write can leave a torn last line.
                let whole = whole_lines_len(&mut file, len).map_err(io(&path))?;
                if whole < len {
                    tracing::warn!(
                        "{}: dropping a torn last line ({} bytes)",
                        path.display(),
                        len - whole
                    );
                    file.set_len(whole).map_err(io(&path))?;
                    len = whole;
                }
            }
        }

        let mut cursor = read_cursor(&cursor_path).min(len);
        if outbox_len.is_none() && cursor == len && len > 0 {
            // Everything settled and no commit refers to this outbox: start it anew.
            file.set_len(0).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            len = 0;
            cursor = 0;
        }
        write_cursor(&cursor_path, cursor).map_err(io(&cursor_path))?;
        let unsettled = count_lines(&mut file, cursor, len).map_err(io(&path))?;
        if unsettled > 0 {
            tracing::info!(
                "webhook route {route}: {unsettled} notification(s) not yet delivered, resuming"
            );
        }

        let shared = Arc::new(Shared::new(State {
            visible: len,
            appended: unsettled,
            ..State::default()
        }));
        metrics
            .delivery_backlog
            .get_or_create(&labels2("sink", SINK, "route", route))
            .set(unsettled as i64);
        let delivery = Delivery {
            route: route.to_string(),
            url: cfg.url.clone(),
            key,
            agent: http::agent(http::std_duration(cfg.timeout)),
            max_attempts: cfg.max_attempts,
            backoff_initial: http::std_duration(cfg.backoff_initial),
            backoff_max: http::std_duration(cfg.backoff_max),
            capacity: cfg.queue_capacity,
            outbox: path.clone(),
            cursor_path,
            dead_letter_path: dead_letter,
            dead_letter: None,
            shared: shared.clone(),
            metrics: metrics.clone(),
        };
        let reader = file;
        let thread = std::thread::Builder::new()
            .name(format!("webhook-{route}"))
            .spawn(move || delivery.run(reader, cursor))
            .map_err(io(&path))?;
        let out = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(WebhookSink {
            route: route.to_string(),
            path,
            out: BufWriter::with_capacity(1 << 16, out),
            len,
            shared,
            thread: Some(thread),
            metrics,
        })
    }

    fn io(&self, source: std::io::Error) -> SinkError {
        SinkError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends notification `id` (its JSON, one line) to the outbox. Never touches the
    /// network. `id` must be printable ASCII (it goes into headers), `json_line` one JSON
    /// value.
    pub fn send(&mut self, id: &str, json_line: &str) -> Result<(), SinkError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SinkError::Http(format!(
                "webhook route {}: notification id {id:?} is not printable ASCII",
                self.route
            )));
        }
        let body: &RawValue = serde_json::from_str(json_line).map_err(|e| {
            SinkError::Http(format!(
                "webhook route {}: notification {id} is not one JSON value: {e}",
                self.route
            ))
        })?;
        let mut line = serde_json::to_string(&OutboxLine { id, body })
            .map_err(|e| self.io(std::io::Error::other(e)))?;
        line.push('\n');
        self.out
            .write_all(line.as_bytes())
            .map_err(|e| self.io(e))?;
        self.len += line.len() as u64;
        let mut st = self.shared.lock();
        st.appended += 1;
        self.set_backlog(&st);
        Ok(())
    }

    fn set_backlog(&self, st: &State) {
        set_backlog(&self.metrics, &self.route, st);
    }

    /// Hands what was sent so far to the delivery thread (once per completed batch).
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.io(e))?;
        let mut st = self.shared.lock();
        st.visible = self.len;
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Flushes and fsyncs the outbox; returns its length, for a commit snapshot (passed back
    /// as `outbox_len` on restore).
    pub fn sync(&mut self) -> Result<u64, SinkError> {
        self.flush()?;
        let file = self.out.get_ref();
        file.sync_data().map_err(|e| self.io(e))?;
        Ok(file.metadata().map_err(|e| self.io(e))?.len())
    }

    /// Waits until every notification sent is settled (delivered or dead-lettered) or
    /// `max_wait` has passed, logging progress every ~5 s; then stops the delivery thread,
    /// which writes the cursor exactly. What is still pending stays in the outbox for the next
    /// run.
    pub fn drain(mut self, max_wait: Duration) -> DrainReport {
        if let Err(e) = self.flush() {
            tracing::error!("webhook route {}: {e}", self.route);
        }
        {
            let route = &self.route;
            self.shared.wait_settled(
                max_wait,
                PROGRESS_EVERY,
                |st| st.appended.saturating_sub(st.settled),
                |st, waiting| {
                    tracing::info!(
                        "webhook route {route}: {waiting} waiting; last error: {}",
                        st.last_error.as_deref().unwrap_or("none")
                    )
                },
            );
        }
        self.stop();
        let st = self.shared.lock();
        let report = DrainReport {
            delivered: st.delivered,
            dead_lettered: st.dead_lettered,
            pending: st.appended.saturating_sub(st.settled),
        };
        if report.pending > 0 {
            tracing::warn!(
                "webhook route {}: {} notification(s) not delivered within {:?}, kept in {} for the next run; last error: {}",
                self.route,
                report.pending,
                max_wait,
                self.path.display(),
                st.last_error.as_deref().unwrap_or("none")
            );
        }
        report
    }

    /// Stops the delivery thread: it finishes the request in flight (bounded by `timeout`),
    /// writes the cursor and ends.
    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.lock().stop = true;
            self.shared.changed.notify_all();
            if t.join().is_err() {
                tracing::error!("webhook route {}: the delivery thread panicked", self.route);
            }
        }
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::error!("{}: {e}", self.path.display());
        }
        self.stop();
    }
}

fn set_backlog(metrics: &Metrics, route: &str, st: &State) {
    metrics
        .delivery_backlog
        .get_or_create(&labels2("sink", SINK, "route", route))
        .set(st.appended.saturating_sub(st.settled) as i64);
}

/// A notification the delivery thread holds.
struct Pending {
    id: String,
    body: Box<RawValue>,
    /// Outbox offset after its line: the cursor once it is settled.
    end: u64,
    attempts: u32,
    first_attempt: Option<Millis>,
    last_attempt: Option<Millis>,
    last_error: String,
    retry_at: Option<Instant>,
    /// The outbox line could not be read back (disk corruption): dead-lettered at once.
    unreadable: bool,
}

/// The delivery thread's state.
struct Delivery {
    route: String,
    url: String,
    key: Option<Vec<u8>>,
    agent: ureq::Agent,
    max_attempts: u32,
    backoff_initial: Duration,
    backoff_max: Duration,
    capacity: usize,
    outbox: PathBuf,
    cursor_path: PathBuf,
    dead_letter_path: PathBuf,
    dead_letter: Option<File>,
    shared: Arc<Shared>,
    metrics: Metrics,
}

impl Delivery {
    fn run(mut self, file: File, mut cursor: u64) {
        let mut reader = BufReader::new(file);
        let mut read_pos = cursor;
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let (mut saved, mut saved_at) = (cursor, Instant::now());
        // Whether the last attempt failed: log the start and the end of a failing streak, not
        // every attempt.
        let mut failing = false;
        loop {
            let visible = self.shared.lock().visible;
            // Refill at half capacity: one read of the outbox per many notifications.
            let mut stalled = false;
            if read_pos < visible && queue.len() * 2 < self.capacity {
                let before = read_pos;
                if let Err(e) = self.refill(&mut reader, &mut read_pos, visible, &mut queue) {
                    tracing::error!("{}: {e}", self.outbox.display());
                    self.shared.lock().last_error = Some(format!("reading the outbox: {e}"));
                }
                stalled = read_pos == before;
            }
            if cursor != saved && saved_at.elapsed() >= CURSOR_EVERY {
                self.save_cursor(cursor);
                (saved, saved_at) = (cursor, Instant::now());
            }
            let now = Instant::now();
            let wait = match queue.front() {
                None => Some(CURSOR_EVERY),
                Some(p) => p.retry_at.filter(|t| *t > now).map(|t| t - now),
            };
            {
                let st = self.shared.lock();
                if st.stop {
                    break;
                }
                if let Some(w) = wait {
                    if stalled || !(queue.is_empty() && st.visible > read_pos) {
                        // Woken early by new lines or a stop; either way, look again.
                        let _ = self.shared.changed.wait_timeout(st, w.min(CURSOR_EVERY));
                    }
                    continue;
                }
            }
            let Some(p) = queue.front_mut() else { continue };
            if p.unreadable || p.attempts >= self.max_attempts {
                match self.dead_letter(p) {
                    Ok(()) => {
                        cursor = p.end;
                        queue.pop_front();
                        self.settle(false);
                    }
                    Err(e) => {
                        tracing::error!("{}: {e}", self.dead_letter_path.display());
                        p.retry_at = Some(Instant::now() + DEAD_LETTER_RETRY);
                    }
                }
                continue;
            }
            let outcome = self.attempt(p);
            let outcome_label = if outcome.is_success() { "ok" } else { "failed" };
            self.metrics
                .delivery_attempts
                .get_or_create(&vec![
                    ("sink", SINK.to_string()),
                    ("route", self.route.clone()),
                    ("outcome", outcome_label.to_string()),
                ])
                .inc();
            match outcome.error() {
                None => {
                    if failing {
                        tracing::info!("webhook route {}: delivering again", self.route);
                        failing = false;
                    }
                    self.metrics
                        .delivered
                        .get_or_create(&labels2("sink", SINK, "route", &self.route))
                        .inc();
                    cursor = p.end;
                    queue.pop_front();
                    self.settle(true);
                }
                Some(err) => {
                    if !failing {
                        tracing::warn!(
                            "webhook route {}: {} failed: {err}; retrying with backoff",
                            self.route,
                            self.url
                        );
                        failing = true;
                    }
                    tracing::debug!(
                        "webhook route {}: notification {} attempt {}: {err}",
                        self.route,
                        p.id,
                        p.attempts
                    );
                    p.last_error = err.clone();
                    if p.attempts < self.max_attempts {
                        let wait = http::backoff(
                            self.backoff_initial,
                            self.backoff_max,
                            p.attempts,
                            &p.id,
                        );
                        p.retry_at = Some(Instant::now() + wait);
                    }
                    self.shared.lock().last_error = Some(err);
                    self.shared.changed.notify_all();
                }
            }
        }
        if cursor != saved {
            self.save_cursor(cursor);
        }
    }

    /// Reads whole lines of `[read_pos, visible)` until the queue is full.
    fn refill(
        &self,
        reader: &mut BufReader<File>,
        read_pos: &mut u64,
        visible: u64,
        queue: &mut VecDeque<Pending>,
    ) -> std::io::Result<()> {
        reader.seek(SeekFrom::Start(*read_pos))?;
        let mut buf = Vec::new();
        while queue.len() < self.capacity && *read_pos < visible {
            buf.clear();
            let n = (&mut *reader)
                .take(visible - *read_pos)
                .read_until(b'\n', &mut buf)?;
            if n == 0 || buf.last() != Some(&b'\n') {
                // Only whole lines are ever made visible; wait for the rest.
                break;
            }
            *read_pos += n as u64;
            queue.push_back(parse_line(&buf[..n - 1], *read_pos));
        }
        Ok(())
    }

    /// One POST of the queue's head.
    fn attempt(&self, p: &mut Pending) -> http::Outcome {
        let now = http::now_millis();
        p.first_attempt.get_or_insert(now);
        p.last_attempt = Some(now);
        p.attempts += 1;
        let body = p.body.get().as_bytes();
        let signature = self
            .key
            .as_ref()
            .map(|k| format!("sha256={}", http::hmac_sha256_hex(k, body)));
        let mut headers = vec![
            ("X-Evflow-Notification-Id", p.id.as_str()),
            ("Idempotency-Key", p.id.as_str()),
        ];
        if let Some(s) = &signature {
            headers.push(("X-Evflow-Signature", s.as_str()));
        }
        http::post_json(&self.agent, &self.url, &headers, body)
    }

    fn settle(&self, delivered: bool) {
        let mut st = self.shared.lock();
        st.settled += 1;
        if delivered {
            st.delivered += 1;
        } else {
            st.dead_lettered += 1;
        }
        set_backlog(&self.metrics, &self.route, &st);
        self.shared.changed.notify_all();
    }

    /// Appends `p` to the dead letter, durably (the cursor moves past it next).
    fn dead_letter(&mut self, p: &Pending) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct DeadLetter<'a> {
            id: &'a str,
            route: &'a str,
            url: &'a str,
            attempts: u32,
            last_error: &'a str,
            first_attempt: Option<String>,
            last_attempt: Option<String>,
            record: &'a RawValue,
        }
        let mut line = serde_json::to_string(&DeadLetter {
            id: &p.id,
            route: &self.route,
            url: &self.url,
            attempts: p.attempts,
            last_error: &p.last_error,
            first_attempt: p.first_attempt.map(crate::time::format_rfc3339),
            last_attempt: p.last_attempt.map(crate::time::format_rfc3339),
            record: &p.body,
        })
        .map_err(std::io::Error::other)?;
        line.push('\n');
        let file = match &mut self.dead_letter {
            Some(f) => f,
            None => {
                if let Some(parent) = self.dead_letter_path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                self.dead_letter.insert(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.dead_letter_path)?,
                )
            }
        };
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
        tracing::warn!(
            "webhook route {}: notification {} dead-lettered after {} attempt(s): {}",
            self.route,
            p.id,
            p.attempts,
            p.last_error
        );
        self.metrics
            .delivery_dead_letters
            .get_or_create(&labels2("sink", SINK, "route", &self.route))
            .inc();
        Ok(())
    }

    fn save_cursor(&self, cursor: u64) {
        if let Err(e) = write_cursor(&self.cursor_path, cursor) {
            // Not fatal: a restart re-sends from the older cursor (at least once).
            tracing::warn!("{}: {e}", self.cursor_path.display());
        }
    }
}

fn parse_line(line: &[u8], end: u64) -> Pending {
    let pending = |id: String, body: Box<RawValue>, unreadable: bool, error: String| Pending {
        id,
        body,
        end,
        attempts: 0,
        first_attempt: None,
        last_attempt: None,
        last_error: error,
        retry_at: None,
        unreadable,
    };
    match serde_json::from_slice::<OutboxLine>(line) {
        Ok(l) => pending(l.id.to_string(), l.body.to_owned(), false, String::new()),
        Err(e) => {
            // Keep the bytes (as a JSON string) in the dead letter rather than stall delivery.
            let text = String::from_utf8_lossy(line);
            let body = serde_json::to_string(&text)
                .ok()
                .and_then(|s| RawValue::from_string(s).ok())
                .unwrap_or_else(|| RawValue::NULL.to_owned());
            pending(
                String::new(),
                body,
                true,
                format!(
                    "unreadable outbox line at byte {}: {e}",
                    end - line.len() as u64 - 1
                ),
            )
        }
    }
}

/// The cursor, or 0 (re-send everything: at least once) when it is missing or unreadable.
fn read_cursor(path: &Path) -> u64 {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(
                "{}: not a byte offset; delivering from the start",
                path.display()
            );
            0
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!("{}: {e}; delivering from the start", path.display());
            0
        }
    }
}

/// Writes the cursor atomically: a crash leaves the old value or the new one.
fn write_cursor(path: &Path, cursor: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("cursor.tmp");
    {
        let mut f = File::create(&tmp)?;
        writeln!(f, "{cursor}")?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

/// Length of the prefix of the first `len` bytes that ends with a newline.
fn whole_lines_len(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut pos = len;
    let mut buf = [0u8; 4096];
    while pos > 0 {
        let n = buf.len().min(pos as usize);
        file.seek(SeekFrom::Start(pos - n as u64))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(pos - n as u64 + i as u64 + 1);
        }
        pos -= n as u64;
    }
    Ok(0)
}

/// Newlines in `[from, to)`.
fn count_lines(file: &mut File, from: u64, to: u64) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(from))?;
    let mut r = BufReader::new(&mut *file).take(to.saturating_sub(from));
    let mut count = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(count);
        }
        count += memchr::memchr_iter(b'\n', buf).count() as u64;
        let n = buf.len();
        r.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::sinks::http::test_server::{free_port, Request, Server};

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("evflow-webhook-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn quick(url: &str, max_attempts: u32, initial_ms: i64, max_ms: i64) -> WebhookConfig {
        WebhookConfig {
            timeout: ConfigDuration(2_000),
            max_attempts,
            backoff_initial: ConfigDuration(initial_ms),
            backoff_max: ConfigDuration(max_ms),
            ..WebhookConfig::new(url)
        }
    }

    fn id(i: usize) -> String {
        format!("n-{i:03}")
    }

    fn line(i: usize) -> String {
        format!(
            r#"{{"id":"{}","kind":"station_available","seq":{i},"facts":{{"status":"Available"}}}}"#,
            id(i)
        )
    }

    fn header<'a>(r: &'a Request, name: &str) -> &'a str {
        r.headers.get(name).map(String::as_str).unwrap_or("")
    }

    fn req_id(r: &Request) -> String {
        header(r, "x-evflow-notification-id").to_string()
    }

    /// The seq of a request's id (`n-007` → 7).
    fn req_seq(r: &Request) -> usize {
        req_id(r)
            .trim_start_matches("n-")
            .parse()
            .unwrap_or(usize::MAX)
    }

    /// Asserts at-least-once in order: one 2xx per id, duplicates only retries after
    /// failures, first successes in send order.
    fn assert_delivered_once_in_order(reqs: &[Request], ids: std::ops::Range<usize>) {
        let mut by_id: BTreeMap<String, Vec<u16>> = BTreeMap::new();
        for r in reqs {
            by_id.entry(req_id(r)).or_default().push(r.status);
        }
        for i in ids.clone() {
            let statuses = by_id
                .get(&id(i))
                .unwrap_or_else(|| panic!("{} never arrived", id(i)));
            let ok = statuses.iter().filter(|s| (200..300).contains(*s)).count();
            assert_eq!(ok, 1, "{}: {statuses:?}", id(i));
            // A duplicate is a retry after a failure: everything before the 2xx failed and
            // nothing came after it.
            assert!(
                (200..300).contains(statuses.last().unwrap_or(&0)),
                "{}: {statuses:?}",
                id(i)
            );
        }
        let firsts: Vec<usize> = reqs
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(req_seq)
            .collect();
        assert_eq!(firsts, ids.collect::<Vec<_>>());
        // One at a time, in order: the ids of all requests never go back.
        let seqs: Vec<usize> = reqs.iter().map(req_seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    }

    /// HMAC-SHA256 from SHA-256 alone (RFC 2104), independent of `ring::hmac`.
    fn reference_hmac(key: &[u8], msg: &[u8]) -> String {
        let sha = |parts: &[&[u8]]| {
            let mut c = ring::digest::Context::new(&ring::digest::SHA256);
            for p in parts {
                c.update(p);
            }
            c.finish().as_ref().to_vec()
        };
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&sha(&[key]));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = sha(&[&ipad, msg]);
        http::hex(&sha(&[&opad, &inner]))
    }

    fn counter(
        m: &prometheus_client::metrics::family::Family<
            Vec<(&'static str, String)>,
            prometheus_client::metrics::counter::Counter,
        >,
        l: Vec<(&'static str, String)>,
    ) -> u64 {
        m.get_or_create(&l).get()
    }

    #[test]
    fn bodies_are_signed_and_carry_the_notification_id() {
        // The reference itself against RFC 4231 test case 2 (hmac_sha256_hex has its own
        // vectors in sinks::http).
        assert_eq!(
            reference_hmac(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let server = Server::start(0, |_, _| 200);
        let dir = tmpdir("signed");
        let var = format!("EVFLOW_TEST_WEBHOOK_SECRET_{}", std::process::id());
        std::env::set_var(&var, "s3cret-from-env");
        let cfg = WebhookConfig {
            secret_env: Some(var.clone()),
            ..quick(&server.url("/hook"), 3, 10, 50)
        };
        let mut sink = WebhookSink::open("signed", &cfg, &dir, None, Metrics::new()).expect("open");
        for i in 0..3 {
            sink.send(&id(i), &line(i)).expect("send");
        }
        sink.flush().expect("flush");
        let report = sink.drain(Duration::from_secs(10));
        assert_eq!(
            report,
            DrainReport {
                delivered: 3,
                dead_lettered: 0,
                pending: 0
            }
        );
        let reqs = server.requests();
        assert_eq!(reqs.len(), 3);
        for (i, r) in reqs.iter().enumerate() {
            assert_eq!(r.path, "/hook");
            assert_eq!(r.body, line(i).as_bytes());
            assert_eq!(header(r, "content-type"), "application/json");
            assert_eq!(header(r, "x-evflow-notification-id"), id(i));
            assert_eq!(header(r, "idempotency-key"), id(i));
            let expected = format!("sha256={}", reference_hmac(b"s3cret-from-env", &r.body));
            assert_eq!(header(r, "x-evflow-signature"), expected);
        }

        // Without a secret: no signature header.
        let mut plain = WebhookSink::open(
            "plain",
            &quick(&server.url("/p"), 3, 10, 50),
            &dir,
            None,
            Metrics::new(),
        )
        .expect("open");
        plain.send("x-1", r#"{"a":1}"#).expect("send");
        plain.flush().expect("flush");
        assert_eq!(plain.drain(Duration::from_secs(10)).delivered, 1);
        let last = server.requests().pop().expect("a request");
        assert!(!last.headers.contains_key("x-evflow-signature"));

        // Bad configurations and inputs are refused up front.
        let both = WebhookConfig {
            secret: Some("a".into()),
            ..cfg.clone()
        };
        assert!(WebhookSink::open("both", &both, &dir, None, Metrics::new()).is_err());
        let unset = WebhookConfig {
            secret_env: Some(format!("{var}_UNSET")),
            ..cfg.clone()
        };
        assert!(WebhookSink::open("unset", &unset, &dir, None, Metrics::new()).is_err());
        assert!(WebhookSink::open(
            "ftp",
            &WebhookConfig::new("ftp://x"),
            &dir,
            None,
            Metrics::new()
        )
        .is_err());
        let mut s = WebhookSink::open(
            "inputs",
            &quick(&server.url("/"), 1, 10, 10),
            &dir,
            None,
            Metrics::new(),
        )
        .expect("open");
        assert!(s.send("bad id", "{}").is_err());
        assert!(s.send("ok-id", "{not json").is_err());
        std::env::remove_var(&var);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let cfg: WebhookConfig =
            toml::from_str(r#"url = "https://hooks.example.com/evflow""#).expect("toml");
        assert_eq!(cfg.timeout, ConfigDuration(10_000));
        assert_eq!(cfg.max_attempts, 10);
        assert_eq!(cfg.backoff_initial, ConfigDuration(500));
        assert_eq!(cfg.backoff_max, ConfigDuration(60_000));
        assert_eq!(cfg.queue_capacity, 10_000);
        assert!(cfg.secret.is_none() && cfg.secret_env.is_none() && cfg.dead_letter.is_none());
        let cfg: WebhookConfig = toml::from_str(
            "url = \"http://127.0.0.1:1/x\"\nsecret_env = \"HOOK_KEY\"\ntimeout = \"2s\"\nbackoff_initial = \"250ms\"\nbackoff_max = \"5m\"\nqueue_capacity = 5\ndead_letter = \"dl.jsonl\"",
        )
        .expect("toml");
        assert_eq!(
            (cfg.timeout.0, cfg.backoff_initial.0, cfg.backoff_max.0),
            (2_000, 250, 300_000)
        );
        assert!(toml::from_str::<WebhookConfig>("url = \"http://x\"\nretries = 3").is_err());
    }

    #[test]
    fn receiver_down_then_flaky_delivers_everything_once_in_order() {
        let port = free_port();
        let dir = tmpdir("flaky");
        let metrics = Metrics::new();
        // Enough attempts to outlast ~1.5 s down with backoffs capped at 100 ms.
        let cfg = WebhookConfig {
            queue_capacity: 8, // smaller than the backlog: the rest waits on disk
            ..quick(&format!("http://127.0.0.1:{port}/hook"), 100, 10, 100)
        };
        let mut sink = WebhookSink::open("flaky", &cfg, &dir, None, metrics.clone()).expect("open");
        let started = Instant::now();
        for batch in 0..5 {
            for i in batch * 10..(batch + 1) * 10 {
                sink.send(&id(i), &line(i)).expect("send");
            }
            sink.flush().expect("flush");
        }
        assert!(started.elapsed() < Duration::from_secs(1), "send blocked");
        // Nothing listens for ~1.5 s; then every third request fails with 500.
        std::thread::sleep(Duration::from_millis(1500));
        let server = Server::start(port, |n, _| if n % 3 == 2 { 500 } else { 200 });
        let report = sink.drain(Duration::from_secs(30));
        assert_eq!(
            report,
            DrainReport {
                delivered: 50,
                dead_lettered: 0,
                pending: 0
            }
        );
        let reqs = server.requests();
        assert_delivered_once_in_order(&reqs, 0..50);
        assert!(reqs.iter().any(|r| r.status == 500));
        assert!(!dir.join("flaky.dead-letter.jsonl").exists());
        let l = |outcome: &str| {
            vec![
                ("sink", SINK.to_string()),
                ("route", "flaky".to_string()),
                ("outcome", outcome.to_string()),
            ]
        };
        assert_eq!(
            counter(&metrics.delivered, labels2("sink", SINK, "route", "flaky")),
            50
        );
        assert_eq!(counter(&metrics.delivery_attempts, l("ok")), 50);
        // Refused while down, plus the 500s.
        assert!(
            counter(&metrics.delivery_attempts, l("failed"))
                > reqs.iter().filter(|r| r.status == 500).count() as u64
        );
        assert_eq!(
            metrics
                .delivery_backlog
                .get_or_create(&labels2("sink", SINK, "route", "flaky"))
                .get(),
            0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn endpoint_that_never_comes_back_dead_letters_everything() {
        let port = free_port();
        let dir = tmpdir("dead");
        let metrics = Metrics::new();
        let url = format!("http://127.0.0.1:{port}/hook");
        // 3 attempts, waits of ~50 and ~100 ms: ~150 ms per notification.
        let mut sink = WebhookSink::open(
            "dead",
            &quick(&url, 3, 50, 100),
            &dir,
            None,
            metrics.clone(),
        )
        .expect("open");
        let started = Instant::now();
        for i in 0..20 {
            sink.send(&id(i), &line(i)).expect("send");
            sink.flush().expect("flush");
        }
        let sending = started.elapsed();
        let dl_path = dir.join("dead.dead-letter.jsonl");
        let written_meanwhile = std::fs::read_to_string(&dl_path)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        // Delivery takes ~3 s; sending took a fraction of it and did not wait for it.
        assert!(
            sending < Duration::from_millis(500),
            "send blocked for {sending:?}"
        );
        assert!(written_meanwhile < 20);
        let report = sink.drain(Duration::from_secs(20));
        assert_eq!(
            report,
            DrainReport {
                delivered: 0,
                dead_lettered: 20,
                pending: 0
            }
        );
        let text = std::fs::read_to_string(&dl_path).expect("dead letter");
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(rows.len(), 20);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r["id"], id(i));
            assert_eq!(r["route"], "dead");
            assert_eq!(r["url"], url.as_str());
            assert_eq!(r["attempts"], 3);
            assert!(!r["last_error"].as_str().unwrap_or("").is_empty(), "{r}");
            let (first, last) = (
                r["first_attempt"].as_str().unwrap_or(""),
                r["last_attempt"].as_str().unwrap_or(""),
            );
            assert!(!first.is_empty() && first <= last, "{r}");
            let original: serde_json::Value = serde_json::from_str(&line(i)).expect("json");
            assert_eq!(r["record"], original);
        }
        assert_eq!(
            counter(
                &metrics.delivery_dead_letters,
                labels2("sink", SINK, "route", "dead")
            ),
            20
        );
        let failed = vec![
            ("sink", SINK.to_string()),
            ("route", "dead".to_string()),
            ("outcome", "failed".to_string()),
        ];
        assert_eq!(counter(&metrics.delivery_attempts, failed), 60);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reopening_resumes_from_the_cursor() {
        let dir = tmpdir("restart");
        let accept_all = Arc::new(AtomicBool::new(false));
        let accept = accept_all.clone();
        // First run: the receiver takes n-000..n-009 and refuses the rest.
        let server = Server::start(0, move |_, r| {
            if accept.load(Ordering::SeqCst) || req_seq(r) < 10 {
                200
            } else {
                503
            }
        });
        let cfg = quick(&server.url("/hook"), 1000, 10, 50);
        let mut sink =
            WebhookSink::open("restart", &cfg, &dir, None, Metrics::new()).expect("open");
        for i in 0..20 {
            sink.send(&id(i), &line(i)).expect("send");
        }
        sink.flush().expect("flush");
        assert!(server.wait_for(Duration::from_secs(10), |rs| rs
            .iter()
            .any(|r| req_seq(r) == 10)));
        // Dropped without drain: the thread stops and writes the cursor exactly (a crash would
        // leave it at most CURSOR_EVERY behind, re-sending those deliveries).
        drop(sink);
        let outbox = std::fs::read_to_string(dir.join("restart.outbox.jsonl")).expect("outbox");
        let ten: usize = outbox.lines().take(10).map(|l| l.len() + 1).sum();
        let cursor = std::fs::read_to_string(dir.join("restart.cursor")).expect("cursor");
        assert_eq!(cursor.trim(), ten.to_string());
        let first_run = server.requests().len();

        accept_all.store(true, Ordering::SeqCst);
        let sink = WebhookSink::open("restart", &cfg, &dir, None, Metrics::new()).expect("reopen");
        let report = sink.drain(Duration::from_secs(10));
        assert_eq!(
            report,
            DrainReport {
                delivered: 10,
                dead_lettered: 0,
                pending: 0
            }
        );
        let reqs = server.requests();
        assert!(
            reqs[first_run..].iter().all(|r| req_seq(r) >= 10),
            "a settled one was sent again"
        );
        assert_delivered_once_in_order(&reqs, 0..20);

        // Everything settled: a fresh open starts the outbox anew.
        drop(WebhookSink::open("restart", &cfg, &dir, None, Metrics::new()).expect("reopen"));
        assert_eq!(
            std::fs::metadata(dir.join("restart.outbox.jsonl"))
                .expect("outbox")
                .len(),
            0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn restoring_a_commit_cuts_the_outbox_back_and_clamps_the_cursor() {
        let dir = tmpdir("commit");
        let server = Server::start(0, |_, _| 200);
        let cfg = quick(&server.url("/hook"), 5, 10, 50);
        let mut sink = WebhookSink::open("commit", &cfg, &dir, None, Metrics::new()).expect("open");
        for i in 0..5 {
            sink.send(&id(i), &line(i)).expect("send");
        }
        let committed = sink.sync().expect("sync");
        for i in 5..8 {
            sink.send(&id(i), &line(i)).expect("send");
        }
        sink.flush().expect("flush");
        assert_eq!(sink.drain(Duration::from_secs(10)).delivered, 8);

        // Restored from the commit: the 3 lines after it are gone and nothing is re-sent...
        let mut sink = WebhookSink::open("commit", &cfg, &dir, Some(committed), Metrics::new())
            .expect("restore");
        assert_eq!(
            std::fs::metadata(dir.join("commit.outbox.jsonl"))
                .expect("outbox")
                .len(),
            committed
        );
        let cursor = std::fs::read_to_string(dir.join("commit.cursor")).expect("cursor");
        assert_eq!(cursor.trim(), committed.to_string());
        // ...until the replay sends them again: the same ids, delivered again (at least once).
        for i in 5..8 {
            sink.send(&id(i), &line(i)).expect("send");
        }
        sink.flush().expect("flush");
        assert_eq!(
            sink.drain(Duration::from_secs(10)),
            DrainReport {
                delivered: 3,
                dead_lettered: 0,
                pending: 0
            }
        );
        let seqs: Vec<usize> = server.requests().iter().map(req_seq).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5, 6, 7, 5, 6, 7]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_corrupt_one_dead_lettered() {
        let dir = tmpdir("torn");
        std::fs::create_dir_all(&dir).expect("dir");
        let good = serde_json::to_string(&OutboxLine {
            id: "n-000",
            body: &RawValue::from_string(line(0)).expect("raw"),
        })
        .expect("json");
        std::fs::write(
            dir.join("torn.outbox.jsonl"),
            format!("garbage\n{good}\n{{\"id\":\"n-0"),
        )
        .expect("write");
        let server = Server::start(0, |_, _| 200);
        let sink = WebhookSink::open(
            "torn",
            &quick(&server.url("/"), 3, 10, 50),
            &dir,
            None,
            Metrics::new(),
        )
        .expect("open");
        assert_eq!(
            sink.drain(Duration::from_secs(10)),
            DrainReport {
                delivered: 1,
                dead_lettered: 1,
                pending: 0
            }
        );
        assert_eq!(server.requests().len(), 1);
        let dl = std::fs::read_to_string(dir.join("torn.dead-letter.jsonl")).expect("dead letter");
        let row: serde_json::Value = serde_json::from_str(dl.trim()).expect("json");
        assert_eq!(row["record"], "garbage");
        assert_eq!(row["attempts"], 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
