//! Revenue management end to end: OCPI tariffs priced over charging periods built from OCPP
//! traffic (time of day in the site's time zone, parking), subscription allowances consumed
//! per account and month in event-time order, payment fees and net, and revenue leakage
//! against a payment-events file.

mod common;

use std::path::Path;

use common::*;
use evflow::sinks::parquet::read_charging_periods;
use rust_decimal::Decimal;
use serde_json::json;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// One 1.6 charging session: start, Charging, meter values every 15 min at `power_w`, an
/// optional suspended (parking) tail, stop. Times are UTC `HH:MM` on 2026-01-05.
#[allow(clippy::too_many_arguments)]
fn session(
    cp: &str,
    connector: u32,
    tx: i64,
    id_tag: &str,
    start: &str,
    charge_minutes: i64,
    power_w: i64,
    park_minutes: i64,
) -> Vec<String> {
    let t = |minutes: i64| -> String {
        let (h, m) = start.split_once(':').unwrap();
        let total = h.parse::<i64>().unwrap() * 60 + m.parse::<i64>().unwrap() + minutes;
        format!("2026-01-05T{:02}:{:02}:00Z", total / 60, total % 60)
    };
    let status = |at: i64, s: &str| {
        line(
            &t(at),
            cp,
            json!([2, format!("st{tx}-{at}-{s}"), "StatusNotification",
                   {"connectorId": connector, "errorCode": "NoError", "status": s, "timestamp": t(at)}]),
        )
    };
    let mut out = vec![
        status(-1, "Preparing"),
        line(
            &t(0),
            cp,
            json!([2, format!("start{tx}"), "StartTransaction",
                   {"connectorId": connector, "idTag": id_tag, "meterStart": 0, "timestamp": t(0)}]),
        ),
        line(
            &t(0),
            cp,
            json!([3, format!("start{tx}"), {"transactionId": tx, "idTagInfo": {"status": "Accepted"}}]),
        ),
        status(0, "Charging"),
    ];
    let wh_per_min = power_w / 60;
    for m in (15..=charge_minutes).step_by(15) {
        out.push(line(
            &t(m),
            cp,
            json!([2, format!("mv{tx}-{m}"), "MeterValues", {"connectorId": connector, "transactionId": tx,
                "meterValue": [{"timestamp": t(m), "sampledValue": [
                    {"value": (wh_per_min * m).to_string(), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                    {"value": power_w.to_string(), "measurand": "Power.Active.Import", "unit": "W"}]}]}]),
        ));
    }
    if park_minutes > 0 {
        out.push(status(charge_minutes, "SuspendedEV"));
    }
    let end = charge_minutes + park_minutes;
    out.push(line(
        &t(end),
        cp,
        json!([2, format!("stop{tx}"), "StopTransaction",
               {"transactionId": tx, "meterStop": wh_per_min * charge_minutes, "timestamp": t(end), "reason": "Local"}]),
    ));
    out.push(status(end, "Finishing"));
    out.push(status(end + 1, "Available"));
    out
}

fn heartbeats(cp: &str, until_hour: u32) -> Vec<String> {
    (0..=until_hour)
        .map(|h| {
            let at = format!("2026-01-05T{h:02}:59:00Z");
            line(&at, cp, json!([2, format!("hb{h}"), "Heartbeat", {}]))
        })
        .collect()
}

fn write_lines(path: &Path, mut lines: Vec<(String, String)>) {
    lines.sort();
    let text: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
    std::fs::write(path, text.join("\n") + "\n").unwrap();
}

fn timed(lines: Vec<String>) -> Vec<(String, String)> {
    lines
        .into_iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            (v["timestamp"].as_str().unwrap().to_string(), l)
        })
        .collect()
}

const REGISTRY: &str = r#"{
  "sites": [{"site_id": "S-BER", "time_zone": "Europe/Berlin"}],
  "stations": [
    {"charge_point_id": "DC-1", "site_id": "S-BER", "tariff_id": "dc_fast", "max_power_w": 150000},
    {"charge_point_id": "AC-1", "site_id": "S-BER", "tariff_id": "ac_standard", "max_power_w": 22000,
     "connector_tariffs": {"2": "ac_premium"}}
  ],
  "tokens": [
    {"id_tag": "CARD-1", "payment_method": "card"},
    {"id_tag": "SUB-A1", "payment_method": "subscription", "account": "ACME", "plan": "p20"},
    {"id_tag": "SUB-A2", "payment_method": "subscription", "account": "ACME", "plan": "p20"}
  ],
  "plans": [{"id": "p20", "currency": "EUR", "monthly_fee": "9.99", "included_kwh": "20"}]
}"#;

