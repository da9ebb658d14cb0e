//! OCPP 1.6J and 2.0.1 side by side: one scenario — two chargers, three sessions of known
//! energy, a fault reported by StatusNotification Faulted (both versions) and one reported by
//! NotifyEvent (2.0.1; a Faulted status in 1.6), a temperature above 70 °C twice — written
//! once as 1.6J traffic and once as 2.0.1 traffic, each run through the real binary. Both runs
//! must produce the same sessions (charger, connector, times, energy to the Wh, price) and the
//! same anomalies. Every CALL payload is checked against the official schema of its version.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use evflow::model::SessionRecord;
use evflow::ocpp::schema::SchemaSet;
use evflow::ocpp::OcppVersion;
use evflow::sinks::parquet::read_sessions;
use evflow::time::{format_rfc3339, parse_rfc3339};
use serde_json::{json, Value};

const DAY: &str = "2026-03-02";

fn at(hms: &str) -> i64 {
    parse_rfc3339(&format!("{DAY}T{hms}Z")).unwrap()
}

fn iso(t: i64) -> String {
    format_rfc3339(t)
}

/// A charging session of the scenario.
struct Session {
    cp: &'static str,
    connector: u32,
    tag: &'static str,
    /// 1.6 transaction id (from the CALLRESULT); 2.0.1 uses `tx201`.
    tx16: i64,
    tx201: &'static str,
    start: i64,
    stop: i64,
    meter_start: i64,
    /// Register increase per 5-minute sample, Wh (power = 12 × this, W).
    step_wh: i64,
    /// Samples at start + 5 min, + 10 min, …
    samples: i64,
    meter_stop: i64,
    /// None: the charger sends no reason (Local).
    reason: Option<&'static str>,
    /// 2.0.1: the driver is identified after the start (TransactionEvent Updated).
    late_token: bool,
    /// 2.0.1: only the Started event names the EVSE.
    evse_once: bool,
}

fn sessions() -> Vec<Session> {
    vec![
        Session {
            cp: "CP-A",
            connector: 1,
            tag: "CARD-1",
            tx16: 101,
            tx201: "8f1d3c2a-a1",
            start: at("08:10:05"),
            stop: at("09:10:00"),
            meter_start: 100_000,
            step_wh: 900,
            samples: 11,
            meter_stop: 110_800,
            reason: Some("EVDisconnected"),
            late_token: false,
            evse_once: false,
        },
        Session {
            cp: "CP-B",
            connector: 1,
            tag: "APP-7",
            tx16: 7,
            tx201: "b-000231",
            start: at("08:30:00"),
            stop: at("09:02:30"),
            meter_start: 5_000,
            step_wh: 4_000,
            samples: 6,
            meter_stop: 30_500,
            reason: None,
            late_token: true,
            evse_once: false,
        },
        Session {
            cp: "CP-A",
            connector: 2,
            tag: "CARD-2",
            tx16: 102,
            tx201: "8f1d3c2a-a2",
            start: at("13:00:00"),
            stop: at("14:00:00"),
            meter_start: 50_000,
            step_wh: 1_000,
            samples: 11,
            meter_stop: 62_000,
            reason: Some("Remote"),
            late_token: false,
            evse_once: true,
        },
    ]
}

/// Traffic lines, (receive time, line), sorted by receive time before writing.
struct Traffic {
    version: OcppVersion,
    lines: Vec<(i64, String)>,
    next_id: u32,
}

impl Traffic {
    fn new(version: OcppVersion) -> Self {
        Traffic {
            version,
            lines: Vec::new(),
            next_id: 0,
        }
    }

    fn push(&mut self, t: i64, cp: &str, message: Value, envelope_version: Option<&str>) {
        let mut env = json!({"timestamp": iso(t + 150), "charge_point_id": cp, "message": message});
        if let Some(v) = envelope_version {
            env["ocpp_version"] = v.into();
        }
        self.lines.push((t + 150, env.to_string()));
    }

    /// A CALL (checked against the version's official schema) and, optionally, its
    /// CALLRESULT 300 ms later. Returns the message id.
    fn call(&mut self, t: i64, cp: &str, action: &str, payload: Value, result: Option<Value>) {
        self.call_as(t, cp, action, payload, result, None)
    }

    fn call_as(
        &mut self,
        t: i64,
        cp: &str,
        action: &str,
        payload: Value,
        result: Option<Value>,
        envelope_version: Option<&str>,
    ) {
        if let Err(e) =
            SchemaSet::embedded().validate_call(self.version, action, &payload.to_string())
        {
            panic!(
                "not valid OCPP {} {action}: {e}\n{payload}",
                self.version.as_str()
            );
        }
        self.next_id += 1;
        let id = format!("{cp}-{}", self.next_id);
        self.push(t, cp, json!([2, id, action, payload]), envelope_version);
        if let Some(r) = result {
            self.push(t + 300, cp, json!([3, id, r]), envelope_version);
        }
    }

