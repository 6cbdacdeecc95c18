"""mtssl-report: one HTML page with the pictures of one or several runs."""
