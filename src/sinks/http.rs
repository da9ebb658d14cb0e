//! HTTP client helpers shared by the delivery sinks ([`super::webhook`],
//! [`super::alertmanager`]).
//!
//! Owns: how evflow makes an HTTP request (a blocking `ureq` agent with rustls on ring, no
//! redirects, status codes returned rather than turned into errors), the HMAC-SHA256 used to
//! sign webhook bodies, and the deterministic retry backoff. It holds no state and does no file
//! I/O; it may only be called from a sink's own delivery thread, never from a dataflow worker
//! (every call here can block for up to the configured timeout).

use std::time::Duration;

/// What one POST came to: the receiver's status (with the start of its body, for logs and
/// dead letters), or why there was no status at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Status {
        code: u16,
        body: String,
    },
    /// Connection refused, DNS, TLS, timeout, protocol error.
    Failed(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Status { code, .. } if (200..300).contains(code))
    }

    /// A one-line description for logs and dead letters (`None` on success).
    pub fn error(&self) -> Option<String> {
        match self {
            Outcome::Status { code, .. } if (200..300).contains(code) => None,
            Outcome::Status { code, body } if body.is_empty() => Some(format!("HTTP {code}")),
            Outcome::Status { code, body } => Some(format!("HTTP {code}: {body}")),
            Outcome::Failed(e) => Some(e.clone()),
        }
    }
}

/// How much of an error response's body is kept for the logs.
const BODY_SNIPPET: usize = 200;

