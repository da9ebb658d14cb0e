//! Progress display for long jobs: a progress bar on a terminal, a log line every few seconds
//! otherwise.
//!
//! Owns: how progress is shown. Callers report what is done; this decides how often to show it.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::sources::SourceProgress;

pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
    unit: &'static str,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    pub fn new(initial: SourceProgress) -> Progress {
        let bar =
            (std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()).then(|| {
                let bar = match initial.total {
                    Some(total) => ProgressBar::new(total),
                    None => ProgressBar::new_spinner(),
                };
                let template = "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}";
                if let Ok(style) = ProgressStyle::with_template(template) {
                    bar.set_style(style);
                }
                bar
            });
        Progress {
            bar,
            started: Instant::now(),
            last_log: Instant::now(),
            unit: initial.unit,
        }
    }

    fn rate(&self, events: u64) -> f64 {
        events as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    pub fn update(&mut self, p: SourceProgress, events: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(p.done);
            bar.set_message(format!(
                "{events} events, {:.0} events/s",
                self.rate(events)
            ));
        } else if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            let pct = p
                .total
                .map(|t| format!(" ({:.0} %)", 100.0 * p.done as f64 / t.max(1) as f64))
                .unwrap_or_default();
            tracing::info!(
                "progress: {} {}{pct}; {events} events, {:.0} events/s",
                p.done,
                self.unit,
                self.rate(events)
            );
        }
    }

    pub fn finish(&mut self, events: u64) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        tracing::info!(
            "input done: {events} events in {:.1} s",
            self.started.elapsed().as_secs_f64()
        );
    }
}
