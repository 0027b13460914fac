"""The weekly schedule inside `digest serve`: the slot policy, feed refresh and the APScheduler service."""
