//! Dataflow configuration: the TOML files under `dataflows/`, and the station/token registry.
//!
//! Owns: parsing and validating configuration into typed values with defaults. Every other
//! module receives these structs; none reads files or environment variables itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::model::Millis;
use crate::ocpp::{ChargePointVersions, OcppVersion};
use crate::time::{parse_duration, parse_rfc3339};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A duration written as `"30s"`, `"15m"`, `"1h"`, `"2d"` in TOML.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Duration(pub Millis);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(i64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => parse_duration(&s)
                .map(Duration)
                .map_err(serde::de::Error::custom),
            Raw::Seconds(n) => Ok(Duration(n * 1000)),
        }
    }
}

/// An instant written as an RFC 3339 string in TOML.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Instant(pub Millis);

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339(&s)
            .map(Instant)
            .map_err(serde::de::Error::custom)
    }
}

/// An exact decimal written as a string (`"0.39"`) or a number in TOML. Numbers are read
/// through their decimal text, never through f64 arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Dec(pub Decimal);

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            Float(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Int(n) => n.to_string(),
            // TOML floats keep their shortest round-trip text, which is what the user typed.
            Raw::Float(f) => f.to_string(),
        };
        Decimal::from_str(text.trim())
            .map(Dec)
            .map_err(|e| serde::de::Error::custom(format!("bad decimal {text:?}: {e}")))
    }
}

/// A whole dataflow definition (one TOML file under `dataflows/`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataflowConfig {
    pub name: Option<String>,
    /// Strict mode: CALL payloads that violate their action's official OCPP JSON schema are
    /// dead-lettered (`schema_violation`) instead of decoded. A top-level key (before any
    /// `[section]`); `evflow run --strict` sets it.
    #[serde(default)]
    pub strict: bool,
    pub source: SourceConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub registry: RegistryConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub anomalies: AnomalyConfig,
    #[serde(default)]
    pub notifications: NotificationConfig,
    #[serde(default)]
    pub revenue: RevenueConfig,
    #[serde(default)]
    pub tariffs: Vec<TariffConfig>,
    #[serde(default)]
    pub maintenance: Vec<MaintenanceWindow>,
    #[serde(default)]
    pub uptime: UptimeConfig,
    /// Kafka client settings shared by the Kafka source and sinks.
    #[serde(default)]
    pub kafka: KafkaConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// OCPP-J envelope lines from a file (`-` for stdin).
    File { path: PathBuf },
    /// The built-in fleet simulator.
    Simulator(SimulatorConfig),
    /// A Kafka topic (`sources::kafka`); `--input kafka://HOST:PORT/TOPIC?group=G` too.
    Kafka(KafkaSourceConfig),
}

/// `[source] kind = "kafka"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`: `HOST:PORT[,HOST:PORT…]`.
    pub brokers: String,
    pub topic: String,
    /// The consumer group whose committed offsets the run starts from and commits to.
    pub group: String,
    /// End each partition at its end (librdkafka's partition-EOF) and the run when all have
    /// ended: a bounded, deterministic run. Otherwise the source is live.
    #[serde(default)]
    pub stop_at_end: bool,
    /// librdkafka properties for this consumer (the URL's other query parameters), applied
    /// over `[kafka.properties]`.
    #[serde(default)]
    pub properties: KafkaProperties,
}

/// `[kafka]`: what the Kafka source and sinks share.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Live mode: a partition with no record for this long stops holding the watermark back.
    #[serde(default = "defaults::kafka_idle_timeout")]
    pub idle_timeout: Duration,
    /// Live mode: a partly filled chunk is passed on after this long.
    #[serde(default = "defaults::kafka_linger")]
    pub linger: Duration,
    /// A commit (snapshot + manifest, `docs/commit-protocol.md`) every this many chunks of
    /// every partition: at most `commit_every_chunks × chunk_lines` records per partition are
    /// read again after a crash (live, a chunk is cut at least every `linger`).
    #[serde(default = "defaults::commit_every_chunks")]
    pub commit_every_chunks: u64,
    /// librdkafka properties passed verbatim to every Kafka client (TLS, SASL, timeouts…).
    #[serde(default)]
    pub properties: KafkaProperties,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults are valid")
    }
}

/// librdkafka properties (`name = value`); TOML strings, numbers and booleans are accepted
/// and passed as their text.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for KafkaProperties {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            Float(f64),
            Bool(bool),
        }
        let raw = BTreeMap::<String, Raw>::deserialize(d)?;
        Ok(KafkaProperties(
            raw.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Raw::Text(s) => s,
                        Raw::Int(n) => n.to_string(),
                        Raw::Float(f) => f.to_string(),
                        Raw::Bool(b) => b.to_string(),
                    };
                    (k, v)
                })
                .collect(),
        ))
    }
}

/// `[output.kafka]`: records also go to Kafka topics (keyed by charge point id, the JSONL
/// lines as values). A topic left out is not produced.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaOutputConfig {
    pub brokers: String,
    #[serde(default)]
    pub anomalies_topic: Option<String>,
    #[serde(default)]
    pub notifications_topic: Option<String>,
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// How long a flush (at a checkpoint and at the end) waits for deliveries.
    #[serde(default = "defaults::kafka_flush_timeout")]
    pub flush_timeout: Duration,
    /// librdkafka properties for the producer, over `[kafka.properties]`.
    #[serde(default)]
    pub properties: KafkaProperties,
}

