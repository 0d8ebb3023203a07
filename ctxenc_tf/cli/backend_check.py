"""The Keras backend a command is to run under (``KERAS_BACKEND``), checked before anything
imports Keras: Keras answers a name it does not know, or a backend whose package is missing,
with a traceback from inside its own import. Imports nothing but the standard library, and
looks packages up without importing them."""

import importlib.util
import os

# KERAS_BACKEND -> how to install it; Keras imports the package of the same name.
INSTALL = {
    "tensorflow": "pip install -r requirements.txt",
    "jax": "pip install -r requirements-jax.txt",
    "torch": "pip install torch==2.13.0 (the version tested, docs/testing.md)",
}

SUPPORTED = ("tensorflow (the default) and jax, which train the model, and torch, which builds and runs "
             "it but does not train it")


def backend_problem() -> str | None:
    """What keeps the environment's ``KERAS_BACKEND`` from working, as one line naming it,
    the supported backends and how to install the missing one; or ``None`` when it is unset
    or empty (Keras' own default) or names a supported backend whose package is installed."""
    name = os.environ.get("KERAS_BACKEND", "")
    if not name:
        return None
    if name not in INSTALL:
        return f"KERAS_BACKEND={name!r} is not a backend ctxenc-tf runs under; it runs under {SUPPORTED}"
    if importlib.util.find_spec(name) is None:
        return f"KERAS_BACKEND={name}, but {name} is not installed: {INSTALL[name]}; ctxenc-tf runs under {SUPPORTED}"
    return None
