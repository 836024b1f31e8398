"""A lecture, live: creating it and its credit rule (service.py), its media in this process
(live.py) and where its viewers are served (placement.py), the floor (floor.py), Q&A
(questions.py), its links and tokens (links.py), its replay file (replays.py)."""
