"""Classrooms (教室): the county's township schools, education bases and teaching points, the
rooms a lecture gives them, and what a room does during it (headcount, check-ins)."""
