"""Data: tables -> read values -> batches."""
from .batching import (
                       ChunkCollator,
                       ChunkedBatchSampler,
                       Collator,
                       GroupedBatchSampler,
                       Rows,
                       choose_group_input,
                       collate_input,
)
from .dataset import InputSpec, ReadTable, check_columns, read_inputs
from .prefetch import PrefetchLoader
from .table import Table, as_table, is_missing, read_table

__all__ = ["ChunkCollator", "ChunkedBatchSampler", "Collator", "GroupedBatchSampler", "InputSpec", "PrefetchLoader",
           "ReadTable", "Rows", "Table", "as_table", "check_columns", "choose_group_input", "collate_input",
           "is_missing", "read_inputs", "read_table"]
