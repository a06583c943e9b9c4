"""The station model (pure logic): see station.Engine."""
from .authorization import Authorizer, info_valid
from .model import (AuthorizeRequest, Effect, Notice, ResetNow, Sample, SampledValue, SignedReadingWanted, Status,
                    StatusChanged, StopReason, TxMeterValues, TxSigned, TxStarted, TxStopped, parse_rfc3339, rfc3339)
from .settings import EngineSettings, StaticSettings
from .station import Engine

__all__ = ["Authorizer", "AuthorizeRequest", "Effect", "Engine", "EngineSettings", "Notice", "ResetNow", "Sample",
           "SampledValue", "SignedReadingWanted", "StaticSettings", "Status", "StatusChanged", "StopReason",
           "TxMeterValues", "TxSigned", "TxStarted", "TxStopped", "info_valid", "parse_rfc3339", "rfc3339"]
