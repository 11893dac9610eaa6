"""The stage runner on top: stage table, plans, execution, status, lookup, gc."""