/// The fleet simulator's parameters. Everything is deterministic given `seed`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    #[serde(default = "defaults::chargers")]
    pub chargers: u32,
    #[serde(default = "defaults::hours")]
    pub hours: u32,
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Simulated start (UTC midnight recommended).
    #[serde(default = "defaults::sim_start")]
    pub start: Instant,
    /// Simulated seconds per wall-clock second; absent means as fast as possible.
    #[serde(default)]
    pub speed: Option<f64>,
    /// Chargers per site (on average).
    #[serde(default = "defaults::chargers_per_site")]
    pub chargers_per_site: u32,
    /// Inject faults (with ground-truth labels).
    #[serde(default = "defaults::yes")]
    pub faults: bool,
    /// Faults per kind per 100 chargers per simulated day (at least one of each kind when
    /// `faults` is on).
    #[serde(default = "defaults::fault_rate")]
    pub fault_rate: f64,
    /// Where to write the ground-truth labels (JSONL); default `<output.dir>/labels.jsonl`.
    #[serde(default)]
    pub labels: Option<PathBuf>,
    /// Heartbeat interval the simulated chargers use.
    #[serde(default = "defaults::sim_heartbeat")]
    pub heartbeat_interval: Duration,
    /// Meter sample interval during sessions.
    #[serde(default = "defaults::sim_meter")]
    pub meter_interval: Duration,
    /// Run until stopped (Ctrl-C, SIGTERM): after `hours`, the same fleet goes on with the
    /// next `hours`, newly planned, forever. Labels are written for the first range only.
    #[serde(default)]
    pub until_stopped: bool,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            chargers: defaults::chargers(),
            hours: defaults::hours(),
            seed: defaults::seed(),
            start: defaults::sim_start(),
            speed: None,
            chargers_per_site: defaults::chargers_per_site(),
            faults: true,
            fault_rate: defaults::fault_rate(),
            labels: None,
            heartbeat_interval: defaults::sim_heartbeat(),
            meter_interval: defaults::sim_meter(),
            until_stopped: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default = "defaults::workers")]
    pub workers: usize,
    /// How far behind the newest event time an event may arrive and still be processed in
    /// event-time order (the watermark trails the newest event time by this much).
    #[serde(default = "defaults::out_of_orderness")]
    pub out_of_orderness: Duration,
    /// A charger timestamp more than this ahead of the backend's receive time is not trusted:
    /// the receive time is used as event time instead (and the event counted).
    #[serde(default = "defaults::max_clock_skew")]
    pub max_clock_skew: Duration,
    /// … and likewise one more than this behind it. Within it, a late delivery (a charger
    /// that queued messages while offline) keeps the charger's own timestamp.
    #[serde(default = "defaults::max_delivery_delay")]
    pub max_delivery_delay: Duration,
    /// Lines per source chunk (the unit of decoding and of progress).
    #[serde(default = "defaults::chunk_lines")]
    pub chunk_lines: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: defaults::workers(),
            out_of_orderness: defaults::out_of_orderness(),
            max_clock_skew: defaults::max_clock_skew(),
            max_delivery_delay: defaults::max_delivery_delay(),
            chunk_lines: defaults::chunk_lines(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    #[serde(default = "defaults::out_dir")]
    pub dir: PathBuf,
    /// Also produce anomalies, notifications and dead letters to Kafka.
    #[serde(default)]
    pub kafka: Option<KafkaOutputConfig>,
    /// Also write every session as an OCPI 2.2.1 CDR to `cdrs.jsonl`.
    #[serde(default)]
    pub ocpi_cdrs: bool,
    /// The CPO's OCPI `country_code` and `party_id` in those CDRs.
    #[serde(default = "defaults::cdr_country_code")]
    pub cdr_country_code: String,
    #[serde(default = "defaults::cdr_party_id")]
    pub cdr_party_id: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: defaults::out_dir(),
            kafka: None,
            ocpi_cdrs: false,
            cdr_country_code: defaults::cdr_country_code(),
            cdr_party_id: defaults::cdr_party_id(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `HOST:PORT`; empty disables the endpoint.
    #[serde(default = "defaults::metrics_addr")]
    pub addr: String,
    /// Per-charger series: `off` (the default: per-site series only), or `worst`: the health
    /// score of the `per_charger_limit` worst chargers.
    #[serde(default)]
    pub per_charger: PerCharger,
    /// How many chargers `per_charger = "worst"` exports (bounds the series count).
    #[serde(default = "defaults::per_charger_limit")]
    pub per_charger_limit: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            addr: defaults::metrics_addr(),
            per_charger: PerCharger::Off,
            per_charger_limit: defaults::per_charger_limit(),
        }
    }
}

/// `[metrics] per_charger`: which chargers get series of their own.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PerCharger {
    /// None: every series is per site or fleet-wide.
    #[default]
    Off,
    /// The `per_charger_limit` chargers with the lowest health score.
    Worst,
}

/// Reference data: which site and tariff each charger has, which payment method each token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// A registry JSON file (see `schemas/registry.schema.json`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default = "defaults::default_site")]
    pub default_site: String,
    #[serde(default = "defaults::default_tariff")]
    pub default_tariff: String,
    /// Time zone of sites that name none.
    #[serde(default = "defaults::default_time_zone")]
    pub default_time_zone: String,
}

// Not derived: a dataflow without `[registry]` gets the same defaults as an empty one.
impl Default for RegistryConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults are valid")
    }
}

/// The station and token registry (`schemas/registry.schema.json`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<Site>,
    #[serde(default)]
    pub stations: Vec<Station>,
    #[serde(default)]
    pub tokens: Vec<Token>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plans: Vec<Plan>,
}

/// A site: its tariff (for stations that name none) and its time zone (for OCPI tariff
/// restrictions by time of day, day of week and date).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub site_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tariff_id: Option<String>,
    /// IANA time zone, e.g. `Europe/Amsterdam`; absent: `registry.default_time_zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Nominal phase voltage of the site's supply, V (e.g. 230, 120, 277).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominal_voltage_v: Option<f64>,
}

