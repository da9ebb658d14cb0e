"""DuckDB reads evflow's Parquet: column types, the revenue cross-check, the printed query.

Usage: duckdb_check.py OUT_DIR "QUERY"
Exits non-zero with a message on the first failed check.
"""
import sys

import duckdb

out, query = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
sessions = f"read_parquet('{out}/sessions/*/*.parquet', hive_partitioning = true)"
revenue = f"read_parquet('{out}/revenue/*/*.parquet', hive_partitioning = true)"
periods = f"read_parquet('{out}/charging_periods/*/*.parquet', hive_partitioning = true)"


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {sessions})").fetchall())
expected = {
    "charge_point_id": "VARCHAR",
    "connector_id": "INTEGER",
    "transaction_id": "VARCHAR",
    "id_tag": "VARCHAR",
    "start_time": "TIMESTAMP WITH TIME ZONE",
    "end_time": "TIMESTAMP WITH TIME ZONE",
    "energy_wh": "BIGINT",
    "payment_method": "VARCHAR",
    "tariff_id": "VARCHAR",
    "currency": "VARCHAR",
    "total_excl_vat": "DECIMAL(18,4)",
    "total_incl_vat": "DECIMAL(18,4)",
    "energy_cost_excl_vat": "DECIMAL(18,4)",
    "parking_cost_incl_vat": "DECIMAL(18,4)",
    "payment_fee": "DECIMAL(18,4)",
    "net": "DECIMAL(18,4)",
    "charging_ms": "BIGINT",
    "plan_id": "VARCHAR",
}
for col, ty in expected.items():
    if types.get(col) != ty:
        fail(f"sessions.{col} is {types.get(col)}, expected {ty}")

n_sessions = con.execute(f"SELECT count(*) FROM {sessions}").fetchone()[0]
if n_sessions < 50:
    fail(f"only {n_sessions} sessions")

# Every session's date partition is its end_time's UTC date.
bad = con.execute(f"SELECT count(*) FROM {sessions} WHERE CAST(date AS VARCHAR) <> strftime(end_time, '%Y-%m-%d')").fetchone()[0]
if bad:
    fail(f"{bad} sessions in the wrong date partition")

# Revenue per window recomputed from sessions equals the latest revision of revenue/, to the
# cent, per (window, site, charger, payment method, tariff, currency).
key = "window_start, site_id, charge_point_id, payment_method, tariff_id, currency"
mismatch = con.execute(f"""
    WITH s AS (
        SELECT time_bucket(INTERVAL 1 HOUR, end_time) AS window_start, site_id, charge_point_id,
               payment_method, tariff_id, currency,
               count(*) AS sessions, sum(energy_wh) AS energy_wh,
               sum(total_excl_vat) AS excl, sum(total_incl_vat) AS incl,
               sum(payment_fee) AS fees, sum(net) AS net
        FROM {sessions} GROUP BY ALL),
    r AS (
        SELECT * FROM {revenue}
        QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY revision DESC) = 1)
    SELECT count(*) FROM s FULL OUTER JOIN r USING ({key})
    WHERE s.sessions IS DISTINCT FROM r.sessions OR s.energy_wh IS DISTINCT FROM r.energy_wh
       OR s.excl IS DISTINCT FROM r.total_excl_vat OR s.incl IS DISTINCT FROM r.total_incl_vat
       OR s.fees IS DISTINCT FROM r.payment_fees OR s.net IS DISTINCT FROM r.net
""").fetchone()[0]
if mismatch:
    fail(f"{mismatch} revenue windows differ from the sum of their sessions")

# Each session: net = excl - fee exactly; vat = incl - excl; the cost parts minus the discount
# make the total up to the rounding of each part (a cent per part at most).
bad = con.execute(f"""
    SELECT count(*) FROM {sessions}
    WHERE net <> total_excl_vat - payment_fee OR vat <> total_incl_vat - total_excl_vat
       OR abs(energy_cost_excl_vat + time_cost_excl_vat + parking_cost_excl_vat
              + fixed_cost_excl_vat - discount_excl_vat - total_excl_vat) > 0.04
""").fetchone()[0]
if bad:
    fail(f"{bad} sessions whose net, VAT or cost breakdown does not add up")

# Charging periods add up to their session's energy and time, exactly.
bad = con.execute(f"""
    WITH p AS (SELECT charge_point_id, connector_id, transaction_id, session_end_time AS end_time,
                      sum(energy_wh) AS e, sum(charging_ms) AS c, sum(parking_ms) AS k
               FROM {periods} GROUP BY ALL)
    SELECT count(*) FROM {sessions} s LEFT JOIN p USING (charge_point_id, connector_id, transaction_id, end_time)
    WHERE p.e IS DISTINCT FROM s.energy_wh OR p.c IS DISTINCT FROM s.charging_ms OR p.k IS DISTINCT FROM s.parking_ms
""").fetchone()[0]
if bad:
    fail(f"{bad} sessions whose charging periods do not add up to them")

rows = con.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
if not rows:
    fail("the query evflow prints returned nothing")
total = con.execute(f"SELECT sum(total_incl_vat) FROM {sessions}").fetchone()[0]
print(f"ok: {n_sessions} sessions, revenue {total} incl. VAT, printed query returned {rows} rows")
