"""The live dashboard: one page served by the pipeline's own API, at ``/``.

The page is plain HTML, CSS and the project's own JavaScript (``static/``), with
plotly.js served from the installed ``plotly`` package: no CDN, no build step, nothing
fetched from the internet, so it works offline. It reads only the API (views from
``GET /api/v1/dashboard``, history from the query endpoints, ``/metrics`` for the
overview) and follows ``GET /api/v1/events``; see :mod:`sensorstream.dashboard.page`.
"""

from sensorstream.dashboard.page import dashboard_router

__all__ = ["dashboard_router"]
