//! Per-port uptime, NEVI-style (23 CFR 680.116(b)).
//!
//! Owns: the down/up history of one port (connector) as far as its still-open periods need
//! it, the outage records ([`OutageRecord`], written when an outage ends) and the uptime rows
//! ([`UptimeRow`]) of each local calendar day and month of the port's site. Pure logic: the
//! caller ([`PortUptime`]'s owner, the per-charger stage) decides when a port is down and
//! why, and when event time has advanced; nothing here reads configuration or does I/O.
//!
//! # Formula
//!
//! Per port and per period (a calendar day, and a calendar month, of the site's time zone —
//! a day can be 23 h or 25 h long at daylight-saving changes):
//!
//! ```text
//! uptime_pct = 100 × (minutes − (outage_minutes − excluded_minutes)) / minutes
//! ```
//!
//! - `minutes`: the period's minutes from when the charger was first seen (`first_seen`): a
//!   full day has 1440 (1380 / 1500 at DST changes); the day a port was first seen at 18:00
//!   has 360. A month's `minutes` are the sum of its days'.
//! - `outage_minutes`: the minutes of the period the port was down (the overlap of its down
//!   intervals with the period, from `first_seen`). An outage spanning midnight counts in
//!   both days.
//! - `excluded_minutes`: the part of `outage_minutes` outside the operator's control (see
//!   below), each minute counted once however many exclusions cover it.
//!
//! Minutes are `f64` (milliseconds / 60 000) rounded to 3 decimals, `uptime_pct` too; they
//! are computed from exact milliseconds, so a month's figures are exactly its days' sums
//! (before rounding).
//!
//! # Outages
//!
//! An outage is a maximal interval during which the port is down, whatever the cause: the
//! caller says `Faulted`, `Unavailable`, a fault reported outside the status (2.0.1
//! NotifyEvent), the whole charger down (connector 0), or communication lost (possibly
//! retroactively, from the last message on). If the cause changes while the port is down, the
//! outage continues and keeps its first cause. When it ends, one [`OutageRecord`] is emitted
//! with a stable id (`stable_id(["outage", charge point, connector, start ms])`). An outage of
//! zero length (down and up at the same instant) is not an outage and is not written; nor is an
//! outage still going on at the end of the input.
//!
//! # Exclusions
//!
//! Down time outside the operator's control is excluded from the outage minutes:
//! - by cause ([`Down::excluded_by`]): grid power loss and vehicle-caused faults, which the
//!   caller recognises in the traffic (e.g. a `PowerLoss` / `UnderVoltage` charger-wide
//!   fault, an `EVCommunicationError`); the whole down time under such a state is excluded;
//! - by time ([`UptimeContext::windows`]): scheduled maintenance (`[[maintenance]]`) and
//!   operator-declared exclusions (`[[uptime.exclusions]]`: vandalism, natural disasters,
//!   hours a station is closed — what evflow cannot see in the traffic); the overlap of the
//!   down time with the union of the windows is excluded. [`exclusion_windows`] builds them
//!   from the configuration.
//!
//! An outage's `exclusion` lists the reasons that excluded some of its minutes, in the order
//! they first applied, comma-separated (`scheduled_maintenance`, `grid_power`, `vehicle`, or a
//! declared exclusion's reason).
//!
//! # Closing periods, and grace
//!
//! Periods are created lazily from `first_seen` on, so a port that is never down still gets a
//! 100 % row for every day. A day is closed — its row written, its down intervals forgotten —
//! once event time `now` has passed its end by `grace` ([`UptimeContext::grace`]): changes that
//! arrive late or are placed in the past (communication lost since the last message,
//! confirmed only after the heartbeat timeout) still land in their day. A change is never
//! placed before the last change or into a closed day: its instant is clamped to the later
//! of those. When the last day of a month closes, the month's row follows its day row. At the
//! end of the input, [`PortUptime::finish`] closes the periods that have ended without waiting
//! for the grace; the day still running is not written.
//!
//! The state kept is the current down state and the down intervals overlapping open periods,
//! so memory stays bounded however long a port runs.

use std::sync::Arc;

use chrono::{DateTime, Offset, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::config::{MaintenanceWindow, UptimeExclusion};
use crate::model::{stable_id, Millis, OutageRecord, Output, UptimePeriod, UptimeRow};
use crate::time::{civil_from_days, days_from_civil};

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: f64 = 60_000.0;

/// What took a port down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownCause {
    /// StatusNotification `Faulted`.
    Faulted,
    /// StatusNotification `Unavailable`.
    Unavailable,
    /// A problem reported outside the status (2.0.1 NotifyEvent) is active.
    FaultReported,
    /// The whole charger (connector 0) is Faulted or Unavailable.
    ChargerDown,
    /// The charger stopped talking to the backend.
    CommunicationLost,
}

impl DownCause {
    pub const ALL: [DownCause; 5] = [
        DownCause::Faulted,
        DownCause::Unavailable,
        DownCause::FaultReported,
        DownCause::ChargerDown,
        DownCause::CommunicationLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DownCause::Faulted => "faulted",
            DownCause::Unavailable => "unavailable",
            DownCause::FaultReported => "fault_reported",
            DownCause::ChargerDown => "charger_down",
            DownCause::CommunicationLost => "communication_lost",
        }
    }
}

/// Why down time is excluded from a port's outage minutes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionReason {
    /// Loss of grid power (seen in the traffic).
    GridPower,
    /// A fault caused by the vehicle (seen in the traffic).
    Vehicle,
    /// A `[[maintenance]]` window.
    ScheduledMaintenance,
    /// An `[[uptime.exclusions]]` entry: its `reason`.
    Declared(String),
}

impl ExclusionReason {
    pub fn as_str(&self) -> &str {
        match self {
            ExclusionReason::GridPower => "grid_power",
            ExclusionReason::Vehicle => "vehicle",
            ExclusionReason::ScheduledMaintenance => "scheduled_maintenance",
            ExclusionReason::Declared(reason) => reason,
        }
    }
}

/// The down state of a port from some instant on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Down {
    pub cause: DownCause,
    /// Cause-based exclusion (outside the operator's control), e.g. grid power loss or a
    /// vehicle fault: all the down time in this state is excluded.
    pub excluded_by: Option<ExclusionReason>,
}

