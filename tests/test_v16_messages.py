"""Engine values -> OCPP 1.6 payload parts (secure_cp.v16.messages): a sampled value's text is its plain decimal
notation (1.6 MeterValues sampledValue.value is a string, OCPP 1.6 §7.43), exactly as the meter gave it."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from secure_cp.engine.model import Sample, SampledValue
from secure_cp.v16 import messages


@settings(max_examples=500, deadline=None)
@given(value=st.decimals(allow_nan=False, allow_infinity=False)
       | st.builds(lambda digits, exp: Decimal(digits).scaleb(exp),
                   st.integers(min_value=-10**12, max_value=10**12), st.integers(min_value=-30, max_value=30)))
def test_value_text_is_plain_notation(value: Decimal) -> None:
    text = messages._plain(value)
    assert text == format(value, "f")
    assert "E" not in text and Decimal(text) == value


def test_sampled_values_keep_the_meters_digits() -> None:
    sample = Sample(0.0, "Sample.Periodic", (SampledValue("Energy.Active.Import.Register", Decimal("2935.600"), "Wh"),
                                             SampledValue("Voltage", Decimal("2.3E+2"), "V"),
                                             SampledValue("SoC", Decimal("55"), None)))
    assert messages.sampled_values(sample) == [
        {"value": "2935.600", "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "230", "context": "Sample.Periodic", "measurand": "Voltage", "unit": "V"},
        {"value": "55", "context": "Sample.Periodic", "measurand": "SoC"},
    ]