/// A subscription plan: a monthly fee, energy included per account and calendar month,
/// and optionally its own (discounted) tariff.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub id: String,
    pub currency: String,
    #[serde(default = "defaults::zero")]
    pub monthly_fee: Dec,
    /// kWh per account and month priced at zero energy cost.
    #[serde(default = "defaults::zero")]
    pub included_kwh: Dec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tariff_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Station {
    pub charge_point_id: String,
    pub site_id: String,
    #[serde(default)]
    pub tariff_id: Option<String>,
    /// Rated power, W (used to judge meter jumps).
    #[serde(default)]
    pub max_power_w: Option<f64>,
    #[serde(default)]
    pub connectors: Option<u32>,
    /// Tariffs of single connectors (connector id → tariff id), over the station's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connector_tariffs: BTreeMap<u32, String>,
    /// The OCPP version the charge point speaks (`"1.6"`, `"2.0.1"`, `"ocpp1.6"`,
    /// `"ocpp2.0.1"`); absent: detected per frame (docs/ocpp.md). An envelope's own
    /// `ocpp_version` wins over this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocpp_version: Option<String>,
    /// Nominal phase voltage of the supply, V (`power_supply` bands); absent: the site's,
    /// else `anomalies.nominal_voltage_v`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominal_voltage_v: Option<f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub id_tag: String,
    /// `card`, `mobile`, `subscription` or `ad_hoc`.
    pub payment_method: String,
    /// The billing account (several tokens may share one); absent: the id tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// A subscription plan's id (`plans`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// Reads OCPI Tariff objects from a JSON file (one object or an array) or from every
/// `*.json` file of a directory (in name order). Every tariff needs an `id`.
pub fn load_ocpi_tariffs(path: &Path) -> Result<Vec<crate::tariff::ocpi::Tariff>, ConfigError> {
    use crate::tariff::ocpi::Tariff;
    let read = |p: &Path| -> Result<Vec<Tariff>, ConfigError> {
        let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: p.to_path_buf(),
            source,
        })?;
        let parse = |message: String| ConfigError::Parse {
            path: p.to_path_buf(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
        let tariffs: Vec<Tariff> = if value.is_array() {
            serde_json::from_value(value)
        } else {
            serde_json::from_value(value).map(|t| vec![t])
        }
        .map_err(|e| parse(format!("not an OCPI 2.2.1 Tariff: {e}")))?;
        if let Some(t) = tariffs.iter().find(|t| t.id.is_empty()) {
            return Err(parse(format!("a tariff in {} has no id", t.currency)));
        }
        Ok(tariffs)
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut out = Vec::new();
        for f in files {
            out.extend(read(&f)?);
        }
        Ok(out)
    } else {
        read(path)
    }
}

impl Registry {
    pub fn load(path: &Path) -> Result<Registry, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let registry: Registry = serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        registry.validate().map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(registry)
    }

    /// The payment methods evflow knows.
    pub const PAYMENT_METHODS: [&'static str; 4] = ["card", "mobile", "subscription", "ad_hoc"];

    pub fn validate(&self) -> Result<(), String> {
        for t in &self.tokens {
            if !Self::PAYMENT_METHODS.contains(&t.payment_method.as_str()) {
                return Err(format!(
                    "token {:?}: payment_method {:?} is not one of {:?}",
                    t.id_tag,
                    t.payment_method,
                    Self::PAYMENT_METHODS
                ));
            }
        }
        for s in &self.stations {
            if s.max_power_w.is_some_and(|p| p <= 0.0 || !p.is_finite()) {
                return Err(format!(
                    "station {:?}: max_power_w must be positive",
                    s.charge_point_id
                ));
            }
            if let Some(v) = s.ocpp_version.as_deref() {
                if OcppVersion::parse(v).is_none() {
                    return Err(format!(
                        "station {:?}: ocpp_version {v:?} is not one of {:?}",
                        s.charge_point_id,
                        OcppVersion::NAMES
                    ));
                }
            }
        }
        Ok(())
    }

    /// The OCPP version of every station that names one, for the decoder.
    pub fn ocpp_versions(&self) -> ChargePointVersions {
        self.stations
            .iter()
            .filter_map(|s| {
                let v = OcppVersion::parse(s.ocpp_version.as_deref()?)?;
                Some((s.charge_point_id.as_str().into(), v))
            })
            .collect()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Snapshot interval (event time) of `health/`.
    #[serde(default = "defaults::health_window")]
    pub window: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            window: defaults::health_window(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Heartbeat interval assumed until a BootNotification's CALLRESULT says otherwise.
    #[serde(default = "defaults::heartbeat_interval")]
    pub heartbeat_interval: Duration,
    /// `communication_lost` opens after this many heartbeat intervals of silence.
    #[serde(default = "defaults::missed_heartbeats")]
    pub missed_heartbeats: f64,
    #[serde(default = "defaults::nominal_voltage")]
    pub nominal_voltage_v: f64,
    /// Allowed deviation from nominal, percent.
    #[serde(default = "defaults::voltage_band_pct")]
    pub voltage_band_pct: f64,
    #[serde(default = "defaults::max_temperature")]
    pub max_temperature_c: f64,
    /// Consecutive out-of-band samples that open (and in-band samples that resolve) a
    /// `power_supply` or `over_temperature` anomaly.
    #[serde(default = "defaults::confirm_samples")]
    pub confirm_samples: u32,
    /// `stuck_session`: charging status, open transaction, no power for this long.
    #[serde(default = "defaults::stuck_after")]
    pub stuck_after: Duration,
    /// Power below this counts as "no power", W.
    #[serde(default = "defaults::idle_power")]
    pub idle_power_w: f64,
    /// Rated power assumed for chargers without one in the registry, W.
    #[serde(default = "defaults::default_max_power")]
    pub default_max_power_w: f64,
    /// Grid frequency and its allowed deviation, percent (EN 50160: 50 Hz ± 1 %).
    #[serde(default = "defaults::nominal_frequency")]
    pub nominal_frequency_hz: f64,
    #[serde(default = "defaults::frequency_band_pct")]
    pub frequency_band_pct: f64,
    /// `clock_skew`: the charger's clock is off by more than this (estimated from the
    /// freshest of its recent timestamps against receive time).
    #[serde(default = "defaults::clock_skew_threshold")]
    pub clock_skew_threshold: Duration,
    /// `message_errors`: at least `message_errors_min` CALLERRORs or rejected frames within
    /// `message_errors_window`.
    #[serde(default = "defaults::message_errors_window")]
    pub message_errors_window: Duration,
    #[serde(default = "defaults::message_errors_min")]
    pub message_errors_min: u32,
    /// `session_failures`: this many consecutive sessions on a connector that delivered
    /// less than `failed_session_wh` or stopped for an error reason, all starting within
    /// `failed_sessions_within` of the first.
    #[serde(default = "defaults::failed_sessions_run")]
    pub failed_sessions_run: u32,
    #[serde(default = "defaults::failed_session_wh")]
    pub failed_session_wh: i64,
    #[serde(default = "defaults::failed_sessions_within")]
    pub failed_sessions_within: Duration,
    /// Fleet-wide detectors (`stages::fleet`): `power_delivery_degraded` and `underused`.
    #[serde(default)]
    pub fleet: FleetDetectorConfig,
}

/// `[anomalies.fleet]`: the detectors that learn from the whole fleet (docs/detectors.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetDetectorConfig {
    /// Charging samples (power above `idle_power_w`) a session's delivery is judged on.
    #[serde(default = "defaults::delivery_samples")]
    pub delivery_samples: u32,
    /// A session is weak when its best power is below both this fraction of its model's
    /// median and the model's `weak_quantile`.
    #[serde(default = "defaults::weak_fraction")]
    pub weak_fraction: f64,
    #[serde(default = "defaults::weak_quantile")]
    pub weak_quantile: f64,
    /// Consecutive weak sessions on a connector that open `power_delivery_degraded`.
    #[serde(default = "defaults::degraded_sessions")]
    pub degraded_sessions: u32,
    /// Sessions of a model the fleet must have seen before it judges that model's sessions
    /// (warm-up).
    #[serde(default = "defaults::min_model_sessions")]
    pub min_model_sessions: f64,
    /// `underused`: open when a usable, idle connector's expected session count since its
    /// last session reaches this (−ln of the predictive probability of no session, nats: 7.5 → 0.06 %) …
    #[serde(default = "defaults::underused_min_expected")]
    pub underused_min_expected: f64,
    /// … and its site peers started at least this many sessions meanwhile.
    #[serde(default = "defaults::underused_min_peer_sessions")]
    pub underused_min_peer_sessions: u32,
    /// Prior demand: sessions per connector per day, and its shape over the 24 local hours
    /// (relative weights, normalised; the same every day of the week until learned).
    #[serde(default = "defaults::prior_sessions_per_day")]
    pub prior_sessions_per_day: f64,
    #[serde(default = "defaults::prior_hourly_profile")]
    pub prior_hourly_profile: Vec<f64>,
    /// Learned counts decay with this half-life, so baselines follow the fleet.
    #[serde(default = "defaults::baseline_half_life")]
    pub baseline_half_life: Duration,
}

impl Default for FleetDetectorConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults are valid")
    }
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults are valid")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationConfig {
    /// `charging_almost_complete` when the SoC reaches this, percent.
    #[serde(default = "defaults::almost_complete_soc")]
    pub almost_complete_soc_pct: f64,
    /// … or, for chargers without SoC, when the estimated time to full falls below this.
    #[serde(default = "defaults::almost_complete_eta")]
    pub almost_complete_eta: Duration,
    /// How long before a maintenance window `maintenance_upcoming` goes out.
    #[serde(default = "defaults::maintenance_lead")]
    pub maintenance_lead: Duration,
    /// At most one `station_available` per connector within this interval (flapping guard).
    #[serde(default = "defaults::available_min_interval")]
    pub available_min_interval: Duration,
    /// How far back "recent users" of a charger go (for `maintenance_upcoming`).
    #[serde(default = "defaults::recent_users")]
    pub recent_users_within: Duration,
    /// Driver watches (`schemas/watch-event.schema.json`): a JSONL file, or a Kafka topic
    /// `kafka://host:port/topic` (read live, or to its end first with `?stop=end`).
    #[serde(default)]
    pub watches: Option<PathBuf>,
    /// Also send `station_available` to the public availability feed (recipient `public`).
    #[serde(default)]
    pub public_feed: bool,
    /// A driver is not told the same state (available / out of order) of the same connector
    /// again within this interval (hysteresis: a flapping station does not spam).
    #[serde(default = "defaults::repeat_min_interval")]
    pub repeat_min_interval: Duration,
    /// At most this many station and maintenance notifications per driver in any hour;
    /// beyond, they are suppressed and counted (`evflow_notifications_suppressed_total`).
    #[serde(default = "defaults::driver_max_per_hour")]
    pub driver_max_per_hour: u32,
    /// Quiet hours per audience. Only drivers have them: operator alerts are never held.
    #[serde(default)]
    pub quiet_hours: QuietHoursConfig,
    /// Where notifications go besides `notifications.jsonl`: JSONL files, Kafka topics,
    /// webhooks, Alertmanager, chosen per kind and audience.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// At the end of a bounded run, how long to wait for webhooks and Alertmanager to
    /// acknowledge what was sent; what is still pending stays in the outbox for the next run.
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: Duration,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursConfig {
    pub driver: Option<QuietHours>,
    /// Rejected by validation: operator alerts are never held.
    pub operator: Option<toml::Value>,
}

/// A daily quiet period in the site's local time (`registry` site time zone): driver
/// notifications of `kinds` that fall in it are held until it ends.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, local time.
    pub start: String,
    /// `HH:MM`, local time; before `start` means the period crosses midnight.
    pub end: String,
    /// The kinds held. Default: the station-related kinds; `charging_almost_complete` is
    /// about the driver's own session in progress and goes out at once unless listed.
    #[serde(default = "defaults::quiet_kinds")]
    pub kinds: Vec<crate::model::NotificationKind>,
}

