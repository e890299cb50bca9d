"""Pure decisions: compare desired with live Cloud Run state and read its convergence."""
