"""greendc's Grafana dashboards as code (grafanalib), their build and query helpers.

``build(out_dir)`` writes the dashboards as JSON (default ``dashboards/generated``), which
Grafana loads through the provider in ``config/grafana/provisioning``.
"""

from greendc.dashboards.build import DASHBOARDS, build, iter_queries, substitute, variable_queries

__all__ = ["DASHBOARDS", "build", "iter_queries", "substitute", "variable_queries"]