fn dataflow(dir: &Path, input: &Path, extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("registry.json"), REGISTRY).unwrap();
    let tariffs = concat!(env!("CARGO_MANIFEST_DIR"), "/dataflows/tariffs");
    let text = format!(
        "name = \"revenue\"\n[source]\nkind = \"file\"\npath = {input:?}\n\
         [output]\ndir = {out:?}\n[metrics]\naddr = \"\"\n\
         [registry]\npath = {registry:?}\ndefault_tariff = \"ac_standard\"\n\
         [revenue]\nwindow = \"1h\"\nocpi_tariffs = {tariffs:?}\n{extra}\n\
         [revenue.fees.card]\npercent = \"1.4\"\nfixed = \"0.25\"\n\
         [[tariffs]]\nid = \"ac_standard\"\ncurrency = \"EUR\"\nenergy_per_kwh = \"0.40\"\nvat_pct = \"19\"\n\
         [[tariffs]]\nid = \"ac_premium\"\ncurrency = \"EUR\"\nenergy_per_kwh = \"0.50\"\nvat_pct = \"19\"\n",
        input = input.display().to_string(),
        out = dir.join("out").display().to_string(),
        registry = dir.join("registry.json").display().to_string(),
    );
    let path = dir.join("dataflow.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn ocpi_tariffs_price_charging_periods_in_local_time_with_parking_fees_and_net() {
    let _g = serial();
    let dir = tmp_dir("revenue-ocpi");
    // DC-1: 15:30–16:30 UTC = 16:30–17:30 in Berlin at 50 kW (50 kWh), then 20 min parked.
    // dc_fast: 0.59/kWh, 0.69/kWh from 17:00 local, 1.00 per session, 3.00/h parked (5 min
    // steps), 19 % VAT.
    let mut lines = timed(session("DC-1", 1, 1, "CARD-1", "15:30", 60, 50_000, 20));
    lines.extend(timed(heartbeats("DC-1", 17)));
    // AC-1 connector 2 has its own tariff (0.50/kWh): 11 kWh in an hour, no fees for ad hoc.
    lines.extend(timed(session(
        "AC-1", 2, 2, "UNKNOWN", "08:00", 60, 11_000, 0,
    )));
    lines.extend(timed(heartbeats("AC-1", 17)));
    let input = dir.join("in.jsonl");
    write_lines(&input, lines);
    let flow = dataflow(&dir, &input, "");
    let text = std::fs::read_to_string(&flow).unwrap().replace(
        "[metrics]",
        "ocpi_cdrs = true\ncdr_country_code = \"DE\"\n[metrics]",
    );
    std::fs::write(&flow, text).unwrap();
    run_ok(&["run", flow.to_str().unwrap()]);
    let sessions = sorted_sessions(&dir.join("out"));
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    let dc = sessions
        .iter()
        .find(|s| &*s.charge_point_id == "DC-1")
        .unwrap();
    assert_eq!(&*dc.tariff_id, "dc_fast");
    assert_eq!(dc.energy_wh, 49_980); // 833 Wh/min × 60
    assert_eq!((dc.charging_ms, dc.parking_ms), (3_600_000, 1_200_000));
    // Energy is split at 17:00 local: 24,990 Wh at 0.59 + 24,990 Wh at 0.69 = 31.9872 → 31.99.
    assert_eq!(dc.energy_cost.excl_vat, d("31.99"));
    // 20 min parked, on the off-peak element's PARKING_TIME (the peak one has none): 1.00.
    assert_eq!(dc.parking_cost.excl_vat, d("1.00"));
    assert_eq!(dc.fixed_cost.excl_vat, d("1.00"));
    // Total from the exact 33.9872: 33.99 excl., × 1.19 = 40.444768 → 40.44 incl.
    assert_eq!(
        (dc.total_excl_vat, dc.total_incl_vat),
        (d("33.99"), d("40.44"))
    );
    assert_eq!(dc.vat, d("6.45"));
    // Card: 1.4 % of 40.44 + 0.25 = 0.81616 → 0.82; net = 33.99 − 0.82.
    assert_eq!((dc.payment_fee, dc.net), (d("0.82"), d("33.17")));
    let ac = sessions
        .iter()
        .find(|s| &*s.charge_point_id == "AC-1")
        .unwrap();
    assert_eq!(&*ac.tariff_id, "ac_premium");
    assert_eq!(&*ac.payment_method, "ad_hoc");
    assert_eq!(ac.energy_wh, 10_980);
    assert_eq!((ac.total_excl_vat, ac.payment_fee), (d("5.49"), d("0")));

    // The charging periods: charging, then parked; they add up to the session.
    let periods = read_charging_periods(&dir.join("out")).unwrap();
    let dc_periods: Vec<(i64, i64, i64)> = periods
        .iter()
        .filter(|p| &*p.charge_point_id == "DC-1")
        .map(|p| (p.energy_wh, p.charging_ms, p.parking_ms))
        .collect();
    assert_eq!(dc_periods, vec![(49_980, 3_600_000, 0), (0, 0, 1_200_000)]);

    // The pipeline's own OCPI CDR, priced again by `evflow price` with the same tariff: the
    // same totals (one code path).
    let cdrs = read_jsonl(&dir.join("out/cdrs.jsonl"));
    assert_eq!(cdrs.len(), 2);
    let own = cdrs
        .iter()
        .find(|c| c["cdr_location"]["evse_uid"] == "DC-1")
        .unwrap();
    assert_eq!(own["country_code"], "DE");
    assert_eq!(own["cdr_location"]["time_zone"], "Europe/Berlin");
    let amount = |v: &serde_json::Value| (v["excl_vat"].as_f64(), v["incl_vat"].as_f64());
    assert_eq!(amount(&own["total_cost"]), (Some(33.99), Some(40.44)));
    assert_eq!(amount(&own["total_parking_cost"]), (Some(1.0), Some(1.19)));
    std::fs::write(dir.join("own-cdr.json"), own.to_string()).unwrap();
    let repriced = run_ok(&[
        "price",
        "--tariff",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dataflows/tariffs/dc_fast.json"
        ),
        "--cdr",
        dir.join("own-cdr.json").to_str().unwrap(),
    ]);
    let repriced: serde_json::Value = serde_json::from_slice(&repriced.stdout).unwrap();
    for total in [
        "total_cost",
        "total_energy_cost",
        "total_parking_cost",
        "total_fixed_cost",
    ] {
        assert_eq!(
            amount(&repriced[total]),
            amount(&own[total]),
            "{total}: {repriced:#}"
        );
    }

    // A CDR written by hand with the same periods: the same totals.
    let cdr = json!({
        "id": "dc-1-1", "currency": "EUR",
        "start_date_time": "2026-01-05T15:30:00Z", "end_date_time": "2026-01-05T16:50:00Z",
        "cdr_location": {"time_zone": "Europe/Berlin"},
        "charging_periods": [
            {"start_date_time": "2026-01-05T15:30:00Z", "dimensions": [
                {"type": "ENERGY", "volume": 49.98}, {"type": "TIME", "volume": 1.0}, {"type": "MAX_POWER", "volume": 50.0}]},
            {"start_date_time": "2026-01-05T16:30:00Z", "dimensions": [
                {"type": "PARKING_TIME", "volume": 0.3333333333}]}
        ]
    });
    std::fs::write(dir.join("cdr.json"), cdr.to_string()).unwrap();
    let priced = run_ok(&[
        "price",
        "--tariff",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dataflows/tariffs/dc_fast.json"
        ),
        "--cdr",
        dir.join("cdr.json").to_str().unwrap(),
    ]);
    let priced: serde_json::Value = serde_json::from_slice(&priced.stdout).unwrap();
    assert_eq!(priced["total_cost"]["excl_vat"], json!(33.99), "{priced:#}");
    assert_eq!(priced["total_cost"]["incl_vat"], json!(40.44), "{priced:#}");
}

