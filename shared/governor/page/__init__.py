"""The decision page: one HTML page per (repository, SHA), behind a signed, expiring link.

view    the records -> what the page shows (pure)
patterns the pattern behind each risky path, from the policy text a record keeps (pure;
        `governor explain` uses it too)
render  Jinja2 with autoescape, loaded on first use
endpoint a request's method and query -> status, headers and body
"""
