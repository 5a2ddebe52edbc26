"""What a scheduler refuses with, and the HTTP layer answers: overload (503) and a missed deadline (504)."""


class Overloaded(Exception):
    """The model's queue is full; the client should retry later."""


class DeadlineExceeded(Exception):
    """A request was not answered within its deadline."""
