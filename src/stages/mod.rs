//! The dataflow's stages: pure logic over normalised events and per-charger state.
//!
//! Owns: what evflow computes — sessions and their prices ([`sessions`]), fault detectors
//! ([`anomalies`]), driver and operator notifications ([`notifications`]), health scores
//! ([`health`]), revenue windows ([`revenue`]). [`charger::ChargerStages`] ties the
//! per-charger parts together in event-time order. Nothing here does I/O or knows about timely:
//! `dataflow` calls these functions from its operators and hands the records to the sinks.

pub mod anomalies;
pub mod billing;
pub mod charger;
pub mod detector;
pub mod fleet;
pub mod health;
pub mod leakage;
pub mod link;
pub mod notifications;
pub mod revenue;
pub mod sessions;
pub mod uptime;

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::config::{
    AnomalyConfig, ConfigError, DataflowConfig, MaintenanceWindow, NotificationConfig, Registry,
    UptimeExclusion,
};
use crate::model::Millis;
use crate::tariff::ocpi::{self, Tz};

/// Reference data, shared read-only by all workers.
#[derive(Debug)]
pub struct Reference {
    stations: FxHashMap<String, StationRef>,
    tokens: FxHashMap<String, TokenRef>,
    pub default_station: StationRef,
    pub maintenance: Vec<MaintenanceWindow>,
    pub exclusions: Vec<UptimeExclusion>,
    ad_hoc: Arc<str>,
    plans: FxHashMap<String, Arc<PlanRef>>,
    /// Payment fees by method: (percent, fixed).
    fees: FxHashMap<String, (rust_decimal::Decimal, rust_decimal::Decimal)>,
}

/// A tariff as the stages use it.
#[derive(Debug)]
pub struct TariffRef {
    pub id: Arc<str>,
    pub currency: Arc<str>,
    pub tariff: ocpi::Tariff,
    /// Where a new charging period must start (`tariff::power_bounds_w`).
    pub power_bounds_w: Vec<f64>,
}

impl TariffRef {
    fn new(tariff: ocpi::Tariff) -> Arc<TariffRef> {
        Arc::new(TariffRef {
            id: Arc::from(tariff.id.as_str()),
            currency: Arc::from(tariff.currency.as_str()),
            power_bounds_w: crate::tariff::power_bounds_w(&tariff),
            tariff,
        })
    }
}

/// What the stages need to know about a charger. A charger missing from the registry gets
/// the default site and tariff: nothing is dropped for lack of reference data.
#[derive(Debug, Clone)]
pub struct StationRef {
    pub site_id: Arc<str>,
    /// Connector tariff, else station tariff, else site tariff, else the default.
    pub tariff: Arc<TariffRef>,
    pub connector_tariffs: Vec<(u32, Arc<TariffRef>)>,
    pub time_zone: Tz,
    pub max_power_w: f64,
    /// Nominal phase voltage of the supply, V.
    pub nominal_voltage_v: f64,
}

impl StationRef {
    /// A placeholder for state read from a snapshot before it is bound to the configuration.
    pub fn unbound() -> StationRef {
        StationRef {
            site_id: Arc::from(""),
            tariff: TariffRef::new(crate::tariff::free("")),
            connector_tariffs: Vec::new(),
            time_zone: chrono_tz::UTC,
            max_power_w: 0.0,
            nominal_voltage_v: 0.0,
        }
    }

    pub fn tariff_for(&self, connector_id: u32) -> &Arc<TariffRef> {
        self.connector_tariffs
            .iter()
            .find(|(c, _)| *c == connector_id)
            .map_or(&self.tariff, |(_, t)| t)
    }
}

/// What a token (id tag) says about billing.
#[derive(Debug, Clone)]
pub struct TokenRef {
    pub payment_method: Arc<str>,
    pub account: Arc<str>,
    pub plan: Option<Arc<PlanRef>>,
}

/// A subscription plan.
#[derive(Debug)]
pub struct PlanRef {
    pub id: Arc<str>,
    pub currency: Arc<str>,
    /// Energy included per account and calendar month (UTC), Wh.
    pub included_wh: i64,
    /// The plan's own tariff, over the station's.
    pub tariff: Option<Arc<TariffRef>>,
}

