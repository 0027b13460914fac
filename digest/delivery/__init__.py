"""Delivery: the deliveries table is the queue; workers claim whole batches and hand them to a transport."""