#[test]
fn subscription_allowances_are_consumed_per_account_and_month_in_event_time_order() {
    let _g = serial();
    let dir = tmp_dir("revenue-subscription");
    // Account ACME (two tokens) has 20 kWh a month. Three sessions of 11 kWh each, ending
    // 09:00, 10:00, 11:00: the first is covered, the second half, the third not at all.
    let mut lines = timed(session("AC-1", 1, 11, "SUB-A1", "08:00", 60, 11_000, 0));
    lines.extend(timed(session(
        "AC-1", 1, 12, "SUB-A2", "09:00", 60, 11_000, 0,
    )));
    lines.extend(timed(session(
        "AC-1", 1, 13, "SUB-A1", "10:00", 60, 11_000, 0,
    )));
    lines.extend(timed(heartbeats("AC-1", 12)));
    let input = dir.join("in.jsonl");
    write_lines(&input, lines);
    let flow = dataflow(&dir, &input, "");
    run_ok(&["run", flow.to_str().unwrap()]);
    let sessions = sorted_sessions(&dir.join("out"));
    let covered: Vec<(i64, i64, Decimal, Decimal)> = sessions
        .iter()
        .map(|s| {
            (
                s.energy_wh,
                s.included_energy_wh,
                s.discount.excl_vat,
                s.total_excl_vat,
            )
        })
        .collect();
    // 10,980 Wh at 0.40 = 4.392 → 4.39; the second gets the remaining 9,020 Wh:
    // 4.39 × 9,020 / 10,980 = 3.6063… → 3.61 off.
    assert_eq!(
        covered,
        vec![
            (10_980, 10_980, d("4.39"), d("0.00")),
            (10_980, 9_020, d("3.61"), d("0.78")),
            (10_980, 0, d("0"), d("4.39")),
        ]
    );
    assert!(sessions.iter().all(|s| &*s.account == "ACME"
        && s.plan_id.as_deref() == Some("p20")
        && s.net == s.total_excl_vat - s.payment_fee));
}

