"""Email providers: each one a package that declares itself in one `Provider` (see `registry`).

The built-in ones (`outbox`, `resend`, `smtp`, `ses`) and any installed package are found the
same way, through the `digest.providers` entry point group. The registry sits at the bottom of
the layers (the config reads it); each provider sits at the top, beside the other entry points,
since it brings a transport, a webhook and doctor checks together.
"""
