"""Sensors: readings of machines on a shop floor, scored for failure, keyed by machine.

``sensors.raw`` carries ``id, ts, machine_id, type (L/M/H), air_temp_k, process_temp_k, rpm,
torque_nm, tool_wear_min, message?``; ``sensors.scored`` the failure probability, the predicted
failure mode (none, TWF, HDF, PWF, OSF, RNF) and the defect flag.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from domains import register
from domains.base import (
    Category,
    Column,
    Domain,
    Measure,
    Name,
    Panel,
    RawEvent,
    ScoredResult,
    Simulation,
)
from models.base import SensorReading
from models.data import FAILURE_MODES


class SensorEvent(RawEvent):
    machine_id: Name
    machine_type: Literal["L", "M", "H"] = Field(alias="type")
    air_temp_k: Annotated[Measure, Field(gt=0)]
    process_temp_k: Annotated[Measure, Field(gt=0)]
    rpm: Annotated[Measure, Field(ge=0)]
    torque_nm: Measure
    tool_wear_min: Annotated[Measure, Field(ge=0)]
    message: str | None = None

    @property
    def entity(self) -> str:
        return self.machine_id


class SensorScore(ScoredResult):
    machine_id: str
    failure_probability: float
    failure_mode: Category
    defect: bool


def model_input(event: SensorEvent) -> SensorReading:
    return SensorReading(
        machine_type=event.machine_type,
        air_temp_k=event.air_temp_k,
        process_temp_k=event.process_temp_k,
        rpm=event.rpm,
        torque_nm=event.torque_nm,
        tool_wear_min=event.tool_wear_min,
    )


# The synthetic world: machines of type L, M and H wear their tools, heat up and strain; their
# failure modes follow the AI4I 2020 rules (tool wear, heat dissipation, power, overstrain),
# and about 3.3 % of readings fail, near AI4I's 3.4 %.
OVERSTRAIN_LIMIT = {"L": 11_000.0, "M": 12_000.0, "H": 13_000.0}
TOOL_WEAR_PER_STEP = {"L": 5.0, "M": 3.0, "H": 2.0}  # minutes added per reading
MACHINES = 40  # of the synthetic world
STREAMED_MACHINES_PER_TYPE = 12  # of real rows streamed by the demo


@dataclass
class Machine:
    machine_id: str
    machine_type: str
    air_temp_k: float
    tool_wear_min: float = 0.0
    strain: float = 0.0  # grows on machines drifting toward a failure


class SensorsWorld(Simulation):
    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.fleet = [
            Machine(
                machine_id=f"M{n:03d}",
                machine_type=rng.choices(("L", "M", "H"), weights=(5, 3, 2))[0],
                air_temp_k=rng.gauss(300.0, 2.0),
            )
            for n in range(MACHINES)
        ]

    def draw(self) -> tuple[dict[str, Any], str]:
        """A reading and its true failure mode ("none" when the machine did not fail)."""
        rng = self.rng
        machine = rng.choice(self.fleet)
        machine.tool_wear_min += TOOL_WEAR_PER_STEP[machine.machine_type] * rng.random()
        if rng.random() < 0.03:
            machine.strain = min(1.0, machine.strain + rng.random() * 0.5)
        air = machine.air_temp_k + rng.gauss(0, 0.3)
        process = air + 10.0 - 3.0 * machine.strain + rng.gauss(0, 0.5)
        rpm = max(1100.0, rng.gauss(1540.0, 120.0) - 300.0 * machine.strain)
        torque = max(3.0, rng.gauss(40.0 + 20.0 * machine.strain, 6.0))
        flags = _failure_flags(machine, air, process, rpm, torque, rng)
        reading: dict[str, Any] = {
            "machine_id": machine.machine_id,
            "type": machine.machine_type,
            "air_temp_k": round(air, 1),
            "process_temp_k": round(process, 1),
            "rpm": round(rpm),
            "torque_nm": round(torque, 1),
            "tool_wear_min": round(machine.tool_wear_min),
        }
        if any(flags.values()):
            reading["message"] = "operator: unusual noise near spindle"
            # A failed machine is repaired: new tool, strain relieved.
            machine.tool_wear_min = 0.0
            machine.strain = 0.0
        return reading, next((mode for mode in FAILURE_MODES if flags[mode]), "none")

    def summary(self, label: str) -> str:
        return str(label != "none").lower()


def _failure_flags(
    machine: Machine, air: float, process: float, rpm: float, torque: float, rng: random.Random
) -> dict[str, int]:
    wear = machine.tool_wear_min
    power_w = torque * rpm * 2 * math.pi / 60
    return {
        "TWF": int(wear >= 200 and rng.random() < 0.3),
        "HDF": int(process - air < 8.6 and rpm < 1380),
        "PWF": int(power_w < 3500 or power_w > 9000),
        "OSF": int(wear * torque > OVERSTRAIN_LIMIT[machine.machine_type]),
        "RNF": int(rng.random() < 0.001),
    }


def event_fields(reading: SensorReading, source: str, rng: random.Random) -> dict[str, Any]:
    """A labeled reading as a reading of a machine of its type, drawn at random."""
    measures = {key: value for key, value in reading.items() if key != "machine_type"}
    machine = f"{reading['machine_type']}{rng.randrange(STREAMED_MACHINES_PER_TYPE):02d}"
    return {"machine_id": machine, "type": reading["machine_type"], **measures}


SENSORS = register(
    Domain(
        name="sensors",
        task="defect",
        event=SensorEvent,
        result=SensorScore,
        entity="machine_id",
        event_columns=(
            Column("machine_id", "String"),
            Column("machine_type", "LowCardinality(String)"),
            *(
                Column(name, "Float32")
                for name in SensorReading.__annotations__
                if name != "machine_type"
            ),
            Column("message", "String", optional=True),
        ),
        model_input=model_input,
        summary_field="defect",
        feedback_field="failure_mode",
        predicted_class="if(defect, 'defect', 'ok')",
        score_field="failure_probability",
        panel=Panel(
            "Defect rate (share, 10 s)",
            """SELECT {bucket} AS t, 'defects' AS series, avg(defect) AS value
            FROM sensors_scores FINAL WHERE {in_window} GROUP BY t ORDER BY t""",
            y_max=1.0,
            percent=True,
        ),
        simulation=SensorsWorld,
        event_fields=event_fields,
        data_sets=("ai4i",),
    )
)
