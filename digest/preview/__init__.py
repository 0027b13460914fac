"""Operator preview: the next issue as it would go out now, its checks, test sends and history.

`digest preview` serves it on 127.0.0.1; nothing here freezes an issue or enqueues deliveries.
"""