impl QuietHours {
    /// (start, end) in minutes after local midnight.
    pub fn minutes(&self) -> Result<(u32, u32), String> {
        fn hm(s: &str) -> Result<u32, String> {
            let (h, m) = s
                .split_once(':')
                .ok_or_else(|| format!("{s:?} is not HH:MM"))?;
            let (h, m): (u32, u32) = (
                h.parse().map_err(|_| format!("{s:?} is not HH:MM"))?,
                m.parse().map_err(|_| format!("{s:?} is not HH:MM"))?,
            );
            if h > 23 || m > 59 {
                return Err(format!("{s:?} is not a time of day"));
            }
            Ok(h * 60 + m)
        }
        Ok((hm(&self.start)?, hm(&self.end)?))
    }
}

/// One delivery route: which notifications (kinds, audience) go to which sink. Exactly one
/// of `jsonl`, `kafka`, `webhook`, `alertmanager`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Names the route in metrics, logs and its files (`[a-z0-9_-]+`).
    pub name: String,
    /// The kinds routed; empty or absent: all.
    #[serde(default)]
    pub kinds: Vec<crate::model::NotificationKind>,
    /// Only this audience; absent: both.
    #[serde(default)]
    pub audience: Option<crate::model::Audience>,
    /// A JSONL file (relative paths are under `output.dir`).
    #[serde(default)]
    pub jsonl: Option<PathBuf>,
    /// A Kafka topic on `output.kafka`'s brokers.
    #[serde(default)]
    pub kafka: Option<String>,
    /// An HTTP webhook (`sinks::webhook::WebhookConfig`).
    #[serde(default)]
    pub webhook: Option<crate::sinks::webhook::WebhookConfig>,
    /// Alertmanager's v2 API (`sinks::alertmanager::AlertmanagerConfig`): receives the
    /// routed `station_out_of_order` notifications and, with `anomalies`, the anomalies.
    #[serde(default)]
    pub alertmanager: Option<crate::sinks::alertmanager::AlertmanagerConfig>,
    /// Alertmanager routes: also send every anomaly as an alert (default true).
    #[serde(default = "defaults::yes")]
    pub anomalies: bool,
}

