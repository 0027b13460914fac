"""The preview app's routers, one per page or action; `digest.preview.app` includes them all."""
