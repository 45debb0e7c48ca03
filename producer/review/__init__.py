"""The review console: reviewers of a tenant and auditors across tenants judge the scans the model
was unsure of, and a QC sample of the rest (docs/REVIEW.md). access.py: keys, sessions, scope; desk.py:
the plain functions (and the `scan.reviewed` hook); routes.py: HTTP; static/: the page, no build step."""