impl RouteConfig {
    pub fn wants(&self, n: &crate::model::NotificationRecord) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&n.kind))
            && self.audience.is_none_or(|a| a == n.audience)
    }
}

impl NotificationConfig {
    fn validate(&self, have_kafka: bool) -> Result<(), String> {
        if self.quiet_hours.operator.is_some() {
            return Err(
                "notifications.quiet_hours.operator: operator alerts are never held".into(),
            );
        }
        if let Some(q) = &self.quiet_hours.driver {
            let (start, end) = q
                .minutes()
                .map_err(|e| format!("notifications.quiet_hours.driver: {e}"))?;
            if start == end {
                return Err("notifications.quiet_hours.driver: start equals end".into());
            }
        }
        if self.driver_max_per_hour == 0 {
            return Err("notifications.driver_max_per_hour must be ≥ 1".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for r in &self.routes {
            let ok_name = !r.name.is_empty()
                && r.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !ok_name {
                return Err(format!(
                    "notifications.routes: name {:?} must be [a-z0-9_-]+",
                    r.name
                ));
            }
            if !names.insert(r.name.as_str()) {
                return Err(format!("notifications.routes: {:?} twice", r.name));
            }
            let sinks = [
                r.jsonl.is_some(),
                r.kafka.is_some(),
                r.webhook.is_some(),
                r.alertmanager.is_some(),
            ];
            if sinks.iter().filter(|s| **s).count() != 1 {
                return Err(format!(
                    "notifications.routes {:?}: set exactly one of jsonl, kafka, webhook, alertmanager",
                    r.name
                ));
            }
            if r.kafka.is_some() && !have_kafka {
                return Err(format!(
                    "notifications.routes {:?}: a kafka route needs [output.kafka] (its brokers)",
                    r.name
                ));
            }
        }
        Ok(())
    }
}

impl Default for NotificationConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults are valid")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevenueConfig {
    /// Tumbling window width (event time, aligned to UTC midnight).
    #[serde(default = "defaults::revenue_window")]
    pub window: Duration,
    /// OCPI 2.2.1 Tariff objects: a JSON file (one object or an array of them) or a
    /// directory of such files. They join the `[[tariffs]]` (same id: the OCPI one wins).
    #[serde(default)]
    pub ocpi_tariffs: Option<PathBuf>,
    /// Payment fees by payment method (`card`, `mobile`, `subscription`, `ad_hoc`).
    #[serde(default)]
    pub fees: BTreeMap<String, FeeConfig>,
    /// Payment events (JSONL, `schemas/payment-event.schema.json`) for revenue leakage.
    #[serde(default)]
    pub payments: Option<PathBuf>,
    #[serde(default)]
    pub leakage: LeakageSettings,
}

impl Default for RevenueConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults are valid")
    }
}

