"""The county's training programme: teacher pool, course library, assigned (下单式) and
ordered (点单式) training with approval, feedback, and training-hour credit."""
