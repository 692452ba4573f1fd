"""The Virgo noise twin: strain + witnesses -> noise filter -> twin (issue 6)."""
