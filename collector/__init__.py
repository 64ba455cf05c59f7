"""The greendc agent: MQTT in, validated readings out to the sinks."""

from collector.agent import Agent
from collector.pipeline import Pipeline
from collector.spool import Spool

__all__ = ["Agent", "Pipeline", "Spool"]
