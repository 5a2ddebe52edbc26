"""What a scheduler refuses with, and the HTTP layer answers: overload (503), a missed deadline (504), and input
no model can read (a client error)."""


class Overloaded(Exception):
    """The model's queue is full; the client should retry later."""


class DeadlineExceeded(Exception):
    """A request was not answered within its deadline."""


class InvalidInput(ValueError):
    """A request's items cannot be given to the model (text that is not valid Unicode); the message says which,
    never what it holds."""
