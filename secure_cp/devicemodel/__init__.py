"""Configuration model: OCPP 2.0.1 components and variables, with every OCPP 1.6 key mapped onto them."""

from .keys16 import (
    FEATURE_PROFILES_16,
    KEYS16,
    MEASURANDS_16,
    PHASE_ROTATIONS_16,
    PHASES_16,
    VENDOR_COMPONENT,
    Config16,
    Key16,
    TooManyKeys,
)
from .model import DeviceModel, MemoryBackend, VariableBackend, VariableDef, VarKey

__all__ = [
    "VarKey",
    "VariableBackend",
    "MemoryBackend",
    "VariableDef",
    "DeviceModel",
    "Config16",
    "Key16",
    "KEYS16",
    "TooManyKeys",
    "VENDOR_COMPONENT",
    "MEASURANDS_16",
    "PHASES_16",
    "PHASE_ROTATIONS_16",
    "FEATURE_PROFILES_16",
]
