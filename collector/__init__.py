"""The greendc agent: MQTT in, validated readings out to the sinks."""

from greendc.collector.agent import Agent
from greendc.collector.pipeline import Pipeline
from greendc.collector.spool import Spool

__all__ = ["Agent", "Pipeline", "Spool"]
