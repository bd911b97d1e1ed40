"""Sensors: readings of machines on a shop floor, scored for failure, keyed by machine.

``sensors.raw`` carries ``id, ts, machine_id, type (L/M/H), air_temp_k, process_temp_k, rpm,
torque_nm, tool_wear_min, message?``; ``sensors.scored`` the failure probability, the predicted
failure mode (none, TWF, HDF, PWF, OSF, RNF) and the defect flag.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from domains import register
from domains.base import Category, Column, Domain, Measure, Name, RawEvent, ScoredResult
from models.base import SensorReading


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
    )
)