impl Down {
    /// Down, at the operator's charge.
    pub fn new(cause: DownCause) -> Down {
        Down {
            cause,
            excluded_by: None,
        }
    }

    /// Down for a reason outside the operator's control.
    pub fn excluded(cause: DownCause, reason: ExclusionReason) -> Down {
        Down {
            cause,
            excluded_by: Some(reason),
        }
    }
}

/// A span of time whose overlap with down time is excluded, `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExclusionWindow {
    pub start: Millis,
    pub end: Millis,
    pub reason: ExclusionReason,
}

impl ExclusionWindow {
    /// A scheduled maintenance window (`[[maintenance]]`).
    pub fn maintenance(m: &MaintenanceWindow) -> ExclusionWindow {
        ExclusionWindow {
            start: m.start.0,
            end: m.end.0,
            reason: ExclusionReason::ScheduledMaintenance,
        }
    }

    /// An operator-declared exclusion (`[[uptime.exclusions]]`).
    pub fn declared(e: &UptimeExclusion) -> ExclusionWindow {
        ExclusionWindow {
            start: e.start.0,
            end: e.end.0,
            reason: ExclusionReason::Declared(e.reason.clone()),
        }
    }
}

/// The exclusion windows of a charger: its maintenance windows, then its declared
/// exclusions (as `Reference::maintenance_for` / `exclusions_for` select them).
pub fn exclusion_windows(
    maintenance: &[MaintenanceWindow],
    declared: &[UptimeExclusion],
) -> Vec<ExclusionWindow> {
    maintenance
        .iter()
        .map(ExclusionWindow::maintenance)
        .chain(declared.iter().map(ExclusionWindow::declared))
        .collect()
}

/// What [`PortUptime`] needs to know about its charger and site.
#[derive(Clone, Copy, Debug)]
pub struct UptimeContext<'a> {
    pub charge_point_id: &'a Arc<str>,
    pub site_id: &'a Arc<str>,
    /// The site's time zone: periods are its calendar days and months.
    pub time_zone: Tz,
    /// Windows whose overlap with down time is excluded (maintenance windows, declared
    /// exclusions).
    pub windows: &'a [ExclusionWindow],
    /// Periods are closed this long after they end, so that late and retroactive changes
    /// (e.g. communication lost, confirmed after the fact) still land in them.
    pub grace: Millis,
}

/// Uptime bookkeeping of one port. Serialisable for commit snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortUptime {
    connector_id: u32,
    first_seen: Millis,
    /// Start of the earliest period not yet closed: `first_seen`, then the end of the last
    /// closed day. Nothing is placed before it.
    open_from: Millis,
    /// End of the day containing `open_from`, once computed (a cache: the day's bounds need
    /// time-zone lookups, and `advance` runs often).
    open_day_end: Option<Millis>,
    /// The last state change (or `first_seen`): nothing is placed before it.
    last_change: Millis,
    /// Finished down spans (the port down in one state) that end after `open_from`.
    spans: Vec<Span>,
    /// The outage going on, if the port is down.
    current: Option<Ongoing>,
    /// Sums of the closed days of the month being accumulated.
    month: Totals,
}

/// A finished down span, `[start, end)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Span {
    start: Millis,
    end: Millis,
    excluded_by: Option<ExclusionReason>,
}

/// The outage going on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Ongoing {
    /// When the outage began, and its first cause.
    start: Millis,
    cause: DownCause,
    /// The current down state, since `since`.
    down: Down,
    since: Millis,
    /// Excluded ms of the outage's finished spans, and the reasons that excluded them, in the
    /// order they first applied.
    excluded_ms: i64,
    reasons: Vec<ExclusionReason>,
}

/// Milliseconds of a period (from `first_seen`), of down time in it, and of excluded down time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Totals {
    period_ms: i64,
    outage_ms: i64,
    excluded_ms: i64,
}

impl Totals {
    fn add(&mut self, o: Totals) {
        self.period_ms += o.period_ms;
        self.outage_ms += o.outage_ms;
        self.excluded_ms += o.excluded_ms;
    }
}

impl PortUptime {
    /// A port first seen at `first_seen`: its periods are counted from then on.
    pub fn new(connector_id: u32, first_seen: Millis) -> Self {
        PortUptime {
            connector_id,
            first_seen,
            open_from: first_seen,
            open_day_end: None,
            last_change: first_seen,
            spans: Vec::new(),
            current: None,
            month: Totals::default(),
        }
    }

    pub fn connector_id(&self) -> u32 {
        self.connector_id
    }

    pub fn first_seen(&self) -> Millis {
        self.first_seen
    }

    pub fn is_down(&self) -> bool {
        self.current.is_some()
    }

    /// The current down state, `None` when up.
    pub fn down(&self) -> Option<&Down> {
        self.current.as_ref().map(|o| &o.down)
    }

    /// The port's state from `at` on (`None` = up). `at` may lie in the past (retroactive,
    /// e.g. communication lost since the last message) but is clamped to the last change and
    /// to the earliest open period. Setting the state the port is already in changes nothing;
    /// a new cause while down continues the outage. Ending an outage emits its
    /// [`Output::Outage`].
    pub fn set(
        &mut self,
        at: Millis,
        down: Option<Down>,
        ctx: &UptimeContext,
        out: &mut Vec<Output>,
    ) {
        let at = at.max(self.last_change).max(self.open_from);
        match (self.current.take(), down) {
            (None, None) => {}
            (None, Some(down)) => {
                self.current = Some(Ongoing {
                    start: at,
                    cause: down.cause,
                    down,
                    since: at,
                    excluded_ms: 0,
                    reasons: Vec::new(),
                });
                self.last_change = at;
            }
            (Some(o), Some(down)) if o.down == down => self.current = Some(o),
            (Some(mut o), Some(down)) => {
                self.finish_span(&mut o, at, ctx.windows);
                o.down = down;
                o.since = at;
                self.current = Some(o);
                self.last_change = at;
            }
            (Some(mut o), None) => {
                self.finish_span(&mut o, at, ctx.windows);
                self.last_change = at;
                if at > o.start {
                    out.push(Output::Outage(self.outage_record(&o, at, ctx)));
                }
            }
        }
    }

