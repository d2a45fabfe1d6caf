"""The live dashboard: a read-only web page of the fleet, served by the daemon.

``server`` speaks HTTP (the page, ``/state``, the ``/events`` stream), ``snapshot`` builds
what the page shows from the daemon's live status and the queue, ``logtail`` follows the
log, and ``page.html`` is the page itself: inline CSS and a small script, no request
anywhere but back to the daemon. Started by ``swarmd.daemon.serve`` when
``SWARMD_DASHBOARD_PORT`` is set.
"""
