"""What every l0rl sub-package raises first when it is imported under another name: each folder of
the repository (l0/, runkit/, ...) installs as l0rl.<folder> only, because `import l0` from the
repository root would load a second copy of its classes, registries and state beside l0rl.l0."""


def wrong_import_name(expected: str) -> ImportError:
    """The error, saying how to fix it, for a package that must be imported as `expected`."""
    folder = expected.rpartition(".")[2]
    return ImportError(
        f"import this package as {expected} (from l0rl import {folder}); run 'make setup' or pip install -e ."
    )
