//! Notifications for drivers and operators: who is told what, and when.
//!
//! Owns: turning [`NotificationTrigger`]s (emitted by `charger` when something happened) into
//! one [`NotificationRecord`] per recipient, the driver watches, hysteresis, rate limits,
//! quiet hours, and the notification ids. Runs on worker 0 inside the aggregation, in event
//! time; no I/O (delivery is the sinks' job).
//!
//! Who gets what:
//! - `station_available` (a connector became Available after another state; the charger stage
//!   sends at most one per connector per `available_min_interval`): the drivers watching the
//!   charger or its site, and the public feed when `public_feed` is on;
//! - `charging_almost_complete` (once per session: SoC reached `almost_complete_soc_pct`, or
//!   the estimated time to full fell below `almost_complete_eta`, or, without SoC, the power
//!   tapered below 40 % of the session's peak): the session's driver;
//! - `station_out_of_order` (a connector or the charger went Faulted or Unavailable, or lost
//!   communication, outside scheduled maintenance): the operator, the driver of a session in
//!   progress there, and the watchers;
//! - `maintenance_upcoming` (`maintenance_lead` before a scheduled window): the operator, the
//!   drivers who used the charger within `recent_users_within`, and the watchers.
//!
//! A driver is told once even if they are several of these at once. For drivers only:
//! - **hysteresis**: the same kind about the same connector at most once per
//!   `repeat_min_interval` (a flapping station does not spam);
//! - **rate limit**: at most `driver_max_per_hour` notifications in any hour;
//! - **quiet hours** (site-local): the kinds listed are held until the quiet hours end, and a
//!   held station state (available / out of order) is replaced by a later one about the same
//!   connector, so the driver wakes up to the current state only.
//!
//! Suppressed notifications are counted by kind and reason ([`NotificationRouter::take_suppressed`]).
//! Operator notifications are never held, limited or suppressed.
//!
//! Ids are `stable_id(kind, charger, connector, event time, recipient)`: the same trigger
//! always yields the same id, so a replay or a retry can be deduplicated downstream.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::{Offset, TimeZone, Timelike};
use serde::{Deserialize, Serialize};

use crate::config::NotificationConfig;
use crate::model::{
    stable_id, Audience, BackInOrder, Millis, NotificationKind, NotificationRecord,
    NotificationTrigger, Output, WatchAction, WatchEvent, WatchTarget,
};
use crate::stages::Reference;

pub const PUBLIC: &str = "public";
pub const OPERATOR: &str = "operator";

const HOUR: Millis = 3_600_000;

/// A trigger with no particular driver.
pub fn trigger(
    kind: NotificationKind,
    charge_point_id: &Arc<str>,
    site_id: &Arc<str>,
    connector_id: Option<u32>,
    at: Millis,
    facts: serde_json::Value,
) -> NotificationTrigger {
    NotificationTrigger {
        kind,
        charge_point_id: charge_point_id.clone(),
        site_id: site_id.clone(),
        connector_id,
        event_time: at,
        facts,
        drivers: Vec::new(),
        recent_users: Vec::new(),
    }
}

/// `station_out_of_order` for a connector (`None`: the whole charger), with the drivers of
/// the sessions it interrupts.
pub fn out_of_order(
    charge_point_id: &Arc<str>,
    site_id: &Arc<str>,
    connector_id: Option<u32>,
    at: Millis,
    facts: serde_json::Value,
    drivers: Vec<Arc<str>>,
    out: &mut Vec<Output>,
) {
    let t = NotificationTrigger {
        drivers,
        ..trigger(
            NotificationKind::StationOutOfOrder,
            charge_point_id,
            site_id,
            connector_id,
            at,
            facts,
        )
    };
    out.push(Output::Trigger(Box::new(t)));
}

pub fn back_in_order(
    charge_point_id: &Arc<str>,
    site_id: &Arc<str>,
    connector_id: Option<u32>,
    at: Millis,
    out: &mut Vec<Output>,
) {
    out.push(Output::BackInOrder(BackInOrder {
        charge_point_id: charge_point_id.clone(),
        site_id: site_id.clone(),
        connector_id,
        event_time: at,
    }));
}