#[test]
fn payments_are_joined_with_sessions_and_leaks_are_reported() {
    let _g = serial();
    let dir = tmp_dir("revenue-leakage");
    // Four card sessions on DC-1 ending 09:00, 10:00, 11:00, 12:00 UTC.
    let mut lines = Vec::new();
    for (i, start) in ["08:00", "09:00", "10:00", "11:00"].iter().enumerate() {
        lines.extend(timed(session(
            "DC-1",
            1,
            100 + i as i64,
            "CARD-1",
            start,
            60,
            22_000,
            0,
        )));
    }
    lines.extend(timed(heartbeats("DC-1", 23)));
    let input = dir.join("in.jsonl");
    write_lines(&input, lines);
    // First run without payments: what was priced.
    let flow = dataflow(&dir, &input, "");
    run_ok(&["run", flow.to_str().unwrap()]);
    let priced = sorted_sessions(&dir.join("out"));
    assert_eq!(priced.len(), 4);
    let pay = |i: usize, kind: &str, amount: Decimal, at: &str| {
        json!({"payment_id": format!("pay-{i}-{kind}"), "charge_point_id": "DC-1",
               "transaction_id": priced[i].transaction_id, "type": kind,
               "amount": amount.to_string(), "currency": "EUR", "timestamp": at})
        .to_string()
    };
    // 100: captured in full — fine. 101: captured 1.00 short — amount_mismatch. 102: never
    // captured — uncaptured. 103: captured after the grace period — uncaptured, then resolved.
    let payments = [
        pay(
            0,
            "captured",
            priced[0].total_incl_vat,
            "2026-01-05T09:05:00Z",
        ),
        pay(
            1,
            "captured",
            priced[1].total_incl_vat - d("1.00"),
            "2026-01-05T10:05:00Z",
        ),
        pay(
            2,
            "failed",
            priced[2].total_incl_vat,
            "2026-01-05T11:05:00Z",
        ),
        pay(
            3,
            "captured",
            priced[3].total_incl_vat,
            "2026-01-05T16:00:00Z",
        ),
        "{\"not\": \"a payment\"}".to_string(),
    ];
    std::fs::write(dir.join("payments.jsonl"), payments.join("\n") + "\n").unwrap();
    let flow = dataflow(
        &dir,
        &input,
        &format!(
            "payments = {:?}\n[revenue.leakage]\ngrace = \"2h\"\n",
            dir.join("payments.jsonl").display().to_string()
        ),
    );
    let run = run_ok(&["run", flow.to_str().unwrap()]);
    let leaks = read_jsonl(&dir.join("out/leakage.jsonl"));
    let got: Vec<(String, String, String, String)> = leaks
        .iter()
        .map(|l| {
            (
                l["transaction_id"].as_str().unwrap().to_string(),
                l["kind"].as_str().unwrap().to_string(),
                l["state"].as_str().unwrap().to_string(),
                l["event_time"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let tx = |i: usize| priced[i].transaction_id.clone();
    let mut want = vec![
        (
            tx(1),
            "amount_mismatch".into(),
            "open".into(),
            "2026-01-05T12:00:00.000Z".into(),
        ),
        (
            tx(2),
            "uncaptured".into(),
            "open".into(),
            "2026-01-05T13:00:00.000Z".into(),
        ),
        (
            tx(3),
            "uncaptured".into(),
            "open".into(),
            "2026-01-05T14:00:00.000Z".into(),
        ),
        (
            tx(3),
            "uncaptured".into(),
            "resolved".into(),
            "2026-01-05T16:00:00.000Z".into(),
        ),
    ];
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "{leaks:#?}");
    let mismatch = leaks
        .iter()
        .find(|l| l["kind"] == "amount_mismatch")
        .unwrap();
    assert_eq!(
        d(mismatch["expected"].as_str().unwrap()),
        priced[1].total_incl_vat
    );
    assert_eq!(
        d(mismatch["captured"].as_str().unwrap()),
        priced[1].total_incl_vat - d("1.00")
    );
    // The bad payment line is dead-lettered with its reason; the run goes on.
    let dead = read_jsonl(&dir.join("out/dead-letter.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0]["reason"], "bad_payment_event");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("uncaptured"), "{stdout}");
}

#[test]
fn injected_meter_errors_become_meter_mismatch_leaks_and_nothing_else_does() {
    let _g = serial();
    let dir = tmp_dir("revenue-meter");
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dataflows/demo.toml"))
        .unwrap()
        .replace("chargers = 300", "chargers = 120")
        .replace(
            "dataflows/tariffs",
            concat!(env!("CARGO_MANIFEST_DIR"), "/dataflows/tariffs"),
        );
    let flow = dir.join("demo.toml");
    std::fs::write(&flow, demo).unwrap();
    let out = dir.join("out");
    run_ok(&[
        "run",
        flow.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--metrics-addr",
        "",
    ]);
    // The simulator's ground truth: a meter_error label per session with a bad register.
    let labelled: std::collections::BTreeSet<(String, i64)> = read_jsonl(&out.join("labels.jsonl"))
        .iter()
        .filter(|l| l["kind"] == "meter_error")
        .map(|l| {
            (
                l["charge_point_id"].as_str().unwrap().to_string(),
                l["connector_id"].as_i64().unwrap(),
            )
        })
        .collect();
    let leaks: std::collections::BTreeSet<(String, i64)> = read_jsonl(&out.join("leakage.jsonl"))
        .iter()
        .filter(|l| l["kind"] == "meter_mismatch")
        .map(|l| {
            (
                l["charge_point_id"].as_str().unwrap().to_string(),
                l["connector_id"].as_i64().unwrap(),
            )
        })
        .collect();
    eprintln!(
        "{} labelled meter errors, {} meter_mismatch leaks",
        labelled.len(),
        leaks.len()
    );
    assert!(!labelled.is_empty());
    // No payments source: no payment leaks, and every meter leak is a labelled fault.
    assert!(read_jsonl(&out.join("leakage.jsonl"))
        .iter()
        .all(|l| l["kind"] == "meter_mismatch"));
    assert!(
        leaks.is_subset(&labelled),
        "unlabelled: {:?}",
        leaks.difference(&labelled).collect::<Vec<_>>()
    );
    assert!(
        !leaks.is_empty(),
        "no meter error was large enough to be a leak: {labelled:?}"
    );
}
