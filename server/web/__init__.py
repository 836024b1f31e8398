"""The HTTP adapter's plumbing under the routes: errors and their statuses, security headers,
CORS, limits on what a stranger can repeat, the heartbeat WebSocket, the OpenAPI document,
/metrics."""
