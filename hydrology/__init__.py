"""The drought twin: climate grids -> drought indices -> forecast model -> twin (issue 5)."""
