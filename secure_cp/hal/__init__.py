"""Hardware-adapter interface and the simulated hardware."""
from .api import (ERROR_CODES, EmergencyStop, EvReady, EvseReady, Fault, HalEvent, HardwareAdapter, IdTagPresented, MeterReading,
                  Plugged, SignedMeterAdapter, signed_meter_of)

__all__ = ["ERROR_CODES", "EmergencyStop", "EvReady", "EvseReady", "Fault", "HalEvent", "HardwareAdapter", "IdTagPresented",
           "MeterReading", "Plugged", "SignedMeterAdapter", "load_adapter", "signed_meter_of"]


def load_adapter(spec: str, **kwargs) -> HardwareAdapter:
    """Instantiate an adapter from ``"simulated"`` or ``"package.module:Class"``."""
    import importlib
    if spec == "simulated":
        from .simulated import SimulatedHardware
        return SimulatedHardware(**kwargs)
    module, sep, cls = spec.partition(":")
    if not sep or not module or not cls:
        raise ValueError(f"hardware.adapter must be 'simulated' or 'module:Class', not {spec!r}")
    obj = getattr(importlib.import_module(module), cls)
    return obj(**kwargs)
