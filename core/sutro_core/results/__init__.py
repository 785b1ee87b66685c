"""Results: from the server's results file to what a pipeline step keeps or a user reads.

One module per concern; imports run one way (``reading`` -> ``targets``, ``shape``; ``targets`` ->
``parquet_footer``), never back:

- ``targets``: where a results file goes (a local path or an fsspec URI), the temp file checked
  (``validate_results_file``), finished and moved into place atomically (``prepare_target``, ``finalize``)
- ``parquet_footer``: key-value metadata (``sutro.job_id`` ...) added to a parquet file by rewriting its footer only
- ``shape``: the results shape: a DataFrame shaped as the SDK does (``shape_results``, ``join_original``) and
  the one artifact every adapter writes (``shape_file``: carried input columns + unpacked outputs)
- ``reading``: results read back (``load_results``; ``read_results_file`` for ``get_job_results``'s download)
- ``tables``: an upstream's rows as one DataFrame (``rows_to_frame``) and a results table's completeness

Public names (``load_results``, ``ResultsShapeError``) are importable from ``sutro_core``.
"""
