"""The subscriber lifecycle. The pipeline uses it through `subscribers.api` only."""