    fn write(mut self, path: &Path) {
        self.lines.sort_by_key(|(t, _)| *t);
        let text: Vec<String> = self.lines.into_iter().map(|(_, l)| l).collect();
        std::fs::write(path, text.join("\n") + "\n").unwrap();
    }
}

fn status(tr: &mut Traffic, t: i64, cp: &str, connector: u32, status16: &str, status201: &str) {
    match tr.version {
        OcppVersion::V16 => tr.call(
            t,
            cp,
            "StatusNotification",
            json!({"connectorId": connector, "errorCode": "NoError", "status": status16, "timestamp": iso(t)}),
            Some(json!({})),
        ),
        OcppVersion::V201 => tr.call(
            t,
            cp,
            "StatusNotification",
            json!({"timestamp": iso(t), "connectorStatus": status201, "evseId": connector, "connectorId": 1}),
            Some(json!({})),
        ),
    }
}

/// Boot, connectors Available, a heartbeat every 5 minutes from 08:05 to 15:00.
fn charger_life(tr: &mut Traffic, cp: &str, connectors: u32) {
    let boot = at("08:00:00");
    let result = json!({"currentTime": iso(boot), "interval": 300, "status": "Accepted"});
    match tr.version {
        OcppVersion::V16 => tr.call(
            boot,
            cp,
            "BootNotification",
            json!({"chargePointVendor": "Alfen BV", "chargePointModel": "NG920-61023", "firmwareVersion": "6.1.0"}),
            Some(result),
        ),
        OcppVersion::V201 => tr.call(
            boot,
            cp,
            "BootNotification",
            json!({"reason": "PowerUp", "chargingStation": {"vendorName": "Alfen BV", "model": "NG920-61023", "firmwareVersion": "6.1.0"}}),
            Some(result),
        ),
    }
    for c in 1..=connectors {
        status(tr, boot + 1000, cp, c, "Available", "Available");
    }
    let mut t = at("08:05:00");
    while t <= at("15:00:00") {
        // Some heartbeats say their version in the envelope.
        let declared = match (tr.version, cp) {
            (OcppVersion::V16, "CP-A") => Some("1.6"),
            (OcppVersion::V201, "CP-B") => Some("ocpp2.0.1"),
            _ => None,
        };
        tr.call_as(
            t,
            cp,
            "Heartbeat",
            json!({}),
            Some(json!({"currentTime": iso(t)})),
            declared,
        );
        t += 300_000;
    }
}