/// A payment method's fee: `percent` of the amount incl. VAT plus `fixed` per session.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeConfig {
    #[serde(default = "defaults::zero")]
    pub percent: Dec,
    #[serde(default = "defaults::zero")]
    pub fixed: Dec,
}

/// `[revenue.leakage]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakageSettings {
    /// A session's payment must be captured within this long after its end.
    #[serde(default = "defaults::leakage_grace")]
    pub grace: Duration,
    /// Captured amounts within this of the priced amount match.
    #[serde(default = "defaults::leakage_amount_tolerance")]
    pub amount_tolerance: Dec,
    /// Registers and meter values agree within the larger of these.
    #[serde(default = "defaults::leakage_meter_wh")]
    pub meter_tolerance_wh: i64,
    #[serde(default = "defaults::leakage_meter_pct")]
    pub meter_tolerance_pct: Dec,
}

impl Default for LeakageSettings {
    fn default() -> Self {
        toml::from_str("").expect("defaults are valid")
    }
}

/// The foundation's simple tariff: per kWh plus a session fee, VAT on top.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TariffConfig {
    pub id: String,
    pub currency: String,
    pub energy_per_kwh: Dec,
    #[serde(default = "defaults::zero")]
    pub session_fee: Dec,
    /// VAT rate in percent.
    #[serde(default = "defaults::zero")]
    pub vat_pct: Dec,
}

/// `[uptime]`: per-port uptime (NEVI, 23 CFR 680.116; `stages::uptime`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UptimeConfig {
    /// Outages outside the operator's control that evflow cannot see in the traffic
    /// (vandalism, natural disasters, hours a station is closed): the time they cover is
    /// excluded from a port's outage minutes. Scheduled maintenance comes from
    /// `[[maintenance]]`; grid power and vehicle faults from the traffic.
    #[serde(default)]
    pub exclusions: Vec<UptimeExclusion>,
}

/// One operator-declared exclusion for a charger or a whole site.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UptimeExclusion {
    #[serde(default)]
    pub charge_point_id: Option<String>,
    #[serde(default)]
    pub site_id: Option<String>,
    pub start: Instant,
    pub end: Instant,
    /// Written into the outage records, e.g. `vandalism`, `natural_disaster`,
    /// `station_closed`.
    pub reason: String,
}

/// A scheduled maintenance window for a charger or a whole site.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    #[serde(default)]
    pub charge_point_id: Option<String>,
    #[serde(default)]
    pub site_id: Option<String>,
    pub start: Instant,
    pub end: Instant,
    #[serde(default)]
    pub reason: Option<String>,
}

impl DataflowConfig {
    pub fn load(path: &Path) -> Result<DataflowConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg: DataflowConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // Relative paths in a dataflow are relative to the directory the user runs from, like
        // every other path on the command line; nothing to rewrite.
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&mut self) -> Result<(), ConfigError> {
        if self.pipeline.workers == 0 {
            return Err(ConfigError::Invalid("pipeline.workers must be ≥ 1".into()));
        }
        if self.pipeline.chunk_lines == 0 {
            return Err(ConfigError::Invalid(
                "pipeline.chunk_lines must be ≥ 1".into(),
            ));
        }
        if self.kafka.commit_every_chunks == 0 {
            return Err(ConfigError::Invalid(
                "kafka.commit_every_chunks must be ≥ 1".into(),
            ));
        }
        for (name, d) in [
            ("health.window", self.health.window),
            ("revenue.window", self.revenue.window),
        ] {
            if d.0 <= 0 || 86_400_000 % d.0 != 0 {
                return Err(ConfigError::Invalid(format!(
                    "{name} must divide a day evenly (e.g. 15m, 1h, 1d)"
                )));
            }
        }
        let mut seen = BTreeMap::new();
        for t in &self.tariffs {
            if seen.insert(t.id.clone(), ()).is_some() {
                return Err(ConfigError::Invalid(format!(
                    "tariff {:?} defined twice",
                    t.id
                )));
            }
        }
        if !self.tariffs.is_empty() && !seen.contains_key(&self.registry.default_tariff) {
            return Err(ConfigError::Invalid(format!(
                "registry.default_tariff {:?} is not among the tariffs",
                self.registry.default_tariff
            )));
        }
        if let SourceConfig::Kafka(k) = &self.source {
            for (name, v) in [
                ("brokers", &k.brokers),
                ("topic", &k.topic),
                ("group", &k.group),
            ] {
                if v.trim().is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "source.{name} must not be empty"
                    )));
                }
            }
        }
        if self.kafka.idle_timeout.0 <= 0 || self.kafka.linger.0 <= 0 {
            return Err(ConfigError::Invalid(
                "kafka.idle_timeout and kafka.linger must be positive".into(),
            ));
        }
        if let Some(k) = &self.output.kafka {
            if k.brokers.trim().is_empty() {
                return Err(ConfigError::Invalid(
                    "output.kafka.brokers must not be empty".into(),
                ));
            }
        }
        let windows = self
            .maintenance
            .iter()
            .map(|m| {
                (
                    "a maintenance window",
                    &m.charge_point_id,
                    &m.site_id,
                    m.start,
                    m.end,
                )
            })
            .chain(self.uptime.exclusions.iter().map(|e| {
                (
                    "an uptime exclusion",
                    &e.charge_point_id,
                    &e.site_id,
                    e.start,
                    e.end,
                )
            }));
        self.notifications
            .validate(self.output.kafka.is_some())
            .map_err(ConfigError::Invalid)?;
        for (what, cp, site, start, end) in windows {
            if end.0 <= start.0 {
                return Err(ConfigError::Invalid(format!(
                    "{what} ends before it starts"
                )));
            }
            if cp.is_none() && site.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "{what} needs charge_point_id or site_id"
                )));
            }
        }
        Ok(())
    }
}

