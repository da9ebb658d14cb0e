//! evflow: real-time streaming analytics for networks of EV chargers.
//!
//! OCPP-J traffic (as a charging backend sees it) flows through a timely dataflow that keeps
//! per-charger state and produces health scores, anomalies, notifications and priced sessions
//! aggregated into revenue windows. See `docs/architecture.md` for the graph.
//!
//! Module map — each module's doc says what it owns and what it may not touch:
//! - [`model`]: the normalised events and output records;
//! - [`ocpp`]: OCPP-J frames → normalised events (pure, no I/O);
//! - [`sources`]: file, stdin and the fleet simulator (input I/O);
//! - [`dataflow`]: builds and drives the timely graph; event time and watermarks;
//! - [`stages`]: sessions, health, anomalies, notifications, revenue windows (pure logic);
//! - [`tariff`]: session pricing (pure, exact decimals);
//! - [`sinks`]: Parquet and JSONL outputs (output I/O);
//! - [`metrics`]: the Prometheus registry and the `/metrics` endpoint;
//! - [`config`]: dataflow TOML and the station/token registry;
//! - [`time`]: RFC 3339 and calendar arithmetic.

pub mod config;
pub mod dataflow;
pub mod detect;
pub mod eval;
pub mod metrics;
pub mod model;
pub mod ocpp;
pub mod progress;
pub mod sinks;
pub mod sources;
pub mod stages;
pub mod tariff;
pub mod time;