    /// Closes every period that ended at or before `now − grace`: emits its day row, and the
    /// month row when a month's last day closes.
    pub fn advance(&mut self, now: Millis, ctx: &UptimeContext, out: &mut Vec<Output>) {
        self.close_until(now.saturating_sub(ctx.grace.max(0)), ctx, out);
    }

    /// End of input: closes every period that ended at or before `now`, without grace.
    /// Ongoing outages are not written (they have not ended); the day still running is not
    /// written either.
    pub fn finish(&mut self, now: Millis, ctx: &UptimeContext, out: &mut Vec<Output>) {
        self.close_until(now, ctx, out);
    }

    /// Ends the current down span at `at`: adds its excluded time and reasons to the outage,
    /// and keeps it for the open periods it overlaps.
    fn finish_span(&mut self, o: &mut Ongoing, at: Millis, windows: &[ExclusionWindow]) {
        if at <= o.since {
            return;
        }
        match &o.down.excluded_by {
            Some(reason) => {
                o.excluded_ms += at - o.since;
                if !o.reasons.contains(reason) {
                    o.reasons.push(reason.clone());
                }
            }
            None => {
                o.excluded_ms += window_overlap_ms(windows, o.since, at);
                for reason in window_reasons(windows, o.since, at) {
                    if !o.reasons.contains(reason) {
                        o.reasons.push(reason.clone());
                    }
                }
            }
        }
        if at > self.open_from {
            self.spans.push(Span {
                start: o.since,
                end: at,
                excluded_by: o.down.excluded_by.clone(),
            });
        }
    }

    fn outage_record(&self, o: &Ongoing, end: Millis, ctx: &UptimeContext) -> OutageRecord {
        let exclusion = o
            .reasons
            .iter()
            .map(ExclusionReason::as_str)
            .collect::<Vec<_>>()
            .join(",");
        OutageRecord {
            id: stable_id(&[
                "outage",
                ctx.charge_point_id,
                &self.connector_id.to_string(),
                &o.start.to_string(),
            ]),
            charge_point_id: ctx.charge_point_id.clone(),
            site_id: ctx.site_id.clone(),
            connector_id: self.connector_id,
            start: o.start,
            end,
            cause: Arc::from(o.cause.as_str()),
            outage_minutes: minutes(end - o.start),
            excluded_minutes: minutes(o.excluded_ms),
            exclusion: Arc::from(exclusion),
        }
    }

    /// Closes the days that end at or before `limit`, in order.
    fn close_until(&mut self, limit: Millis, ctx: &UptimeContext, out: &mut Vec<Output>) {
        let tz = ctx.time_zone;
        loop {
            let day_end = match self.open_day_end {
                Some(end) => end,
                None => {
                    let end = day_start(tz, local_day(tz, self.open_from) + 1);
                    self.open_day_end = Some(end);
                    end
                }
            };
            if day_end > limit {
                return;
            }
            let day = local_day(tz, self.open_from);
            let totals = self.totals(self.open_from, day_end, ctx.windows);
            if totals.period_ms > 0 {
                out.push(Output::Uptime(self.row(
                    UptimePeriod::Day,
                    day_start(tz, day),
                    day_end,
                    totals,
                    ctx,
                )));
            }
            self.month.add(totals);
            self.open_from = day_end;
            self.open_day_end = None;
            self.spans.retain(|s| s.end > day_end);
            let (year, month, _) = civil_from_days(day);
            let next_day = local_day(tz, day_end);
            let (next_year, next_month, _) = civil_from_days(next_day);
            if (year, month) != (next_year, next_month) {
                let month_totals = std::mem::take(&mut self.month);
                if month_totals.period_ms > 0 {
                    let first = days_from_civil(year, month.into(), 1);
                    let next_first = days_from_civil(next_year, next_month.into(), 1);
                    out.push(Output::Uptime(self.row(
                        UptimePeriod::Month,
                        day_start(tz, first),
                        day_start(tz, next_first),
                        month_totals,
                        ctx,
                    )));
                }
            }
        }
    }

    /// Down and excluded time in `[from, to)`.
    fn totals(&self, from: Millis, to: Millis, windows: &[ExclusionWindow]) -> Totals {
        let mut t = Totals {
            period_ms: (to - from).max(0),
            ..Totals::default()
        };
        let current = self
            .current
            .as_ref()
            .map(|o| (o.since, Millis::MAX, o.down.excluded_by.as_ref()));
        let spans = self
            .spans
            .iter()
            .map(|s| (s.start, s.end, s.excluded_by.as_ref()));
        for (start, end, excluded_by) in spans.chain(current) {
            let (a, b) = (start.max(from), end.min(to));
            if b <= a {
                continue;
            }
            t.outage_ms += b - a;
            t.excluded_ms += match excluded_by {
                Some(_) => b - a,
                None => window_overlap_ms(windows, a, b),
            };
        }
        t
    }

    fn row(
        &self,
        period: UptimePeriod,
        period_start: Millis,
        period_end: Millis,
        t: Totals,
        ctx: &UptimeContext,
    ) -> UptimeRow {
        UptimeRow {
            charge_point_id: ctx.charge_point_id.clone(),
            site_id: ctx.site_id.clone(),
            connector_id: self.connector_id,
            period,
            period_start,
            period_end,
            minutes: minutes(t.period_ms),
            outage_minutes: minutes(t.outage_ms),
            excluded_minutes: minutes(t.excluded_ms),
            uptime_pct: uptime_pct(t.period_ms, t.outage_ms, t.excluded_ms),
        }
    }
}

/// `100 × (period − (outage − excluded)) / period`, rounded to 3 decimals; 100 for an empty
/// period.
pub fn uptime_pct(period_ms: i64, outage_ms: i64, excluded_ms: i64) -> f64 {
    if period_ms <= 0 {
        return 100.0;
    }
    let up = period_ms - (outage_ms - excluded_ms);
    round3(100.0 * up as f64 / period_ms as f64)
}

