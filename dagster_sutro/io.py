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
from dagster import AssetExecutionContext, InitResourceContext, MetadataValue, OutputContext
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

    ``base_dir`` may be object storage (``s3://bucket/prefix``): credentials come from ``storage_options``
    (s3fs's: ``key``, ``secret``, ``endpoint_url``, ``client_kwargs``; ``EnvVar`` values work) or, without
    them, the standard AWS environment. The artifact is uploaded once and appears only complete.

    Example:
        >>> SutroParquetIOManager(base_dir="/data/dagster")
        >>> SutroParquetIOManager(base_dir="s3://bucket/dagster",
        ...                       storage_options={"endpoint_url": EnvVar("S3_ENDPOINT")})  # doctest: +SKIP
    """

    def setup_for_execution(self, context: InitResourceContext) -> None:  # noqa: D102
        super().setup_for_execution(context)
        options = self.storage_options
        both = _readable_by_polars_too(options)
        if both != options:
            from upath import UPath

            self._base_path = UPath(self.base_dir, **both)

    def dump_to_path(self, context: OutputContext, obj: Any, path: Any) -> None:  # noqa: D102
        if not isinstance(obj, SutroArtifact):
            return super().dump_to_path(context, obj, path)
        target = placement.move_file(obj.manifest.uri, path)
        # dagster-polars reads the stored object's schema/row count afterwards: point it at the new home.
        obj._ldf = pl.scan_parquet(target, storage_options=_polars_options(getattr(path, "storage_options", None)))._ldf
        obj.manifest = obj.manifest.model_copy(update={"uri": target})
        context.add_output_metadata({"dagster/uri": MetadataValue.text(asset_uri(target))})  # where it lives
        return None


def _readable_by_polars_too(options: dict[str, Any]) -> dict[str, Any]:
    """s3fs takes ``endpoint_url`` / ``region_name`` at the top level or in ``client_kwargs``; dagster-polars
    hands polars (which loads downstream inputs) only the ``client_kwargs`` ones. Copied there, both read
    the same endpoint."""
    moved = {k: options[k] for k in ("endpoint_url", "region_name") if options.get(k)}
    if not moved:
        return options
    client_kwargs = {**moved, **dict(options.get("client_kwargs") or {})}
    return {**{k: v for k, v in options.items() if k not in moved}, "client_kwargs": client_kwargs}


def _polars_options(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """fsspec-style options as polars' object_store wants them (dagster-polars' own translation)."""
    if not options:
        return None
    try:
        from dagster_polars.io_managers.parquet import _remap_fsspec_storage_options
    except ImportError:  # an older dagster-polars: polars then reads with the environment's credentials
        return None
    return _remap_fsspec_storage_options(options)
