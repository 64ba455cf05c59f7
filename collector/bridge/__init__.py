"""Sensor bridges: poll Modbus TCP (and next SNMP, Redfish, BACnet/IP) devices and publish
native greendc readings over MQTT. ``greendc bridge --config PATH`` runs :class:`Bridge`."""

from greendc.collector.bridge.bridge import Bridge, build_pollers
from greendc.collector.bridge.health import BridgeCollector, HealthSnapshot

__all__ = ["Bridge", "BridgeCollector", "HealthSnapshot", "build_pollers"]