/// Milliseconds as minutes, rounded to 3 decimals.
fn minutes(ms: i64) -> f64 {
    round3(ms as f64 / MINUTE_MS)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Length of the overlap of `[a, b)` with the union of the windows.
fn window_overlap_ms(windows: &[ExclusionWindow], a: Millis, b: Millis) -> i64 {
    let mut parts: Vec<(Millis, Millis)> = windows
        .iter()
        .map(|w| (w.start.max(a), w.end.min(b)))
        .filter(|(s, e)| e > s)
        .collect();
    parts.sort_unstable();
    let mut total = 0;
    let mut covered_to = Millis::MIN;
    for (s, e) in parts {
        let s = s.max(covered_to);
        if e > s {
            total += e - s;
            covered_to = e;
        }
    }
    total
}

/// Reasons of the windows overlapping `[a, b)`, in the order they first apply (then in the
/// order of the windows).
fn window_reasons(windows: &[ExclusionWindow], a: Millis, b: Millis) -> Vec<&ExclusionReason> {
    let mut hits: Vec<(Millis, usize)> = windows
        .iter()
        .enumerate()
        .filter(|(_, w)| w.end.min(b) > w.start.max(a))
        .map(|(i, w)| (w.start.max(a), i))
        .collect();
    hits.sort_unstable();
    hits.into_iter().map(|(_, i)| &windows[i].reason).collect()
}

/// UTC offset of `tz` at `t`, ms (local = UTC + offset).
fn offset_ms(tz: Tz, t: Millis) -> i64 {
    match DateTime::from_timestamp_millis(t) {
        Some(dt) => {
            tz.offset_from_utc_datetime(&dt.naive_utc())
                .fix()
                .local_minus_utc() as i64
                * 1000
        }
        None => 0,
    }
}

/// The local calendar day (days since 1970-01-01) of `t` in `tz`.
fn local_day(tz: Tz, t: Millis) -> i64 {
    (t + offset_ms(tz, t)).div_euclid(DAY_MS)
}

/// The first instant whose local calendar day is `day` or later: the start of `day` (local
/// midnight, or the end of a gap at midnight; a day skipped altogether starts and ends at the
/// same instant).
fn day_start(tz: Tz, day: i64) -> Millis {
    let naive = day * DAY_MS;
    let starts = |t: Millis| local_day(tz, t) >= day && local_day(tz, t - 1) < day;
    // Usually midnight at the offset in force at midnight.
    let guess = naive - offset_ms(tz, naive - offset_ms(tz, naive));
    if starts(guess) {
        return guess;
    }
    // Offsets are within ±26 h: the day starts between these.
    let (mut lo, mut hi) = (naive - 2 * DAY_MS, naive + 2 * DAY_MS);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local_day(tz, mid) >= day {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;
    use chrono_tz::America::New_York;

    const MIN: Millis = 60_000;
    const HOUR: Millis = 3_600_000;

    fn t(s: &str) -> Millis {
        parse_rfc3339(s).expect("test timestamp")
    }

    struct Fixture {
        cp: Arc<str>,
        site: Arc<str>,
        windows: Vec<ExclusionWindow>,
        tz: Tz,
        grace: Millis,
    }

    impl Fixture {
        fn new(tz: Tz, grace: Millis, windows: Vec<ExclusionWindow>) -> Fixture {
            Fixture {
                cp: Arc::from("CP-1"),
                site: Arc::from("site-1"),
                windows,
                tz,
                grace,
            }
        }

        fn ctx(&self) -> UptimeContext<'_> {
            UptimeContext {
                charge_point_id: &self.cp,
                site_id: &self.site,
                time_zone: self.tz,
                windows: &self.windows,
                grace: self.grace,
            }
        }
    }

    fn window(start: &str, end: &str, reason: ExclusionReason) -> ExclusionWindow {
        ExclusionWindow {
            start: t(start),
            end: t(end),
            reason,
        }
    }

    fn rows(out: &[Output]) -> Vec<&UptimeRow> {
        out.iter()
            .filter_map(|o| match o {
                Output::Uptime(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn outages(out: &[Output]) -> Vec<&OutageRecord> {
        out.iter()
            .filter_map(|o| match o {
                Output::Outage(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn outage(
        f: &Fixture,
        start: &str,
        end: &str,
        cause: &str,
        outage_minutes: f64,
        excluded_minutes: f64,
        exclusion: &str,
    ) -> OutageRecord {
        OutageRecord {
            id: stable_id(&["outage", "CP-1", "1", &t(start).to_string()]),
            charge_point_id: f.cp.clone(),
            site_id: f.site.clone(),
            connector_id: 1,
            start: t(start),
            end: t(end),
            cause: Arc::from(cause),
            outage_minutes,
            excluded_minutes,
            exclusion: Arc::from(exclusion),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        f: &Fixture,
        period: UptimePeriod,
        start: &str,
        end: &str,
        minutes: f64,
        outage_minutes: f64,
        excluded_minutes: f64,
        uptime_pct: f64,
    ) -> UptimeRow {
        UptimeRow {
            charge_point_id: f.cp.clone(),
            site_id: f.site.clone(),
            connector_id: 1,
            period,
            period_start: t(start),
            period_end: t(end),
            minutes,
            outage_minutes,
            excluded_minutes,
            uptime_pct,
        }
    }

    /// The hand-computed example. Site in America/New_York (EST, UTC−5, all February 2026);
    /// port 1 first seen at local midnight of Friday 2026-02-27; grace 1 h.
    ///
    /// Exclusion windows: maintenance 02-27 10:00–11:00; declared `vandalism` 02-28
    /// 12:00–18:00; maintenance 02-28 14:00–16:00 (inside the vandalism window).
    ///
    /// Day 1, 2026-02-27 (1440 minutes, 00:00 EST = 05:00Z to 02-28 05:00Z):
    /// - A: Faulted 02:00–03:30: outage 90, excluded 0.
    /// - B: Unavailable 09:30–11:15 across the 10:00–11:00 maintenance window: outage 105,
    ///   excluded 60 (`scheduled_maintenance`).
    /// - C: last message at 14:00; communication loss set retroactively from 14:00 (as a
    ///   heartbeat timeout would, later), back at 14:40: outage 40, excluded 0.
    /// - D: charger down for lack of grid power (excluded_by GridPower) 16:00–16:20:
    ///   outage 20, excluded 20 (`grid_power`).
    /// - E: Faulted from 23:00; at 00:30 on day 2 the fault is found to be the vehicle's
    ///   (excluded_by Vehicle; same outage, first cause `faulted`); up at 01:00.
    ///   Outage 120, excluded 30 (`vehicle`). Day 1 has 23:00–24:00: 60 outage, 0 excluded.
    ///
    /// Day 1: outage = 90 + 105 + 40 + 20 + 60 = 315; excluded = 60 + 20 = 80;
    /// uptime = 100 × (1440 − (315 − 80)) / 1440 = 100 × 1205 / 1440 = 83.6805… → 83.681.
    ///
    /// Day 2, 2026-02-28 (1440 minutes):
    /// - E's 00:00–01:00: outage 60, excluded 30 (00:30–01:00, vehicle).
    /// - F: Faulted 13:00–15:00, inside the vandalism window (12:00–18:00), which the
    ///   maintenance window 14:00–16:00 overlaps: outage 120, excluded 120 (the union of the
    ///   windows covers it once; not 120 + 60), exclusion `vandalism,scheduled_maintenance`
    ///   (vandalism applied from 13:00, maintenance from 14:00).
    ///
    /// Day 2: outage = 60 + 120 = 180; excluded = 30 + 120 = 150;
    /// uptime = 100 × (1440 − 30) / 1440 = 97.9166… → 97.917.
    ///
    /// February (02-01 05:00Z to 03-01 05:00Z), counted from first_seen: minutes = 2 × 1440
    /// = 2880; outage = 315 + 180 = 495; excluded = 80 + 150 = 230;
    /// uptime = 100 × (2880 − 265) / 2880 = 100 × 2615 / 2880 = 90.7986… → 90.799.
    ///
    /// Closing: day 1 ends 02-28 00:00 and closes at 01:00 (grace); day 2 and February close
    /// at 03-01 01:00.
    #[test]
    fn hand_computed_example() {
        use DownCause::*;
        let f = Fixture::new(
            New_York,
            HOUR,
            vec![
                window(
                    "2026-02-27T10:00:00-05:00",
                    "2026-02-27T11:00:00-05:00",
                    ExclusionReason::ScheduledMaintenance,
                ),
                window(
                    "2026-02-28T12:00:00-05:00",
                    "2026-02-28T18:00:00-05:00",
                    ExclusionReason::Declared("vandalism".into()),
                ),
                window(
                    "2026-02-28T14:00:00-05:00",
                    "2026-02-28T16:00:00-05:00",
                    ExclusionReason::ScheduledMaintenance,
                ),
            ],
        );
        let ctx = f.ctx();
        let mut p = PortUptime::new(1, t("2026-02-27T00:00:00-05:00"));
        let mut out = Vec::new();
        let set = |p: &mut PortUptime, at: &str, down: Option<Down>, out: &mut Vec<Output>| {
            p.set(t(at), down, &ctx, out)
        };

        // A
        set(
            &mut p,
            "2026-02-27T02:00:00-05:00",
            Some(Down::new(Faulted)),
            &mut out,
        );
        assert!(p.is_down());
        set(&mut p, "2026-02-27T03:30:00-05:00", None, &mut out);
        assert!(!p.is_down());
        // B
        set(
            &mut p,
            "2026-02-27T09:30:00-05:00",
            Some(Down::new(Unavailable)),
            &mut out,
        );
        set(&mut p, "2026-02-27T11:15:00-05:00", None, &mut out);
        // C: at 14:10 nothing has been closed or written about it yet.
        p.advance(t("2026-02-27T14:10:00-05:00"), &ctx, &mut out);
        set(
            &mut p,
            "2026-02-27T14:00:00-05:00",
            Some(Down::new(CommunicationLost)),
            &mut out,
        );
        set(&mut p, "2026-02-27T14:40:00-05:00", None, &mut out);
        // D
        set(
            &mut p,
            "2026-02-27T16:00:00-05:00",
            Some(Down::excluded(ChargerDown, ExclusionReason::GridPower)),
            &mut out,
        );
        set(&mut p, "2026-02-27T16:20:00-05:00", None, &mut out);
        // E
        set(
            &mut p,
            "2026-02-27T23:00:00-05:00",
            Some(Down::new(Faulted)),
            &mut out,
        );
        p.advance(t("2026-02-28T00:30:00-05:00"), &ctx, &mut out);
        assert!(rows(&out).is_empty(), "day 1 waits for its grace");
        set(
            &mut p,
            "2026-02-28T00:30:00-05:00",
            Some(Down::excluded(Faulted, ExclusionReason::Vehicle)),
            &mut out,
        );
        p.advance(t("2026-02-28T00:59:59.999-05:00"), &ctx, &mut out);
        assert!(rows(&out).is_empty());
        set(&mut p, "2026-02-28T01:00:00-05:00", None, &mut out);
        p.advance(t("2026-02-28T01:00:00-05:00"), &ctx, &mut out);
        let day1 = row(
            &f,
            UptimePeriod::Day,
            "2026-02-27T05:00:00Z",
            "2026-02-28T05:00:00Z",
            1440.0,
            315.0,
            80.0,
            83.681,
        );
        assert_eq!(rows(&out), [&day1]);
        // F
        set(
            &mut p,
            "2026-02-28T13:00:00-05:00",
            Some(Down::new(Faulted)),
            &mut out,
        );
        set(&mut p, "2026-02-28T15:00:00-05:00", None, &mut out);
        p.advance(t("2026-03-01T00:59:00-05:00"), &ctx, &mut out);
        assert_eq!(rows(&out).len(), 1);
        p.advance(t("2026-03-01T01:00:00-05:00"), &ctx, &mut out);

        let day2 = row(
            &f,
            UptimePeriod::Day,
            "2026-02-28T05:00:00Z",
            "2026-03-01T05:00:00Z",
            1440.0,
            180.0,
            150.0,
            97.917,
        );
        let february = row(
            &f,
            UptimePeriod::Month,
            "2026-02-01T05:00:00Z",
            "2026-03-01T05:00:00Z",
            2880.0,
            495.0,
            230.0,
            90.799,
        );
        assert_eq!(rows(&out), [&day1, &day2, &february]);
        let expected = [
            outage(
                &f,
                "2026-02-27T02:00:00-05:00",
                "2026-02-27T03:30:00-05:00",
                "faulted",
                90.0,
                0.0,
                "",
            ),
            outage(
                &f,
                "2026-02-27T09:30:00-05:00",
                "2026-02-27T11:15:00-05:00",
                "unavailable",
                105.0,
                60.0,
                "scheduled_maintenance",
            ),
            outage(
                &f,
                "2026-02-27T14:00:00-05:00",
                "2026-02-27T14:40:00-05:00",
                "communication_lost",
                40.0,
                0.0,
                "",
            ),
            outage(
                &f,
                "2026-02-27T16:00:00-05:00",
                "2026-02-27T16:20:00-05:00",
                "charger_down",
                20.0,
                20.0,
                "grid_power",
            ),
            outage(
                &f,
                "2026-02-27T23:00:00-05:00",
                "2026-02-28T01:00:00-05:00",
                "faulted",
                120.0,
                30.0,
                "vehicle",
            ),
            outage(
                &f,
                "2026-02-28T13:00:00-05:00",
                "2026-02-28T15:00:00-05:00",
                "faulted",
                120.0,
                120.0,
                "vandalism,scheduled_maintenance",
            ),
        ];
        assert_eq!(outages(&out), expected.iter().collect::<Vec<_>>());
        assert_eq!(out.len(), 9);
        // The outage record with the stable id of (charge point, connector, start).
        assert_eq!(
            expected[0].id,
            stable_id(&["outage", "CP-1", "1", "1772175600000"])
        );
        // Everything before March is forgotten.
        assert!(p.spans.is_empty());
        assert_eq!(p.month, Totals::default());
        assert_eq!(p.open_from, t("2026-03-01T05:00:00Z"));
    }

    #[test]
    fn never_down_gets_a_full_row_per_day_and_first_day_counts_from_first_seen() {
        let f = Fixture::new(New_York, 0, Vec::new());
        let ctx = f.ctx();
        // First seen at 18:00 local on the last day of January.
        let mut p = PortUptime::new(1, t("2026-01-31T18:00:00-05:00"));
        let mut out = Vec::new();
        p.advance(t("2026-02-02T00:00:00-05:00"), &ctx, &mut out);
        assert_eq!(
            rows(&out),
            [
                &row(
                    &f,
                    UptimePeriod::Day,
                    "2026-01-31T05:00:00Z",
                    "2026-02-01T05:00:00Z",
                    360.0,
                    0.0,
                    0.0,
                    100.0
                ),
                &row(
                    &f,
                    UptimePeriod::Month,
                    "2026-01-01T05:00:00Z",
                    "2026-02-01T05:00:00Z",
                    360.0,
                    0.0,
                    0.0,
                    100.0
                ),
                &row(
                    &f,
                    UptimePeriod::Day,
                    "2026-02-01T05:00:00Z",
                    "2026-02-02T05:00:00Z",
                    1440.0,
                    0.0,
                    0.0,
                    100.0
                ),
            ]
        );
        // Nothing more until the next day has ended.
        out.clear();
        p.advance(t("2026-02-02T23:59:59-05:00"), &ctx, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn dst_days_have_1380_and_1500_minutes() {
        let f = Fixture::new(New_York, 0, Vec::new());
        let ctx = f.ctx();
        // 2026-03-08: clocks go from 02:00 EST to 03:00 EDT.
        let mut p = PortUptime::new(1, t("2026-03-08T00:00:00-05:00"));
        let mut out = Vec::new();
        // Down 01:30 EST to 03:30 EDT: one hour on the clock of the world.
        p.set(
            t("2026-03-08T01:30:00-05:00"),
            Some(Down::new(DownCause::Faulted)),
            &ctx,
            &mut out,
        );
        p.set(t("2026-03-08T03:30:00-04:00"), None, &ctx, &mut out);
        p.advance(t("2026-03-09T00:00:00-04:00"), &ctx, &mut out);
        assert_eq!(outages(&out)[0].outage_minutes, 60.0);
        let day = rows(&out)[0];
        assert_eq!(day.period_start, t("2026-03-08T05:00:00Z"));
        assert_eq!(day.period_end, t("2026-03-09T04:00:00Z"));
        assert_eq!(day.minutes, 1380.0);
        assert_eq!(day.outage_minutes, 60.0);
        // 100 × 1320 / 1380 = 95.6521…
        assert_eq!(day.uptime_pct, 95.652);

        // 2026-11-01: clocks go from 02:00 EDT back to 01:00 EST.
        let mut p = PortUptime::new(1, t("2026-10-31T12:00:00-04:00"));
        out.clear();
        p.advance(t("2026-11-02T00:00:00-05:00"), &ctx, &mut out);
        let r = rows(&out);
        assert_eq!(r.len(), 3, "Oct 31, October, Nov 1");
        assert_eq!((r[0].period, r[0].minutes), (UptimePeriod::Day, 720.0));
        assert_eq!((r[1].period, r[1].minutes), (UptimePeriod::Month, 720.0));
        assert_eq!(r[1].period_start, t("2026-10-01T04:00:00Z"));
        assert_eq!(r[1].period_end, t("2026-11-01T04:00:00Z"));
        assert_eq!(r[2].period_start, t("2026-11-01T04:00:00Z"));
        assert_eq!(r[2].period_end, t("2026-11-02T05:00:00Z"));
        assert_eq!(r[2].minutes, 1500.0);
        assert_eq!(r[2].uptime_pct, 100.0);
    }

    #[test]
    fn a_day_starting_in_a_gap_starts_when_the_gap_ends() {
        // America/Havana springs forward at midnight (2026-03-08 00:00 → 01:00).
        let tz: Tz = "America/Havana".parse().expect("zone");
        let day = local_day(tz, t("2026-03-08T12:00:00-04:00"));
        assert_eq!(day_start(tz, day), t("2026-03-08T01:00:00-04:00"));
        assert_eq!(day_start(tz, day + 1), t("2026-03-09T00:00:00-04:00"));
        // And the ordinary case, in UTC and east of it.
        let tokyo: Tz = "Asia/Tokyo".parse().expect("zone");
        let d = local_day(tokyo, t("2026-02-28T23:30:00+09:00"));
        assert_eq!(day_start(tokyo, d), t("2026-02-27T15:00:00Z"));
        assert_eq!(day_start(Tz::UTC, d), t("2026-02-28T00:00:00Z"));
    }

    #[test]
    fn grace_lets_a_retroactive_change_land_in_an_unclosed_day() {
        // Last message 23:30; communication loss confirmed (and set back to 23:30) at 00:45.
        let run = |grace: Millis| {
            let f = Fixture::new(New_York, grace, Vec::new());
            let ctx = f.ctx();
            let mut p = PortUptime::new(1, t("2026-02-10T00:00:00-05:00"));
            let mut out = Vec::new();
            p.advance(t("2026-02-11T00:45:00-05:00"), &ctx, &mut out);
            p.set(
                t("2026-02-10T23:30:00-05:00"),
                Some(Down::new(DownCause::CommunicationLost)),
                &ctx,
                &mut out,
            );
            p.set(t("2026-02-11T01:00:00-05:00"), None, &ctx, &mut out);
            p.advance(t("2026-02-12T06:00:00-05:00"), &ctx, &mut out);
            let days: Vec<f64> = rows(&out).iter().map(|r| r.outage_minutes).collect();
            let o = outages(&out)[0].clone();
            (days, o.start, o.outage_minutes)
        };
        // With 2 h of grace, day 1 is still open at 00:45: the 30 minutes land in it.
        assert_eq!(
            run(2 * HOUR),
            (vec![30.0, 60.0], t("2026-02-10T23:30:00-05:00"), 90.0)
        );
        // Without, day 1 closed at midnight with 100 %: the change is clamped to its end.
        assert_eq!(
            run(0),
            (vec![0.0, 60.0], t("2026-02-11T00:00:00-05:00"), 60.0)
        );
    }

    #[test]
    fn changes_are_never_placed_before_the_last_change() {
        let f = Fixture::new(Tz::UTC, HOUR, Vec::new());
        let ctx = f.ctx();
        let mut p = PortUptime::new(1, t("2026-02-10T00:00:00Z"));
        let mut out = Vec::new();
        // Before first_seen: clamped to it.
        p.set(
            t("2026-02-09T23:00:00Z"),
            Some(Down::new(DownCause::Unavailable)),
            &ctx,
            &mut out,
        );
        // Up "before" it went down: clamped to the change, a zero-length outage, not written.
        p.set(t("2026-02-09T22:00:00Z"), None, &ctx, &mut out);
        assert!(out.is_empty());
        assert!(!p.is_down());
        p.set(
            t("2026-02-10T10:00:00Z"),
            Some(Down::new(DownCause::Faulted)),
            &ctx,
            &mut out,
        );
        // The same state again changes nothing (no split, no new start).
        p.set(
            t("2026-02-10T10:30:00Z"),
            Some(Down::new(DownCause::Faulted)),
            &ctx,
            &mut out,
        );
        // Retroactive communication loss before the fault: clamped to 10:00, same outage.
        p.set(
            t("2026-02-10T09:00:00Z"),
            Some(Down::new(DownCause::CommunicationLost)),
            &ctx,
            &mut out,
        );
        assert_eq!(
            p.down().map(|d| d.cause),
            Some(DownCause::CommunicationLost)
        );
        p.set(t("2026-02-10T11:00:00Z"), None, &ctx, &mut out);
        // Up while up: nothing.
        p.set(t("2026-02-10T12:00:00Z"), None, &ctx, &mut out);
        let o = outages(&out);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].start, t("2026-02-10T10:00:00Z"));
        assert_eq!(&*o[0].cause, "faulted");
        assert_eq!(o[0].outage_minutes, 60.0);
    }

    #[test]
    fn finish_closes_ended_days_without_grace_and_does_not_write_ongoing_outages() {
        let f = Fixture::new(Tz::UTC, 6 * HOUR, Vec::new());
        let ctx = f.ctx();
        let mut p = PortUptime::new(2, t("2026-04-29T00:00:00Z"));
        let mut out = Vec::new();
        p.set(
            t("2026-04-30T20:00:00Z"),
            Some(Down::new(DownCause::ChargerDown)),
            &ctx,
            &mut out,
        );
        p.advance(t("2026-05-01T02:00:00Z"), &ctx, &mut out);
        assert_eq!(rows(&out).len(), 1, "April 30 waits for its grace");
        p.finish(t("2026-05-01T02:00:00Z"), &ctx, &mut out);
        let r = rows(&out);
        assert_eq!(r.len(), 3, "April 29, 30, April");
        assert_eq!(r[1].outage_minutes, 240.0);
        assert_eq!(r[1].uptime_pct, 83.333);
        assert_eq!(r[2].period, UptimePeriod::Month);
        assert_eq!((r[2].minutes, r[2].outage_minutes), (2880.0, 240.0));
        // 100 × 2640 / 2880 = 91.6666…
        assert_eq!(r[2].uptime_pct, 91.667);
        assert!(outages(&out).is_empty(), "the outage has not ended");
        assert!(p.is_down());
    }

    #[test]
    fn overlapping_windows_and_cause_exclusions_are_not_double_counted() {
        let f = Fixture::new(
            Tz::UTC,
            0,
            vec![
                window(
                    "2026-02-10T10:00:00Z",
                    "2026-02-10T12:00:00Z",
                    ExclusionReason::Declared("station_closed".into()),
                ),
                window(
                    "2026-02-10T09:00:00Z",
                    "2026-02-10T11:00:00Z",
                    ExclusionReason::ScheduledMaintenance,
                ),
            ],
        );
        let ctx = f.ctx();
        let mut p = PortUptime::new(1, t("2026-02-10T00:00:00Z"));
        let mut out = Vec::new();
        // Grid power loss 09:30–10:30 (all excluded, whatever the windows), then Faulted
        // until 13:00 (10:30–12:00 excluded by the windows).
        p.set(
            t("2026-02-10T09:30:00Z"),
            Some(Down::excluded(
                DownCause::ChargerDown,
                ExclusionReason::GridPower,
            )),
            &ctx,
            &mut out,
        );
        p.set(
            t("2026-02-10T10:30:00Z"),
            Some(Down::new(DownCause::Faulted)),
            &ctx,
            &mut out,
        );
        p.set(t("2026-02-10T13:00:00Z"), None, &ctx, &mut out);
        p.finish(t("2026-02-11T00:00:00Z"), &ctx, &mut out);
        let o = outages(&out)[0];
        assert_eq!((o.outage_minutes, o.excluded_minutes), (210.0, 150.0));
        assert_eq!(&*o.cause, "charger_down");
        // grid_power from 09:30; the windows count from 10:30, when the port went down at
        // the operator's charge: both apply from then, in the order they are configured.
        assert_eq!(
            &*o.exclusion,
            "grid_power,station_closed,scheduled_maintenance"
        );
        let r = rows(&out)[0];
        assert_eq!((r.outage_minutes, r.excluded_minutes), (210.0, 150.0));
        // 100 × (1440 − 60) / 1440 = 95.8333…
        assert_eq!(r.uptime_pct, 95.833);
    }

    #[test]
    fn memory_stays_bounded_over_months() {
        let f = Fixture::new(New_York, HOUR, Vec::new());
        let ctx = f.ctx();
        let start = t("2026-01-01T00:00:00-05:00");
        let mut p = PortUptime::new(1, start);
        let mut out = Vec::new();
        let (mut days, mut months, mut outage_records) = (0, 0, 0);
        for i in 0..200 {
            // Two 15-minute outages a day, the second across midnight.
            let base = start + i * 24 * HOUR;
            for (a, b) in [
                (8 * HOUR, 8 * HOUR + 15 * MIN),
                (23 * HOUR + 50 * MIN, 24 * HOUR + 5 * MIN),
            ] {
                p.set(
                    base + a,
                    Some(Down::new(DownCause::Faulted)),
                    &ctx,
                    &mut out,
                );
                p.set(base + b, None, &ctx, &mut out);
                p.advance(base + b, &ctx, &mut out);
            }
            assert!(p.spans.len() <= 3, "day {i}: {} spans", p.spans.len());
            for o in out.drain(..) {
                match o {
                    Output::Uptime(r) if r.period == UptimePeriod::Day => {
                        days += 1;
                        // 30 minutes down a day (the outages are laid out in EST, so the
                        // days of the DST changes differ; the first day has no outage from
                        // the day before).
                        if r.minutes == 1440.0 && r.period_start != start {
                            assert_eq!(r.outage_minutes, 30.0, "{r:?}");
                        }
                    }
                    Output::Uptime(_) => months += 1,
                    Output::Outage(_) => outage_records += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(outage_records, 400);
        assert!(days >= 198, "{days}");
        assert_eq!(months, 6, "January to June");
        let size = bincode::serialize(&p).expect("serialize").len();
        assert!(size < 512, "{size} bytes");
    }

    #[test]
    fn serde_round_trip_mid_outage_continues_identically() {
        let f = Fixture::new(
            New_York,
            HOUR,
            vec![window(
                "2026-02-27T10:00:00-05:00",
                "2026-02-27T11:00:00-05:00",
                ExclusionReason::Declared("natural_disaster".into()),
            )],
        );
        let ctx = f.ctx();
        let mut p = PortUptime::new(3, t("2026-02-26T07:00:00-05:00"));
        let mut out = Vec::new();
        p.set(
            t("2026-02-26T22:00:00-05:00"),
            Some(Down::excluded(DownCause::Faulted, ExclusionReason::Vehicle)),
            &ctx,
            &mut out,
        );
        p.set(
            t("2026-02-27T09:00:00-05:00"),
            Some(Down::new(DownCause::Unavailable)),
            &ctx,
            &mut out,
        );
        p.advance(t("2026-02-27T09:30:00-05:00"), &ctx, &mut out);
        assert_eq!(rows(&out).len(), 1);

        let bytes = bincode::serialize(&p).expect("bincode");
        let from_bincode: PortUptime = bincode::deserialize(&bytes).expect("bincode back");
        let json = serde_json::to_string(&p).expect("json");
        let from_json: PortUptime = serde_json::from_str(&json).expect("json back");
        assert_eq!(from_bincode, p);
        assert_eq!(from_json, p);

        let rest = |mut q: PortUptime| {
            let mut out = Vec::new();
            q.set(t("2026-02-27T12:00:00-05:00"), None, &ctx, &mut out);
            q.advance(t("2026-03-02T00:00:00-05:00"), &ctx, &mut out);
            out
        };
        let expected = rest(p.clone());
        assert_eq!(rest(from_bincode), expected);
        assert_eq!(rest(from_json), expected);
        let o = outages(&expected)[0];
        // 22:00–12:00 = 840 minutes: 660 vehicle (22:00–09:00), 60 of the window (10–11).
        assert_eq!((o.outage_minutes, o.excluded_minutes), (840.0, 720.0));
        assert_eq!(&*o.exclusion, "vehicle,natural_disaster");
        assert_eq!(&*o.cause, "faulted");
        // Feb 27: 720 down (00:00–12:00), 600 excluded (540 vehicle + 60 window).
        let r = rows(&expected);
        assert_eq!(
            (r[0].minutes, r[0].outage_minutes, r[0].excluded_minutes),
            (1440.0, 720.0, 600.0)
        );
        // February from first_seen (Feb 26 07:00): 1020 + 1440 + 1440 minutes.
        let feb = r
            .iter()
            .find(|r| r.period == UptimePeriod::Month)
            .expect("month");
        assert_eq!(feb.minutes, 3900.0);
        assert_eq!((feb.outage_minutes, feb.excluded_minutes), (840.0, 720.0));
    }

    #[test]
    fn exclusion_windows_come_from_the_configuration() {
        let m: MaintenanceWindow = toml::from_str(
            r#"charge_point_id = "CP-1"
               start = "2026-02-27T10:00:00Z"
               end = "2026-02-27T11:00:00Z""#,
        )
        .expect("maintenance");
        let e: UptimeExclusion = toml::from_str(
            r#"site_id = "site-1"
               start = "2026-02-27T12:00:00Z"
               end = "2026-02-27T13:00:00Z"
               reason = "vandalism""#,
        )
        .expect("exclusion");
        assert_eq!(
            exclusion_windows(&[m], &[e]),
            [
                window(
                    "2026-02-27T10:00:00Z",
                    "2026-02-27T11:00:00Z",
                    ExclusionReason::ScheduledMaintenance
                ),
                window(
                    "2026-02-27T12:00:00Z",
                    "2026-02-27T13:00:00Z",
                    ExclusionReason::Declared("vandalism".into())
                ),
            ]
        );
        assert_eq!(
            DownCause::ALL.map(DownCause::as_str),
            [
                "faulted",
                "unavailable",
                "fault_reported",
                "charger_down",
                "communication_lost"
            ]
        );
        assert_eq!(ExclusionReason::Vehicle.as_str(), "vehicle");
        assert_eq!(
            serde_json::to_string(&ExclusionReason::GridPower).expect("json"),
            "\"grid_power\""
        );
    }
}
