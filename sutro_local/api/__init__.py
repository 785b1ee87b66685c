"""FastAPI routers of sutro-local, one module per concern.

``ROUTER_MODULES`` lists the modules whose ``router`` the app mounts; add a line to mount a new
one (e.g. an OpenAI-compatible chat route).
"""

ROUTER_MODULES: list[str] = [
    "sutro_local.api.meta",
    "sutro_local.api.jobs",
    "sutro_local.api.results",
    "sutro_local.api.progress",
    "sutro_local.api.functions",
    "sutro_local.api.openai_compat",  # OpenAI-compatible /v1 routes for transformers models
]
