"""A module that fails on import with something other than ImportError (for check tests)."""

raise RuntimeError("broken on purpose")
