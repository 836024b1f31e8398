"""Control plane of Lecture Relay: the aiohttp application, CLI, auth, storage and routes."""
