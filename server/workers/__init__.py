"""``serve --workers N``: the primary's pool of media workers (pool.py) and a worker itself
(media_worker.py)."""
