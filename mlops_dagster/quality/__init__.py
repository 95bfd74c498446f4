"""Data quality: Great Expectations expectations from the spec, validated early and run per batch.

Importing this package does not import Great Expectations: it loads inside the functions that use it.
"""

from mlops_dagster.quality.expectations import check_names, validate_expectations
from mlops_dagster.quality.runner import ExpectationOutcome, run_expectations

__all__ = ["ExpectationOutcome", "check_names", "run_expectations", "validate_expectations"]
