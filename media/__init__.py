"""Media plane of Lecture Relay: RTP passthrough forwarding with no decode or encode.

Never imports ``server`` or aiohttp.
"""
