"""The library's sensors: they decide from records in the instance; heavy work goes to runs."""
