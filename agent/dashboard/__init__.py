"""`hive-agent dashboard`: a local web page served by the agent (agent/dashboard/server.py),
behind an access token, a cookie session and CSRF checks (agent/dashboard/security.py)."""