fn session(tr: &mut Traffic, s: &Session) {
    let (cp, c) = (s.cp, s.connector);
    let sample_times =
        (1..=s.samples).map(|k| (s.start + k * 300_000, s.meter_start + k * s.step_wh));
    match tr.version {
        OcppVersion::V16 => {
            status(tr, s.start - 5000, cp, c, "Preparing", "");
            tr.call(
                s.start,
                cp,
                "StartTransaction",
                json!({"connectorId": c, "idTag": s.tag, "meterStart": s.meter_start, "timestamp": iso(s.start)}),
                Some(json!({"transactionId": s.tx16, "idTagInfo": {"status": "Accepted"}})),
            );
            status(tr, s.start + 10_000, cp, c, "Charging", "");
            for (t, wh) in sample_times {
                tr.call(
                    t,
                    cp,
                    "MeterValues",
                    json!({"connectorId": c, "transactionId": s.tx16, "meterValue": [{"timestamp": iso(t), "sampledValue": [
                        {"value": format!("{:.3}", wh as f64 / 1000.0), "context": "Sample.Periodic",
                            "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "kWh"},
                        {"value": format!("{:.1}", (s.step_wh * 12) as f64 / 1000.0), "context": "Sample.Periodic",
                            "measurand": "Power.Active.Import", "unit": "kW"},
                        {"value": "230.0", "context": "Sample.Periodic", "measurand": "Voltage", "phase": "L1-N", "unit": "V"}]}]}),
                    Some(json!({})),
                );
            }
            let mut stop = json!({"transactionId": s.tx16, "meterStop": s.meter_stop, "timestamp": iso(s.stop), "idTag": s.tag});
            if let Some(r) = s.reason {
                stop["reason"] = r.into();
            }
            tr.call(
                s.stop,
                cp,
                "StopTransaction",
                stop,
                Some(json!({"idTagInfo": {"status": "Accepted"}})),
            );
            status(tr, s.stop + 1000, cp, c, "Finishing", "");
            status(tr, s.stop + 60_000, cp, c, "Available", "");
        }
        OcppVersion::V201 => {
            let evse = json!({"id": c, "connectorId": 1});
            let token = json!({"idToken": s.tag, "type": "ISO14443"});
            let ok = json!({"idTokenInfo": {"status": "Accepted"}});
            status(tr, s.start - 5000, cp, c, "", "Occupied");
            let mut started = json!({"eventType": "Started", "timestamp": iso(s.start),
                "triggerReason": "CablePluggedIn", "seqNo": 0,
                "transactionInfo": {"transactionId": s.tx201, "chargingState": "EVConnected"},
                "evse": evse,
                "meterValue": [{"timestamp": iso(s.start), "sampledValue": [
                    {"value": s.meter_start, "context": "Transaction.Begin",
                        "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}]}]});
            if !s.late_token {
                started["triggerReason"] = "Authorized".into();
                started["idToken"] = token.clone();
            }
            tr.call(s.start, cp, "TransactionEvent", started, Some(ok.clone()));
            let mut charging = json!({"eventType": "Updated", "timestamp": iso(s.start + 10_000),
                "triggerReason": "ChargingStateChanged", "seqNo": 1,
                "transactionInfo": {"transactionId": s.tx201, "chargingState": "Charging"},
                "evse": evse});
            if s.late_token {
                charging["triggerReason"] = "Authorized".into();
                charging["idToken"] = token.clone();
            }
            tr.call(
                s.start + 10_000,
                cp,
                "TransactionEvent",
                charging,
                Some(ok.clone()),
            );
            let mut seq = 2;
            for (t, wh) in sample_times {
                let mut updated = json!({"eventType": "Updated", "timestamp": iso(t),
                    "triggerReason": "MeterValuePeriodic", "seqNo": seq,
                    "transactionInfo": {"transactionId": s.tx201},
                    "meterValue": [{"timestamp": iso(t), "sampledValue": [
                        // 100.9 × 10³ Wh: the multiplier is applied exactly.
                        {"value": wh as f64 / 1000.0, "context": "Sample.Periodic",
                            "measurand": "Energy.Active.Import.Register", "location": "Outlet",
                            "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},
                        {"value": (s.step_wh * 12) as f64 / 1000.0, "context": "Sample.Periodic",
                            "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "kW"}},
                        {"value": 2300, "context": "Sample.Periodic", "measurand": "Voltage", "phase": "L1-N",
                            "unitOfMeasure": {"unit": "V", "multiplier": -1}}]}]});
                if !s.evse_once {
                    updated["evse"] = json!({"id": c});
                }
                tr.call(t, cp, "TransactionEvent", updated, Some(json!({})));
                seq += 1;
            }
            let mut ended = json!({"eventType": "Ended", "timestamp": iso(s.stop),
                "triggerReason": "EVCommunicationLost", "seqNo": seq,
                "transactionInfo": {"transactionId": s.tx201, "chargingState": "EVConnected"},
                "idToken": token,
                "meterValue": [{"timestamp": iso(s.stop), "sampledValue": [
                    {"value": s.meter_stop, "context": "Transaction.End",
                        "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}]}]});
            if let Some(r) = s.reason {
                ended["transactionInfo"]["stoppedReason"] = r.into();
            }
            if s.reason == Some("Remote") {
                ended["triggerReason"] = "RemoteStop".into();
            }
            if !s.evse_once {
                ended["evse"] = evse;
            }
            tr.call(s.stop, cp, "TransactionEvent", ended, Some(ok));
            status(tr, s.stop + 60_000, cp, c, "", "Available");
        }
    }
}

/// CP-A connector 1 reports Faulted by StatusNotification, 10:00–10:20.
fn status_fault(tr: &mut Traffic) {
    match tr.version {
        OcppVersion::V16 => tr.call(
            at("10:00:00"),
            "CP-A",
            "StatusNotification",
            json!({"connectorId": 1, "errorCode": "GroundFailure", "status": "Faulted",
                "timestamp": iso(at("10:00:00")), "vendorErrorCode": "GF-12"}),
            Some(json!({})),
        ),
        OcppVersion::V201 => status(tr, at("10:00:00"), "CP-A", 1, "", "Faulted"),
    }
    status(tr, at("10:20:00"), "CP-A", 1, "Available", "Available");
}

/// CP-B connector 1 has a fault 12:00–12:20: 2.0.1 reports it by NotifyEvent (a device-model
/// Problem), 1.6 can only say Faulted.
fn notified_fault(tr: &mut Traffic) {
    for (hms, active) in [("12:00:00", true), ("12:20:00", false)] {
        let t = at(hms);
        match tr.version {
            OcppVersion::V16 => {
                let (code, st) = if active {
                    ("ConnectorLockFailure", "Faulted")
                } else {
                    ("NoError", "Available")
                };
                tr.call(
                    t,
                    "CP-B",
                    "StatusNotification",
                    json!({"connectorId": 1, "errorCode": code, "status": st, "timestamp": iso(t)}),
                    Some(json!({})),
                );
            }
            OcppVersion::V201 => {
                let mut data = json!({"eventId": if active { 11 } else { 12 }, "timestamp": iso(t),
                    "trigger": "Delta", "actualValue": if active { "true" } else { "false" },
                    "techCode": "LOCK-E2", "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "ConnectorPlugRetentionLock", "evse": {"id": 1, "connectorId": 1}},
                    "variable": {"name": "Problem"}});
                if !active {
                    data["cleared"] = true.into();
                }
                tr.call_as(
                    t,
                    "CP-B",
                    "NotifyEvent",
                    json!({"generatedAt": iso(t + 100), "seqNo": 0, "eventData": [data]}),
                    Some(json!({})),
                    Some("2.0.1"),
                );
            }
        }
    }
}

/// CP-A connector 1 reads 75.5 °C twice (11:00, 11:05), then 40 °C twice.
fn hot_connector(tr: &mut Traffic) {
    for (hms, celsius) in [
        ("11:00:00", "75.5"),
        ("11:05:00", "75.5"),
        ("11:10:00", "40"),
        ("11:15:00", "40"),
    ] {
        let t = at(hms);
        match tr.version {
            OcppVersion::V16 => tr.call(
                t,
                "CP-A",
                "MeterValues",
                json!({"connectorId": 1, "meterValue": [{"timestamp": iso(t), "sampledValue": [
                    {"value": celsius, "context": "Sample.Periodic", "measurand": "Temperature",
                        "location": "Body", "unit": "Celsius"}]}]}),
                Some(json!({})),
            ),
            OcppVersion::V201 => {
                let hot = celsius != "40";
                let mut data = json!({"eventId": 20 + t / 300_000 % 100, "timestamp": iso(t),
                    "trigger": if hot { "Alerting" } else { "Periodic" }, "actualValue": celsius,
                    "eventNotificationType": "PreconfiguredMonitor", "variableMonitoringId": 4,
                    "component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Temperature"}});
                if hms == "11:10:00" {
                    data["trigger"] = "Alerting".into();
                    data["cleared"] = true.into();
                }
                tr.call(
                    t,
                    "CP-A",
                    "NotifyEvent",
                    json!({"generatedAt": iso(t), "seqNo": 0, "eventData": [data]}),
                    Some(json!({})),
                );
            }
        }
    }
}

fn registry(path: &Path, cp_b_version: &str) {
    let r = json!({
        "stations": [
            {"charge_point_id": "CP-A", "site_id": "SITE-1", "tariff_id": "ac_standard", "max_power_w": 22000.0, "connectors": 2},
            {"charge_point_id": "CP-B", "site_id": "SITE-2", "tariff_id": "dc_fast", "max_power_w": 150000.0, "connectors": 1,
                "ocpp_version": cp_b_version}
        ],
        "tokens": [
            {"id_tag": "CARD-1", "payment_method": "card"},
            {"id_tag": "APP-7", "payment_method": "mobile"}
        ]
    });
    std::fs::write(path, r.to_string()).unwrap();
}

/// Writes the scenario in `version`, runs evflow on it; returns the output directory.
fn run(dir: &Path, version: OcppVersion) -> std::path::PathBuf {
    let name = match version {
        OcppVersion::V16 => "v16",
        OcppVersion::V201 => "v201",
    };
    let mut tr = Traffic::new(version);
    charger_life(&mut tr, "CP-A", 2);
    charger_life(&mut tr, "CP-B", 1);
    for s in sessions() {
        session(&mut tr, &s);
    }
    status_fault(&mut tr);
    notified_fault(&mut tr);
    hot_connector(&mut tr);
    let input = dir.join(format!("{name}.jsonl"));
    tr.write(&input);
    let reg = dir.join(format!("registry-{name}.json"));
    // CP-B's version comes from the registry; CP-A's is detected (or in the envelope).
    registry(&reg, version.as_str());
    let dataflow = file_dataflow(dir, &input, Some(&reg), "");
    let out = dir.join(format!("out-{name}"));
    run_ok(&[
        "run",
        dataflow.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let dead = read_jsonl(&out.join("dead-letter.jsonl"));
    assert!(dead.is_empty(), "{name}: {dead:#?}");
    out
}

/// What must be equal between the versions: everything but the transaction id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SessionKey {
    cp: String,
    connector: u32,
    site: String,
    id_tag: String,
    start: i64,
    end: i64,
    energy_wh: i64,
    energy_source: String,
    stop_reason: String,
    payment_method: String,
    /// "total_excl_vat vat currency"
    price: String,
    total_incl_vat: String,
    late: bool,
}

fn session_keys(out: &Path) -> Vec<SessionKey> {
    let mut s: Vec<SessionKey> = read_sessions(out)
        .expect("read sessions")
        .into_iter()
        .map(|r: SessionRecord| SessionKey {
            cp: r.charge_point_id.to_string(),
            connector: r.connector_id,
            site: r.site_id.to_string(),
            id_tag: r.id_tag.to_string(),
            start: r.start_time,
            end: r.end_time,
            energy_wh: r.energy_wh,
            energy_source: r.energy_source.as_str().to_string(),
            stop_reason: r.stop_reason.to_string(),
            payment_method: r.payment_method.to_string(),
            price: format!(
                "{} {} {}",
                r.total_excl_vat.normalize(),
                r.vat.normalize(),
                r.currency
            ),
            total_incl_vat: r.total_incl_vat.normalize().to_string(),
            late: r.late,
        })
        .collect();
    s.sort();
    s
}

/// (charger, connector, kind, state, event time)
fn anomalies(out: &Path) -> BTreeSet<(String, Option<u64>, String, String, String)> {
    read_jsonl(&out.join("anomalies.jsonl"))
        .into_iter()
        .map(|a| {
            (
                a["charge_point_id"].as_str().unwrap().to_string(),
                a["connector_id"].as_u64(),
                a["kind"].as_str().unwrap().to_string(),
                a["state"].as_str().unwrap().to_string(),
                a["event_time"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_1_6_and_a_2_0_1_network_give_the_same_sessions_and_anomalies() {
    let _g = serial();
    let dir = tmp_dir("ocpp-versions");
    let out16 = run(&dir, OcppVersion::V16);
    let out201 = run(&dir, OcppVersion::V201);

    let (s16, s201) = (session_keys(&out16), session_keys(&out201));
    assert_eq!(s16, s201, "sessions differ between 1.6 and 2.0.1");
    let energy: Vec<(&str, u32, i64, &str)> = s16
        .iter()
        .map(|s| {
            (
                s.cp.as_str(),
                s.connector,
                s.energy_wh,
                s.energy_source.as_str(),
            )
        })
        .collect();
    assert_eq!(
        energy,
        [
            ("CP-A", 1, 10_800, "registers"),
            ("CP-A", 2, 12_000, "registers"),
            ("CP-B", 1, 25_500, "registers"),
        ]
    );
    for s in &sessions() {
        let k = s16
            .iter()
            .find(|k| k.cp == s.cp && k.connector == s.connector)
            .unwrap();
        assert_eq!(
            (k.id_tag.as_str(), k.start, k.end),
            (s.tag, s.start, s.stop)
        );
        assert_eq!(k.stop_reason, s.reason.unwrap_or("Local"));
        assert!(!k.late);
    }
    // 10.8 kWh × 0.39 + 0.50 = 4.712 → 4.71 excl. VAT; incl. VAT is rounded from the exact
    // 4.712 × 1.19 = 5.60728 → 5.61 (src/tariff/mod.rs, rule 3), so VAT = 0.90.
    assert_eq!(s16[0].price, "4.71 0.9 EUR");
    assert_eq!(s16[0].total_incl_vat, "5.61");
    assert_eq!(
        s16[2].payment_method, "mobile",
        "the 2.0.1 driver is identified after the start"
    );

    let (a16, a201) = (anomalies(&out16), anomalies(&out201));
    assert_eq!(a16, a201, "anomalies differ between 1.6 and 2.0.1");
    let kinds: BTreeSet<(&str, &str, &str)> = a16
        .iter()
        .map(|a| (a.0.as_str(), a.2.as_str(), a.3.as_str()))
        .collect();
    let want: BTreeSet<(&str, &str, &str)> = [
        ("CP-A", "connector_faulted", "open"),
        ("CP-A", "connector_faulted", "resolved"),
        ("CP-A", "over_temperature", "open"),
        ("CP-A", "over_temperature", "resolved"),
        ("CP-B", "connector_faulted", "open"),
        ("CP-B", "connector_faulted", "resolved"),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds, want, "{a16:#?}");
    assert!(a16.contains(&(
        "CP-A".into(),
        Some(1),
        "over_temperature".into(),
        "open".into(),
        iso(at("11:00:00"))
    )));
    assert!(a16.contains(&(
        "CP-B".into(),
        Some(1),
        "connector_faulted".into(),
        "resolved".into(),
        iso(at("12:20:00"))
    )));
}

// ---------------------------------------------------------------------------------------------
// Every detector on both versions
// ---------------------------------------------------------------------------------------------

/// A charger's life: boot at 08:00 with `interval` s heartbeats (the charger's own, from the
/// BootNotification's CALLRESULT) until 16:00, silent in `silences` (a boot ends each).
fn life(tr: &mut Traffic, cp: &str, connectors: u32, interval: i64, silences: &[(i64, i64)]) {
    let boot = |tr: &mut Traffic, t: i64| {
        let result = json!({"currentTime": iso(t), "interval": interval, "status": "Accepted"});
        match tr.version {
            OcppVersion::V16 => tr.call(
                t,
                cp,
                "BootNotification",
                json!({"chargePointVendor": "Alfen BV", "chargePointModel": "NG920-61023"}),
                Some(result),
            ),
            OcppVersion::V201 => tr.call(
                t,
                cp,
                "BootNotification",
                json!({"reason": "PowerUp", "chargingStation": {"vendorName": "Alfen BV", "model": "NG920-61023"}}),
                Some(result),
            ),
        }
    };
    boot(tr, at("08:00:00"));
    for c in 1..=connectors {
        status(tr, at("08:00:01"), cp, c, "Available", "Available");
    }
    for &(_, back) in silences {
        boot(tr, back);
    }
    let mut t = at("08:00:00") + interval * 1000;
    while t <= at("16:00:00") {
        if !silences.iter().any(|&(s, e)| t >= s && t <= e) {
            tr.call(
                t,
                cp,
                "Heartbeat",
                json!({}),
                Some(json!({"currentTime": iso(t)})),
            );
        }
        t += interval * 1000;
    }
}

/// A MeterValues outside a transaction, stamped `stamp` (the charger's clock).
fn meter(
    tr: &mut Traffic,
    t: i64,
    stamp: i64,
    cp: &str,
    values: &[(&str, Option<&str>, f64, &str)],
) {
    let sampled: Vec<Value> = values
        .iter()
        .map(|(measurand, phase, v, unit)| {
            let mut s = match tr.version {
                OcppVersion::V16 => {
                    json!({"value": format!("{v}"), "measurand": measurand, "unit": unit})
                }
                OcppVersion::V201 => {
                    json!({"value": v, "measurand": measurand, "unitOfMeasure": {"unit": unit}})
                }
            };
            if let Some(p) = phase {
                s["phase"] = (*p).into();
            }
            s
        })
        .collect();
    let mv = json!([{"timestamp": iso(stamp), "sampledValue": sampled}]);
    let payload = match tr.version {
        OcppVersion::V16 => json!({"connectorId": 1, "meterValue": mv}),
        OcppVersion::V201 => json!({"evseId": 1, "meterValue": mv}),
    };
    tr.call(t, cp, "MeterValues", payload, Some(json!({})));
}

fn supply(v: [f64; 3], hz: f64) -> Vec<(&'static str, Option<&'static str>, f64, &'static str)> {
    vec![
        ("Voltage", Some("L1-N"), v[0], "V"),
        ("Voltage", Some("L2-N"), v[1], "V"),
        ("Voltage", Some("L3-N"), v[2], "V"),
        ("Frequency", None, hz, "Hertz"),
    ]
}

/// A session of the detector scenario: `samples` 5-minute samples at `power_w`.
#[allow(clippy::too_many_arguments)]
fn plain_session(
    tr: &mut Traffic,
    cp: &str,
    connector: u32,
    n: i64,
    start: i64,
    samples: i64,
    power_w: i64,
    meter_start: i64,
    reason: &'static str,
) {
    let step_wh = power_w / 12;
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let s = Session {
        cp: leak(cp.to_string()),
        connector,
        tag: "CARD-1",
        tx16: n,
        tx201: leak(format!("{cp}-{n}")),
        start,
        stop: start + samples.max(0) * 300_000 + 120_000,
        meter_start,
        step_wh,
        samples,
        meter_stop: meter_start + samples * step_wh,
        reason: Some(reason),
        late_token: false,
        evse_once: false,
    };
    session(tr, &s);
}

fn detector_scenario(version: OcppVersion) -> Traffic {
    let mut tr = Traffic::new(version);
    // CP-P: supply. L2 undervoltage 09:00–09:10, frequency 10:00–10:10, then a power loss
    // during a session (silent 11:01–11:05, back with a boot at 11:05).
    life(&mut tr, "CP-P", 2, 300, &[(at("11:01:00"), at("11:05:00"))]);
    for (hms, v, hz) in [
        ("08:50:00", [231.0, 229.0, 230.5], 50.01),
        ("08:55:00", [231.0, 229.0, 230.5], 49.98),
        ("09:00:00", [231.0, 190.0, 230.5], 50.0),
        ("09:05:00", [231.0, 188.5, 230.5], 50.0),
        ("09:10:00", [231.0, 229.0, 230.5], 50.0),
        ("09:15:00", [231.0, 229.0, 230.5], 50.0),
        ("10:00:00", [231.0, 229.0, 230.5], 48.9),
        ("10:05:00", [231.0, 229.0, 230.5], 48.8),
        ("10:10:00", [231.0, 229.0, 230.5], 50.0),
        ("10:15:00", [231.0, 229.0, 230.5], 50.0),
    ] {
        meter(&mut tr, at(hms), at(hms), "CP-P", &supply(v, hz));
    }
    // The session on connector 2 from 10:30; its stop comes after the reboot.
    let s = Session {
        cp: "CP-P",
        connector: 2,
        tag: "CARD-1",
        tx16: 501,
        tx201: "p-501",
        start: at("10:30:00"),
        stop: at("11:05:30"),
        meter_start: 1_000,
        step_wh: 900,
        samples: 6,
        meter_stop: 6_400,
        reason: Some("PowerLoss"),
        late_token: false,
        evse_once: false,
    };
    session(&mut tr, &s);

    // CP-C: its clock runs 10 minutes ahead from 09:00 to 10:00.
    life(&mut tr, "CP-C", 1, 300, &[]);
    let mut t = at("08:30:00");
    while t <= at("10:30:00") {
        let skew = if (at("09:00:00")..at("10:00:00")).contains(&t) {
            600_000
        } else {
            0
        };
        meter(&mut tr, t, t + skew, "CP-C", &supply([230.0; 3], 50.0));
        t += 300_000;
    }

    // CP-E: three CALLERRORs and two rejected frames within five minutes from 09:00.
    life(&mut tr, "CP-E", 1, 300, &[]);
    for k in 0..5i64 {
        let t = at("09:00:00") + k * 60_000;
        let frame = if k < 3 {
            json!([4, format!("backend-{k}"), "InternalError", "boom", {}])
        } else {
            let payload = match version {
                OcppVersion::V16 => json!({"connectorId": 1}),
                OcppVersion::V201 => json!({"evseId": 1}),
            };
            json!([2, format!("bad-{k}"), "MeterValues", payload])
        };
        tr.push(t, "CP-E", frame, None);
    }

    // CP-F: three sessions in a row that deliver nothing, then one that delivers.
    life(&mut tr, "CP-F", 1, 300, &[]);
    for (n, hms, reason) in [
        (601, "09:00:00", "EmergencyStop"),
        (602, "09:20:00", "Local"),
        (603, "09:40:00", "EVDisconnected"),
    ] {
        plain_session(&mut tr, "CP-F", 1, n, at(hms), 0, 0, 5_000, reason);
    }
    plain_session(
        &mut tr,
        "CP-F",
        1,
        604,
        at("10:30:00"),
        6,
        11_000,
        5_000,
        "EVDisconnected",
    );

    // CP-L: a 60 s heartbeat interval from its BootNotification, silent 09:00–09:30.
    life(&mut tr, "CP-L", 1, 60, &[(at("09:00:30"), at("09:30:00"))]);

    // CP-S: a session stuck without power from 10:05 (Charging, 0 W) for 25 minutes.
    life(&mut tr, "CP-S", 1, 300, &[]);
    let s = Session {
        cp: "CP-S",
        connector: 1,
        tag: "CARD-1",
        tx16: 701,
        tx201: "s-701",
        start: at("10:00:00"),
        stop: at("10:40:00"),
        meter_start: 2_000,
        step_wh: 0,
        samples: 7,
        meter_stop: 2_000,
        reason: Some("Remote"),
        late_token: false,
        evse_once: false,
    };
    session(&mut tr, &s);

    // CP-M: its register jumps backwards by 5 MWh at 09:10.
    life(&mut tr, "CP-M", 1, 300, &[]);
    for (hms, kwh) in [
        ("09:00:00", 12_000.0),
        ("09:05:00", 12_001.0),
        ("09:10:00", 7_001.0),
        ("09:15:00", 7_002.0),
    ] {
        meter(
            &mut tr,
            at(hms),
            at(hms),
            "CP-M",
            &[("Energy.Active.Import.Register", None, kwh, "kWh")],
        );
    }

    // Fleet: CP-D1, CP-D2 (the same model) deliver 0.9 of their 22 kW; CP-D3 connector 1
    // gives three cars in a row 1.1 kW.
    for cp in ["CP-D1", "CP-D2", "CP-D3"] {
        life(&mut tr, cp, 2, 300, &[]);
    }
    let mut n = 800;
    // 24 sessions of the model before CP-D3's: the fleet judges a model after 20.
    for k in 0..6i64 {
        for (cp, c) in [("CP-D1", 1), ("CP-D2", 1), ("CP-D1", 2), ("CP-D2", 2)] {
            n += 1;
            let start = at("08:10:00") + k * 3_000_000 + c as i64 * 60_000;
            plain_session(
                &mut tr,
                cp,
                c,
                n,
                start,
                6,
                19_800,
                100_000 + k * 12_000,
                "EVDisconnected",
            );
        }
    }
    for k in 0..3i64 {
        n += 1;
        let start = at("13:00:00") + k * 3_000_000;
        plain_session(
            &mut tr,
            "CP-D3",
            1,
            n,
            start,
            6,
            1_100,
            50_000 + k * 600,
            "EVDisconnected",
        );
    }
    tr
}

fn run_scenario(dir: &Path, version: OcppVersion) -> std::path::PathBuf {
    let name = match version {
        OcppVersion::V16 => "detectors-v16",
        OcppVersion::V201 => "detectors-v201",
    };
    let input = dir.join(format!("{name}.jsonl"));
    detector_scenario(version).write(&input);
    let reg = dir.join(format!("registry-{name}.json"));
    let stations: Vec<Value> = ["CP-P", "CP-C", "CP-E", "CP-F", "CP-L", "CP-S", "CP-M", "CP-D1", "CP-D2", "CP-D3"]
        .iter()
        .map(|cp| json!({"charge_point_id": cp, "site_id": "SITE-1", "max_power_w": 22000.0, "connectors": 2, "ocpp_version": version.as_str()}))
        .collect();
    std::fs::write(
        &reg,
        json!({"stations": stations, "tokens": [{"id_tag": "CARD-1", "payment_method": "card"}]})
            .to_string(),
    )
    .unwrap();
    let dataflow = file_dataflow(dir, &input, Some(&reg), "");
    let out = dir.join(format!("out-{name}"));
    run_ok(&[
        "run",
        dataflow.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    out
}

#[test]
fn every_per_charger_detector_fires_alike_on_1_6_and_2_0_1() {
    let _g = serial();
    let dir = tmp_dir("detector-versions");
    let out16 = run_scenario(&dir, OcppVersion::V16);
    let out201 = run_scenario(&dir, OcppVersion::V201);
    let (a16, a201) = (anomalies(&out16), anomalies(&out201));
    assert_eq!(a16, a201, "anomalies differ between 1.6 and 2.0.1");
    let t = |hms: &str, ms: i64| iso(at(hms) + ms);
    let want: BTreeSet<(String, Option<u64>, String, String, String)> = [
        ("CP-P", Some(1), "power_supply", "open", t("09:00:00", 0)),
        (
            "CP-P",
            Some(1),
            "power_supply",
            "resolved",
            t("09:10:00", 0),
        ),
        ("CP-P", Some(1), "power_supply", "open", t("10:00:00", 0)),
        (
            "CP-P",
            Some(1),
            "power_supply",
            "resolved",
            t("10:10:00", 0),
        ),
        // from the last message before the outage (the 11:00 heartbeat) to the reboot
        ("CP-P", Some(2), "power_supply", "open", t("11:00:00", 150)),
        (
            "CP-P",
            Some(2),
            "power_supply",
            "resolved",
            t("11:05:00", 150),
        ),
        ("CP-C", None, "clock_skew", "open", t("09:00:00", 150)),
        ("CP-C", None, "clock_skew", "resolved", t("10:10:00", 150)),
        ("CP-E", None, "message_errors", "open", t("09:04:00", 150)),
        (
            "CP-E",
            None,
            "message_errors",
            "resolved",
            t("09:14:00", 150),
        ),
        (
            "CP-F",
            Some(1),
            "session_failures",
            "open",
            t("09:42:00", 0),
        ),
        (
            "CP-F",
            Some(1),
            "session_failures",
            "resolved",
            t("11:02:00", 0),
        ),
        (
            "CP-L",
            None,
            "communication_lost",
            "open",
            t("09:02:00", 150),
        ),
        (
            "CP-L",
            None,
            "communication_lost",
            "resolved",
            t("09:30:00", 150),
        ),
        ("CP-S", Some(1), "stuck_session", "open", t("10:25:00", 0)),
        (
            "CP-S",
            Some(1),
            "stuck_session",
            "resolved",
            t("10:40:00", 0),
        ),
        ("CP-M", Some(1), "meter_error", "open", t("09:10:00", 0)),
        ("CP-M", Some(1), "meter_error", "resolved", t("09:15:00", 0)),
        (
            "CP-D3",
            Some(1),
            "power_delivery_degraded",
            "open",
            t("14:55:00", 0),
        ),
    ]
    .into_iter()
    .map(|(cp, c, k, s, at)| (cp.to_string(), c, k.to_string(), s.to_string(), at))
    .collect();
    assert_eq!(a16, want, "{a16:#?}");
    // The rejected frames are dead letters too, and nothing else is.
    let dead = read_jsonl(&out16.join("dead-letter.jsonl"));
    assert_eq!(dead.len(), 2, "{dead:#?}");
    assert!(dead.iter().all(|d| d["reason"] == "bad_payload"));
}
