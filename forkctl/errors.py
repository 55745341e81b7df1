"""The one user-error type: the CLI prints its whole message on one line and exits 2; anything else keeps its
traceback (a bug must look like a bug)."""


class UserError(ValueError):
    """Bad input or a refused request, said in words a user can act on (file, line, field, what to do)."""
