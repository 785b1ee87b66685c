"""Where a Sutro asset's results artifact lives, and the IO manager that stores it as it is.

The asset's value is a ``SutroArtifact``: a ``LazyFrame`` over the core's staged results file that knows the
file. ``SutroParquetIOManager`` moves that file into place byte for byte (nothing loaded, the ``sutro.*``
footer kept); any other IO manager sees an ordinary ``LazyFrame``.

Example:
    >>> from dagster_sutro import SutroParquetIOManager
    >>> defs = Definitions(assets=[...], resources={"io_manager": SutroParquetIOManager(base_dir="s3://bucket/dagster")})
"""

from __future__ import annotations

from typing import Any

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, OutputContext
from dagster_polars import PolarsParquetIOManager

from sutro_core import ResultsManifest
from sutro_core.lineage import asset_uri

from . import placement


class SutroArtifact(pl.LazyFrame):
    """A lazy view of a results artifact that remembers its manifest (file, rows, columns, job).

    Example:
        >>> art = SutroArtifact.of(manifest)     # doctest: +SKIP
        >>> art.manifest.rows, art.head(3).collect()  # doctest: +SKIP
    """

    manifest: ResultsManifest

    @classmethod
    def of(cls, manifest: ResultsManifest) -> "SutroArtifact":
        """The artifact behind ``manifest``, scanned lazily."""
        art = cls._from_pyldf(pl.scan_parquet(manifest.uri)._ldf)
        art.manifest = manifest
        return art  # type: ignore[return-value]


def staging_path(context: AssetExecutionContext, results_dir: str | None, job_tag: str) -> str:
    """Where the core writes this step's artifact before the IO manager takes it: ``results_dir``
    (``SutroResource.results_dir``, default ``$DAGSTER_HOME/storage/sutro``), one file per asset, partition
    and step key.

    Example:
        >>> staging_path(context, "/data/sutro", "5c1f")  # doctest: +SKIP
        '/data/sutro/ticket_labels/__all__/5c1f.parquet'
    """
    partition = context.partition_key if context.has_partition_key else "__all__"
    return placement.staging_path(results_dir, [*context.asset_key.path, partition, f"{job_tag}.parquet"])


class SutroParquetIOManager(PolarsParquetIOManager):
    """``PolarsParquetIOManager`` that stores a ``SutroArtifact`` by moving its file into place unchanged
    (constant memory, ``sutro.*`` footer kept); everything else, and loading, is dagster-polars' own.

    Example:
        >>> SutroParquetIOManager(base_dir="/data/dagster")
    """

    def dump_to_path(self, context: OutputContext, obj: Any, path: Any) -> None:  # noqa: D102
        if not isinstance(obj, SutroArtifact):
            return super().dump_to_path(context, obj, path)
        target = placement.move_file(obj.manifest.uri, path)
        # dagster-polars reads the stored object's schema/row count afterwards: point it at the new home.
        obj._ldf = pl.scan_parquet(target, storage_options=getattr(path, "storage_options", None) or None)._ldf
        obj.manifest = obj.manifest.model_copy(update={"uri": target})
        context.add_output_metadata({"dagster/uri": MetadataValue.text(asset_uri(target))})  # where it lives
        return None