/// An agent whose every request (connect, send, response) is bounded by `timeout`.
/// Redirects are not followed: a webhook that answers 3xx is misconfigured, and following a
/// 302 would turn the POST into a GET without the body.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .user_agent(concat!("evflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// POSTs `body` as `application/json` with the extra `headers`.
pub fn post_json(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Outcome {
    let mut req = agent.post(url).header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.send(body) {
        Ok(mut resp) => {
            let code = resp.status().as_u16();
            // Reading the (small) body lets the connection go back to the pool; on success
            // the receiver's text is of no use.
            let text = resp
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_string()
                .unwrap_or_default();
            let body = if (200..300).contains(&code) {
                String::new()
            } else {
                snippet(&text)
            };
            Outcome::Status { code, body }
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn snippet(text: &str) -> String {
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(BODY_SNIPPET) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// Checks that `url` is an absolute http(s) URL that the client accepts.
pub fn check_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    }
    url.parse::<ureq::http::Uri>()
        .map(|_| ())
        .map_err(|e| format!("{url:?}: {e}"))
}

/// Lower-case hex HMAC-SHA256 of `message` with `key`.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    hex(ring::hmac::sign(&key, message).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The wait before retry number `attempt` (1 = after the first failure):
/// `initial × 2^(attempt−1)` capped at `max`, times a jitter factor in [0.8, 1.2] that is a
/// hash of (`seed`, `attempt`) — the same for every run, so that tests and incident replays
/// are reproducible — and capped at `max` again, so `max` is a true maximum.
pub fn backoff(initial: Duration, max: Duration, attempt: u32, seed: &str) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let base = initial.saturating_mul(1u32 << exp.min(31)).min(max);
    let h = fnv1a(seed.as_bytes(), attempt);
    let factor = 0.8 + 0.4 * (h as f64 / u64::MAX as f64);
    base.mul_f64(factor).min(max)
}

/// FNV-1a over `bytes` then `attempt`: a stable hash (std's `DefaultHasher` is not
/// guaranteed stable across Rust releases).
fn fnv1a(bytes: &[u8], attempt: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter().chain(attempt.to_le_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A delivery sink's state, shared by the dataflow side and its delivery thread, with a
/// condition signalled on every change.
pub struct Shared<S> {
    state: std::sync::Mutex<S>,
    pub changed: std::sync::Condvar,
}

impl<S> Shared<S> {
    pub fn new(state: S) -> Shared<S> {
        Shared {
            state: std::sync::Mutex::new(state),
            changed: std::sync::Condvar::new(),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        // A panic elsewhere cannot leave the state inconsistent (counters and maps updated
        // under the lock in one go); carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `pending(state)` is 0 or `max_wait` has passed, logging
    /// `describe(state, pending)` every `progress_every` meanwhile: the end-of-run drain.
    pub fn wait_settled(
        &self,
        max_wait: Duration,
        progress_every: Duration,
        pending: impl Fn(&S) -> u64,
        describe: impl Fn(&S, u64),
    ) {
        let start = std::time::Instant::now();
        let deadline = start + max_wait;
        let mut next_progress = start + progress_every;
        let mut st = self.lock();
        loop {
            let now = std::time::Instant::now();
            let waiting = pending(&st);
            if waiting == 0 || now >= deadline {
                return;
            }
            if now >= next_progress {
                describe(&st, waiting);
                next_progress = now + progress_every;
            }
            let wake = deadline.min(next_progress).saturating_duration_since(now);
            st = self
                .changed
                .wait_timeout(st, wake)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Wall-clock time in ms since the epoch (delivery timestamps are about when, not event time).
pub fn now_millis() -> crate::model::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as crate::model::Millis)
        .unwrap_or(0)
}

/// A `config::Duration` (ms) as a std duration (negative → zero).
pub fn std_duration(d: crate::config::Duration) -> Duration {
    Duration::from_millis(d.0.max(0) as u64)
}

/// A minimal HTTP/1.1 server for the sinks' tests: keep-alive, `Content-Length` bodies only.
/// Every request is recorded; `respond` picks the status.
#[cfg(test)]
pub(crate) mod test_server {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    #[derive(Debug, Clone)]
    pub struct Request {
        pub path: String,
        /// Header names lower-cased.
        pub headers: BTreeMap<String, String>,
        pub body: Vec<u8>,
        /// What the server answered.
        pub status: u16,
    }

    type Respond = dyn Fn(usize, &Request) -> u16 + Send + Sync;

    pub struct Server {
        pub port: u16,
        pub requests: Arc<Mutex<Vec<Request>>>,
        stop: Arc<AtomicBool>,
    }

    /// A port nothing listens on (bound, then released).
    pub fn free_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    impl Server {
        /// Serves on `port` (0: any); `respond(n, req)` gets the request's number (0-based).
        pub fn start(
            port: u16,
            respond: impl Fn(usize, &Request) -> u16 + Send + Sync + 'static,
        ) -> Server {
            let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind test server");
            let port = listener.local_addr().expect("addr").port();
            listener.set_nonblocking(true).expect("nonblocking");
            let requests = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let respond: Arc<Respond> = Arc::new(respond);
            let (reqs, st) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !st.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (reqs, st, respond) = (reqs.clone(), st.clone(), respond.clone());
                            std::thread::spawn(move || serve(conn, &reqs, &st, &*respond));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
            Server {
                port,
                requests,
                stop,
            }
        }

        pub fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port)
        }

        pub fn requests(&self) -> Vec<Request> {
            self.requests.lock().map(|r| r.clone()).unwrap_or_default()
        }

        /// Waits until `done(requests)` or `timeout`; returns whether it happened.
        pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Request]) -> bool) -> bool {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if done(&self.requests()) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            done(&self.requests())
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    fn serve(conn: TcpStream, reqs: &Mutex<Vec<Request>>, stop: &AtomicBool, respond: &Respond) {
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
        let mut out = match conn.try_clone() {
            Ok(c) => c,
            Err(_) => return,
        };
        let mut r = BufReader::new(conn);
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = BTreeMap::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len = headers
                .get("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            let mut req = Request {
                path,
                headers,
                body,
                status: 0,
            };
            let status = {
                let Ok(mut all) = reqs.lock() else { return };
                req.status = respond(all.len(), &req);
                all.push(req);
                all.last().map(|r| r.status).unwrap_or(500)
            };
            let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
            if out.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231 test cases 1 and 2.
        assert_eq!(
            hmac_sha256_hex(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_with_bounded_deterministic_jitter() {
        let (i, m) = (Duration::from_millis(500), Duration::from_secs(60));
        for attempt in 1..=12 {
            let base = (500u64 << (attempt - 1)).min(60_000) as f64;
            let d = backoff(i, m, attempt, "n-1").as_secs_f64() * 1000.0;
            assert!(
                d >= base * 0.8 - 1e-6 && d <= (base * 1.2).min(60_000.0) + 1e-6,
                "{attempt}: {d}"
            );
            assert_eq!(backoff(i, m, attempt, "n-1"), backoff(i, m, attempt, "n-1"));
        }
        assert_ne!(backoff(i, m, 3, "n-1"), backoff(i, m, 3, "n-2"));
        assert!(backoff(i, m, 1000, "x") <= m);
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://hooks.example.com/evflow?x=1").is_ok());
        assert!(check_url("http://127.0.0.1:9093").is_ok());
        assert!(check_url("ftp://example.com").is_err());
        assert!(check_url("example.com/hook").is_err());
    }
}
