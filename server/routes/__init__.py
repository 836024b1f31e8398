"""HTTP surface: WHIP/WHEP signalling, the JSON API, pages and metrics."""
