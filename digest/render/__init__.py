"""Email rendering: Jinja2 fills MJML, mjml-python compiles once, personalization fills placeholders."""