impl Reference {
    /// `ocpi_tariffs`: those of `revenue.ocpi_tariffs` (they win over `[[tariffs]]` of the
    /// same id).
    pub fn new(
        cfg: &DataflowConfig,
        registry: &Registry,
        ocpi_tariffs: Vec<ocpi::Tariff>,
    ) -> Result<Reference, ConfigError> {
        let mut tariffs: FxHashMap<String, Arc<TariffRef>> = cfg
            .tariffs
            .iter()
            .map(|t| (t.id.clone(), TariffRef::new(crate::tariff::from_simple(t))))
            .collect();
        for t in ocpi_tariffs {
            tariffs.insert(t.id.clone(), TariffRef::new(t));
        }
        let default_tariff = tariffs
            .get(&cfg.registry.default_tariff)
            .cloned()
            .unwrap_or_else(|| TariffRef::new(crate::tariff::free(&cfg.registry.default_tariff)));
        let zone = |name: &str| {
            ocpi::parse_time_zone(name)
                .map_err(|e| ConfigError::Invalid(format!("time zone {name:?}: {e}")))
        };
        let default_zone = zone(&cfg.registry.default_time_zone)?;
        let mut unknown: Vec<String> = Vec::new();
        let mut lookup = |id: Option<&String>| -> Option<Arc<TariffRef>> {
            let id = id?;
            let t = tariffs.get(id).cloned();
            if t.is_none() {
                unknown.push(id.clone());
            }
            t
        };
        let nominal_v = cfg.anomalies.nominal_voltage_v;
        let mut sites: FxHashMap<&str, (Option<Arc<TariffRef>>, Tz, f64)> = FxHashMap::default();
        for site in &registry.sites {
            let tz = match &site.time_zone {
                Some(z) => zone(z)?,
                None => default_zone,
            };
            let v = site.nominal_voltage_v.unwrap_or(nominal_v);
            sites.insert(&site.site_id, (lookup(site.tariff_id.as_ref()), tz, v));
        }
        let default_station = StationRef {
            site_id: Arc::from(cfg.registry.default_site.as_str()),
            tariff: default_tariff.clone(),
            connector_tariffs: Vec::new(),
            time_zone: default_zone,
            max_power_w: cfg.anomalies.default_max_power_w,
            nominal_voltage_v: nominal_v,
        };
        let mut stations = FxHashMap::default();
        for s in &registry.stations {
            let (site_tariff, tz, site_v) =
                sites
                    .get(s.site_id.as_str())
                    .cloned()
                    .unwrap_or((None, default_zone, nominal_v));
            let tariff = lookup(s.tariff_id.as_ref())
                .or(site_tariff)
                .unwrap_or_else(|| default_tariff.clone());
            let connector_tariffs = s
                .connector_tariffs
                .iter()
                .filter_map(|(c, id)| Some((*c, lookup(Some(id))?)))
                .collect();
            stations.insert(
                s.charge_point_id.clone(),
                StationRef {
                    site_id: Arc::from(s.site_id.as_str()),
                    tariff,
                    connector_tariffs,
                    time_zone: tz,
                    max_power_w: s.max_power_w.unwrap_or(cfg.anomalies.default_max_power_w),
                    nominal_voltage_v: s.nominal_voltage_v.unwrap_or(site_v),
                },
            );
        }
        let plans: FxHashMap<String, Arc<PlanRef>> = registry
            .plans
            .iter()
            .map(|p| {
                let wh = (p.included_kwh.0 * rust_decimal::Decimal::from(1000))
                    .round()
                    .try_into()
                    .unwrap_or(i64::MAX);
                let plan = Arc::new(PlanRef {
                    id: Arc::from(p.id.as_str()),
                    currency: Arc::from(p.currency.as_str()),
                    included_wh: wh,
                    tariff: lookup(p.tariff_id.as_ref()),
                });
                (p.id.clone(), plan)
            })
            .collect();
        let mut tokens = FxHashMap::default();
        for t in &registry.tokens {
            let plan = match &t.plan {
                Some(id) => Some(plans.get(id).cloned().ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "token {:?}: no plan {id:?} in the registry",
                        t.id_tag
                    ))
                })?),
                None => None,
            };
            tokens.insert(
                t.id_tag.clone(),
                TokenRef {
                    payment_method: Arc::from(t.payment_method.as_str()),
                    account: Arc::from(t.account.as_deref().unwrap_or(&t.id_tag)),
                    plan,
                },
            );
        }
        if !unknown.is_empty() {
            unknown.sort();
            unknown.dedup();
            tracing::warn!(
                "the registry names {} tariff(s) the dataflow does not define ({:?}); they use \
                 the default tariff {:?}",
                unknown.len(),
                unknown,
                cfg.registry.default_tariff
            );
        }
        let fees = cfg
            .revenue
            .fees
            .iter()
            .map(|(m, f)| (m.clone(), (f.percent.0, f.fixed.0)))
            .collect();
        Ok(Reference {
            stations,
            tokens,
            default_station,
            maintenance: cfg.maintenance.clone(),
            exclusions: cfg.uptime.exclusions.clone(),
            ad_hoc: Arc::from("ad_hoc"),
            plans,
            fees,
        })
    }

    pub fn station(&self, charge_point_id: &str) -> StationRef {
        self.stations
            .get(charge_point_id)
            .cloned()
            .unwrap_or_else(|| self.default_station.clone())
    }

    /// Billing facts of a token; unknown tokens pay ad hoc, on an account of their own.
    pub fn token(&self, id_tag: &str) -> TokenRef {
        self.tokens
            .get(id_tag)
            .cloned()
            .unwrap_or_else(|| TokenRef {
                payment_method: self.ad_hoc.clone(),
                account: Arc::from(id_tag),
                plan: None,
            })
    }

    pub fn plan(&self, id: &str) -> Option<&Arc<PlanRef>> {
        self.plans.get(id)
    }

    /// A payment method's fee: (percent, fixed); none configured: no fee.
    pub fn fee(&self, payment_method: &str) -> (rust_decimal::Decimal, rust_decimal::Decimal) {
        self.fees.get(payment_method).copied().unwrap_or_default()
    }

    /// Operator-declared uptime exclusions that apply to a charger.
    pub fn exclusions_for(&self, charge_point_id: &str, site_id: &str) -> Vec<UptimeExclusion> {
        self.exclusions
            .iter()
            .filter(|m| applies(&m.charge_point_id, &m.site_id, charge_point_id, site_id))
            .cloned()
            .collect()
    }

    /// Maintenance windows that apply to a charger.
    pub fn maintenance_for(&self, charge_point_id: &str, site_id: &str) -> Vec<MaintenanceWindow> {
        self.maintenance
            .iter()
            .filter(|m| applies(&m.charge_point_id, &m.site_id, charge_point_id, site_id))
            .cloned()
            .collect()
    }
}

/// Whether a window for a charger (if named) or else a whole site applies to this charger.
fn applies(window_cp: &Option<String>, window_site: &Option<String>, cp: &str, site: &str) -> bool {
    window_cp.as_deref() == Some(cp)
        || (window_cp.is_none() && window_site.as_deref() == Some(site))
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
