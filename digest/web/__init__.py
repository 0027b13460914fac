"""The public web service (FastAPI): sign-up, confirm, unsubscribe, webhooks, archive, health."""
