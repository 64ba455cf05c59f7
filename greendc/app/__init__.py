"""greendc's application layer: the command line, the demo, the simulate command and the
embedded broker.

This is the only package allowed to import every layer (the core ``greendc``, and
``greendc.collector``, ``greendc.exporters``, ``greendc.dashboards``,
``greendc.simulator``); tests/unit/test_layers.py enforces the direction. Nothing imports it
except the ``greendc`` console script.
"""
