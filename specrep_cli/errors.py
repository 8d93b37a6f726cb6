"""The one exception type the CLI turns into a single line on stderr and a non-zero exit."""


class SpecrepError(Exception):
    """A problem the user can fix: bad config, missing data, unusable checkpoint, diverged run.

    The message is one line that says what is wrong and how to fix it.
    """
