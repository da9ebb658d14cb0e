//! The dataflow's stages: pure logic over normalised events and per-charger state.
//!
//! Owns: what evflow computes — sessions and their prices ([`sessions`]), fault detectors
//! ([`anomalies`]), driver and operator notifications ([`notifications`]), health scores
//! ([`health`]), revenue windows ([`revenue`]). [`charger::ChargerStages`] ties the
//! per-charger parts together in event-time order. Nothing here does I/O or knows about timely:
//! `dataflow` calls these functions from its operators and hands the records to the sinks.

pub mod anomalies;
pub mod charger;
pub mod health;
pub mod notifications;
pub mod revenue;
pub mod sessions;

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::config::{
    AnomalyConfig, DataflowConfig, MaintenanceWindow, NotificationConfig, Registry,
};
use crate::model::Millis;
use crate::tariff::Tariff;

/// Reference data, shared read-only by all workers.
#[derive(Debug)]
pub struct Reference {
    stations: FxHashMap<String, StationRef>,
    tokens: FxHashMap<String, Arc<str>>,
    pub default_station: StationRef,
    pub maintenance: Vec<MaintenanceWindow>,
    ad_hoc: Arc<str>,
}

/// What the stages need to know about a charger. A charger missing from the registry gets
/// the default site and tariff: nothing is dropped for lack of reference data.
#[derive(Debug, Clone)]
pub struct StationRef {
    pub site_id: Arc<str>,
    pub tariff: Arc<Tariff>,
    pub max_power_w: f64,
}

impl StationRef {
    /// A placeholder for state read from a snapshot before it is bound to the configuration.
    pub fn unbound() -> StationRef {
        StationRef {
            site_id: Arc::from(""),
            tariff: Arc::new(Tariff::free("")),
            max_power_w: 0.0,
        }
    }
}

impl Reference {
    pub fn new(cfg: &DataflowConfig, registry: &Registry) -> Reference {
        let tariffs: FxHashMap<String, Arc<Tariff>> = cfg
            .tariffs
            .iter()
            .map(|t| (t.id.clone(), Arc::new(Tariff::from(t))))
            .collect();
        let default_tariff = tariffs
            .get(&cfg.registry.default_tariff)
            .cloned()
            .unwrap_or_else(|| Arc::new(Tariff::free(&cfg.registry.default_tariff)));
        let default_station = StationRef {
            site_id: Arc::from(cfg.registry.default_site.as_str()),
            tariff: default_tariff.clone(),
            max_power_w: cfg.anomalies.default_max_power_w,
        };
        let unknown: Vec<&str> = registry
            .stations
            .iter()
            .filter_map(|s| s.tariff_id.as_deref())
            .filter(|t| !tariffs.contains_key(*t))
            .collect();
        if !unknown.is_empty() {
            tracing::warn!(
                "{} station(s) name a tariff the dataflow does not define (e.g. {:?}); they use the default tariff {:?}",
                unknown.len(),
                unknown[0],
                cfg.registry.default_tariff
            );
        }
        let stations = registry
            .stations
            .iter()
            .map(|s| {
                let tariff = s
                    .tariff_id
                    .as_ref()
                    .and_then(|id| tariffs.get(id))
                    .cloned()
                    .unwrap_or_else(|| default_tariff.clone());
                (
                    s.charge_point_id.clone(),
                    StationRef {
                        site_id: Arc::from(s.site_id.as_str()),
                        tariff,
                        max_power_w: s.max_power_w.unwrap_or(cfg.anomalies.default_max_power_w),
                    },
                )
            })
            .collect();
        let tokens = registry
            .tokens
            .iter()
            .map(|t| (t.id_tag.clone(), Arc::from(t.payment_method.as_str())))
            .collect();
        Reference {
            stations,
            tokens,
            default_station,
            maintenance: cfg.maintenance.clone(),
            ad_hoc: Arc::from("ad_hoc"),
        }
    }

    pub fn station(&self, charge_point_id: &str) -> StationRef {
        self.stations
            .get(charge_point_id)
            .cloned()
            .unwrap_or_else(|| self.default_station.clone())
    }

    /// Payment method of a token; unknown tokens pay ad hoc.
    pub fn payment_method(&self, id_tag: &str) -> Arc<str> {
        self.tokens
            .get(id_tag)
            .cloned()
            .unwrap_or_else(|| self.ad_hoc.clone())
    }

    /// Maintenance windows that apply to a charger.
    pub fn maintenance_for(&self, charge_point_id: &str, site_id: &str) -> Vec<MaintenanceWindow> {
        self.maintenance
            .iter()
            .filter(|m| {
                m.charge_point_id.as_deref() == Some(charge_point_id)
                    || (m.charge_point_id.is_none() && m.site_id.as_deref() == Some(site_id))
            })
            .cloned()
            .collect()
    }
}

/// The stage parameters, from the dataflow configuration.
#[derive(Debug, Clone)]
pub struct StageConfig {
    pub anomalies: AnomalyConfig,
    pub notifications: NotificationConfig,
    pub health_window: Millis,
    pub revenue_window: Millis,
    /// The watermark's bound (a new charger's clock starts this far before its first event).
    pub out_of_orderness: Millis,
}

impl StageConfig {
    pub fn from_dataflow(cfg: &DataflowConfig) -> StageConfig {
        StageConfig {
            anomalies: cfg.anomalies.clone(),
            notifications: cfg.notifications.clone(),
            health_window: cfg.health.window.0,
            revenue_window: cfg.revenue.window.0,
            out_of_orderness: cfg.pipeline.out_of_orderness.0,
        }
    }
}