mod defaults {
    use super::*;

    pub fn chargers() -> u32 {
        300
    }
    pub fn hours() -> u32 {
        24
    }
    pub fn seed() -> u64 {
        42
    }
    pub fn sim_start() -> Instant {
        Instant(1_767_571_200_000) // 2026-01-05T00:00:00Z, a Monday
    }
    pub fn chargers_per_site() -> u32 {
        6
    }
    pub fn yes() -> bool {
        true
    }
    pub fn fault_rate() -> f64 {
        2.0
    }
    pub fn sim_heartbeat() -> Duration {
        Duration(300_000)
    }
    pub fn sim_meter() -> Duration {
        Duration(60_000)
    }
    pub fn workers() -> usize {
        1
    }
    pub fn out_of_orderness() -> Duration {
        Duration(10_000)
    }
    pub fn max_clock_skew() -> Duration {
        Duration(5 * 60_000)
    }
    pub fn max_delivery_delay() -> Duration {
        Duration(7 * 86_400_000)
    }
    pub fn chunk_lines() -> usize {
        4096
    }
    pub fn out_dir() -> PathBuf {
        PathBuf::from("out")
    }
    pub fn metrics_addr() -> String {
        "127.0.0.1:9464".into()
    }
    pub fn per_charger_limit() -> usize {
        50
    }
    pub fn default_site() -> String {
        "unassigned".into()
    }
    pub fn default_tariff() -> String {
        "default".into()
    }
    pub fn cdr_country_code() -> String {
        "XX".into()
    }
    pub fn cdr_party_id() -> String {
        "EVF".into()
    }
    pub fn default_time_zone() -> String {
        "UTC".into()
    }
    pub fn health_window() -> Duration {
        Duration(15 * 60_000)
    }
    pub fn heartbeat_interval() -> Duration {
        Duration(300_000)
    }
    pub fn missed_heartbeats() -> f64 {
        2.0
    }
    pub fn nominal_voltage() -> f64 {
        230.0
    }
    pub fn voltage_band_pct() -> f64 {
        10.0
    }
    pub fn max_temperature() -> f64 {
        70.0
    }
    pub fn confirm_samples() -> u32 {
        2
    }
    pub fn stuck_after() -> Duration {
        Duration(20 * 60_000)
    }
    pub fn idle_power() -> f64 {
        100.0
    }
    pub fn default_max_power() -> f64 {
        350_000.0
    }
    pub fn nominal_frequency() -> f64 {
        50.0
    }
    pub fn frequency_band_pct() -> f64 {
        1.0
    }
    pub fn clock_skew_threshold() -> Duration {
        Duration(120_000)
    }
    pub fn message_errors_window() -> Duration {
        Duration(10 * 60_000)
    }
    pub fn message_errors_min() -> u32 {
        5
    }
    pub fn failed_sessions_run() -> u32 {
        3
    }
    pub fn failed_session_wh() -> i64 {
        100
    }
    pub fn failed_sessions_within() -> Duration {
        Duration(3 * 3_600_000)
    }
    pub fn delivery_samples() -> u32 {
        3
    }
    pub fn weak_fraction() -> f64 {
        0.5
    }
    pub fn weak_quantile() -> f64 {
        0.02
    }
    pub fn degraded_sessions() -> u32 {
        3
    }
    pub fn min_model_sessions() -> f64 {
        20.0
    }
    pub fn underused_min_expected() -> f64 {
        7.5
    }
    pub fn underused_min_peer_sessions() -> u32 {
        2
    }
    pub fn prior_sessions_per_day() -> f64 {
        4.0
    }
    /// Quiet nights, morning and evening peaks (a typical public charging day).
    pub fn prior_hourly_profile() -> Vec<f64> {
        vec![
            0.15, 0.1, 0.1, 0.1, 0.15, 0.3, 0.7, 1.3, 1.6, 1.5, 1.2, 1.1, 1.2, 1.2, 1.1, 1.2, 1.4,
            1.7, 1.7, 1.4, 1.0, 0.7, 0.4, 0.25,
        ]
    }
    pub fn baseline_half_life() -> Duration {
        Duration(7 * 86_400_000)
    }
    pub fn almost_complete_soc() -> f64 {
        80.0
    }
    pub fn almost_complete_eta() -> Duration {
        Duration(10 * 60_000)
    }
    pub fn maintenance_lead() -> Duration {
        Duration(2 * 3_600_000)
    }
    pub fn available_min_interval() -> Duration {
        Duration(5 * 60_000)
    }
    pub fn recent_users() -> Duration {
        Duration(7 * 86_400_000)
    }
    pub fn repeat_min_interval() -> Duration {
        Duration(15 * 60_000)
    }
    pub fn drain_timeout() -> Duration {
        Duration(120_000)
    }
    pub fn driver_max_per_hour() -> u32 {
        6
    }
    pub fn quiet_kinds() -> Vec<crate::model::NotificationKind> {
        use crate::model::NotificationKind::*;
        vec![StationAvailable, StationOutOfOrder, MaintenanceUpcoming]
    }
    pub fn revenue_window() -> Duration {
        Duration(3_600_000)
    }
    pub fn kafka_idle_timeout() -> Duration {
        Duration(5_000)
    }
    pub fn kafka_linger() -> Duration {
        Duration(200)
    }
    pub fn leakage_grace() -> Duration {
        Duration(24 * 3_600_000)
    }
    pub fn leakage_amount_tolerance() -> Dec {
        Dec(Decimal::new(1, 2))
    }
    pub fn leakage_meter_wh() -> i64 {
        100
    }
    pub fn leakage_meter_pct() -> Dec {
        Dec(Decimal::new(2, 0))
    }
    pub fn commit_every_chunks() -> u64 {
        8
    }
    pub fn kafka_flush_timeout() -> Duration {
        Duration(30_000)
    }
    pub fn zero() -> Dec {
        Dec(Decimal::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_source_gets_defaults() {
        let mut cfg: DataflowConfig =
            toml::from_str("[source]\nkind = \"file\"\npath = \"x.jsonl\"\n").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.pipeline.workers, 1);
        assert_eq!(cfg.revenue.window, Duration(3_600_000));
        assert_eq!(cfg.anomalies.missed_heartbeats, 2.0);
        assert_eq!(cfg.metrics.addr, "127.0.0.1:9464");
        assert!(!cfg.strict);
        let cfg: DataflowConfig =
            toml::from_str("strict = true\n[source]\nkind = \"file\"\npath = \"x\"\n").unwrap();
        assert!(cfg.strict);
    }

    #[test]
    fn maintenance_windows_and_uptime_exclusions_are_checked_alike() {
        let check = |extra: &str| {
            let mut cfg: DataflowConfig =
                toml::from_str(&format!("[source]\nkind = \"file\"\npath = \"x\"\n{extra}"))
                    .unwrap();
            cfg.validate().err().map(|e| e.to_string())
        };
        let window = |table: &str, who: &str, start: &str, end: &str| {
            format!("[[{table}]]\n{who}start = \"{start}\"\nend = \"{end}\"\nreason = \"r\"\n")
        };
        let (a, b) = ("2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z");
        for table in ["maintenance", "uptime.exclusions"] {
            assert_eq!(check(&window(table, "site_id = \"S\"\n", a, b)), None);
            let backwards = check(&window(table, "site_id = \"S\"\n", b, a));
            assert!(backwards.is_some_and(|e| e.contains("ends before it starts")));
            let nobody = check(&window(table, "", a, b));
            assert!(nobody.is_some_and(|e| e.contains("needs charge_point_id or site_id")));
        }
    }

    #[test]
    fn decimals_are_exact_and_windows_must_divide_a_day() {
        let mut cfg: DataflowConfig = toml::from_str(
            r#"
            [source]
            kind = "file"
            path = "x"
            [revenue]
            window = "7m"
            [registry]
            default_tariff = "t"
            [[tariffs]]
            id = "t"
            currency = "EUR"
            energy_per_kwh = 0.1
            session_fee = "0.30"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.tariffs[0].energy_per_kwh.0.to_string(), "0.1");
        assert_eq!(cfg.tariffs[0].session_fee.0.to_string(), "0.30");
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn station_ocpp_versions_are_validated_and_mapped() {
        let r: Registry = serde_json::from_str(
            r#"{"stations": [
                {"charge_point_id": "A", "site_id": "S", "ocpp_version": "2.0.1"},
                {"charge_point_id": "B", "site_id": "S", "ocpp_version": "ocpp1.6"},
                {"charge_point_id": "C", "site_id": "S"}]}"#,
        )
        .unwrap();
        r.validate().unwrap();
        let v = r.ocpp_versions();
        assert_eq!(v.len(), 2);
        assert_eq!(v.get("A"), Some(&OcppVersion::V201));
        assert_eq!(v.get("B"), Some(&OcppVersion::V16));
        // Absent stays absent when written back (the registry schema has no null for it).
        assert!(!serde_json::to_string(&r.stations[2])
            .unwrap()
            .contains("ocpp_version"));
        let bad: Registry = serde_json::from_str(
            r#"{"stations": [{"charge_point_id": "A", "site_id": "S", "ocpp_version": "2.0"}]}"#,
        )
        .unwrap();
        assert!(bad.validate().unwrap_err().contains("ocpp_version"));
    }