/// One notification for one recipient, with its stable id.
pub fn record(
    t: &NotificationTrigger,
    audience: Audience,
    recipient: &Arc<str>,
) -> NotificationRecord {
    let conn = t.connector_id.map_or(String::new(), |c| c.to_string());
    let at = t.event_time.to_string();
    let mut parts = vec![t.kind.as_str(), &t.charge_point_id, &conn, &at, recipient];
    // Two windows noticed at once (a charger first seen late) are two notifications.
    if let Some(start) = t.facts.get("start").and_then(|v| v.as_str()) {
        if t.kind == NotificationKind::MaintenanceUpcoming {
            parts.push(start);
        }
    }
    let id = stable_id(&parts);
    NotificationRecord {
        id,
        kind: t.kind,
        audience,
        recipient: recipient.clone(),
        charge_point_id: t.charge_point_id.clone(),
        site_id: t.site_id.clone(),
        connector_id: t.connector_id,
        event_time: t.event_time,
        facts: t.facts.clone(),
        held_until: None,
    }
}

/// Why a notification was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Suppressed {
    /// The same kind about the same connector within `repeat_min_interval`.
    Repeat,
    /// Over `driver_max_per_hour`.
    RateLimit,
    /// Held for quiet hours and replaced by a later state of the same connector.
    Superseded,
}

impl Suppressed {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppressed::Repeat => "repeat",
            Suppressed::RateLimit => "rate_limit",
            Suppressed::Superseded => "superseded",
        }
    }
}

/// Distinct recent drivers of a charger, newest last, bounded.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RecentUsers {
    users: Vec<(Millis, Arc<str>)>,
}

impl RecentUsers {
    const MAX: usize = 64;

    pub fn record(&mut self, at: Millis, id_tag: &Arc<str>) {
        self.users.retain(|(_, t)| t != id_tag);
        self.users.push((at, id_tag.clone()));
        if self.users.len() > Self::MAX {
            self.users.remove(0);
        }
    }

    /// Drivers seen in `[since, until]`, sorted by id tag for a deterministic order.
    pub fn between(&self, since: Millis, until: Millis) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self
            .users
            .iter()
            .filter(|(t, _)| *t >= since && *t <= until)
            .map(|(_, u)| u.clone())
            .collect();
        v.sort();
        v
    }
}

/// The kinds a watcher can get, as a bit mask.
fn kind_bit(k: NotificationKind) -> u8 {
    match k {
        NotificationKind::StationAvailable => 1,
        NotificationKind::StationOutOfOrder => 2,
        NotificationKind::MaintenanceUpcoming => 4,
        NotificationKind::ChargingAlmostComplete => 0,
    }
}
const ALL_WATCHABLE: u8 = 7;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Watch {
    kinds: u8,
    expires: Option<Millis>,
}

/// A driver notification held for quiet hours, keyed so that a later state of the same
/// connector replaces it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct HeldKey {
    recipient: Arc<str>,
    charge_point_id: Arc<str>,
    connector_id: Option<u32>,
    /// Station state kinds share 0 (the latest state wins); maintenance notices keep their
    /// own id.
    slot: String,
}

/// (recipient, charger, connector)
type StateKey = (Arc<str>, Arc<str>, Option<u32>);

/// The router's state (worker 0; part of the aggregation's commit snapshot).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NotificationRouter {
    watches: BTreeMap<WatchTarget, BTreeMap<Arc<str>, Watch>>,
    /// Watch events not yet applied, by (timestamp, arrival).
    pending: BTreeMap<(Millis, u64), WatchEvent>,
    added: u64,
    /// Where a Kafka watch source stands (next offset per partition) after what was added.
    pub watch_positions: BTreeMap<i32, i64>,
    /// Hysteresis: the last station state (available / out of order) each driver was told
    /// about each connector, and when.
    last_state: BTreeMap<StateKey, (NotificationKind, Millis)>,
    /// Rate limit: each driver's notification times within the last hour.
    sent_times: BTreeMap<Arc<str>, VecDeque<Millis>>,
    /// Held for quiet hours, with their release time (`held_until`). In snapshots as JSON
    /// text: a record's `facts` is free-form JSON, which bincode cannot read back.
    #[serde(with = "held_as_json")]
    held: BTreeMap<HeldKey, NotificationRecord>,
    /// The earliest `held_until` in `held`: nothing to scan before it.
    next_release: Option<Millis>,
    /// Suppressed since the last [`take_suppressed`](Self::take_suppressed).
    #[serde(skip)]
    suppressed: BTreeMap<(NotificationKind, Suppressed), u64>,
    last_prune: Millis,
}

