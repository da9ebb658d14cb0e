#!/usr/bin/env python3
"""OCPP traffic from an independent implementation, for evflow's interop test.

    ocpp_traffic.py --version 1.6|2.0.1 --out FILE

Drives The Mobility House `ocpp` library (PyPI `ocpp`, pinned in tests/requirements.txt) through
one scripted scenario and writes what a charging backend would mirror: envelope JSONL lines
`{"timestamp", "charge_point_id", "message"}` with every frame exactly as the library put it on
the wire.

How the frames are made: each charger is a real `ocpp.v16.ChargePoint` / `ocpp.v201.ChargePoint`
talking over an in-memory connection to a backend that is also a library `ChargePoint` with
`@on(...)` handlers returning `call_result` dataclasses. So the CALLs are built by
`ChargePoint.call` (dataclass -> `serialize_as_dict` -> `snake_to_camel_case` -> `remove_nones`
-> `Call.to_json()`), and the CALLRESULTs by the library's own request routing. The library
validates every CALL and CALLRESULT against the official JSON schemas on both sides; the wire
tap validates each frame once more with `ocpp.messages.validate_payload`, and any CALLERROR
(a frame the other side rejected) fails the run.

Deterministic: a scripted clock (no wall clock), message ids and transaction ids from counters.
The scenario is the same in both versions, so evflow's results can be compared:

- 3 chargers IOP-1..3 from 2026-02-02T08:00:00Z: boot (heartbeat interval 60 s), Available on
  both connectors/EVSEs, a heartbeat every 60 s until 10:30:00;
- IOP-1 connector 1: two sessions, 10000 -> 22345 Wh (08:10-09:10, SoC reaching 80 % at 09:05)
  and 22345 -> 30000 Wh (09:30-10:15), a sample every 60 s (register, power, voltage, SoC);
- IOP-2 connector 1: one session 8190 -> 19190 Wh (08:20-09:20), samples in kWh with per-phase
  power (L1/L2/L3, kW) and voltage; the driver is identified 5 s after the start; connector
  temperature every minute, above 70 C at 08:40 and 08:41 (72.5, 74.0), back down from 08:42;
- IOP-3: clock-aligned meter values every 15 min; connector 1 Faulted (GroundFailure) from 09:00
  to 09:30, then Available.

Where the versions differ (the protocol does):
- 2.0.1 has no Temperature measurand (its schema rejects one in a sampled value): the connector
  temperature goes in NotifyEvent (component Connector, variable Temperature, a periodic
  monitor) at the times 1.6 puts it in MeterValues;
- 1.6 connector states Preparing/Charging/Finishing are 2.0.1's Occupied (the charging state is
  in TransactionEvent.transactionInfo);
- 1.6 transaction ids are the backend's integers (StartTransaction's CALLRESULT: 1001, 1002 for
  IOP-1, 2001 for IOP-2); 2.0.1's are the charger's strings IOP-1-0001, IOP-1-0002, IOP-2-0001;
- 2.0.1 reports the fault on IOP-3 twice: StatusNotification Faulted and NotifyEvent
  Problem=true on the connector (cleared with Problem=false at 09:30);
- 2.0.1 registers are the Transaction.Begin/End samples of TransactionEvent (IOP-2's in kWh);
  1.6's are StartTransaction.meterStart / StopTransaction.meterStop (integer Wh), IOP-2 also
  sending its Transaction.End sample (kWh) as StopTransaction.transactionData.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import uuid

try:
    from ocpp.messages import CallError, CallResult, Call, unpack, validate_payload
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint as ChargePoint16
    from ocpp.v16 import call as call16
    from ocpp.v16 import call_result as result16
    from ocpp.v16 import datatypes as types16
    from ocpp.v201 import ChargePoint as ChargePoint201
    from ocpp.v201 import call as call201
    from ocpp.v201 import call_result as result201
    from ocpp.v201 import datatypes as types201
except ImportError as e:  # pragma: no cover - the message is the point
    sys.exit(
        f"the `ocpp` package is missing ({e}): "
        ".venv/bin/pip install -r tests/requirements.txt"
    )

START = dt.datetime(2026, 2, 2, 8, 0, 0, tzinfo=dt.timezone.utc)
MIN = 60_000
HOUR = 60 * MIN
END = 150 * MIN  # 10:30:00, the last heartbeat
HEARTBEAT_S = 60
# Receive time = charger time + this; a backend's CALLRESULT follows its CALL by REPLY_MS.
LATENCY_MS = 200
REPLY_MS = 50
ID_NAMESPACE = uuid.UUID("5f0c3a52-8d5e-4f4b-9a57-0c8a7e1d2b3c")


def at(ms: int) -> dt.datetime:
    return START + dt.timedelta(milliseconds=ms)


def charger_ts(ms: int) -> str:
    """A charger's own timestamp: whole seconds, UTC."""
    return at(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def receive_ts(ms: int) -> str:
    """The backend's receive time: milliseconds, UTC."""
    t = at(ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def hm(h: int, m: int, s: int = 0) -> int:
    """Scenario time of hh:mm:ss on the scenario day, in ms since START (08:00)."""
    return ((h - 8) * 3600 + m * 60 + s) * 1000


# ------------------------------------------------------------------------------------------
# The wire: an in-memory connection with a tap that validates and records every frame
# ------------------------------------------------------------------------------------------


class Tap:
    """Records the frames of one charger's connection as envelope lines, in wire order."""

    def __init__(self, version: str, cp_id: str, lines: list):
        self.version = version
        self.cp_id = cp_id
        self.lines = lines
        self.now = 0  # scenario time (ms) of the CALL being sent
        self.last_recv = -1
        self.actions: dict[str, str] = {}  # unique id of a pending CALL -> action

    async def frame(self, raw: str, from_charger: bool) -> None:
        msg = unpack(raw)
        if isinstance(msg, CallError):
            raise RuntimeError(f"{self.cp_id}: CALLERROR on the wire: {raw}")
        if isinstance(msg, Call):
            assert from_charger, f"backend-initiated CALL in the scenario: {raw}"
            self.actions[msg.unique_id] = msg.action
            recv = max(self.now + LATENCY_MS, self.last_recv + 10)
        else:
            assert isinstance(msg, CallResult) and not from_charger, raw
            msg.action = self.actions.pop(msg.unique_id)
            recv = self.last_recv + REPLY_MS
        # The library's own schema validation, on exactly what went over the wire.
        await validate_payload(msg, self.version)
        self.last_recv = recv
        # The frame is embedded byte for byte as the library serialised it.
        line = (
            '{"timestamp": ' + json.dumps(receive_ts(recv))
            + ', "charge_point_id": ' + json.dumps(self.cp_id)
            + ', "message": ' + raw + "}"
        )
        self.lines.append((recv, len(self.lines), line))


class Pipe:
    """One end of an in-memory websocket: what `ChargePoint` needs (send/recv)."""

    def __init__(self, inbox: asyncio.Queue, peer: asyncio.Queue, tap: Tap, from_charger: bool):
        self.inbox, self.peer, self.tap, self.from_charger = inbox, peer, tap, from_charger

    async def send(self, raw: str) -> None:
        await self.tap.frame(raw, self.from_charger)
        await self.peer.put(raw)

    async def recv(self) -> str:
        return await self.inbox.get()


def message_ids(cp_id: str):
    """Deterministic UUID message ids (the library's default is uuid4)."""
    n = 0

    def next_id():
        nonlocal n
        n += 1
        return uuid.uuid5(ID_NAMESPACE, f"{cp_id}/{n}")

    return next_id


# ------------------------------------------------------------------------------------------
# The backends: library ChargePoints (CSMS side) answering with call_result dataclasses
# ------------------------------------------------------------------------------------------


class Backend16(ChargePoint16):
    def __init__(self, cp_id, conn, tap, first_tx):
        super().__init__(cp_id, conn)
        self.tap = tap
        self.next_tx = first_tx

    def now(self):
        return charger_ts(self.tap.now)

    @on("BootNotification")
    def on_boot(self, **_):
        return result16.BootNotification(
            current_time=self.now(), interval=HEARTBEAT_S, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_):
        return result16.Heartbeat(current_time=self.now())

    @on("StatusNotification")
    def on_status(self, **_):
        return result16.StatusNotification()

    @on("MeterValues")
    def on_meter_values(self, **_):
        return result16.MeterValues()

    @on("StartTransaction")
    def on_start(self, **_):
        tx, self.next_tx = self.next_tx, self.next_tx + 1
        return result16.StartTransaction(
            transaction_id=tx, id_tag_info=types16.IdTagInfo(status="Accepted")
        )

    @on("StopTransaction")
    def on_stop(self, **_):
        return result16.StopTransaction(id_tag_info=types16.IdTagInfo(status="Accepted"))


class Backend201(ChargePoint201):
    def __init__(self, cp_id, conn, tap, first_tx):
        super().__init__(cp_id, conn)  # 2.0.1 transaction ids are the charger's: no first_tx
        self.tap = tap

    def now(self):
        return charger_ts(self.tap.now)

    @on("BootNotification")
    def on_boot(self, **_):
        return result201.BootNotification(
            current_time=self.now(), interval=HEARTBEAT_S, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_):
        return result201.Heartbeat(current_time=self.now())

    @on("StatusNotification")
    def on_status(self, **_):
        return result201.StatusNotification()

    @on("MeterValues")
    def on_meter_values(self, **_):
        return result201.MeterValues()

    @on("TransactionEvent")
    def on_transaction_event(self, id_token=None, **_):
        info = types201.IdTokenInfoType(status="Accepted") if id_token else None
        return result201.TransactionEvent(id_token_info=info)

    @on("NotifyEvent")
    def on_notify_event(self, **_):
        return result201.NotifyEvent()


# ------------------------------------------------------------------------------------------
# The chargers: the same scenario verbs in each version
# ------------------------------------------------------------------------------------------


class Station:
    """A charger under script: `self.cp` is the library ChargePoint, `self.tap` its wire."""

    def __init__(self, cp, tap):
        self.cp = cp
        self.tap = tap
        self.tx: dict[int, object] = {}  # connector -> the open transaction

    async def send(self, t: int, payload):
        self.tap.now = t
        # suppress=False: a CALLERROR from the backend raises instead of returning None.
        return await self.cp.call(payload, suppress=False)


class Station16(Station):
    VENDOR, MODEL = "MobilityHouseSim", "IOP-AC-22"

    async def boot(self, t):
        await self.send(t, call16.BootNotification(
            charge_point_model=self.MODEL, charge_point_vendor=self.VENDOR,
            charge_point_serial_number=self.cp.id, firmware_version="2.1.0",
        ))

    async def heartbeat(self, t):
        await self.send(t, call16.Heartbeat())

    async def available(self, t, connectors, at_boot=False):
        # At boot a 1.6 charger reports connector 0 (the charger itself) as well.
        for c in ([0] + connectors if at_boot else connectors):
            await self.send(t, call16.StatusNotification(
                connector_id=c, error_code="NoError", status="Available", timestamp=charger_ts(t)))

    async def plugged(self, t, c):
        await self.send(t, call16.StatusNotification(
            connector_id=c, error_code="NoError", status="Preparing", timestamp=charger_ts(t)))

    async def start(self, t, c, tag, register, unit, authorize_after_ms):
        r = await self.send(t, call16.StartTransaction(
            connector_id=c, id_tag=tag, meter_start=register, timestamp=charger_ts(t)))
        self.tx[c] = r.transaction_id
        ts = t + authorize_after_ms
        await self.send(ts, call16.StatusNotification(
            connector_id=c, error_code="NoError", status="Charging", timestamp=charger_ts(ts)))

    def sampled(self, s, context):
        out = []
        reg = s["register_wh"]
        if s["unit"] == "kWh":
            out.append(types16.SampledValue(
                value=f"{reg / 1000:.3f}", context=context,
                measurand="Energy.Active.Import.Register", unit="kWh"))
        else:
            out.append(types16.SampledValue(
                value=str(reg), context=context,
                measurand="Energy.Active.Import.Register", unit="Wh"))
        if context in ("Transaction.Begin", "Transaction.End"):
            return out
        for phase, kw in s.get("power_kw_phases", []):
            out.append(types16.SampledValue(
                value=f"{kw:.3f}", context=context, measurand="Power.Active.Import",
                phase=phase, unit="kW"))
        if "power_w" in s:
            out.append(types16.SampledValue(
                value=str(s["power_w"]), context=context, measurand="Power.Active.Import",
                unit="W"))
        for phase, v in s.get("voltage", []):
            out.append(types16.SampledValue(
                value=f"{v:.1f}", context=context, measurand="Voltage", phase=phase, unit="V"))
        if "soc" in s:
            out.append(types16.SampledValue(
                value=str(s["soc"]), context=context, measurand="SoC", location="EV",
                unit="Percent"))
        if "temperature_c" in s:
            out.append(types16.SampledValue(
                value=f"{s['temperature_c']:.1f}", context=context, measurand="Temperature",
                location="Body", unit="Celsius"))
        return out

    async def sample(self, t, c, s):
        await self.send(t, call16.MeterValues(
            connector_id=c, transaction_id=self.tx[c],
            meter_value=[types16.MeterValue(
                timestamp=charger_ts(t), sampled_value=self.sampled(s, "Sample.Periodic"))]))

    async def clock_sample(self, t, c, s):
        await self.send(t, call16.MeterValues(
            connector_id=c,
            meter_value=[types16.MeterValue(
                timestamp=charger_ts(t), sampled_value=self.sampled(s, "Sample.Clock"))]))

    async def stop(self, t, c, tag, register, unit, reason, end_sample):
        data = None
        if end_sample:
            data = [types16.MeterValue(
                timestamp=charger_ts(t),
                sampled_value=self.sampled({"register_wh": register, "unit": unit},
                                           "Transaction.End"))]
        await self.send(t, call16.StopTransaction(
            meter_stop=register, timestamp=charger_ts(t), transaction_id=self.tx.pop(c),
            reason=reason["1.6"], id_tag=tag, transaction_data=data))
        await self.send(t, call16.StatusNotification(
            connector_id=c, error_code="NoError", status="Finishing", timestamp=charger_ts(t)))

    async def temperature(self, t, c, celsius):
        pass  # 1.6 carries it in MeterValues (see `sampled`)

    async def fault(self, t, c, code):
        await self.send(t, call16.StatusNotification(
            connector_id=c, error_code=code, status="Faulted", timestamp=charger_ts(t),
            info="residual current 30 mA", vendor_error_code="GF-30"))

    async def clear_fault(self, t, c, code):
        await self.available(t, [c])


class Station201(Station):
    VENDOR, MODEL = "MobilityHouseSim", "IOP-AC-22"

    def __init__(self, cp, tap):
        super().__init__(cp, tap)
        self.seq: dict[int, int] = {}  # connector -> next TransactionEvent seqNo
        self.tx_count = 0
        self.notify_seq = 0
        self.event_id = 0

    async def boot(self, t):
        await self.send(t, call201.BootNotification(
            charging_station=types201.ChargingStationType(
                vendor_name=self.VENDOR, model=self.MODEL, serial_number=self.cp.id,
                firmware_version="2.1.0"),
            reason="PowerUp"))

    async def heartbeat(self, t):
        await self.send(t, call201.Heartbeat())

    async def status(self, t, c, status):
        await self.send(t, call201.StatusNotification(
            timestamp=charger_ts(t), connector_status=status, evse_id=c, connector_id=1))

    async def available(self, t, connectors, at_boot=False):
        for c in connectors:
            await self.status(t, c, "Available")

    async def plugged(self, t, c):
        await self.status(t, c, "Occupied")

    def sampled(self, s, context):
        out = []
        reg = s["register_wh"]
        if s["unit"] == "kWh":
            out.append(types201.SampledValueType(
                value=round(reg / 1000, 3), context=context,
                measurand="Energy.Active.Import.Register",
                unit_of_measure=types201.UnitOfMeasureType(unit="kWh")))
        else:
            out.append(types201.SampledValueType(
                value=float(reg), context=context, measurand="Energy.Active.Import.Register",
                unit_of_measure=types201.UnitOfMeasureType(unit="Wh")))
        if context in ("Transaction.Begin", "Transaction.End"):
            return out
        for phase, kw in s.get("power_kw_phases", []):
            out.append(types201.SampledValueType(
                value=kw, context=context, measurand="Power.Active.Import", phase=phase,
                unit_of_measure=types201.UnitOfMeasureType(unit="kW")))
        if "power_w" in s:
            out.append(types201.SampledValueType(
                value=float(s["power_w"]), context=context, measurand="Power.Active.Import",
                unit_of_measure=types201.UnitOfMeasureType(unit="W")))
        for phase, v in s.get("voltage", []):
            out.append(types201.SampledValueType(
                value=v, context=context, measurand="Voltage", phase=phase,
                unit_of_measure=types201.UnitOfMeasureType(unit="V")))
        if "soc" in s:
            out.append(types201.SampledValueType(
                value=float(s["soc"]), context=context, measurand="SoC", location="EV",
                unit_of_measure=types201.UnitOfMeasureType(unit="Percent")))
        # No Temperature: not a 2.0.1 measurand. See `temperature`.
        return out

    async def transaction_event(self, t, c, event_type, trigger, state=None, meter=None,
                                id_token=None, stopped_reason=None, with_evse=False):
        seq = self.seq[c]
        self.seq[c] += 1
        await self.send(t, call201.TransactionEvent(
            event_type=event_type, timestamp=charger_ts(t), trigger_reason=trigger,
            seq_no=seq,
            transaction_info=types201.TransactionType(
                transaction_id=self.tx[c], charging_state=state, stopped_reason=stopped_reason),
            meter_value=meter,
            evse=types201.EVSEType(id=c, connector_id=1) if with_evse else None,
            id_token=(types201.IdTokenType(id_token=id_token, type="ISO14443")
                      if id_token else None)))

    async def start(self, t, c, tag, register, unit, authorize_after_ms):
        self.tx_count += 1
        self.tx[c] = f"{self.cp.id}-{self.tx_count:04d}"
        self.seq[c] = 0
        begin = [types201.MeterValueType(
            timestamp=charger_ts(t),
            sampled_value=self.sampled({"register_wh": register, "unit": unit},
                                       "Transaction.Begin"))]
        if authorize_after_ms == 0:
            # Authorized with the plug-in: the id token is in the Started event.
            await self.transaction_event(t, c, "Started", "Authorized", "Charging", begin,
                                         id_token=tag, with_evse=True)
        else:
            # Plug and charge later: the driver is identified after the start.
            await self.transaction_event(t, c, "Started", "CablePluggedIn", "EVConnected",
                                         begin, with_evse=True)
            await self.transaction_event(t + authorize_after_ms, c, "Updated", "Authorized",
                                         "Charging", id_token=tag)

    async def sample(self, t, c, s):
        await self.transaction_event(
            t, c, "Updated", "MeterValuePeriodic",
            meter=[types201.MeterValueType(
                timestamp=charger_ts(t), sampled_value=self.sampled(s, "Sample.Periodic"))])

    async def clock_sample(self, t, c, s):
        await self.send(t, call201.MeterValues(
            evse_id=c,
            meter_value=[types201.MeterValueType(
                timestamp=charger_ts(t), sampled_value=self.sampled(s, "Sample.Clock"))]))

    async def stop(self, t, c, tag, register, unit, reason, end_sample):
        end = [types201.MeterValueType(
            timestamp=charger_ts(t),
            sampled_value=self.sampled({"register_wh": register, "unit": unit},
                                       "Transaction.End"))]
        trigger, stopped, state = reason["2.0.1"]
        await self.transaction_event(t, c, "Ended", trigger, state, end, id_token=tag,
                                     stopped_reason=stopped)
        del self.tx[c]

    async def notify_event(self, t, c, variable, actual, trigger, kind, tech_code=None,
                           cleared=None, transaction_id=None):
        self.event_id += 1
        seq, self.notify_seq = self.notify_seq, self.notify_seq + 1
        await self.send(t, call201.NotifyEvent(
            generated_at=charger_ts(t), seq_no=seq,
            event_data=[types201.EventDataType(
                event_id=self.event_id, timestamp=charger_ts(t), trigger=trigger,
                actual_value=actual, event_notification_type=kind,
                component=types201.ComponentType(
                    name="Connector", evse=types201.EVSEType(id=c, connector_id=1)),
                variable=types201.VariableType(name=variable),
                tech_code=tech_code, cleared=cleared, transaction_id=transaction_id)]))

    async def temperature(self, t, c, celsius):
        # A preconfigured periodic monitor on the connector's Temperature variable.
        await self.notify_event(t, c, "Temperature", f"{celsius:.1f}", "Periodic",
                                "PreconfiguredMonitor", transaction_id=self.tx.get(c))

    async def fault(self, t, c, code):
        await self.status(t, c, "Faulted")
        await self.notify_event(t, c, "Problem", "true", "Delta", "HardWiredNotification",
                                tech_code=code)

    async def clear_fault(self, t, c, code):
        await self.status(t, c, "Available")
        await self.notify_event(t, c, "Problem", "false", "Delta", "HardWiredNotification",
                                tech_code=code, cleared=True)


# ------------------------------------------------------------------------------------------
# The scenario
# ------------------------------------------------------------------------------------------

# (1.6 StopTransaction.reason, 2.0.1 (triggerReason, stoppedReason, chargingState))
LOCAL = {"1.6": "Local", "2.0.1": ("StopAuthorized", "Local", "EVConnected")}
UNPLUGGED = {"1.6": "EVDisconnected",
             "2.0.1": ("EVCommunicationLost", "EVDisconnected", "Idle")}
REMOTE = {"1.6": "Remote", "2.0.1": ("RemoteStop", "Remote", "EVConnected")}

# Sessions: charger, connector, tag, start, end, registers (Wh), register unit, authorisation
# delay, stop reason, sample extras. Registers interpolate linearly between the scripted values.
SESSIONS = [
    dict(cp="IOP-1", c=1, tag="IOP-TAG-A", t0=hm(8, 10), t1=hm(9, 10), wh0=10000, wh1=22345,
         unit="Wh", auth_ms=0, reason=LOCAL, soc=(25, 1.0), voltage="single"),
    dict(cp="IOP-1", c=1, tag="IOP-TAG-B", t0=hm(9, 30), t1=hm(10, 15), wh0=22345, wh1=30000,
         unit="Wh", auth_ms=0, reason=UNPLUGGED, soc=(40, 0.5), voltage="single"),
    dict(cp="IOP-2", c=1, tag="IOP-TAG-C", t0=hm(8, 20), t1=hm(9, 20), wh0=8190, wh1=19190,
         unit="kWh", auth_ms=5000, reason=REMOTE, soc=None, voltage="three",
         temperature={hm(8, 40): 72.5, hm(8, 41): 74.0, hm(8, 42): 66.0, hm(8, 43): 61.0}),
]
# IOP-3's fault: connector, error code, from, to.
FAULT = dict(cp="IOP-3", c=1, code="GroundFailure", t0=hm(9, 0), t1=hm(9, 30))
CHARGERS = {"IOP-1": 1001, "IOP-2": 2001, "IOP-3": 3001}  # id -> first 1.6 transaction id
CONNECTORS = [1, 2]
BASE_TEMPERATURE_C = 38.0


def session_sample(s, t):
    """The periodic sample of session `s` at time `t` (t0 < t < t1)."""
    span = s["t1"] - s["t0"]
    k = t - s["t0"]
    out = {"register_wh": s["wh0"] + round((s["wh1"] - s["wh0"]) * k / span), "unit": s["unit"]}
    power_w = round((s["wh1"] - s["wh0"]) * HOUR / span)
    minute = k // MIN
    if s["voltage"] == "three":
        kw = power_w / 3000
        out["power_kw_phases"] = [("L1", round(kw, 3)), ("L2", round(kw, 3)),
                                  ("L3", round(power_w / 1000 - 2 * round(kw, 3), 3))]
        out["voltage"] = [("L1-N", 230.0 + minute % 3), ("L2-N", 229.0 + minute % 2),
                          ("L3-N", 231.5)]
    else:
        out["power_w"] = power_w
        out["voltage"] = [(None, 231.0 - (minute % 4) * 0.5)]
    if s["soc"]:
        soc0, per_min = s["soc"]
        out["soc"] = int(soc0 + per_min * minute)
    if "temperature" in s:
        out["temperature_c"] = s["temperature"].get(t, BASE_TEMPERATURE_C)
    return out


def script(cp_id):
    """The charger's actions as (time ms, order, coroutine factory) — order breaks ties."""
    steps = []

    def add(t, order, fn, *args):
        steps.append((t, order, len(steps), fn, args))

    add(0, 0, "boot")
    add(0, 1, "available", CONNECTORS, True)
    for t in range(HEARTBEAT_S * 1000, END + 1, HEARTBEAT_S * 1000):
        add(t, 0, "heartbeat")
    for s in SESSIONS:
        if s["cp"] != cp_id:
            continue
        c = s["c"]
        add(s["t0"] - 30_000, 1, "plugged", c)
        add(s["t0"], 1, "start", c, s["tag"], s["wh0"], s["unit"], s["auth_ms"])
        for t in range(s["t0"] + MIN, s["t1"], MIN):
            sample = session_sample(s, t)
            add(t, 1, "sample", c, sample)
            if "temperature_c" in sample:
                add(t, 2, "temperature", c, sample["temperature_c"])
        add(s["t1"], 1, "stop", c, s["tag"], s["wh1"], s["unit"], s["reason"],
            s["unit"] == "kWh")
        add(s["t1"] + 2 * MIN, 1, "available", [c])
    if cp_id == FAULT["cp"]:
        for t in range(15 * MIN, END + 1, 15 * MIN):
            add(t, 1, "clock_sample", 1, {
                "register_wh": 50000, "unit": "Wh",
                "voltage": [("L1-N", 230.5), ("L2-N", 229.5), ("L3-N", 230.0)]})
        add(FAULT["t0"], 2, "fault", FAULT["c"], FAULT["code"])
        add(FAULT["t1"], 2, "clear_fault", FAULT["c"], FAULT["code"])
    return sorted(steps, key=lambda x: (x[0], x[1], x[2]))


async def run_charger(version, cp_id, lines):
    tap = Tap(version, cp_id, lines)
    to_backend, to_charger = asyncio.Queue(), asyncio.Queue()
    charger_conn = Pipe(to_charger, to_backend, tap, from_charger=True)
    backend_conn = Pipe(to_backend, to_charger, tap, from_charger=False)
    if version == "1.6":
        charger, backend = ChargePoint16(cp_id, charger_conn), Backend16
        station = Station16(charger, tap)
    else:
        charger, backend = ChargePoint201(cp_id, charger_conn), Backend201
        station = Station201(charger, tap)
    charger._unique_id_generator = message_ids(cp_id)
    csms = backend(cp_id, backend_conn, tap, CHARGERS[cp_id])
    tasks = [asyncio.create_task(charger.start()), asyncio.create_task(csms.start())]
    try:
        for t, _, _, fn, args in script(cp_id):
            await getattr(station, fn)(t, *args)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def generate(version):
    lines = []
    for cp_id in CHARGERS:
        per_charger = []
        await run_charger(version, cp_id, per_charger)
        lines.extend(per_charger)
    # Interleave the chargers by receive time (stable: each charger's own order is kept).
    lines.sort(key=lambda x: x[0])
    return [line for _, _, line in lines]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", choices=["1.6", "2.0.1"], required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    lines = asyncio.run(generate(a.version))
    with open(a.out, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    print(f"wrote {len(lines)} OCPP {a.version} lines to {a.out}")


if __name__ == "__main__":
    main()
