//! Notifications for drivers and operators.
//!
//! Owns: who is told what, and the notification ids. Triggers (called by `charger`):
//! - `station_available`: a connector becomes Available after being in another state; to the
//!   app's public availability feed (`recipient = "public"`, audience driver); at most one per
//!   connector per `available_min_interval` (a flapping connector does not spam);
//! - `charging_almost_complete`: once per session, when the SoC reaches
//!   `almost_complete_soc_pct` or the estimated time to full (SoC trend) falls below
//!   `almost_complete_eta`; for chargers without SoC, when the power has tapered below 40 %
//!   of the session's peak (≥ 1 kW) — the CV phase; to the session's driver (`recipient` =
//!   the id tag);
//! - `station_out_of_order`: a connector becomes Faulted or Unavailable outside a scheduled
//!   maintenance window, or the charger loses communication; to the operator, and to the
//!   driver of a session in progress there;
//! - `maintenance_upcoming`: `maintenance_lead` before a scheduled window; to the operator and
//!   to every driver who used the charger within `recent_users_within`.
//!
//! Ids are `stable_id(kind, charger, connector, event time, recipient)`: the same trigger
//! always yields the same id, so a replay or a retry can be deduplicated downstream.

use std::sync::Arc;

use serde_json::Value;

use crate::model::{stable_id, Audience, Millis, NotificationKind, NotificationRecord, Output};

pub const PUBLIC: &str = "public";
pub const OPERATOR: &str = "operator";

#[allow(clippy::too_many_arguments)]
pub fn notify(
    kind: NotificationKind,
    audience: Audience,
    recipient: &Arc<str>,
    charge_point_id: &Arc<str>,
    site_id: &Arc<str>,
    connector_id: Option<u32>,
    at: Millis,
    facts: Value,
    out: &mut Vec<Output>,
) {
    let conn = connector_id.map_or(String::new(), |c| c.to_string());
    let id = stable_id(&[
        kind.as_str(),
        charge_point_id,
        &conn,
        &at.to_string(),
        recipient,
    ]);
    out.push(Output::Notification(NotificationRecord {
        id,
        kind,
        audience,
        recipient: recipient.clone(),
        charge_point_id: charge_point_id.clone(),
        site_id: site_id.clone(),
        connector_id,
        event_time: at,
        facts,
    }));
}

/// Distinct recent drivers of a charger, newest last, bounded.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_recipient_and_trigger() {
        let cp: Arc<str> = "CP".into();
        let s: Arc<str> = "S".into();
        let (a, b): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        let mut out = vec![];
        for r in [&a, &b, &a] {
            notify(
                NotificationKind::MaintenanceUpcoming,
                Audience::Driver,
                r,
                &cp,
                &s,
                None,
                5,
                Value::Null,
                &mut out,
            );
        }
        let ids: Vec<_> = out
            .iter()
            .map(|o| match o {
                Output::Notification(n) => n.id.clone(),
                _ => unreachable!(),
            })
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
}