impl NotificationRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Watch events that arrived (a file, or polled from Kafka up to `positions`).
    pub fn add_watches(
        &mut self,
        events: impl IntoIterator<Item = WatchEvent>,
        positions: &BTreeMap<i32, i64>,
    ) {
        for w in events {
            self.added += 1;
            self.pending.insert((w.timestamp, self.added), w);
        }
        self.watch_positions.clone_from(positions);
    }

    /// Applies the watch events up to `until` (event time).
    pub fn apply_watches(&mut self, until: Millis) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > until {
                break;
            }
            let w = entry.remove();
            let mask = if w.kinds.is_empty() {
                ALL_WATCHABLE
            } else {
                w.kinds.iter().fold(0, |m, k| m | kind_bit(*k))
            };
            let of_target = self.watches.entry(w.target.clone()).or_default();
            match w.action {
                WatchAction::Watch => {
                    let e = of_target.entry(w.driver.clone()).or_insert(Watch {
                        kinds: 0,
                        expires: None,
                    });
                    e.kinds |= mask;
                    e.expires = w.expires;
                }
                WatchAction::Unwatch => {
                    if let Some(e) = of_target.get_mut(&w.driver) {
                        e.kinds &= !mask;
                        if e.kinds == 0 {
                            of_target.remove(&w.driver);
                        }
                    }
                }
            }
            if of_target.is_empty() {
                self.watches.remove(&w.target);
            }
        }
    }

    /// The drivers watching the trigger's charger or site for its kind at its time, sorted.
    fn watchers(&self, t: &NotificationTrigger) -> Vec<Arc<str>> {
        let bit = kind_bit(t.kind);
        let mut v: Vec<Arc<str>> = [
            WatchTarget::ChargePoint(t.charge_point_id.clone()),
            WatchTarget::Site(t.site_id.clone()),
        ]
        .iter()
        .filter_map(|target| self.watches.get(target))
        .flat_map(|m| m.iter())
        .filter(|(_, w)| w.kinds & bit != 0 && w.expires.is_none_or(|e| e > t.event_time))
        .map(|(d, _)| d.clone())
        .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Turns one trigger into its notifications (some of which may be held for quiet hours).
    pub fn route(
        &mut self,
        t: &NotificationTrigger,
        cfg: &NotificationConfig,
        reference: &Reference,
        out: &mut Vec<Output>,
    ) {
        self.apply_watches(t.event_time);
        let mut drivers: Vec<Arc<str>> = Vec::new();
        let mut operator = false;
        match t.kind {
            NotificationKind::StationAvailable => {
                drivers = self.watchers(t);
            }
            NotificationKind::ChargingAlmostComplete => drivers.extend(t.drivers.iter().cloned()),
            NotificationKind::StationOutOfOrder => {
                operator = true;
                drivers = self.watchers(t);
                drivers.extend(t.drivers.iter().cloned());
            }
            NotificationKind::MaintenanceUpcoming => {
                operator = true;
                drivers = self.watchers(t);
                drivers.extend(t.recent_users.iter().cloned());
            }
        }
        drivers.sort();
        drivers.dedup();
        if operator {
            out.push(Output::Notification(record(
                t,
                Audience::Operator,
                &Arc::from(OPERATOR),
            )));
        }
        if t.kind == NotificationKind::StationAvailable && cfg.public_feed {
            out.push(Output::Notification(record(
                t,
                Audience::Driver,
                &Arc::from(PUBLIC),
            )));
        }
        let quiet_until = cfg
            .quiet_hours
            .driver
            .as_ref()
            .filter(|q| q.kinds.contains(&t.kind))
            .and_then(|q| q.minutes().ok())
            .and_then(|(start, end)| {
                let tz = reference.station(&t.charge_point_id).time_zone;
                quiet_end(t.event_time, tz, start, end)
            });
        for d in &drivers {
            if !self.admit(d, t, cfg) {
                continue;
            }
            let mut n = record(t, Audience::Driver, d);
            match quiet_until {
                Some(until) => {
                    n.held_until = Some(until);
                    self.hold(n);
                }
                None => out.push(Output::Notification(n)),
            }
        }
    }

    /// Hysteresis and rate limit for one driver notification; records it when admitted.
    /// Hysteresis drops only a repeat of the state the driver was last told about (so the
    /// last word is the station's latest state); the rate limit bounds the rest. A driver's
    /// own session notice is neither.
    fn admit(
        &mut self,
        driver: &Arc<str>,
        t: &NotificationTrigger,
        cfg: &NotificationConfig,
    ) -> bool {
        let station_state = matches!(
            t.kind,
            NotificationKind::StationAvailable | NotificationKind::StationOutOfOrder
        );
        let key = (driver.clone(), t.charge_point_id.clone(), t.connector_id);
        if station_state {
            if let Some((kind, last)) = self.last_state.get(&key) {
                let since = t.event_time - last;
                if *kind == t.kind && (0..cfg.repeat_min_interval.0).contains(&since) {
                    self.count(t.kind, Suppressed::Repeat);
                    return false;
                }
            }
        }
        if t.kind != NotificationKind::ChargingAlmostComplete {
            let times = self.sent_times.entry(driver.clone()).or_default();
            while times.front().is_some_and(|s| *s <= t.event_time - HOUR) {
                times.pop_front();
            }
            if times.len() >= cfg.driver_max_per_hour as usize {
                self.count(t.kind, Suppressed::RateLimit);
                return false;
            }
            times.push_back(t.event_time);
        }
        if station_state {
            self.last_state.insert(key, (t.kind, t.event_time));
        }
        true
    }

    fn hold(&mut self, n: NotificationRecord) {
        let slot = match n.kind {
            NotificationKind::StationAvailable | NotificationKind::StationOutOfOrder => {
                String::new()
            }
            _ => n.id.clone(),
        };
        let key = HeldKey {
            recipient: n.recipient.clone(),
            charge_point_id: n.charge_point_id.clone(),
            connector_id: n.connector_id,
            slot,
        };
        let until = n.held_until;
        if let Some(old) = self.held.insert(key, n) {
            self.count(old.kind, Suppressed::Superseded);
            // What never goes out does not use up the driver's hourly allowance.
            if let Some(times) = self.sent_times.get_mut(&old.recipient) {
                if let Some(i) = times.iter().position(|t| *t == old.event_time) {
                    times.remove(i);
                }
            }
        }
        self.next_release = match (self.next_release, until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn count(&mut self, kind: NotificationKind, why: Suppressed) {
        *self.suppressed.entry((kind, why)).or_default() += 1;
    }

    /// Event time reached `w`: watches up to it apply, held notifications whose quiet hours
    /// ended are released, and old hysteresis and rate-limit entries are forgotten.
    pub fn advance(&mut self, w: Millis, cfg: &NotificationConfig, out: &mut Vec<Output>) {
        self.apply_watches(w);
        if self.next_release.is_some_and(|r| r <= w) {
            self.release(|n| n.held_until.is_some_and(|h| h <= w), out);
        }
        if w - self.last_prune >= HOUR {
            self.last_prune = w;
            let keep = cfg.repeat_min_interval.0;
            self.last_state.retain(|_, (_, t)| w - *t < keep);
            self.sent_times
                .retain(|_, v| v.back().is_some_and(|t| w - *t < HOUR));
            for m in self.watches.values_mut() {
                m.retain(|_, watch| watch.expires.is_none_or(|e| e > w));
            }
            self.watches.retain(|_, m| !m.is_empty());
        }
    }

    /// End of a bounded input: what is still held goes out now, stamped with the time it
    /// should be delivered (`held_until`), rather than vanish with the run.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.release(|_| true, out);
    }

    fn release(&mut self, due: impl Fn(&NotificationRecord) -> bool, out: &mut Vec<Output>) {
        let keys: Vec<HeldKey> = self
            .held
            .iter()
            .filter(|(_, n)| due(n))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(n) = self.held.remove(&k) {
                out.push(Output::Notification(n));
            }
        }
        self.next_release = self.held.values().filter_map(|n| n.held_until).min();
    }

    /// Suppression counts since the last call, for metrics.
    pub fn take_suppressed(&mut self) -> BTreeMap<(NotificationKind, Suppressed), u64> {
        std::mem::take(&mut self.suppressed)
    }

    /// Watches in force (targets × drivers), for the run summary.
    pub fn watch_count(&self) -> usize {
        self.watches.values().map(|m| m.len()).sum()
    }
}