    #[test]
    fn kafka_source_output_and_properties_are_read() {
        let mut cfg: DataflowConfig = toml::from_str(
            r#"
            [source]
            kind = "kafka"
            brokers = "k1:9092,k2:9092"
            topic = "ocpp"
            group = "evflow"
            stop_at_end = true
            [output.kafka]
            brokers = "k1:9092"
            anomalies_topic = "anomalies"
            [kafka]
            idle_timeout = "10s"
            [kafka.properties]
            "security.protocol" = "SASL_SSL"
            "socket.timeout.ms" = 30000
            "enable.ssl.certificate.verification" = false
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let SourceConfig::Kafka(k) = &cfg.source else {
            panic!("not kafka")
        };
        assert_eq!((k.topic.as_str(), k.group.as_str()), ("ocpp", "evflow"));
        assert!(k.stop_at_end);
        assert_eq!(cfg.kafka.idle_timeout, Duration(10_000));
        assert_eq!(cfg.kafka.linger, Duration(200));
        let p = &cfg.kafka.properties.0;
        assert_eq!(p["security.protocol"], "SASL_SSL");
        assert_eq!(p["socket.timeout.ms"], "30000");
        assert_eq!(p["enable.ssl.certificate.verification"], "false");
        let out = cfg.output.kafka.as_ref().unwrap();
        assert_eq!(out.anomalies_topic.as_deref(), Some("anomalies"));
        assert_eq!(out.notifications_topic, None);
        assert_eq!(out.flush_timeout, Duration(30_000));
        let no_group: DataflowConfig = toml::from_str(
            "[source]\nkind = \"kafka\"\nbrokers = \"b:1\"\ntopic = \"t\"\ngroup = \"\"\n",
        )
        .unwrap();
        assert!(no_group.clone().validate().is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let r: Result<DataflowConfig, _> =
            toml::from_str("[source]\nkind = \"file\"\npath = \"x\"\nspeeed = 3\n");
        assert!(r.is_err());
    }
}
