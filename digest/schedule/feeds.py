"""The feeds `schedule.feeds` names, ingested before each weekly issue."""

from __future__ import annotations

import logging

from digest.ingest.sources import expand
from digest.ingest.store import upsert
from digest.runtime import Runtime

log = logging.getLogger("digest.schedule")


def refresh_feeds(rt: Runtime) -> list[str]:
    """Ingest `schedule.feeds`; a feed that fails is reported and the issue goes out with what we have."""
    problems = []
    for source in expand(list(rt.settings.schedule.feeds), skip_bad_items=True):
        if source.error:
            log.warning("feed: %s", source.error)
            problems.append(source.error)
            continue
        for skipped in source.skipped:
            log.warning("feed: %s", skipped)
            problems.append(skipped)
        with rt.sessions.begin() as session:
            results = upsert(session, source.items or [], default_url=rt.settings.site.site_url + "/compare")
        changed = sum(1 for r in results if r.action != "unchanged")
        log.info("feed %s: %d comparison(s), %d new or changed", source.name, len(results), changed)
    return problems