/// The held notifications in a snapshot: (key, the record as JSON text) pairs.
mod held_as_json {
    use super::*;
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        held: &BTreeMap<HeldKey, NotificationRecord>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let pairs = held
            .iter()
            .map(|(k, n)| Ok((k, serde_json::to_string(n).map_err(S::Error::custom)?)))
            .collect::<Result<Vec<_>, S::Error>>()?;
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<HeldKey, NotificationRecord>, D::Error> {
        Vec::<(HeldKey, String)>::deserialize(d)?
            .into_iter()
            .map(|(k, text)| Ok((k, serde_json::from_str(&text).map_err(D::Error::custom)?)))
            .collect()
    }
}

/// If `at` falls in the daily quiet period `[start, end)` (minutes after local midnight;
/// `end < start` crosses midnight) of zone `tz`, the instant the period ends.
pub fn quiet_end(at: Millis, tz: chrono_tz::Tz, start: u32, end: u32) -> Option<Millis> {
    let utc = chrono::DateTime::from_timestamp_millis(at)?;
    let local = utc.with_timezone(&tz);
    let minute = local.hour() * 60 + local.minute();
    let inside = if start < end {
        minute >= start && minute < end
    } else {
        minute >= start || minute < end
    };
    if !inside {
        return None;
    }
    // Minutes until the end, counted on the local clock; DST is handled by converting the
    // local end time back to an instant.
    let mut day = local.date_naive();
    if start > end && minute >= start {
        day = day.succ_opt()?;
    }
    let end_local = day.and_hms_opt(end / 60, end % 60, 0)?;
    let end_instant = match tz.from_local_datetime(&end_local) {
        chrono::LocalResult::Single(t) => t,
        chrono::LocalResult::Ambiguous(a, _) => a,
        // The end falls in a DST gap: an hour later exists.
        chrono::LocalResult::None => {
            let later = end_local + chrono::Duration::hours(1);
            tz.from_local_datetime(&later).earliest()?
        }
    };
    let _ = end_instant.offset().fix();
    Some(end_instant.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QuietHours;

    fn trig(
        kind: NotificationKind,
        cp: &str,
        conn: Option<u32>,
        at: Millis,
    ) -> NotificationTrigger {
        trigger(
            kind,
            &Arc::from(cp),
            &Arc::from("SITE-1"),
            conn,
            at,
            serde_json::json!({}),
        )
    }

    fn watch(driver: &str, target: WatchTarget, action: WatchAction, at: Millis) -> WatchEvent {
        WatchEvent {
            driver: Arc::from(driver),
            action,
            target,
            kinds: vec![],
            timestamp: at,
            expires: None,
        }
    }

    /// A router where `driver` watches `target` (all kinds, since time 0).
    fn watched_by(driver: &str, target: WatchTarget) -> NotificationRouter {
        let mut r = NotificationRouter::new();
        r.add_watches(
            [watch(driver, target, WatchAction::Watch, 0)],
            &BTreeMap::new(),
        );
        r
    }

    fn recipients(out: &[Output]) -> Vec<(String, Audience)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Notification(n) => Some((n.recipient.to_string(), n.audience)),
                _ => None,
            })
            .collect()
    }

    fn reference() -> Reference {
        let cfg: crate::config::DataflowConfig = toml::from_str(
            "[source]\nkind = \"file\"\npath = \"x\"\n[registry]\ndefault_time_zone = \"UTC\"",
        )
        .expect("config");
        Reference::new(&cfg, &crate::config::Registry::default(), vec![]).expect("reference")
    }

    #[test]
    fn ids_depend_on_recipient_and_trigger() {
        let t = trig(NotificationKind::MaintenanceUpcoming, "CP", None, 5);
        let (a, b): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        let ids: Vec<String> = [&a, &b, &a]
            .iter()
            .map(|r| record(&t, Audience::Driver, r).id)
            .collect();
        assert_ne!(ids[0], ids[1]);
        assert_eq!(ids[0], ids[2]);
    }

    #[test]
    fn recent_users_are_distinct_and_windowed() {
        let mut r = RecentUsers::default();
        let (a, b): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        r.record(1, &b);
        r.record(2, &a);
        r.record(10, &b);
        assert_eq!(r.between(0, 100), vec![a.clone(), b.clone()]);
        assert_eq!(r.between(5, 100), vec![b]);
    }

    #[test]
    fn watchers_of_charger_and_site_get_station_kinds_in_event_time_order() {
        let cfg = NotificationConfig::default();
        let reference = reference();
        let mut r = NotificationRouter::new();
        let cp = WatchTarget::ChargePoint(Arc::from("CP-1"));
        let site = WatchTarget::Site(Arc::from("SITE-1"));
        r.add_watches(
            [
                watch("ALICE", cp.clone(), WatchAction::Watch, 100),
                watch("BOB", site.clone(), WatchAction::Watch, 100),
                // Both a charger and a site watcher: told once.
                watch("CAROL", cp.clone(), WatchAction::Watch, 100),
                watch("CAROL", site, WatchAction::Watch, 100),
                // Watches only after the first trigger.
                watch("DAVE", cp.clone(), WatchAction::Watch, 5_000),
                WatchEvent {
                    kinds: vec![NotificationKind::MaintenanceUpcoming],
                    ..watch("ERIN", cp.clone(), WatchAction::Watch, 100)
                },
                watch("ALICE", cp, WatchAction::Unwatch, 9_000),
            ],
            &BTreeMap::new(),
        );
        let mut out = vec![];
        r.route(
            &trig(NotificationKind::StationAvailable, "CP-1", Some(1), 1_000),
            &cfg,
            &reference,
            &mut out,
        );
        assert_eq!(
            recipients(&out),
            [
                ("ALICE", Audience::Driver),
                ("BOB", Audience::Driver),
                ("CAROL", Audience::Driver)
            ]
            .map(|(r, a)| (r.to_string(), a))
        );
        out.clear();
        let mut t = trig(NotificationKind::StationOutOfOrder, "CP-1", Some(2), 10_000);
        t.drivers = vec![Arc::from("ZOE")];
        r.route(&t, &cfg, &reference, &mut out);
        assert_eq!(
            recipients(&out),
            [
                ("operator", Audience::Operator),
                ("BOB", Audience::Driver),
                ("CAROL", Audience::Driver),
                ("DAVE", Audience::Driver),
                ("ZOE", Audience::Driver),
            ]
            .map(|(r, a)| (r.to_string(), a))
        );
        out.clear();
        let mut t = trig(NotificationKind::MaintenanceUpcoming, "CP-1", None, 11_000);
        t.recent_users = vec![Arc::from("BOB"), Arc::from("YAN")];
        r.route(&t, &cfg, &reference, &mut out);
        let got = recipients(&out);
        assert_eq!(got.len(), 6, "{got:?}");
        assert!(got.contains(&("ERIN".into(), Audience::Driver)));
        assert!(got.contains(&("YAN".into(), Audience::Driver)));
        // Another charger of the same site: only the site watchers.
        out.clear();
        r.route(
            &trig(NotificationKind::StationAvailable, "CP-2", Some(1), 12_000),
            &cfg,
            &reference,
            &mut out,
        );
        assert_eq!(
            recipients(&out),
            [("BOB", Audience::Driver), ("CAROL", Audience::Driver)]
                .map(|(r, a)| (r.to_string(), a))
        );
    }

    #[test]
    fn expired_watches_stop_and_kind_filters_apply() {
        let cfg = NotificationConfig::default();
        let reference = reference();
        let mut r = NotificationRouter::new();
        let cp = WatchTarget::ChargePoint(Arc::from("CP-1"));
        r.add_watches(
            [WatchEvent {
                expires: Some(60_000),
                ..watch("ALICE", cp, WatchAction::Watch, 0)
            }],
            &BTreeMap::new(),
        );
        let mut out = vec![];
        r.route(
            &trig(NotificationKind::StationAvailable, "CP-1", Some(1), 59_999),
            &cfg,
            &reference,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        out.clear();
        r.route(
            &trig(NotificationKind::StationAvailable, "CP-1", Some(2), 60_000),
            &cfg,
            &reference,
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn flapping_connector_and_busy_driver_are_limited_but_operator_never() {
        let cfg = NotificationConfig::default(); // 15 min, 6 per hour
        let reference = reference();
        let mut r = watched_by("ALICE", WatchTarget::Site(Arc::from("SITE-1")));
        let mut out = vec![];
        // Connector 1 out of order every minute for 10 minutes.
        for i in 0..10 {
            r.route(
                &trig(
                    NotificationKind::StationOutOfOrder,
                    "CP-1",
                    Some(1),
                    60_000 * (i + 1),
                ),
                &cfg,
                &reference,
                &mut out,
            );
        }
        let to =
            |out: &[Output], who: &str| recipients(out).iter().filter(|(r, _)| r == who).count();
        assert_eq!((to(&out, "ALICE"), to(&out, "operator")), (1, 10));
        // 20 different connectors within the hour: the driver gets 6 in all.
        for c in 0..20 {
            r.route(
                &trig(
                    NotificationKind::StationAvailable,
                    "CP-9",
                    Some(c + 1),
                    700_000 + c as Millis,
                ),
                &cfg,
                &reference,
                &mut out,
            );
        }
        assert_eq!(to(&out, "ALICE"), 6);
        let s = r.take_suppressed();
        assert_eq!(
            s[&(NotificationKind::StationOutOfOrder, Suppressed::Repeat)],
            9
        );
        assert_eq!(
            s[&(NotificationKind::StationAvailable, Suppressed::RateLimit)],
            15
        );
        // An hour later the driver hears again.
        out.clear();
        r.route(
            &trig(
                NotificationKind::StationAvailable,
                "CP-9",
                Some(1),
                700_000 + HOUR,
            ),
            &cfg,
            &reference,
            &mut out,
        );
        assert_eq!(to(&out, "ALICE"), 1);
    }

    #[test]
    fn quiet_hours_hold_driver_notifications_and_keep_only_the_latest_state() {
        let mut cfg = NotificationConfig::default();
        cfg.quiet_hours.driver = Some(QuietHours {
            start: "22:00".into(),
            end: "07:00".into(),
            kinds: crate::config::NotificationConfig::default()
                .quiet_hours
                .driver
                .map_or_else(
                    || {
                        vec![
                            NotificationKind::StationAvailable,
                            NotificationKind::StationOutOfOrder,
                            NotificationKind::MaintenanceUpcoming,
                        ]
                    },
                    |q| q.kinds,
                ),
        });
        cfg.repeat_min_interval = crate::config::Duration(0);
        let reference = reference(); // UTC
        let mut r = watched_by("ALICE", WatchTarget::ChargePoint(Arc::from("CP-1")));
        let night = 1_767_650_400_000; // 2026-01-05T22:00:00Z
        let morning = night + 9 * HOUR;
        let mut out = vec![];
        r.route(
            &trig(
                NotificationKind::StationOutOfOrder,
                "CP-1",
                Some(1),
                night + 60_000,
            ),
            &cfg,
            &reference,
            &mut out,
        );
        // The operator hears at once; the driver's is held.
        assert_eq!(
            recipients(&out),
            [("operator".to_string(), Audience::Operator)]
        );
        out.clear();
        r.route(
            &trig(
                NotificationKind::StationAvailable,
                "CP-1",
                Some(1),
                night + 2 * HOUR,
            ),
            &cfg,
            &reference,
            &mut out,
        );
        let mut t = trig(
            NotificationKind::ChargingAlmostComplete,
            "CP-1",
            Some(2),
            night + 3 * HOUR,
        );
        t.drivers = vec![Arc::from("ALICE")];
        r.route(&t, &cfg, &reference, &mut out);
        // Her own session's notice is not held.
        assert_eq!(recipients(&out), [("ALICE".to_string(), Audience::Driver)]);
        out.clear();
        r.advance(morning - 1, &cfg, &mut out);
        assert!(out.is_empty());
        r.advance(morning, &cfg, &mut out);
        let released: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Notification(n) => Some((n.kind, n.held_until, n.event_time)),
                _ => None,
            })
            .collect();
        // Only the latest state of connector 1, stamped with the end of the quiet hours.
        assert_eq!(
            released,
            [(
                NotificationKind::StationAvailable,
                Some(morning),
                night + 2 * HOUR
            )]
        );
        assert_eq!(
            r.take_suppressed()[&(NotificationKind::StationOutOfOrder, Suppressed::Superseded)],
            1
        );
    }

    #[test]
    fn hysteresis_drops_repeats_only_so_the_last_word_is_the_latest_state() {
        let cfg = NotificationConfig::default();
        let reference = reference();
        let mut r = watched_by("ALICE", WatchTarget::ChargePoint(Arc::from("CP-1")));
        let mut out = vec![];
        let min = 60_000;
        for (kind, at) in [
            (NotificationKind::StationOutOfOrder, 600 * min),
            (NotificationKind::StationAvailable, 605 * min),
            (NotificationKind::StationOutOfOrder, 607 * min),
            (NotificationKind::StationOutOfOrder, 609 * min), // a repeat: dropped
        ] {
            r.route(&trig(kind, "CP-1", Some(1), at), &cfg, &reference, &mut out);
        }
        let told: Vec<(NotificationKind, Millis)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Notification(n) if n.audience == Audience::Driver => {
                    Some((n.kind, n.event_time))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            told,
            [
                (NotificationKind::StationOutOfOrder, 600 * min),
                (NotificationKind::StationAvailable, 605 * min),
                (NotificationKind::StationOutOfOrder, 607 * min),
            ]
        );
    }

    #[test]
    fn maintenance_windows_noticed_together_have_their_own_ids() {
        let mut a = trig(NotificationKind::MaintenanceUpcoming, "CP-1", None, 5);
        a.facts = serde_json::json!({"start": "2026-03-02T10:00:00.000Z"});
        let mut b = a.clone();
        b.facts = serde_json::json!({"start": "2026-03-03T10:00:00.000Z"});
        let op: Arc<str> = Arc::from(OPERATOR);
        assert_ne!(
            record(&a, Audience::Operator, &op).id,
            record(&b, Audience::Operator, &op).id
        );
    }

    #[test]
    fn held_notifications_survive_a_snapshot() {
        let mut cfg = NotificationConfig::default();
        cfg.quiet_hours.driver = Some(QuietHours {
            start: "22:00".into(),
            end: "07:00".into(),
            kinds: vec![NotificationKind::StationAvailable],
        });
        let reference = reference();
        let mut r = watched_by("ALICE", WatchTarget::ChargePoint(Arc::from("CP-1")));
        let night = 1_767_650_400_000; // 2026-01-05T22:00:00Z
        let mut t = trig(NotificationKind::StationAvailable, "CP-1", Some(1), night);
        t.facts = serde_json::json!({"status": "Available", "nested": {"x": [1, 2.5, null]}});
        let mut out = vec![];
        r.route(&t, &cfg, &reference, &mut out);
        assert!(out.is_empty());
        let bytes = bincode::serialize(&r).expect("save");
        let mut restored: NotificationRouter = bincode::deserialize(&bytes).expect("restore");
        restored.advance(night + 9 * HOUR, &cfg, &mut out);
        match out.as_slice() {
            [Output::Notification(n)] => {
                assert_eq!(n.facts, t.facts);
                assert_eq!(n.held_until, Some(night + 9 * HOUR));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quiet_period_end_follows_the_local_clock() {
        let ny: chrono_tz::Tz = chrono_tz::America::New_York;
        // 2026-03-08 (DST starts at 02:00 local): 23:30 EST on the 7th = 04:30Z on the 8th.
        let at = 1_772_944_200_000;
        // 07:00 EDT on the 8th = 11:00Z.
        assert_eq!(quiet_end(at, ny, 22 * 60, 7 * 60), Some(1_772_967_600_000));
        // 12:00 local is not quiet.
        assert_eq!(quiet_end(at + 12 * HOUR, ny, 22 * 60, 7 * 60), None);
        // Same-day period 13:00–15:00 UTC.
        let noon = 1_767_614_400_000 + HOUR; // 2026-01-05T13:00Z
        assert_eq!(
            quiet_end(noon, chrono_tz::UTC, 13 * 60, 15 * 60),
            Some(noon + 2 * HOUR)
        );
    }
}
