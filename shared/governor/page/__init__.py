"""The decision page: one HTML page per (repository, SHA), behind a signed, expiring link.

view    the records -> what the page shows (pure)
render  Jinja2 with autoescape, loaded on first use
endpoint a request's method and query -> status, headers and body
"""
