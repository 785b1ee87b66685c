"""dagster_sutro: Sutro batch inference and Sutro Functions as retry-safe, partitionable Dagster assets.

Example:
    >>> from dagster import Definitions, EnvVar
    >>> from dagster_sutro import SutroParquetIOManager, SutroResource, build_sutro_inference_asset
    >>> embeddings = build_sutro_inference_asset(
    ...     name="review_embeddings", upstream="reviews", model="all-minilm-l6-v2", column="text")
    >>> defs = Definitions(
    ...     assets=[embeddings],
    ...     resources={"sutro": SutroResource(api_key=EnvVar("SUTRO_API_KEY")),
    ...                "io_manager": SutroParquetIOManager(base_dir="/tmp/dagster")},
    ... )
"""

from .assets import build_sutro_function_asset, build_sutro_inference_asset, rows_to_frame
from .checks import RESULTS_CHECK_NAME, evaluate_results, results_check_spec
from .execution import prepare_spec, run_sutro_job, step_idempotency_key, step_scope
from .io import SutroArtifact, SutroParquetIOManager
from .metadata import materialization_metadata, preview_markdown
from .resources import SutroResource

__all__ = [
    "RESULTS_CHECK_NAME",
    "SutroArtifact",
    "SutroParquetIOManager",
    "SutroResource",
    "build_sutro_function_asset",
    "build_sutro_inference_asset",
    "evaluate_results",
    "materialization_metadata",
    "prepare_spec",
    "preview_markdown",
    "results_check_spec",
    "rows_to_frame",
    "run_sutro_job",
    "step_idempotency_key",
    "step_scope",
]
